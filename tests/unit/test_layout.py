"""The package layout is the architecture: each layer imports only the layers below it, and nothing loops.

Read from the source with ``ast`` (no import runs): every ``import`` counts, at module level
or inside a function, except those under ``if TYPE_CHECKING:`` (annotations only). Importing
``a.b.c`` runs ``a.b`` first, so a module depends on the packages above what it imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import shift_provider

PACKAGE_DIR = Path(shift_provider.__file__).parent

# What each plain-Python layer may import from the provider (itself always).
LAYERS = {
    "contract": {"exceptions"},
    "mysql": {"contract", "exceptions", "settings", "hooks.cluster"},
    "ptosc": {"mysql", "contract", "exceptions", "settings"},
    "engine": {"ptosc", "mysql", "contract", "exceptions", "settings", "hooks.cluster", "hooks.shift_api"},
}
PLAIN_PYTHON = set(LAYERS) | {"exceptions", "settings"}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def runtime_imports(tree: ast.AST) -> list[str]:
    """Absolute names imported, skipping ``if TYPE_CHECKING:`` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "the provider imports absolutely"
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
            found.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def dependency_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in runtime_imports(ast.parse(path.read_text())):
            parts = imported.split(".")
            for end in range(2, len(parts) + 1):  # a.b.c runs a.b too (shift_provider's own init is light)
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    deps.add(candidate)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def layer_of(module: str) -> str:
    return module.removeprefix("shift_provider.").split(".")[0]


def test_no_import_loop():
    graph = dependency_graph()
    assert len(graph) > 60  # the whole provider was read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module, deps in dependency_graph().items():
        layer = layer_of(module)
        if layer not in LAYERS:
            continue
        allowed = LAYERS[layer] | {layer}
        for dep in deps:
            inside = dep.removeprefix("shift_provider.")
            if not any(inside == a or inside.startswith(a + ".") or a.startswith(inside + ".") for a in allowed):
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


def test_the_plain_python_layers_import_no_airflow():
    wrong = []
    for module, path in module_names().items():
        if layer_of(module) in PLAIN_PYTHON:
            wrong += [f"{module}: {name}" for name in runtime_imports(ast.parse(path.read_text()))
                      if name.split(".")[0] == "airflow"]
    assert wrong == []
