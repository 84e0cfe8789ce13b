import pytest

from mediaeval_mem.core.errors import UnknownNameError
from mediaeval_mem.core.registry import Registry


def test_register_and_build():
    reg = Registry("widget")

    @reg.register("a")
    def make_a(x=1):
        return ("a", x)

    assert reg.build("a", x=3) == ("a", 3)
    assert list(reg) == ["a"]


def test_twice_raises():
    reg = Registry("widget")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(lambda: None)


def test_unknown_name_lists_valid_ones():
    reg = Registry("widget")
    reg.register("b")(lambda: None)
    reg.register("a")(lambda: None)
    with pytest.raises(UnknownNameError) as e:
        reg["c"]
    assert str(e.value) == "unknown widget 'c'; valid names: a, b"


def test_encoder_registry_names():
    from mediaeval_mem.encoders import ENCODERS, build_encoder

    with pytest.raises(UnknownNameError, match="clip-vit-b32"):
        build_encoder("clip-vit-h14")
    assert {"clip-vit-b32", "clip-vit-l14-336", "clip-demo"} <= set(ENCODERS)
