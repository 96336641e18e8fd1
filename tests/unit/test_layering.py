"""The layout's promises, read from the source: who imports whom.

Every import counts, including those under ``TYPE_CHECKING`` and inside functions: a
circle of imports, even a lazy one, means two modules cannot be understood apart.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "tools")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (a name imported from a package that is a
    module of its own counts as that module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


@functools.cache  # parsed once for the module's tests (read-only)
def _graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    known = set(modules)
    return {name: frozenset(_imported(name, path, known)) for name, path in modules.items()}


def _circles(graph: Mapping[str, AbstractSet[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _is_package_of(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_two_modules_import_each_other() -> None:
    """No circle of imports among runtime/ and tools/ (packages and lazy imports included)."""
    graph = _graph()
    # A package's __init__ re-exporting its own modules is not a circle with them.
    graph = {
        name: {t for t in targets if not _is_package_of(t, name) and not _is_package_of(name, t)}
        for name, targets in graph.items()
    }
    assert _circles(graph) == []


def test_the_engine_imports_no_protocol_and_tools_import_no_runtime() -> None:
    """runtime.core never imports a protocol package; tools never import runtime."""
    graph = _graph()
    protocols = ("runtime.assistants", "runtime.responses")
    leaks = {
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if (_is_package_of("runtime.core", name) and target.startswith(protocols))
        or (_is_package_of("tools", name) and _is_package_of("runtime", target))
    }
    assert leaks == set()


def test_the_circle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up circle of three modules is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
