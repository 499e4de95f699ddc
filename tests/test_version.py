"""The package's front: `jaxcheck --version` and `--help` answer without importing JAX, and
the public names, imported when first used, are there as for any package."""

import ast
import pathlib
import subprocess
import sys

import pytest

import jaxcheck

INIT = pathlib.Path(jaxcheck.__file__)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], [], ["demo", "--help"]])
def test_the_command_line_answers_without_importing_jax(argv):
    code = f"""
import contextlib, io, sys
import jaxcheck.cli
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        jaxcheck.cli.main({argv!r})
    except SystemExit:
        pass
print(out.getvalue())
print("jax imported:", "jax" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "jax imported: False" in done.stdout
    if argv == ["--version"]:
        assert f"jaxcheck {jaxcheck.__version__}" in done.stdout
    if argv == ["demo", "--help"]:
        assert "usage: jaxcheck demo" in done.stdout


def test_the_check_commands_help_lists_its_flags(capsys):
    from jaxcheck.cli import main

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    assert "--rtol RTOL" in out and "--json PATH" in out and "--baseline PATH" in out


def test_public_names_are_imported_when_used():
    code = """
import sys
import jaxcheck
print("after import:", "jax" in sys.modules)
from jaxcheck import check_grad
print(check_grad.__module__, jaxcheck.CheckResult.__name__, jaxcheck.testing.__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "after import: False" in done.stdout
    assert "jaxcheck._grad.check CheckResult jaxcheck.testing" in done.stdout


def test_every_public_name_resolves_and_is_listed():
    for name in jaxcheck.__all__:
        assert getattr(jaxcheck, name) is not None, name
    assert set(jaxcheck.__all__) <= set(dir(jaxcheck))
    assert jaxcheck.check_grad is jaxcheck._grad.check.check_grad
    with pytest.raises(AttributeError, match="has no attribute 'chek_grad'"):
        jaxcheck.chek_grad  # noqa: B018


def test_the_typed_imports_and_the_lazy_table_agree():
    """What a type checker sees (the `if TYPE_CHECKING:` imports) is what runs (`_WHERE`)."""
    tree = ast.parse(INIT.read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    typed = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name  # re-exported, as `from x import y as y`
            module = "." * node.level + (node.module or "")
            typed[alias.name] = "" if module == "." else module
    assert typed == jaxcheck._WHERE


def test_python_dash_m_is_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "jaxcheck", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == f"jaxcheck {jaxcheck.__version__}"
