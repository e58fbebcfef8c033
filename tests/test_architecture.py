"""The floor plan holds: imports point one way (DESIGN.md's layers), the only import cycle is the
tolerated expressions <-> UDFs <-> functions one, no module imports another's private names, and
imports inside functions stay only where they defer something heavy.

The package's AST is walked, function-level imports included; imports under
``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pxlite"

#: DESIGN.md's rooms, lowest first. A module may import from its own layer or below.
LAYERS: dict[str, int] = {
    "pxlite.errors": 0, "pxlite.faults": 0, "pxlite.redact": 0,
    "pxlite.config": 1, "pxlite.types": 1, "pxlite.progress": 1,
    "pxlite.sqlcall": 1, "pxlite.jsonpath": 1, "pxlite.vectors": 1, "pxlite.vecsql": 1,
    "pxlite.db": 2, "pxlite.storage": 2, "pxlite.cache": 2, "pxlite.scanindex": 2,
    "pxlite.catalog": 3, "pxlite.places": 3, "pxlite.media": 3, "pxlite.results": 3,
    "pxlite.imagegen": 3,
    "pxlite.display": 3,
    "pxlite.exprs": 4, "pxlite.udf": 4, "pxlite.uda": 4, "pxlite.functions": 4,
    "pxlite.iterators": 4,
    "pxlite.plan": 5, "pxlite.writes": 5, "pxlite.queryplan": 5, "pxlite.versions": 5,
    "pxlite.embeddings": 5, "pxlite.vecsearch": 5, "pxlite.vecfilter": 5,
    "pxlite.ingest": 6, "pxlite.compute": 6, "pxlite.executors": 6, "pxlite.jobs": 6,
    "pxlite.query": 6, "pxlite.queryrun": 6, "pxlite.io.keys": 6, "pxlite.history": 6,
    "pxlite.indexing": 6,
    "pxlite.backup": 6, "pxlite.views": 6,
    "pxlite.table": 7, "pxlite.maintenance": 7, "pxlite.snapshots": 7,
    # io: imports and exports use tables as a user does (create_table, insert, queries);
    # primary keys and batch_update (io.keys) sit below the table facade that delegates to them
    "pxlite.io": 8,
    "pxlite.connection": 8, "pxlite": 8, "pxlite.cli": 8, "pxlite.demo": 8,
}
#: The one tolerated cycle: expressions build calls of UDFs, UDFs and functions build
#: expressions.
TOLERATED_CYCLE = {"pxlite.exprs", "pxlite.udf", "pxlite.functions", "pxlite.functions.image",
                   "pxlite.functions.net", "pxlite.functions.iterator_call"}
#: Internal modules that may be imported inside a function: each defers something heavy.
DEFERRED = {
    "pxlite.cache": "the diskcache wrapper: loads diskcache",
    "pxlite.storage.local": "a storage backend: backends load through the registry on first use",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rsplit(".", 1)[0]
    return LAYERS[module]


class _Imports(ast.NodeVisitor):
    """Runtime imports of pxlite modules: (target module, imported names, in a function?)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.found: list[tuple[str, list[str], bool, int]] = []
        self._depth = 0

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == "pxlite" or a.name.startswith("pxlite."):
                self.found.append((a.name, [], self._depth > 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base.pop()
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and (node.module == "pxlite" or node.module.startswith("pxlite.")):
            target = node.module
        else:
            return
        names = [a.name for a in node.names]
        # ``from . import storage`` imports the module pxlite.storage
        for n in names:
            sub = f"{target}.{n}"
            if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists() or \
                    (PKG.parent / sub.replace(".", "/") / "__init__.py").exists():
                self.found.append((sub, [], self._depth > 0, node.lineno))
                names = [x for x in names if x != n]
        if names:
            self.found.append((target, names, self._depth > 0, node.lineno))


def _graph() -> dict[str, list[tuple[str, list[str], bool, int]]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        v = _Imports(mod, path.name == "__init__.py")
        v.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        out[mod] = v.found
    return out


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_only_import_cycle_is_the_tolerated_one():
    graph = _graph()
    edges = {m: {t for t, _, _, _ in imps if t != m and t != "pxlite"} for m, imps in graph.items()}
    bad = [c for c in _cycles(edges) if not c <= TOLERATED_CYCLE]
    assert not bad, f"import cycles outside expressions/UDFs/functions: {bad}"


def test_imports_point_down_the_layers():
    bad = []
    for mod, imps in _graph().items():
        for target, _, _, line in imps:
            if target == "pxlite" and mod in ("pxlite.cli",):
                continue  # the console entry point uses the public package, like a user
            if _layer(target) > _layer(mod):
                bad.append(f"{mod}:{line} imports {target} (layer {_layer(target)} above "
                           f"{_layer(mod)})")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = [f"{mod}:{line} imports {n} from {target}"
           for mod, imps in _graph().items() for target, names, _, line in imps
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_imports_inside_functions_only_defer_something_heavy():
    bad = []
    for mod, imps in _graph().items():
        for target, _, in_function, line in imps:
            if not in_function or target in DEFERRED:
                continue
            if mod in TOLERATED_CYCLE and target in TOLERATED_CYCLE:
                continue  # the cycle is broken at call time, by design
            bad.append(f"{mod}:{line} imports {target} inside a function")
    assert not bad, "\n".join(bad)


def test_every_module_has_a_room():
    unplaced = [m for m in _graph() if not any(
        m == k or m.startswith(k + ".") for k in LAYERS)]
    assert not unplaced, f"modules missing from DESIGN.md's rooms: {unplaced}"


def test_the_checker_sees_a_cycle_and_a_private_import(tmp_path):
    """The rules above can fail: a made-up graph with a cycle is caught."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    v = _Imports("pxlite.table", False)
    v.visit(ast.parse("def f():\n    from .catalog import _secret\n"))
    assert v.found == [("pxlite.catalog", ["_secret"], True, 2)]
