"""The command line: `jaxcheck demo` and `jaxcheck --version`."""

import json
import pathlib
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


# ---- jaxcheck check ------------------------------------------------------------------------

SPEC = "tests/spec_example.py"


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_fails_with_exit_1_and_names_the_wrong_leaves(capsys, tmp_path):
    report = tmp_path / "report.json"
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:make_spec", "--json", str(report))
    assert code == 1
    assert "FAILED: 40 of 48 elements wrong, in 2 of 3 leaves" in out
    stored = json.loads(report.read_text())
    assert not stored["passed"]
    assert {p for p, leaf in stored["leaves"].items() if not leaf["passed"]} == {"['W1']", "['b1']"}


def test_check_passes_with_exit_0_from_a_module_and_a_dict_spec(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).parent))
    code, out, _ = run_cli(capsys, "check", "spec_example:fixed_spec", "--only", "W1")
    assert code == 0, out
    assert "PASSED: all 32 checked elements agree" in out


def test_flags_override_the_spec_options(capsys):
    code, out, _ = run_cli(
        capsys, "check", f"{SPEC}:fixed_spec", "--mode", "sample", "--samples", "3",
        "--method", "richardson", "--eps", "rule",
    )  # fmt: skip
    assert code == 0, out
    assert "richardson differences in float64, sampled elements" in out
    assert "['W1']  (4, 8)  3 " in out


def test_baseline_fails_a_leaf_that_got_worse(capsys, tmp_path):
    good = tmp_path / "good.json"
    assert run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(good))[0] == 0
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--baseline", str(good))
    assert code == 0 and "no leaf got worse" in out
    # a coarse step makes every leaf's difference grow by orders of magnitude, still passing
    code, out, _ = run_cli(
        capsys, "check", f"{SPEC}:fixed_spec", "--baseline", str(good), "--eps", "1e-2"
    )
    assert code == 1
    assert "WORSE ['W1']: difference" in out and "allowed 10x" in out
    code, out, _ = run_cli(
        capsys, "check", f"{SPEC}:fixed_spec", "--baseline", str(good), "--eps", "1e-2",
        "--factor", "1e9",
    )  # fmt: skip
    assert code == 0, out
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:make_spec", "--baseline", str(good))
    assert code == 1 and "WORSE ['b1']: passed in the baseline, fails now" in out


def test_a_missing_baseline_is_said_before_the_check_runs(capsys):
    code, out, err = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--baseline", "none.json")
    assert code == 2 and "no baseline at none.json" in err
    assert "jaxcheck:" not in out  # no report: the check did not run


def test_the_json_report_records_versions_and_how_it_was_checked(capsys, tmp_path):
    import jax

    report = tmp_path / "r.json"
    run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(report))
    stored = json.loads(report.read_text())
    assert stored["versions"] == {
        "jaxcheck": jaxcheck.__version__, "jax": jax.__version__,
        "jaxlib": stored["versions"]["jaxlib"],
    }  # fmt: skip
    assert stored["versions"]["jaxlib"] != "unknown"
    assert (stored["mode"], stored["method"], stored["precision"]) == ("full", "central", "float64")


def test_a_sample_run_against_a_full_baseline_warns(capsys, tmp_path):
    full = tmp_path / "full.json"
    run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(full))
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--mode", "sample",
                           "--baseline", str(full))  # fmt: skip
    assert "note: the baseline was a mode='full' run, this one is mode='sample'" in out


def test_eps_per_leaf(capsys, tmp_path):
    report = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--eps", "['W1']=1e-3",
                           "--eps", "['b1']=1e-5", "--json", str(report))  # fmt: skip
    assert code == 0, out
    leaves = json.loads(report.read_text())["leaves"]
    assert leaves["['W1']"]["step"] == 1e-3 and leaves["['b1']"]["step"] == 1e-5
    code, _, err = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--eps", "1e-3", "--eps", "x=1")
    assert code == 2 and "PATH=STEP for each, not both" in err


def test_a_transposed_gradient_is_a_failed_check_exit_1(capsys):
    code, out, _ = run_cli(capsys, "check", f"{SPEC}:transposed_spec")
    assert code == 1
    assert "FAILED: the gradient under test is wrong" in out and "transposed" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([f"{SPEC}:nope"], "has no function 'nope'. Functions there: loss, data"),
        (["missing.py:make_spec"], "no such file: missing.py"),
        (["no_such_module:make_spec"], "no module named 'no_such_module'"),
        ([f"{SPEC}"], "does not name a spec: write FILE.py:FUNCTION"),
        ([f"{SPEC}:not_a_spec"], "returned an object of type int; it must return jaxcheck.Spec"),
        ([f"{SPEC}:fixed_spec", "--mode", "bogus"], "mode='bogus' is not available"),
        ([f"{SPEC}:fixed_spec", "--baseline", "none.json"], "no baseline at none.json"),
        ([f"{SPEC}:raising_spec"], "ZeroDivisionError raised at spec_example.py:"),
    ],
)
def test_spec_errors_exit_2_with_a_message_and_no_traceback(capsys, argv, message):
    code, _, err = run_cli(capsys, "check", *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_check_from_a_fresh_process():
    done = subprocess.run(
        [sys.executable, "-m", "jaxcheck", "check", f"{SPEC}:make_spec"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "['b1']" in done.stdout and "Traceback" not in done.stderr
