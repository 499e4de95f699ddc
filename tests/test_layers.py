"""The file tree shows the architecture: folders are layers, and imports only run downward
(front ends -> checks -> engines and numerics -> foundations), with no import cycle."""

import ast
import pathlib

import jaxcheck

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


def test_no_mixin_splits_a_class_across_modules():
    """A module holds one idea, whatever its length: no class takes its methods from a
    jaxcheck class in another module that has no state of its own (no __init__, not a
    dataclass: a mixin made only to shorten a file). Exceptions may share a base."""
    defined = {}
    for f in FILES:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ClassDef):
                stateful = bool(node.decorator_list) or any(
                    isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in node.body
                )
                if not stateful:
                    defined[node.name] = _module(f)
    split = []
    for f in FILES:
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ClassDef) or node.name.endswith(("Error", "Gradient")):
                continue
            for base in node.bases:
                name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                if defined.get(name, _module(f)) != _module(f):
                    split.append(f"{_module(f)}.{node.name}({name} from {defined[name]})")
    assert not split


def test_check_grad_takes_exactly_the_options_declared():
    import dataclasses
    import inspect

    from jaxcheck._grad.options import Options

    signature = inspect.signature(jaxcheck.check_grad).parameters
    keywords = [n for n, p in signature.items() if p.kind is p.KEYWORD_ONLY]
    fields = dataclasses.fields(Options)
    assert keywords == ["grad_fn", *(f.name for f in fields)]
    for f in fields:  # the same defaults, declared once
        assert signature[f.name].default == f.default, f.name


def test_the_cli_flags_are_the_options_flags():
    from jaxcheck.cli import build_parser

    check = build_parser()._subparsers._group_actions[0].choices["check"]
    flags = {a.option_strings[0] for a in check._actions if a.option_strings}
    for name in ("--mode", "--method", "--eps", "--nondet-tol", "--max-memory", "--cache-dir"):
        assert name in flags
    assert "--hvp-fn" not in flags  # a function has no flag


def test_an_option_is_refused_where_it_is_given():
    import pytest

    with pytest.raises(TypeError, match=r"GradMonitor\(\) got an unexpected keyword .*rtol="):
        jaxcheck.GradMonitor(lambda p: p, every=1, rtl=1e-3)
    with pytest.raises(ValueError, match="samples=0"):
        jaxcheck.GradMonitor(lambda p: p, every=1, samples=0)  # at construction, not step 0
    with pytest.raises(TypeError, match=r"check_grad\(\) got an unexpected keyword .*eps="):
        jaxcheck.check_grad(lambda p: p, 1.0, epsilon=1e-3)
