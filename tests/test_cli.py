"""The command line: `jaxcheck demo` and `jaxcheck check`: exit codes, reports, messages."""

import json
import pathlib
import re
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


# ---- a gradient that cannot be compared: still a report and a baseline comparison --------

TESTS = pathlib.Path(__file__).resolve().parent

WRONG_SPECS = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import jaxcheck
from spec_example import backward, data, loss


def spec(grad_fn):
    params, x, y = data()
    return jaxcheck.Spec(loss, params, (x, y), grad_fn=grad_fn)


def transposed_and_wrong():  # W1 transposed; b1 wrong (the tanh' bug): found all the same
    return spec(lambda *a: {{**backward(*a), "W1": backward(*a)["W1"].T}})


def missing():  # b1 left out of the gradient; W1 and W2 right
    return spec(lambda *a: {{k: v for k, v in backward(*a, bug=False).items() if k != "b1"}})


def nothing():  # the gradient as a whole cannot be read
    return spec(lambda *a: None)
"""


@pytest.fixture
def wrong_specs(tmp_path):
    path = tmp_path / "wrong_specs.py"
    path.write_text(WRONG_SPECS)
    return path


def test_a_leaf_that_cannot_be_compared_is_reported_and_the_rest_checked(
    capsys, tmp_path, wrong_specs
):
    good, report = tmp_path / "good.json", tmp_path / "report.json"
    assert run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(good))[0] == 0
    code, out, _ = run_cli(capsys, "check", f"{wrong_specs}:transposed_and_wrong",
                           "--json", str(report), "--baseline", str(good))  # fmt: skip
    assert code == 1
    assert "FAILED: the gradient under test is wrong" in out and "transposed" in out
    assert "The other leaves, which can be compared (['W2'], ['b1'])" in out
    assert "excluded by only=" not in out  # W1 is named above, not skipped
    stored = json.loads(report.read_text())
    assert (stored["passed"], stored["verdict"]) == (False, "failed")
    assert "transposed" in stored["error"]
    w1 = stored["leaves"]["['W1']"]
    assert (w1["compared"], w1["passed"]) == (False, False) and "(8, 4)" in w1["reason"]
    # the other leaves were compared: b1's own bug is found, W2 passes
    assert not stored["leaves"]["['b1']"]["passed"] and stored["leaves"]["['W2']"]["passed"]
    assert stored["leaves"]["['b1']"]["difference"] > 0 and stored["skipped"] == []
    assert "WORSE ['W1']: could not be compared now: The gradient for params['W1'] has shape" in out
    assert "WORSE ['b1']: passed in the baseline, fails now" in out


def test_a_missing_leaf_is_not_compared_and_the_others_pass(capsys, tmp_path, wrong_specs):
    report = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, "check", f"{wrong_specs}:missing", "--json", str(report))
    assert code == 1 and "missing ['b1']" in out
    leaves = json.loads(report.read_text())["leaves"]
    assert leaves["['b1']"]["compared"] is False
    assert "not in the pytree grad_fn returned" in leaves["['b1']"]["reason"]
    assert leaves["['W1']"]["passed"] and leaves["['W2']"]["passed"]


def test_a_gradient_that_cannot_be_read_still_writes_a_report(capsys, tmp_path, wrong_specs):
    good, report = tmp_path / "good.json", tmp_path / "r.json"
    run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(good))
    code, out, _ = run_cli(capsys, "check", f"{wrong_specs}:nothing", "--json", str(report),
                           "--baseline", str(good))  # fmt: skip
    assert code == 1 and "grad_fn returned None" in out
    stored = json.loads(report.read_text())
    assert stored["leaves"] == {} and "grad_fn returned None" in stored["error"]
    assert set(stored) == set(json.loads(good.read_text())) | {"error"}  # the same keys
    assert "WORSE no leaf could be compared: grad_fn returned None" in out


# ---- output paths: checked before the check ----------------------------------------------

CALLED = """
import pathlib
import sys
sys.path.insert(0, {tests!r})
import spec_example


def make_spec():  # leaves a mark: the spec was built, so the check was about to run
    pathlib.Path({mark!r}).write_text("built")
    return spec_example.make_spec()
"""


@pytest.fixture
def marking_spec(tmp_path):
    path, mark = tmp_path / "marking.py", tmp_path / "built"
    path.write_text(CALLED.format(tests=str(TESTS), mark=str(mark)))
    return path, mark


def test_json_into_a_missing_folder_creates_it_and_keeps_the_failure(capsys, tmp_path):
    report = tmp_path / "reports" / "ci" / "jaxcheck.json"
    code, out, err = run_cli(capsys, "check", f"{SPEC}:make_spec", "--json", str(report))
    assert code == 1, err  # the check's failure, not an error writing the report
    assert not json.loads(report.read_text())["passed"]


@pytest.mark.parametrize("where", ["file in the way", "a folder"])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_check(
    capsys, tmp_path, marking_spec, where
):
    spec, mark = marking_spec
    (tmp_path / "notes").write_text("a file, not a folder")
    if where == "a folder":
        path, message = tmp_path, f"--json {tmp_path} is a folder: give a file path in it"
    else:
        path = tmp_path / "notes" / "r.json"
        message = (f"--json {path}: the folder {tmp_path / 'notes'} cannot be created, because "
                   f"{tmp_path / 'notes'} is a file")  # fmt: skip
    code, out, err = run_cli(capsys, "check", f"{spec}:make_spec", "--json", str(path))
    assert code == 2 and message in err
    assert "pathlib" not in err and "Traceback" not in err
    assert not mark.exists() and out == ""  # nothing was done


def test_a_report_that_cannot_be_written_keeps_a_failed_check_failed(capsys, tmp_path, monkeypatch):
    from jaxcheck._cli import report

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write", full_disk)
    code, _, err = run_cli(capsys, "check", f"{SPEC}:make_spec", "--json", str(tmp_path / "r"))
    assert code == 1 and "--json" in err and "No space left on device" in err
    code, _, err = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--json", str(tmp_path / "r"))
    assert code == 2 and "not written" in err


# ---- errors: whose, and where --------------------------------------------------------------


def test_a_user_error_under_a_folder_named_jaxcheck_keeps_its_type_and_place(capsys, tmp_path):
    """A clone made by `git clone .../jaxcheck` holds the user's files under "jaxcheck": an
    error raised there is the user's (type and file:line), not the library's."""
    folder = tmp_path / "jaxcheck"
    folder.mkdir()
    (folder / "checks.py").write_text(
        "def make_spec():\n    raise ValueError('the data file is empty')\n"
    )
    code, _, err = run_cli(capsys, "check", f"{folder / 'checks.py'}:make_spec")
    assert code == 2
    assert "ValueError raised at checks.py:2: the data file is empty" in err


def test_an_error_of_jaxcheck_itself_is_said_without_a_place(capsys):
    code, _, err = run_cli(capsys, "check", f"{SPEC}:fixed_spec", "--mode", "bogus")
    assert code == 2 and err.startswith("jaxcheck: error: mode='bogus' is not available")


# ---- unknown flags: the flag that is meant -------------------------------------------------


@pytest.mark.parametrize(
    "flags, meant",
    [
        (["--tol", "1e-3"], "--tol: did you mean --rtol or --atol?"),
        (["--tolerance=1e-3"], "--tolerance: did you mean --rtol or --atol?"),
        (["--eps-size", "1e-4"], "--eps-size: did you mean --eps?"),
        (["--epsilon", "1e-4"], "--epsilon: did you mean --eps?"),
        (["--atol-abs", "1e-9"], "--atol-abs: did you mean --atol?"),
        (["--rtl", "1e-3"], "--rtl: did you mean --rtol?"),
        (["--n-samples", "3"], "--n-samples: did you mean --samples?"),
        (["--jsn", "r.json"], "--jsn: did you mean --json?"),
        (["--backward", "f"], "grad_fn has no flag; give it in the spec: jaxcheck.Spec("),
    ],
)
def test_an_unknown_flag_gets_the_flag_that_is_meant(capsys, flags, meant):
    with pytest.raises(SystemExit) as info:
        main(["check", f"{SPEC}:fixed_spec", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {' '.join(flags)}" in err
    assert meant in err and "Traceback" not in err


def test_the_flag_suggestions_are_the_python_apis():
    """One table of the names people reach for: every alias the Python API answers that
    names an option with a flag gets that flag on the command line."""
    from jaxcheck._grad.options import ALIASES
    from jaxcheck.cli import _meant, build_parser

    check = build_parser()._subparsers._group_actions[0].choices["check"]
    options = [s for a in check._actions for s in a.option_strings]
    assert _meant("--tol", options, check=True) == "did you mean --rtol or --atol?"
    for alias, text in ALIASES.items():
        for name in re.findall(r"(\w+)=", text):
            flag = "--" + name.replace("_", "-")
            if flag in options:
                assert flag in _meant("--" + alias.replace("_", "-"), options, check=True), alias


def test_an_unknown_flag_near_nothing_gets_argparse_message(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", f"{SPEC}:fixed_spec", "--frobnicate"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unrecognized arguments: --frobnicate" in err
    assert "did you mean" not in err
    with pytest.raises(SystemExit):
        main(["--verison"])
    assert "--verison: did you mean --version?" in capsys.readouterr().err
