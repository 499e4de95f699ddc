"""The command line: `jaxcheck demo` and `jaxcheck --version`."""

import subprocess
import sys

import pytest

import jaxcheck
from jaxcheck.cli import main


def test_demo_finds_the_planted_bug(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "FAILED: 8 of 49 elements wrong, in 1 of 4 leaves" in out
    assert "['b1']  (8,)" in out and "4.00 x numeric" in out
    for leaf in ("['W1']", "['W2']", "['b2']"):
        assert f"{leaf}" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxcheck {jaxcheck.__version__}"


def test_usage_errors_exit_2_without_a_traceback(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and "Traceback" not in err


def test_module_entry_point_runs_the_demo():
    done = subprocess.run(
        [sys.executable, "-m", "jaxcheck", "demo"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "['b1']" in done.stdout and "Traceback" not in done.stderr
