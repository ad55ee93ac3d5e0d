"""The package's import layering: data flows one way, so imports point one way.

Every module of ``src/facefoundry`` is parsed (imports inside functions count too) and its
top-level package is placed on a layer. A module may import its own layer or lower ones, never a
higher one, and no set of modules may import one another in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import facefoundry

ROOT = Path(facefoundry.__file__).parent

# low → high; a package may import from its own row and the rows above it.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "io", "progress", "registry", "device", "plots", "reporting", "stats"},
    {"config", "sampling"},
    {"data", "verification"},
    {"models", "identity"},
    {"train"},
    {"generators", "quality", "fusion"},
    {"tracking", "leaderboard"},
    {"stages"},
    {"promote", "sweep"},
    {"cli", "__main__"},
]
LAYER = {name: k for k, row in enumerate(LAYERS) for name in row}


def _module_name(path: Path) -> str:
    parts = ["facefoundry", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "facefoundry"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.split(".")[0] != "facefoundry":
                    continue
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = _import_graph()


def test_every_package_has_a_layer():
    assert {_top(m) for m in GRAPH} <= set(LAYER), sorted({_top(m) for m in GRAPH} - set(LAYER))


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = sorted(
        f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if LAYER.get(_top(t), -1) > LAYER.get(_top(m), len(LAYERS))
    )
    assert not upward, "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles():
    assert not _cycles(GRAPH)


@pytest.mark.parametrize(
    "graph, circle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, ["a", "b", "c"]),
        ({"a": {"b"}, "b": set()}, None),
    ],
)
def test_the_circle_finder_finds_circles(graph, circle):
    assert _cycles(graph) == ([circle] if circle else [])
