"""The package's import graph: no circles, and no module importing from a layer above its own.

The layers, lowest first, are the README's (section Layout); imports inside functions and under
TYPE_CHECKING count too, since they tie the modules together just the same for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bistil_ray

PACKAGE = Path(bistil_ray.__file__).parent
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("bistil_ray", "bistil_ray.errors", "bistil_ray.atomic", "bistil_ray.console", "bistil_ray.output_paths")),
    ("schema, data and teachers", ("bistil_ray.config", "bistil_ray.artifacts", "bistil_ray.data", "bistil_ray.assets")),
    ("the method, plain PyTorch", ("bistil_ray.method",)),
    (
        "the step graph",
        ("bistil_ray.inputs", "bistil_ray.steps", "bistil_ray.executor", "bistil_ray.results_schema", "bistil_ray.pipeline",
         "bistil_ray.model_card"),
    ),  # fmt: skip
    ("one pair in one process", ("bistil_ray.run",)),
    ("Ray", ("bistil_ray.orchestration",)),
    ("commands over sweeps", ("bistil_ray.sweep", "bistil_ray.results", "bistil_ray.reporting", "bistil_ray.reference", "bistil_ray.export",
      "bistil_ray.serve")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("bistil_ray"):
                imported |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("bistil_ray")}
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def layer_of(module: str) -> int:
    """The layer whose longest prefix names `module`."""
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to the README's layout")
    return max(matches)[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_package_has_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
        for module, imports in sorted(import_graph().items())
        for imported in sorted(imports)
        if layer_of(imported) > layer_of(module)
    ]
    assert upward == []


def test_the_method_knows_nothing_of_ray():
    import_lines = [
        f"{module_name(path)}: {line.strip()}"
        for path in (PACKAGE / "method").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import ray", "from ray"))
    ]
    assert import_lines == []
