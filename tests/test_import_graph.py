"""The package's import graph has no cycle, and its rooms flow one way.

Nodes are the modules of ``segq_monai/**/*.py`` (a package is its ``__init__.py``); an edge ``a -> b`` is an import
that runs when ``a`` is imported: a module-level ``import`` / ``from ... import`` (also inside a module-level ``try``
or ``if``, but not under ``if TYPE_CHECKING``). ``from p import x`` points at the submodule ``p.x`` where ``x`` is
one, else at ``p``. Importing ``p.q.m`` also runs the ``__init__`` of every package on the way that ``a`` is not
inside itself (``p.q``, not ``p`` when ``a`` is in ``p``), so those are edges too: that is how a package's
``__init__`` that imports a module which imports back into a half-initialised package shows up as a cycle.

Rooms are the subpackages (``segq_monai.data``, ...), ordered in :data:`ROOMS` (CONTRIBUTING.md, "Rooms"): a module
imports only from its own room and the rooms before it, also in a function body (a deferred import is a dependency
too); only imports under ``if TYPE_CHECKING`` (annotations) are exempt.
"""

from __future__ import annotations

import ast
import unittest
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "segq_monai"

#: the rooms, lowest first; ``segq_monai`` is the package's entry (``__init__``, ``__main__``): its top-level
#: exports and ``python -m segq_monai``
ROOMS = (
    "utils",
    "metrics",
    "networks",
    "inferers",
    "losses",
    "transforms",
    "data",
    "calibration",
    "evaluation",
    "dicom",
    "handlers",
    "apps",
    "segq_monai",
    "monailabel",
)


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _all_imports(node: ast.AST):
    """Every import under ``node``, in function bodies too, but none under ``if TYPE_CHECKING``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif not _type_checking(child):
            yield from _all_imports(child)


def _top_level_imports(tree: ast.Module):
    for node in tree.body:
        if _type_checking(node):
            continue
        if isinstance(node, (ast.If, ast.Try)):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def import_graph(package: Path = PACKAGE, deferred: bool = False) -> dict[str, set[str]]:
    """Module name -> the package modules its import runs first (see the module docstring); ``deferred``: also
    those its functions import when they run."""
    files = {
        _module_name(p): p for p in package.rglob("*.py") if "_bundle" not in p.parts and "_configs" not in p.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rsplit(".", 1)[0]
        inside = _ancestors(name) | ({name} if is_package else set())
        deps: set[str] = set()

        def add(target: str) -> None:
            deps.add(target)
            deps.update(a for a in _ancestors(target) if a not in inside)

        tree = ast.parse(path.read_text(), str(path))
        for node in _all_imports(tree) if deferred else _top_level_imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name)
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
            if submodules and len(submodules) == len(node.names):
                for s in submodules:
                    add(s)
                if target not in inside:
                    add(target)
            else:
                add(target)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


def room(module: str) -> str:
    """The room of a module: ``segq_monai.data.columns`` -> ``data``; the package's entry modules -> ``segq_monai``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else parts[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for each edge of ``graph`` into a room after ``a``'s own in :data:`ROOMS`."""
    rank = {r: i for i, r in enumerate(ROOMS)}
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if rank[room(b)] > rank[room(a)])


class TestImportGraph(unittest.TestCase):
    def test_no_cycle(self):
        graph = import_graph()
        self.assertGreater(len(graph), 50)
        self.assertIn("segq_monai.calibration.flag", graph["segq_monai.calibration"])
        cycle = find_cycle(graph)
        self.assertIsNone(cycle, "import cycle: " + " -> ".join(cycle or []))

    def test_finds_a_cycle_through_a_package_init(self):
        # b imports a.x, which runs a/__init__, which imports a.y, which imports b
        graph = {"r.a": {"r.a.y"}, "r.a.x": set(), "r.a.y": {"r.b"}, "r.b": {"r.a.x", "r.a"}}
        self.assertEqual(find_cycle(graph), ["r.a", "r.a.y", "r.b", "r.a"])
        self.assertIsNone(find_cycle({"r.a": {"r.b"}, "r.b": set()}))

    def test_rooms_flow_one_way(self):
        graph = import_graph(deferred=True)
        self.assertEqual({room(m) for m in graph}, set(ROOMS))  # a new room is placed in ROOMS (and CONTRIBUTING.md)
        self.assertIn("segq_monai.networks.signature", graph["segq_monai.inferers.inferer"])  # downward: allowed
        self.assertEqual(upward_imports(graph), [])

    def test_finds_an_upward_import(self):
        graph = {"segq_monai.data.x": {"segq_monai.utils.y", "segq_monai.inferers.z"}}
        graph["segq_monai"] = {"segq_monai.data.x"}
        self.assertEqual(upward_imports(graph), [])  # data over inferers over utils; the entry over data
        graph["segq_monai.networks.n"] = {"segq_monai.data.x", "segq_monai.networks.m"}
        self.assertEqual(upward_imports(graph), ["segq_monai.networks.n -> segq_monai.data.x"])

    def test_contributing_lists_the_rooms(self):
        text = (PACKAGE.parent / "CONTRIBUTING.md").read_text()
        self.assertIn(" < ".join(f"`{r}`" for r in ROOMS), text)


if __name__ == "__main__":
    unittest.main()
