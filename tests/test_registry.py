"""The name registry: duplicates refused, the same definition executed again accepted."""

import pytest

from stbin._registry import Registry


def test_a_name_is_registered_once():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        r.register("a", 2)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 1)  # equal values, not a definition: still a duplicate


def test_the_same_definition_executed_again_replaces_the_entry():
    """A module that registers on import, executed a second time (pytest --doctest-modules)."""
    r = Registry("model")
    source = "def tiny(width=2):\n    return width\n"
    first, second = {"__name__": "pkg.mod"}, {"__name__": "pkg.mod"}
    exec(source, first)
    exec(source, second)
    r.register("tiny", first["tiny"])
    r.register("tiny", second["tiny"])
    assert r.get("tiny") is second["tiny"]
    other = {"__name__": "pkg.other"}
    exec(source, other)
    with pytest.raises(ValueError, match="already registered"):
        r.register("tiny", other["tiny"])  # another module's function of the same name
