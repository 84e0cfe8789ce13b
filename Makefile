# Two commands from a fresh clone: `make demo` and `make test` (`make lint` first). Both create/update .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo lint test venv venv-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the dependency list or the pin changes.
$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) -e ".[test,ray]"
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test

demo: venv
	$(VENV)/bin/mem demo

# ruff (pyproject's [tool.ruff]) and the import layers (pyproject's [tool.importlinter]).
lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Two pytest-xdist workers; a test module runs whole on one, the Ray modules in two units, the longest first (tests/conftest.py).
test: lint
	$(PY) -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf $(VENV) runs/features runs/models data/demo
