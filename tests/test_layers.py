"""The package's import layers are checked, not remembered: pyproject.toml's import-linter contracts hold,
and no module imports itself round a cycle (a cycle fails with its path named)."""

from __future__ import annotations

import grimp
import pytest
from conftest import REPO

from mediaeval_mem.encoders import ENCODERS
from mediaeval_mem.training.trainers import TRAINERS


def test_the_import_contracts_are_kept(capfd):
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capfd.readouterr().out
    assert code == 0, out[out.find("Broken contracts"):] if "Broken contracts" in out else out


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle per strongly connected group of modules, as its path [a, b, ..., a] (Tarjan's algorithm)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(group) > 1:
                groups.append(sorted(group))

    for m in edges:
        if m not in index:
            visit(m)
    cycles = []
    for group in groups:  # a path round the group: its first module, one of its imports in the group, back
        a = group[0]
        b = next(w for w in edges[a] if w in group)
        cycles.append([a, *graph.find_shortest_chain(importer=b, imported=a)])
    return cycles


def test_no_module_imports_itself_round_a_cycle():
    graph = grimp.build_graph("mediaeval_mem", exclude_type_checking_imports=True, cache_dir=None)  # TYPE_CHECKING imports never run
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_named_with_its_path():
    graph = grimp.ImportGraph()
    for a, b in [("pkg.a", "pkg.b"), ("pkg.b", "pkg.c"), ("pkg.c", "pkg.a"), ("pkg.c", "pkg.d")]:
        graph.add_import(importer=a, imported=b)
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


@pytest.mark.parametrize("name", sorted(n for n in ENCODERS if ENCODERS.info(n).trainer is not None))
def test_an_encoder_trained_first_names_a_registered_trainer(name):
    assert ENCODERS.info(name).trainer in TRAINERS
