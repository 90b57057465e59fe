"""No import cycles inside the ``minbasis`` package.

The test reads every module of ``minbasis/`` with :mod:`ast` (nothing is imported) and builds
the graph "module A imports module B" from every ``import`` statement, at module level *and*
inside functions or classes, relative and absolute. An edge is recorded

* to the module named by ``import minbasis.x.y`` or ``from minbasis.x import y`` / ``from .x import y``;
* to ``x.y`` as well when ``y`` is itself a module of the package (``from . import plots``);
* to every package on the way (``minbasis.fit`` for ``from ..fit.data import read_structures``),
  because importing ``minbasis.fit.data`` first runs ``minbasis/fit/__init__.py`` — except
  packages that already contain the importing module, which are initialised before it runs.

A cycle in this graph is either an import-time failure waiting to happen (module-level
imports) or a layering knot hidden by a function-level import; both are reported with the
full path of the cycle. ``docs/architecture.md`` describes the intended layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "minbasis"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def _module_names() -> dict[str, Path]:
    """{dotted module name: file} for every .py file of the package."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(module: str, is_pkg: bool, level: int, target: str | None) -> str:
    """Absolute name of ``from <level dots><target> import …`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph() -> dict[str, set[str]]:
    """{module: set of package modules it imports} (see the module docstring for the rules)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = _is_package(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        own_packages = {".".join(mod.split(".")[:k]) for k in range(1, mod.count(".") + 1 + int(is_pkg))}
        for t in targets:
            if t != PACKAGE and not t.startswith(PACKAGE + "."):
                continue
            parts = t.split(".")
            for k in range(1, len(parts) + 1):  # the module and the packages on the way to it
                name = ".".join(parts[:k])
                if name in modules and name != mod and name not in own_packages:
                    graph[mod].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module, each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's algorithm (recursion depth ≤ number of modules)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, comp) for comp in components]


def _cycle_in(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One closed path a → … → a inside a strongly connected component (breadth-first)."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp  # pragma: no cover - a component always has a cycle


def test_graph_sees_the_package():
    graph = import_graph()
    assert "minbasis.describe" in graph and "minbasis.kernels.plan" in graph
    assert "minbasis.basis" in graph["minbasis.describe"]  # module-level relative import
    assert "minbasis.invariants.pruning" in graph["minbasis.basis"]  # function-level import
    assert "minbasis.kernels" in graph["minbasis.fit.linear"]  # package __init__ on the way


def test_cycle_finder_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles inside minbasis/:\n" + "\n".join("  " + " → ".join(c) for c in cycles)


#: Layers of docs/architecture.md, lowest first; a module may import only from its own layer or
#: lower ones. Modules matched by no prefix (new ones) are not checked here.
LAYERS = [
    ("data", ("minbasis.errors", "minbasis._version", "minbasis.spec", "minbasis.io", "minbasis.parallel",
              "minbasis.progress", "minbasis._threading")),
    ("symbolic / numerical", ("minbasis.invariants", "minbasis.kernels")),
    ("basis", ("minbasis.basis",)),
    ("descriptors", ("minbasis.describe", "minbasis.metatensor_output")),
    ("local completeness", ("minbasis.local_completeness",)),
    ("fits", ("minbasis.fit",)),
    ("framework adapters", ("minbasis.torch", "minbasis.jax", "minbasis.sklearn")),
    ("reports", ("minbasis.report",)),
    ("sharded descriptors", ("minbasis.cluster",)),
    ("entry points", ("minbasis.cli", "minbasis.demo", "minbasis.completeness")),
]


def _layer(module: str) -> int | None:
    """Index in :data:`LAYERS` of the longest matching prefix (None: the package itself or unknown)."""
    best, length = None, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = k, len(p)
    return best


def test_imports_follow_the_layers():
    graph = import_graph()
    bad = []
    for mod, targets in graph.items():
        a = _layer(mod)
        for t in targets:
            b = _layer(t)
            if a is None or b is None:
                continue
            if b > a:
                bad.append(f"{mod} ({LAYERS[a][0]}) imports {t} ({LAYERS[b][0]})")
            elif a == b == 1 and mod.split(".")[1] != t.split(".")[1]:
                bad.append(f"{mod} imports {t}: the symbolic and numerical halves are independent")
    assert not bad, "imports against the layers of docs/architecture.md:\n" + "\n".join(sorted(bad))
