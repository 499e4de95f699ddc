"""journal=: a check killed at any moment (SIGKILL included) resumes where it stopped."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck.cli import main


def model(scale=0.3):
    rng = np.random.default_rng(0)
    params = {
        "W": rng.standard_normal((30, 40)) * scale,
        "b": np.zeros(40),
        "V": rng.standard_normal((40, 2)) * scale,
    }
    x, y = rng.standard_normal((16, 30)), rng.standard_normal((16, 2))
    return params, x, y


def digest(x) -> str:
    return hashlib.sha256(np.asarray(x, np.float64).tobytes()).hexdigest()


def loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["W"] + p["b"][None]) @ p["V"] - y) ** 2)


def test_a_second_run_replays_every_chunk_and_gives_the_same_result(tmp_path):
    params, x, y = model()
    path = tmp_path / "check.journal"
    first = jaxcheck.check_grad(loss, params, x, y, chunk_size=64, journal=path)
    again = jaxcheck.check_grad(loss, params, x, y, chunk_size=64, journal=str(path))
    assert first.passed and again.passed
    assert "0 of 55 chunks replayed, 55 computed" in first.notes[-1]
    assert "55 of 55 chunks replayed, 0 computed" in again.notes[-1]
    for k in params:
        assert np.array_equal(first.numeric[k], again.numeric[k])


@pytest.mark.parametrize(
    "change, what",
    [
        (lambda p, x, o: ({**p, "b": p["b"] + 1e-3}, x, o), "parameters"),
        (lambda p, x, o: (p, x * 2, o), "data"),
        (lambda p, x, o: (p, x, {**o, "rtol": 1e-3}), "options"),
    ],
)
def test_a_journal_for_another_check_is_refused(tmp_path, change, what):
    params, x, y = model()
    path = tmp_path / "check.journal"
    jaxcheck.check_grad(loss, params, x, y, only="b", journal=path)
    params, x, opts = change(params, x, {"only": "b", "journal": path})
    with pytest.raises(ValueError, match=f"was made for other {what} than this check's"):
        jaxcheck.check_grad(loss, params, x, y, **opts)


def test_bad_journal_paths(tmp_path):
    params, x, y = model()
    with pytest.raises(ValueError, match="does not exist"):
        jaxcheck.check_grad(loss, params, x, y, journal=tmp_path / "no" / "such" / "dir.j")
    not_one = tmp_path / "notes.txt"
    not_one.write_text("hello\n")
    with pytest.raises(ValueError, match="is not a jaxcheck journal"):
        jaxcheck.check_grad(loss, params, x, y, journal=not_one)


CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    import jaxcheck
    from jaxcheck._engine import journal as _journal
    from tests.test_journal import digest, loss, model

    if sys.argv[2] == "slow":  # the first run: slow enough to be killed mid-way
        record = _journal.Journal.record
        def slow(self, key, outputs):
            record(self, key, outputs)
            time.sleep(0.05)
        _journal.Journal.record = slow
    params, x, y = model()
    result = jaxcheck.check_grad(loss, params, x, y, chunk_size=32, journal=sys.argv[1])
    numeric = {{k: digest(v) for k, v in result.numeric.items()}}
    print(json.dumps({{"notes": result.notes, "passed": result.passed, "numeric": numeric}}))
""")


def test_killed_with_sigkill_mid_run_it_resumes_without_recomputing(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=root))
    path = tmp_path / "check.journal"
    child = subprocess.Popen([sys.executable, str(script), str(path), "slow"], cwd=root)
    deadline = time.monotonic() + 240
    recorded = 0
    while recorded < 20 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
        recorded = path.read_bytes().count(b"\n") - 1 if path.exists() else 0
    assert child.poll() is None, "the check finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    lines = path.read_bytes().count(b"\n") - 1  # whole chunk lines the killed run left
    assert lines >= 20
    done = subprocess.run(
        [sys.executable, str(script), str(path), "fast"], cwd=root, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    note = resumed["notes"][-1]
    replayed = int(note.split(": ")[1].split(" of ")[0])
    computed = int(note.split(", ")[-1].split(" ")[0])
    assert replayed >= lines - 1 and replayed > 0, note  # at most one line was torn
    assert computed > 0, note  # the rest, and only the rest, was computed
    reference = jaxcheck.check_grad(loss, *model(), chunk_size=32)
    assert resumed["passed"] and reference.passed
    assert resumed["numeric"] == {k: digest(v) for k, v in reference.numeric.items()}


def test_the_cli_resumes_from_a_journal(capsys, tmp_path):
    path = tmp_path / "cli.journal"
    spec = "tests/spec_example.py:fixed_spec"
    assert main(["check", spec, "--journal", str(path)]) == 0
    assert main(["check", spec, "--journal", str(path)]) == 0
    out = capsys.readouterr().out
    assert "chunks replayed, 0 computed" in out
