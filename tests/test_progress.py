"""What a long check says on stderr: its cost up front, its progress without tqdm, one line at
Ctrl-C; and chunks short enough that Ctrl-C is seen within a second or two.

Durations come from `progress.clock`, which these tests replace by a clock that advances a
fixed step at each reading: a chunk "takes" a known time, whatever the machine."""

import itertools
import os
import re
import textwrap
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcheck
from jaxcheck._engine import batched as _engine
from jaxcheck._engine import journal as _journal
from jaxcheck._engine import layout as _layout
from jaxcheck._engine import progress as _progress
from jaxcheck.cli import main

PACKAGE = os.path.dirname(os.path.abspath(jaxcheck.__file__))


@pytest.fixture(autouse=True)
def fresh_programs():
    """Programs made smaller here are kept across checks: not for the other tests."""
    _engine.EXECUTABLES.clear()
    yield
    _engine.EXECUTABLES.clear()


def slow_clock(monkeypatch, step: float) -> None:
    """Every reading of the clock `step` seconds after the last one."""
    ticks = itertools.count(0.0, step)
    monkeypatch.setattr(_progress, "clock", lambda: next(ticks))


def model(n: int = 48):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((n, n)) / n, "b": np.zeros(n)}
    x = rng.standard_normal((8, n))

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W"] + p["b"][None]) ** 2)

    return loss, params, x


def numpy_model():
    """A NumPy loss (evaluated on the host, one call per point) that counts its calls and
    raises KeyboardInterrupt at call `stop` (None: never)."""
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((12, 10)) / 4, "b": np.zeros(10)}
    x = rng.standard_normal((6, 12))
    calls = {"n": 0, "stop": None}

    def loss(p, x):
        calls["n"] += 1
        if calls["n"] == calls["stop"]:
            raise KeyboardInterrupt
        return float(np.sum(np.tanh(x @ p["W"] + p["b"]) ** 2))

    def grad(p, x):
        h = np.tanh(x @ p["W"] + p["b"])
        d = 2 * h * (1 - h**2)
        return {"W": x.T @ d, "b": d.sum(0)}

    return loss, grad, params, x, calls


def cost_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "at the pace of its first chunk" in line]


# ---- the cost line ---------------------------------------------------------------------------


def test_a_long_check_says_its_cost_once_with_the_faster_mode(monkeypatch, capsys):
    monkeypatch.setattr(_engine, "CHUNK_S", np.inf)  # chunks kept as they are
    monkeypatch.setattr(_progress, "EVERY_S", np.inf)  # and no progress lines
    slow_clock(monkeypatch, 10.0)  # every chunk takes 10 s
    loss, params, x = model()
    assert jaxcheck.check_grad(loss, params, x).passed
    (line,) = cost_lines(capsys.readouterr().err)
    points = re.search(
        r"this full check evaluates fn at ([\d,]+) points, about \d+ (s|min) at", line
    )
    assert points and int(points[1].replace(",", "")) > 2 * 48 * 48, line
    assert 'mode="directional" evaluates about 32 ' in line, line  # 4 points x 4 directions x 2
    assert line.endswith("progress=False silences this line"), line


def test_a_quick_check_says_nothing(monkeypatch, capsys):
    slow_clock(monkeypatch, 1e-3)  # a chunk: 1 ms; the whole check well within DELAY_S
    loss, params, x = model()
    assert jaxcheck.check_grad(loss, params, x).passed
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "options, faster",
    [
        ({"mode": "sample", "samples": 1000}, 'mode="directional"'),  # a sample of 2304: long
        ({"mode": "directional"}, None),  # already the fastest: the cost, and no advice
    ],
)
def test_the_faster_mode_named_depends_on_the_mode(monkeypatch, capsys, options, faster):
    monkeypatch.setattr(_engine, "CHUNK_S", np.inf)
    monkeypatch.setattr(_progress, "EVERY_S", np.inf)
    monkeypatch.setattr(_progress, "COST_S", 0.0)
    slow_clock(monkeypatch, 10.0)
    loss, params, x = model()
    jaxcheck.check_grad(loss, params, x, **options)
    (line,) = cost_lines(capsys.readouterr().err)
    assert f"this {options['mode']} check" in line
    assert (faster in line) if faster else ("mode=" not in line), line


def test_a_slow_numpy_check_says_its_cost_too(monkeypatch, capsys):
    slow_clock(monkeypatch, 10.0)  # a block of 64 host points: 10 s
    monkeypatch.setattr(_progress, "EVERY_S", np.inf)
    loss, grad, params, x, _ = numpy_model()
    assert jaxcheck.check_grad(loss, params, x, grad_fn=grad).passed
    assert len(cost_lines(capsys.readouterr().err)) == 1


def test_progress_false_silences_the_cost_line(monkeypatch, capsys):
    monkeypatch.setattr(_engine, "CHUNK_S", np.inf)
    slow_clock(monkeypatch, 10.0)
    loss, params, x = model()
    assert jaxcheck.check_grad(loss, params, x, progress=False).passed
    assert capsys.readouterr().err == ""


# ---- progress without tqdm -------------------------------------------------------------------


@pytest.mark.parametrize("tqdm", [False, True])  # True: installed, but stderr is no terminal
def test_plain_progress_lines_where_no_bar_can_show(monkeypatch, capsys, tqdm):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: tqdm)
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    monkeypatch.setattr(_progress, "EVERY_S", 0.0)  # a line at every chunk
    monkeypatch.setattr(_progress, "COST_S", np.inf)
    loss, params, x = model()
    assert jaxcheck.check_grad(loss, params, x, chunk_size=512).passed
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3, lines
    for line in lines:
        assert re.fullmatch(
            r"jaxcheck: [\d,]+ of [\d,]+ points( \(\d+%\), about \d+ \w+ left)?", line
        )
    assert re.search(r"\(\d+%\), about \d+ (s|min) left", lines[0]), lines


def test_a_failing_check_that_looks_again_never_says_more_points_than_its_total(
    monkeypatch, capsys
):
    """A failing element gets a second look at longer steps: more points than a passing check
    evaluates. The lines say so, never "8,871 of 96 points"."""
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    monkeypatch.setattr(_progress, "EVERY_S", 0.0)
    monkeypatch.setattr(_progress, "COST_S", np.inf)
    loss, params, x = model(8)
    grad = jax.grad(loss)
    result = jaxcheck.check_grad(
        loss,
        params,
        x,
        grad_fn=lambda p, x: {**grad(p, x), "W": 2 * grad(p, x)["W"]},
        mode="directional",  # locating the wrong elements evaluates 100x a passing check's
    )
    assert not result.passed
    lines = capsys.readouterr().err.splitlines()
    assert any("looking again where elements failed" in line for line in lines), lines
    for line in lines:
        numbers = re.match(r"jaxcheck: ([\d,]+) of ([\d,]+) points", line)
        if numbers:
            done, total = (int(n.replace(",", "")) for n in numbers.groups())
            assert done <= total, line


def test_plain_progress_waits_its_delay_and_progress_false_silences_it(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    slow_clock(monkeypatch, 1e-3)
    loss, params, x = model()
    jaxcheck.check_grad(loss, params, x, chunk_size=512)  # done well within DELAY_S
    monkeypatch.setattr(_progress, "DELAY_S", 0.0)
    monkeypatch.setattr(_progress, "EVERY_S", 0.0)
    jaxcheck.check_grad(loss, params, x, chunk_size=512, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_true_without_tqdm_is_refused(monkeypatch):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    loss, params, x = model()
    with pytest.raises(ImportError, match=r"jaxcheck\[progress\]"):
        jaxcheck.check_grad(loss, params, x, progress=True)


# ---- Ctrl-C ----------------------------------------------------------------------------------


def interrupted(call):
    """The KeyboardInterrupt call() raised, and the jaxcheck frames of its traceback."""
    with pytest.raises(KeyboardInterrupt) as info:
        call()
    frames = traceback.extract_tb(info.value.__traceback__)
    return info.value, [f for f in frames if os.path.abspath(f.filename).startswith(PACKAGE)]


def test_ctrl_c_in_fn_says_one_line_and_the_journal_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_progress, "has_tqdm", lambda: False)
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)  # no progress lines: only the one
    loss, grad, params, x, calls = numpy_model()
    path = tmp_path / "check.jsonl"
    closed = []
    close = _journal.Journal.close
    monkeypatch.setattr(_journal.Journal, "close", lambda self: closed.append(self) or close(self))

    def check():
        return jaxcheck.check_grad(loss, params, x, grad_fn=grad, journal=path)

    calls["stop"] = 150  # in the third block of 64 points of leaf W (120 elements)
    e, ours = interrupted(check)
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"jaxcheck: interrupted after 1\d\d of [\d,]+ points, in leaf 1 of 2 \(\['W'\]\); "
        rf"the same call resumes from the journal {re.escape(str(path))}",
        line,
    ), line
    assert _progress.said(e)
    assert len(ours) <= 1, ours  # the entry's wrapper at most: no frames of the engine
    assert closed and all(j._fd == -1 for j in closed)  # every line written, the file closed

    calls["n"], calls["stop"] = 0, None
    resumed = check()
    assert resumed.passed and "2 of" in resumed.notes[-1]  # two blocks read back
    resumed_calls = calls["n"]
    calls["n"] = 0
    reference = jaxcheck.check_grad(loss, params, x, grad_fn=grad)
    assert resumed_calls == calls["n"] - 128  # the recorded points not evaluated again
    assert resumed.numeric.keys() == reference.numeric.keys()
    for key in reference.numeric:
        np.testing.assert_array_equal(resumed.numeric[key], reference.numeric[key])


def test_ctrl_c_between_chunks_names_journal_and_the_leaf(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)
    loss, params, x = model()
    updates = []
    update = _progress.Progress.update

    def interrupting(self, n):
        updates.append(n)
        update(self, n)
        if len(updates) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(_progress.Progress, "update", interrupting)
    e, ours = interrupted(lambda: jaxcheck.check_grad(loss, params, x, chunk_size=256))
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"jaxcheck: interrupted after 512 of [\d,]+ points, in leaf \d of 2 \(\['\w'\]\); "
        r'with journal="check.jsonl" a re-run resumes where it stops',
        line,
    ), line
    assert len(ours) <= 1, ours


def test_ctrl_c_before_any_point_and_with_progress_false(monkeypatch, capsys):
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)
    loss, params, x = model()

    def stop(*a, **k):
        raise KeyboardInterrupt

    from jaxcheck._grad import evaluators

    monkeypatch.setattr(evaluators, "choose", stop)
    interrupted(lambda: jaxcheck.check_grad(loss, params, x))
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("jaxcheck: interrupted before its first chunk of perturbed points")
    e, _ = interrupted(lambda: jaxcheck.check_grad(loss, params, x, progress=False))
    assert capsys.readouterr().err == "" and not _progress.said(e)


def test_the_cli_interrupted_says_one_line_and_exits_130(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)
    (tmp_path / "stops.py").write_text(
        textwrap.dedent("""
        import numpy as np
        import jaxcheck

        calls = [0]

        def loss(p, x):
            calls[0] += 1
            if calls[0] == 100:
                raise KeyboardInterrupt
            return float(np.sum(np.tanh(x @ p["W"]) ** 2))

        def make_spec():
            rng = np.random.default_rng(0)
            return jaxcheck.Spec(loss, {"W": rng.standard_normal((8, 8))},
                                 (rng.standard_normal((4, 8)),),
                                 grad_fn=lambda p, x: {"W": np.zeros((8, 8))})
        """)
    )
    assert main(["check", "stops.py:make_spec", "--no-progress"]) == 130
    assert capsys.readouterr().err.splitlines() == ["jaxcheck: interrupted"]
    assert main(["check", "stops.py:make_spec", "--journal", "j.jsonl"]) == 130
    (line,) = capsys.readouterr().err.splitlines()
    assert re.match(r"jaxcheck: interrupted after \d+ of \d+ points, in leaf 1 of 1", line)
    assert line.endswith("resumes from the journal j.jsonl"), line


# ---- chunks short enough for Ctrl-C ----------------------------------------------------------


def chunk_sizes(monkeypatch) -> list[int]:
    seen = []
    run = _engine.JaxEngine._run_chunks

    def spy(self, program, *a, **k):
        seen.append(program.size)
        return run(self, program, *a, **k)

    monkeypatch.setattr(_engine.JaxEngine, "_run_chunks", spy)
    return seen


def test_a_chunk_that_runs_long_is_split(monkeypatch):
    loss, params, x = model()
    reference = jaxcheck.check_grad(loss, params, x, chunk_size=1024)
    _engine.EXECUTABLES.clear()
    sizes = chunk_sizes(monkeypatch)
    slow_clock(monkeypatch, 3.0)  # a chunk: 3 s, so a Ctrl-C would wait up to 3 s
    before = _engine.EXECUTABLES.compiled
    result = jaxcheck.check_grad(loss, params, x, progress=False)
    assert result.passed
    first = sizes[0]
    assert max(sizes[1:]) <= first // 4  # 3 s / 4: below CHUNK_S
    assert _engine.EXECUTABLES.compiled - before <= 6  # each program once more, at most
    for key in reference.numeric:  # the same values, in smaller chunks
        np.testing.assert_array_equal(result.numeric[key], reference.numeric[key])


def test_a_chunk_size_given_is_kept_however_long(monkeypatch):
    loss, params, x = model()
    sizes = chunk_sizes(monkeypatch)
    slow_clock(monkeypatch, 3.0)
    jaxcheck.check_grad(loss, params, x, chunk_size=1024, progress=False)
    assert set(sizes) == {1024}


def test_a_resumed_check_splits_its_chunks_as_the_first_run_did(tmp_path, monkeypatch):
    loss, params, x = model()
    path = tmp_path / "check.jsonl"
    slow_clock(monkeypatch, 3.0)
    first = jaxcheck.check_grad(loss, params, x, progress=False, journal=path)
    _engine.EXECUTABLES.clear()  # a fresh process: compiled at the first size again
    monkeypatch.setattr(_progress, "clock", lambda: 0.0)  # and every chunk quick this time
    again = jaxcheck.check_grad(loss, params, x, progress=False, journal=path)
    assert again.notes[-1].endswith(", 0 computed"), again.notes[-1]
    assert first.passed and again.passed


# ---- a first chunk bounded before it runs ----------------------------------------------------


def chunks_run(monkeypatch) -> list[tuple]:
    """(program's tag, size) of every chunk, in the order the engines run or replay them."""
    seen = []
    through = _journal.through

    def spy(journal, tag, arrays, compute):
        seen.append(tag)
        return through(journal, tag, arrays, compute)

    monkeypatch.setattr(_journal, "through", spy)
    return seen


def two_layers(n: int = 32):
    """Two kernels of one shape in two branches: per leaf, programs of the same sizes and
    the same arithmetic."""
    rng = np.random.default_rng(2)
    params = {"W1": rng.standard_normal((n, n)) / n, "W2": rng.standard_normal((n, n)) / n}
    x = rng.standard_normal((8, n))

    def loss(p, x):
        return jnp.sum(jnp.tanh(x @ p["W1"]) ** 2 + jnp.sin(x @ p["W2"]) ** 2)

    return loss, params, x


def by_program(chunks: list[tuple]) -> dict:
    """Chunk sizes per program, in order (the per-leaf engine's tags name the program)."""
    sizes: dict = {}
    for tag, size in chunks:
        sizes.setdefault(tag, []).append(size)
    return sizes


@pytest.mark.parametrize("flat", [True, False])  # one program for both leaves, or one each
def test_a_chunk_estimated_to_run_long_is_bounded_before_it_runs(monkeypatch, flat):
    """A scan RNN's first chunk ran 17 s, and a script's Ctrl-C waits for it: the FLOPs of a
    chunk at the pace expected bound the first chunk; where it then runs quick, it grows."""
    monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", np.inf if flat else 0.0)
    loss, params, x = model()
    slow_clock(monkeypatch, 1e-3)  # every chunk: 1 ms
    reference = jaxcheck.check_grad(loss, params, x, progress=False)
    reference_compiled = _engine.EXECUTABLES.compiled
    _engine.EXECUTABLES.clear()
    monkeypatch.setitem(_engine.RATE, "cpu", 1.0)  # 1 FLOP/s: any chunk estimated at hours
    chunks = chunks_run(monkeypatch)
    before = _engine.EXECUTABLES.compiled
    result = jaxcheck.check_grad(loss, params, x, progress=False)
    assert result.engine == ("jax-flat" if flat else "jax")
    first = chunks[0][1]
    assert first == 1, chunks[:3]  # nothing timed yet: the bound alone decides
    sizes = by_program(chunks)[chunks[0][0]]
    assert max(sizes) >= 64 * first, sizes  # 1 ms: grown towards CHUNK_S / 4, once
    assert _engine.EXECUTABLES.compiled - before <= 2 * reference_compiled  # bounded, grown
    same(result, reference, exact=flat)


def same(result, reference, exact: bool) -> None:
    """The same values: bit for bit in other chunks of the one program (flat); per leaf, the
    sparse chunks' arithmetic depends on their size by rounding (as with chunk_size=)."""
    assert result.passed and reference.passed
    for key in reference.numeric:
        if exact:
            np.testing.assert_array_equal(result.numeric[key], reference.numeric[key])
        else:
            np.testing.assert_allclose(result.numeric[key], reference.numeric[key], rtol=1e-6)


def test_a_bounded_first_chunk_does_not_set_the_cost_lines_pace(monkeypatch, capsys):
    """Its few points show the first run's overhead: the next chunk's pace is the check's."""
    monkeypatch.setitem(_engine.RATE, "cpu", 1.0)  # the first chunk: 1 point, then 128
    monkeypatch.setattr(_progress, "COST_S", 0.0)
    monkeypatch.setattr(_progress, "EVERY_S", np.inf)
    slow_clock(monkeypatch, 1e-3)  # every chunk: 1 ms
    loss, params, x = model()
    jaxcheck.check_grad(loss, params, x)
    (line,) = cost_lines(capsys.readouterr().err)
    assert "points, about 1 s at" in line, line  # 1 ms a point: 5 s for its 5,314 points


def test_the_pace_measured_on_one_leaf_bounds_the_next_leafs_first_chunk(monkeypatch):
    monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", 0.0)  # a program per leaf
    loss, params, x = two_layers()
    reference = jaxcheck.check_grad(loss, params, x, chunk_size=1024, progress=False)
    _engine.EXECUTABLES.clear()
    # every chunk counted (as one whose forward passes might take long) and found quick by
    # RATE's guess, but timed at 3 s: the first leaf's first chunk runs whole
    monkeypatch.setattr(_engine.JaxEngine, "flops", lambda self: np.inf)
    slow_clock(monkeypatch, 3.0)
    chunks = chunks_run(monkeypatch)
    result = jaxcheck.check_grad(loss, params, x, progress=False)
    (w1, first), (w2, second) = [(tag, sizes[0]) for tag, sizes in by_program(chunks).items()]
    assert first >= 1024, first  # unbounded: 2 × 1024 + 1 points
    # 3 s a chunk that size: the second leaf's estimated 3 s, bounded to < CHUNK_S / 2
    assert second <= first // 8, (first, second)
    assert max(by_program(chunks)[w2][1:]) <= second // 4  # then measured 3 s, and split
    same(result, reference, exact=False)


@pytest.mark.parametrize("flat", [True, False])
def test_quick_checks_compile_no_more_programs(monkeypatch, flat):
    """Neither the bound nor the measured pace changes a check whose chunks are quick."""
    monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", np.inf if flat else 0.0)
    slow_clock(monkeypatch, 1e-3)
    loss, params, x = model()
    counts, sizes = [], []
    chunks = chunks_run(monkeypatch)
    for chunk_s in (np.inf, _engine.CHUNK_S):  # never bounded nor settled; as it is
        monkeypatch.setattr(_engine, "CHUNK_S", chunk_s)
        _engine.EXECUTABLES.clear()
        before = _engine.EXECUTABLES.compiled
        jaxcheck.check_grad(loss, params, x, progress=False)
        counts.append(_engine.EXECUTABLES.compiled - before)
        sizes.append(chunks[:])
        chunks.clear()
    assert counts[0] == counts[1] and sizes[0] == sizes[1], (counts, sizes)


def test_a_resumed_check_bounds_and_grows_its_chunks_as_the_first_run_did(tmp_path, monkeypatch):
    """The bound and the growth depend on the pace measured: recorded in the journal."""
    monkeypatch.setitem(_layout.FLOPS_PER_COMPILE, "cpu", 0.0)
    loss, params, x = two_layers()
    path = tmp_path / "check.jsonl"
    monkeypatch.setitem(_engine.RATE, "cpu", 1.0)  # bounded to 1 point
    slow_clock(monkeypatch, 1e-3)  # then grown
    first = jaxcheck.check_grad(loss, params, x, progress=False, journal=path)
    _engine.EXECUTABLES.clear()  # a fresh process, on a machine that measures otherwise:
    monkeypatch.setitem(_engine.RATE, "cpu", 1e9)  # not bounded,
    slow_clock(monkeypatch, 3.0)  # and split where it ran
    again = jaxcheck.check_grad(loss, params, x, progress=False, journal=path)
    assert again.notes[-1].endswith(", 0 computed"), again.notes[-1]
    assert first.passed and again.passed
