"""The file tree shows the architecture: folders are layers, and imports only run downward
(front ends -> checks -> engines and numerics -> foundations), with no import cycle."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxcheck"
RANK = {"_core": 0, "_engine": 1, "_numerics": 1, "_grad": 2, "_rules": 2, "_cli": 3}
FRONT = 3  # cli.py, testing.py, _monitor.py, __init__.py, __main__.py


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _rank(module: str) -> int:
    return RANK.get(module.split(".")[0], FRONT)


def _imports(path: pathlib.Path, top_level_only: bool) -> set[str]:
    """The jaxcheck modules this file imports (absolute names within the package)."""
    tree = ast.parse(path.read_text())
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            for alias in node.names:
                candidate = [*target, alias.name]
                is_module = PACKAGE.joinpath(*candidate).with_suffix(".py").exists() or (
                    PACKAGE.joinpath(*candidate).is_dir()
                )
                name = ".".join(candidate if is_module else target)
                if name:
                    out.add(name)
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def test_imports_never_climb_a_layer():
    climbing = [
        f"{_module(f)} imports {m}"
        for f in FILES
        for m in _imports(f, top_level_only=False)
        if _rank(m) > _rank(_module(f) or "__init__")
    ]
    assert not climbing


def test_no_import_cycle_at_module_level():
    graph = {_module(f): _imports(f, top_level_only=True) for f in FILES}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*trail, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in graph.get(node, ()):
            if dep in graph and dep != node:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_every_folder_says_what_it_is():
    for folder in RANK:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc, folder
