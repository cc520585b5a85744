"""RunContext.cache: per-op run-time forms of the arrays, made once and never handed to another op."""

from types import SimpleNamespace

from stbin.deploy.ops import RunContext


def test_cache_is_made_once_per_op():
    ctx = RunContext(SimpleNamespace(_torch_cache={}))
    op = SimpleNamespace(arrays={})
    calls = []
    first = ctx.cache(op, "form", lambda: calls.append(1) or "made")
    assert ctx.cache(op, "form", lambda: calls.append(1) or "again") == first == "made" and len(calls) == 1
    assert ctx.cache(op, "other", lambda: "other form") == "other form"  # a different key, made separately


def test_an_op_at_a_freed_op_address_never_gets_the_old_form():
    """An entry left by an op whose address is taken by a new op (same id) is not reused for it."""
    store = {}
    ctx = RunContext(SimpleNamespace(_torch_cache=store))
    old, new = SimpleNamespace(arrays={}), SimpleNamespace(arrays={})
    store[("form", id(new))] = (old, "the old op's form")  # what a freed op at new's address would have left
    assert ctx.cache(new, "form", lambda: "new form") == "new form"
    assert ctx.cache(new, "form", lambda: "made twice") == "new form"
