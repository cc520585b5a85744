"""No import cycle inside stbin: the module-level import graph of every ``stbin/*.py`` is acyclic.

The graph is built from the source with :mod:`ast`, without importing anything. An edge
``a -> b`` is an import that runs when module ``a`` is executed: a statement at module
level (also inside a module-level ``if``/``try``/``with``, but not inside ``if TYPE_CHECKING:``,
which never runs), absolute (``stbin.x``) or relative. ``import stbin.x`` and
``from stbin.x import name`` point at module ``stbin.x`` (a package's ``__init__``);
``from stbin.x import y`` points at ``stbin.x.y`` where ``y`` is a submodule. Imports inside
functions run later, when the importing modules are complete, and are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stbin

ROOT = Path(stbin.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by its dotted name (a package: its ``__init__.py``)."""
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]):
    """The import statements executed when the module runs (not in functions, classes' methods or TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            for block in (node.body, *(h.body for h in getattr(node, "handlers", [])),
                          getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                yield from _module_level(block)
        elif isinstance(node, ast.ClassDef):  # a class body runs at import time
            yield from _module_level(node.body)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at module level."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _module_level(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:  # relative: from .x import y / from .. import y
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    g = import_graph()
    assert len(g) > 100
    assert "stbin.models.registry" in g["stbin.models.mlp"]          # from stbin.models.registry import ...
    assert "stbin.models.mlp" in g["stbin.models"]                   # from stbin.models import mlp (a submodule)
    assert "stbin._registry" in g["stbin.models.registry"]


def test_no_import_cycle_inside_stbin():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("edges, expect", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder(edges, expect):
    assert cycles(edges) == expect


def test_a_package_importing_a_module_that_imports_it_back_is_found(tmp_path):
    """The graph of a crafted package with the cycle the models had (a module importing its package)."""
    pkg = tmp_path / "stbin" / "models"
    pkg.mkdir(parents=True)
    (tmp_path / "stbin" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("REG = {}\nfrom stbin.models import mlp  # noqa\n")
    (pkg / "mlp.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import stbin\n"
                                "def f():\n    import stbin.models\nfrom stbin.models import REG\n")
    g = import_graph(tmp_path / "stbin")
    assert g["stbin.models.mlp"] == {"stbin.models"}  # not the TYPE_CHECKING nor the function-level import
    assert cycles(g) == [["stbin.models", "stbin.models.mlp"]]
