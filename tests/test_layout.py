"""The package's shape: imports point one way (no cycle) and no private name crosses a module boundary."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lafam_utils"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, list[tuple[str, str]]]:
    """Module -> (imported module, imported name) for every ``from ... import`` of the package, anywhere in the file."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    found: dict[str, list[tuple[str, str]]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = []
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("lafam_utils"):
                target = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                edges.append((submodule if submodule in modules else target, alias.name))
        found[name] = edges
    return found


def test_no_import_cycles():
    graph = {module: {target for target, _ in edges} for module, edges in imports().items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            assert state.get(target) != "open", f"import cycle: {' -> '.join(path[path.index(target):] + [target])}"
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_private_names_cross_modules():
    crossing = [(module, name) for module, edges in imports().items() for _, name in edges if name.startswith("_")]
    assert crossing == []


def test_the_flat_modules_of_earlier_releases_are_gone():
    assert not any(
        (PACKAGE / f"{name}.py").exists() for name in ("analysis", "models", "datasets", "metrics", "ssl_releases")
    )
