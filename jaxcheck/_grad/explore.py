"""`explore`: a gradient checked over its input domain, not at one point.

The pipeline, top to bottom:

    Domain.make       the interval (or sampler) of every leaf               (domain.py)
    Points.draw       the points: special values first, then log-scale ones  (domain.py)
    Screen            every point's gradient under test and central differences at two step
                      scales (relative to |θ|, and to the domain's scale, which resolves a
                      gradient near 0), in vmap-ed, jit-compiled chunks; each point judged
                      by the element-wise error model (`stencils.compare`)
    confirm           the worst failing points checked again by `check_grad` (its second
                      look, rounding and kink machinery); a point fails only when it agrees
    Regions           where the failures cluster, per leaf                   (explore_report.py)
    shrink            the failing point made simpler while it still fails   (shrink.py)

check="vjp"/"jvp" runs check_vjp/check_jvp's exact identities at every point instead.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords
from .._core.errors import hides_input_errors
from .._core.paths import qualified
from .._core.result import CheckResult
from .._engine import journal as _journal
from .._engine import progress as _progress
from .._numerics import methods
from .._numerics import stencils as st
from . import check as _check
from . import options as _options
from . import runtime, shrink
from .domain import Domain
from .explore_report import ExploreResult, PointFailure, regions_of
from .loss import trace
from .problem import cast_args

CHECKS = ("grad", "vjp", "jvp")
LONG = (2.0**-13, 2.0**-9)  # the long steps, relative to max(|θ|, the domain's scale)
SCALES = 2 + len(LONG)  # step scales per point (`Screen.stencils`)
CHUNK_BYTES = 64 * 2**20  # perturbed points built on the host per compiled call ...
CHUNK_POINTS = 512  # ... and at most this many points (max_time is checked between chunks)
DOMAIN_FLOOR = 4096  # float64 gradients: errors below this many units (9e-13) of the gradient's
# scale over the domain are f's rounding, not the rule's: XLA's float64 GELU at -7 saturates
# its tanh (its slope is 3e-14 off); log_softmax([x, 0, 1])[0] at 30 is -log(1 + ε) rounded in
# steps of 2.2e-16 of the 1, and its differences are off by 2e-13
PRECISION_LOSS = 16.0  # a low-precision gradient's excuse: this many times fn's own loss
ABRUPT = 64  # a gradient that vanishes from below this many units of f's rounding: abruptly
CONFIRM = 16  # failing points checked again by check_grad (worst first)
POINTS = 1024


@hides_input_errors
def explore(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    domain: Any = None,
    points: int = POINTS,
    seed: int = 0,
    grad_fn: Callable[..., Any] | None = None,
    check: str = "grad",
    rtol: float | None = None,
    atol: float | None = None,
    precision: str = "float64",
    max_time: float | None = None,
    confirm: int = CONFIRM,
    progress: bool | None = None,
    journal: str | os.PathLike | None = None,
) -> ExploreResult:
    """Check a gradient at many points of its domain; say where it is wrong.

    `params` is a template: its structure, shapes and dtypes (not its values) say what a point
    is. The gradient under test (`jax.grad(fn)`, and through it every custom rule, or
    `grad_fn`) is compared with central finite differences at `points` points drawn from the
    domain: the special values first (0, -0, ±1, integers and half-integers, the smallest
    normal and subnormal numbers, values near overflow, every decade 10^k, the endpoints),
    then magnitudes on a log scale with both signs, values uniform in the interval and mixes.

    Args:
        fn: `fn(params, *args)` returns a scalar.
        params: the template pytree (float leaves are explored; others kept as given).
        *args: data passed to fn and grad_fn unchanged (float arrays cast to float64 under
            precision="float64", as check_grad does).
        domain: `(lo, hi)` for every leaf, `{leaf path: (lo, hi)}`, or a function
            `sampler(rng, n)` returning an [n, leaf size] array; None: ±√(the dtype's max).
        points: how many points.
        seed: the points are deterministic for a seed.
        grad_fn: the gradient under test, `grad_fn(params, *args)` (a pytree like params).
        check: "grad" (finite differences), or "vjp"/"jvp": check_vjp/check_jvp's exact
            identities at every point (fn's custom rules against its primal computation).
        rtol, atol, precision: as in check_grad.
        max_time: seconds; the points not reached by then are not checked (a note says so).
        confirm: failing points checked again by check_grad, worst first. A point fails only
            when check_grad fails it too; failures beyond this many are reported unconfirmed.
        progress: a progress bar on stderr, as in check_grad.
        journal: a file recording every finished chunk, so that an interrupted exploration
            resumes there when run again with the same journal (as in check_grad).

    Returns:
        An `ExploreResult`: verdict, counts, failures, regions and `minimal`, the simplest
        failing input found, with check_grad's report at it.
    """
    _validate(fn, grad_fn, points, check, max_time, confirm, rtol, atol, precision, seed)
    progress = _progress.ask(progress)
    started = time.monotonic()
    coords = Coords.build(params)
    if not coords.checked:
        raise ValueError(
            "params has no floating-point leaf to explore: pass a template whose leaves are "
            "float arrays (their shapes and dtypes say what a point is)."
        )
    for leaf in coords.checked:
        if leaf.is_complex:
            raise ValueError(
                f"{qualified(leaf.path)} is complex: explore draws real points; pass the real "
                "and imaginary parts as two real leaves."
            )
    dom = Domain.make(domain, coords)
    rng = np.random.default_rng(seed)
    leaves = jax.tree_util.tree_leaves(params)
    drawn = {leaf.path: dom.draw(leaf, points, rng) for leaf in coords.checked}
    X = np.concatenate([drawn[leaf.path].astype(np.float64) for leaf in coords.checked], axis=1)
    space = Space(coords, leaves, dom)
    if check != "grad":
        return _identities(fn, args, space, X, check, rtol, atol, precision, seed, max_time,
                           started, progress)  # fmt: skip
    screen = Screen(fn, grad_fn, args, space, rtol, atol, precision)
    settings = {"points": points, "seed": seed, "domain": repr(domain), "check": check,
                "numerics": (rtol, atol, precision)}  # fmt: skip
    book = None
    if journal is not None:
        book = _journal.Journal(journal, _journal.fingerprint(fn, leaves, args, settings))
    bar = _progress.bar(progress, len(X))
    try:
        outcomes, reached = screen.run(X, max_time, started, bar, book)
    finally:
        bar.close()
        if book is not None:
            book.close()
    return _finish(fn, grad_fn, args, space, screen, X, outcomes, reached, confirm, precision,
                   rtol, atol, started, book)  # fmt: skip


def _validate(fn, grad_fn, points, check, max_time, confirm, rtol, atol, precision, seed) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(params, *args); got {type(fn).__name__}.")
    if grad_fn is not None and not callable(grad_fn):
        raise TypeError(
            f"grad_fn must be a function grad_fn(params, *args), or None for jax.grad(fn); "
            f"got {type(grad_fn).__name__}."
        )
    _options.count_option("points", points, "points drawn from the domain")
    _options.count_option("confirm", confirm, "failing points checked again by check_grad")
    if check not in CHECKS:
        raise ValueError(
            f"check={check!r}: pass 'grad' (finite differences), 'vjp' or 'jvp' (the exact "
            "identities of check_vjp/check_jvp)."
        )
    if check != "grad" and grad_fn is not None:
        raise ValueError(
            f"grad_fn= is for check='grad'; check={check!r} checks fn's own custom rules "
            "(pass the rule as fn's custom_vjp/custom_jvp)."
        )
    if max_time is not None and not (isinstance(max_time, (int, float)) and max_time > 0):
        raise ValueError(f"max_time={max_time!r}: pass a number of seconds > 0, or None.")
    _options.validate_numerics(rtol, atol, precision, seed)


@dataclasses.dataclass(frozen=True)
class Space:
    """The explored coordinates: the checked leaves raveled into one vector per point."""

    coords: Coords
    leaves: list  # the template's leaves (unchecked ones kept as given)
    domain: Domain

    @property
    def n(self) -> int:
        return sum(leaf.size for leaf in self.coords.checked)

    def spans(self) -> list[tuple[Any, int, int]]:
        out, start = [], 0
        for leaf in self.coords.checked:
            out.append((leaf, start, start + leaf.size))
            start += leaf.size
        return out

    def params(self, x: np.ndarray, xp: Any = np, dtype: Any = None) -> Any:
        """The params pytree at the flat point x (each leaf in its dtype, or `dtype`)."""
        values = list(self.leaves)
        for leaf, a, b in self.spans():
            d = leaf.dtype if dtype is None else dtype
            values[leaf.position] = xp.reshape(x[a:b], leaf.shape).astype(d)
        return self.coords.unflatten(values)

    def flat(self, tree: Any) -> np.ndarray:
        """The checked leaves of a pytree like params, raveled (float64)."""
        leaves = jax.tree_util.tree_leaves(tree)
        return np.concatenate(
            [np.asarray(leaves[leaf.position], np.float64).reshape(-1)
             for leaf in self.coords.checked]
        )  # fmt: skip

    def typical(self, x: np.ndarray) -> np.ndarray:
        """Per element: its leaf's RMS value at x (the model's for an all-zero leaf)."""
        out = np.empty(self.n)
        rms = {leaf.path: float(np.sqrt(np.mean(x[a:b] ** 2))) for leaf, a, b in self.spans()}
        model = float(np.sqrt(np.mean(x**2))) or 1.0
        for leaf, a, b in self.spans():
            out[a:b] = rms[leaf.path] or model
        return out

    def domain_scale(self) -> np.ndarray:
        out = np.empty(self.n)
        for leaf, a, b in self.spans():
            out[a:b] = self.domain.scale(leaf.path)
        return out


@dataclasses.dataclass
class Outcome:
    """One point's screen: skipped (fn not finite there), or its element verdict."""

    skipped: bool
    verdict: st.Verdict | None = None
    steps: np.ndarray | None = None  # per element, the step its verdict used
    f0: float = 0.0  # f at the point

    @property
    def failing(self) -> bool:
        return self.verdict is not None and bool(np.isin(self.verdict.status, st.FAILING).any())

    @property
    def conclusive(self) -> bool:
        v = self.verdict
        return v is not None and np.isin(v.status, (st.OK, st.KINK)).mean() >= 0.5

    def badness(self) -> float:
        v = self.verdict
        if v is None:
            return 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(np.isfinite(v.abs_error), v.abs_error / v.tolerance, np.inf)
        r = np.where(np.isin(v.status, st.FAILING), r, 0.0)
        return float(np.nanmax(r, initial=0.0))


class Screen:
    """Every point's gradient under test and central differences, batched; each point judged."""

    def __init__(self, fn, grad_fn, args: tuple, space: Space, rtol, atol, precision: str):
        self.space, self.precision = space, precision
        self.fn, self.grad_fn = fn, grad_fn
        self.method = methods.get("central")
        self.rtol, self.atol = rtol, atol
        work = np.float64 if precision != "native" else None
        self.work = work
        with runtime.numerics(precision):
            self.args = cast_args(args, precision)
            traced, self.why = trace(fn, space.leaves, space.coords, self.args)
            template = space.params(np.zeros(space.n))
            self.traced = traced is not None and (
                grad_fn is None or _traces(grad_fn, template, args)
            )
        if traced is not None and np.shape(traced) != ():
            raise ValueError(
                f"fn returns shape {np.shape(traced)}: explore checks the gradient of a scalar "
                "fn(params, *args); reduce the output (jnp.sum, a loss) or check one output."
            )
        self.u = st.unit_roundoff(np.float64 if work is not None else _grad_dtype(space))

        def f_flat(x):
            return jnp.asarray(fn(space.params(x, jnp, work), *self.args)).reshape(())

        def g_flat(x):
            p = space.params(x, jnp)
            g = jax.grad(fn)(p, *args) if grad_fn is None else grad_fn(p, *args)
            leaves = jax.tree_util.tree_leaves(g)
            return jnp.concatenate(
                [jnp.reshape(leaves[leaf.position], (-1,)).astype(jnp.float64 if precision !=
                 "native" else leaves[leaf.position].dtype) for leaf in space.coords.checked]
            )  # fmt: skip

        def f_native(x):
            return jnp.asarray(fn(space.params(x, jnp), *args)).reshape(()).astype(jnp.float64)

        self._f, self._g = f_flat, g_flat
        self._fv = jax.jit(jax.vmap(f_flat)) if self.traced else None
        self._fn_v = jax.jit(jax.vmap(f_native)) if self.traced else None
        self._gv = jax.jit(jax.vmap(g_flat)) if self.traced else None
        self.grad_dtype = _grad_dtype(space)
        self.g_domain = 0.0  # max|g| over the points screened (`run`)

    # ---- evaluation ------------------------------------------------------------------------

    def values(self, Y: np.ndarray) -> np.ndarray:
        """f at each row of Y (flat points)."""
        with runtime.numerics(self.precision):
            if self._fv is not None:
                return np.asarray(self._fv(jnp.asarray(Y)), np.float64)
            return np.array([float(self.fn(self.space.params(y, np, self.work), *self.args))
                             for y in Y])  # fmt: skip

    def native(self, X: np.ndarray) -> np.ndarray:
        """f at each row of X computed in the template's own dtypes (its rounding there)."""
        with runtime.numerics(self.precision):
            if self._fn_v is not None:
                return np.asarray(self._fn_v(jnp.asarray(X)), np.float64)
            return np.array([float(self.fn(self.space.params(x), *self.args)) for x in X])

    def gradients(self, X: np.ndarray) -> np.ndarray:
        """The gradient under test at each row of X, [N, n] float64."""
        with runtime.numerics(self.precision):
            if self._gv is not None:
                return np.asarray(self._gv(jnp.asarray(X)), np.float64)
            return np.stack([self.space.flat(self._gradient_tree(x)) for x in X])

    def _gradient_tree(self, x: np.ndarray) -> Any:
        p = self.space.params(x)
        if self.grad_fn is None:
            return jax.grad(self.fn)(p, *self.args)
        return self.grad_fn(p, *self.args)

    # ---- the screen ------------------------------------------------------------------------

    def stencils(self, x: np.ndarray) -> list[st.Stencil]:
        """The point's stencils at the SCALES: the rule's step relative to |θ| (the leaf's RMS
        at least); relative to the domain's scale too (resolves a gradient near 0); and long
        ones, LONG·max(|θ|, the domain's scale), which see through f's values where they are
        rounded far more coarsely than u·|f| (a cancellation inside f: float64 log_softmax
        at 18 is −log(1 + ε), in steps of 2.2e-16 of the 1)."""
        theta = x.astype(np.float64) if self.work is not None else x.astype(self.grad_dtype)
        t64 = np.abs(theta.astype(np.float64))
        typical = self.space.typical(x)
        wide = np.maximum(typical, self.space.domain_scale())
        steps = (
            self.u ** (1 / 3) * np.maximum(t64, typical),
            self.u ** (1 / 3) * np.maximum(t64, wide),
            *(long * np.maximum(t64, wide) for long in LONG),
        )
        return [st.make_stencil(theta, h, self.method) for h in steps]

    def run(self, X, max_time, started, bar, book) -> tuple[list[Outcome], int]:
        """The outcome of every point reached within max_time."""
        n, m = self.space.n, len(self.method.offsets)
        per_point = (1 + SCALES * m * n) * n * 8
        chunk = max(1, min(len(X), CHUNK_POINTS, CHUNK_BYTES // max(per_point, 1)))
        parts: list[tuple] = []
        for start in range(0, len(X), chunk):
            if max_time is not None and time.monotonic() - started > max_time and parts:
                break
            block = X[start : start + chunk]
            # the last block padded to the others' size: one compiled shape for all
            padded = np.concatenate([block, np.repeat(block[-1:], chunk - len(block), 0)])
            stencils = [self.stencils(x) for x in padded]
            G, F0, FS, lost = _journal.through(
                book, ("explore", start, len(block)), (padded,),
                lambda padded=padded, stencils=stencils: self.evaluate(padded, stencils),
            )  # fmt: skip
            k = len(block)
            G, F0, FS, lost, stencils = G[:k], F0[:k], FS[:k], lost[:k], stencils[:k]
            parts.append((G, F0, FS, lost, stencils))
            bar.update(len(block))
        # the gradient's scale over the domain, from the differences (the reference), not
        # from the gradient under test, whose wrong values may be anything (sinc: 1e134)
        up, down = self.method.offsets.index(1), self.method.offsets.index(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            D = np.concatenate([
                (FS[:, 0, up] - FS[:, 0, down])
                / np.stack([s[0].disp[up] - s[0].disp[down] for s in stencils])
                for _, _, FS, _, stencils in parts
            ])  # fmt: skip
        D = np.abs(D[np.isfinite(D)])
        self.g_domain = float(np.percentile(D, 90)) if D.size else 0.0
        outcomes = [
            self.judge_point(Gk, f0, FSk, s, lostk)
            for G, F0, FS, lost, stencils in parts
            for Gk, f0, FSk, lostk, s in zip(G, F0, FS, lost, stencils)
        ]
        return outcomes, len(outcomes)

    def evaluate(self, block: np.ndarray, stencils: list) -> list[np.ndarray]:
        """[G, F0, FS]: the gradients under test, f at the points, f at their stencils
        ([points, 2 scales, rows, n])."""
        n, m = self.space.n, len(self.method.offsets)
        rows = []
        for x, pair in zip(block, stencils):
            for s in pair:
                for r in range(m):
                    Y = np.tile(x, (n, 1))
                    Y[np.arange(n), np.arange(n)] = s.points[r]
                    rows.append(Y)
        Y = np.concatenate(rows) if rows else np.zeros((0, n))
        F = self.values(np.concatenate([block, Y]))
        F0, FS = F[: len(block)], F[len(block) :].reshape(len(block), SCALES, m, n)
        G = self.gradients(block)
        # fn's own rounding in the gradient's dtype, where that is coarser than the
        # differences' (a float32 template checked against float64 differences)
        with np.errstate(invalid="ignore"):
            lost = np.abs(self.native(block) - F0) if self.work is not None else 0 * F0
        return [G, F0, FS, lost]

    def outcome(self, x: np.ndarray) -> Outcome:
        """One point screened on its own (the shrinking's predicate)."""
        stencils = [self.stencils(x)]
        G, F0, FS, lost = self.evaluate(x[None], stencils)
        return self.judge_point(G[0], F0[0], FS[0], stencils[0], lost[0])

    def judge_point(self, g, f0, FS, stencils, lost: float = 0.0) -> Outcome:
        """One point: skipped where fn is not finite there; else the element verdict at the
        better of the two step scales (an element agrees if it agrees at either).

        lost: |f in the gradient's dtype − f in the differences'|. A gradient computed in a
        coarser dtype than the differences is excused up to PRECISION_LOSS times what fn
        itself loses there, per unit of the domain's scale, and at least that many units of
        its rounding of |f| (1 − tanh² is 0 at x = 8 in float32 where it is 4.5e-7: fn loses
        2.3e-7 there; sinc's float32 gradient is 2% off at 3e-4 where fn loses nothing)."""
        if not np.isfinite(f0):
            return Outcome(skipped=True)
        usable = [k for k in range(SCALES) if np.isfinite(FS[k]).all()]
        if not usable:
            return Outcome(skipped=True)  # the domain's edge: fn not finite within a step
        g_dtype = np.float64 if self.precision == "upcast" else self.grad_dtype
        u_g = st.unit_roundoff(g_dtype)
        finite = np.abs(g[np.isfinite(g)])
        if self.work is not None and u_g > st.unit_roundoff(np.float64):
            lost = max(float(lost) if np.isfinite(lost) else 0.0, u_g * abs(float(f0)))
            excuse = PRECISION_LOSS * lost / float(np.min(self.space.domain_scale()))
        else:  # float64 gradients: rounding of formulas with cancellation over the domain
            excuse = DOMAIN_FLOOR * u_g * self.g_domain
        tol = st.Tolerance(
            u_f=st.unit_roundoff(np.float64 if self.work is not None else self.grad_dtype),
            u_g=u_g,
            rtol=st.default_rtol(g_dtype) if self.rtol is None else self.rtol,
            atol=(self.atol or 0.0) + excuse,
            g_scale=float(finite.max()) if finite.size else 0.0,
        )
        verdicts = []
        for k in usable:
            s = stencils[k]
            v = st.compare(g, f0, FS[k], s, self.method, tol)
            typical = float(np.max(self.space.typical(s.theta.astype(np.float64))))
            st.verify_zeros([v], abs(f0) / max(typical, 1e-300), u_g)
            verdicts.append((v, s.h))
        return dataclasses.replace(_better(verdicts), f0=float(f0))


def _better(verdicts: list[tuple[st.Verdict, np.ndarray]]) -> Outcome:
    """Per element, over the scales from the shortest step: a longer step's verdict replaces
    a shorter one's where it says the element agrees and the shorter one could not resolve
    it, or where it resolves finer than the shorter one's discrepancy (so that a long step
    whose truncation covers a 1% error does not excuse a 1% bug); a mismatch replaces an
    unverifiable verdict."""
    rank = {int(st.OK): 0, int(st.KINK): 0, int(st.MISMATCH): 1, int(st.NONFINITE): 1}

    def score(v: st.Verdict) -> np.ndarray:
        return np.array([rank.get(int(s), 2) for s in v.status])

    a, ha = verdicts[0]
    fields = ("analytic", "numeric", "abs_error", "tolerance", "resolution", "excess_noise")
    for b, hb in verdicts[1:]:
        sa, sb = score(a), score(b)
        with np.errstate(invalid="ignore"):
            finer = b.resolution < a.abs_error
        use_b = (sb < sa) & ((sa == 2) | finer)
        out = {f: np.where(use_b, getattr(b, f), getattr(a, f)) for f in fields}
        a = st.Verdict(**out, status=np.where(use_b, b.status, a.status))
        ha = np.where(use_b, hb, ha)
    return Outcome(False, a, ha)


def _grad_dtype(space: Space) -> np.dtype:
    return np.result_type(*[np.dtype(leaf.dtype) for leaf in space.coords.checked])


def _traces(grad_fn, template, args) -> bool:
    try:
        jax.eval_shape(lambda p: grad_fn(p, *args), template)
        return True
    except Exception:  # noqa: BLE001 - not JAX code: evaluated one point at a time
        return False


# ---- confirmation, regions, the minimal input ----------------------------------------------


def _finish(fn, grad_fn, args, space, screen, X, outcomes, reached, confirm, precision, rtol,
            atol, started, book) -> ExploreResult:  # fmt: skip
    notes: list[str] = []
    worst = sorted((k for k, o in enumerate(outcomes) if o.failing),
                   key=lambda k: -outcomes[k].badness())  # fmt: skip
    simplest = sorted(worst, key=lambda k: [shrink.complexity(float(v)) for v in X[k]])
    # the simplest failing points and the worst ones, half the budget each
    chosen = list(dict.fromkeys(simplest[: (confirm + 1) // 2] + worst))[:confirm]
    failing = chosen + [k for k in worst if k not in set(chosen)]
    checked_again: dict[int, CheckResult] = {}

    def recheck(x: np.ndarray, steps: np.ndarray | None = None) -> CheckResult:
        """check_grad at x; where the screen resolved the gradient only at the domain's step
        (a gradient near 0: check_grad's step relative to |x| is too short), at that step."""

        def run(eps: Any) -> CheckResult:
            return _check.check_grad(
                fn,
                space.params(x),
                *args,
                grad_fn=grad_fn,
                rtol=rtol,
                atol=atol,
                precision=precision,
                eps=eps,
                progress=False,
            )

        result = run(None)
        if result.verdict != "inconclusive" or steps is None:
            return result
        eps = {leaf.path: float(np.median(steps[a:b])) for leaf, a, b in space.spans()}
        try:
            return run(eps)
        except ValueError:  # the step vanishes at some element: keep check_grad's own
            return result

    for k in chosen:
        checked_again[k] = recheck(X[k], outcomes[k].steps)
    confirmed = [k for k in chosen if checked_again[k].verdict == "failed"]
    unconfirmed = failing[confirm:]
    if failing and not confirmed:
        notes.append(
            f"{len(chosen)} point(s) failed the screen but passed check_grad's closer "
            "look (its second look, measured rounding, kinks): not failures"
        )
    if unconfirmed and confirmed:
        notes.append(
            f"{len(unconfirmed)} more point(s) fail the screen and were not checked again "
            f"(confirm={confirm}): listed as unconfirmed"
        )
    failures = [PointFailure(space.params(X[k]), X[k], outcomes[k].verdict, checked_again[k], True)
                for k in confirmed]  # fmt: skip
    if confirmed:
        failures += [PointFailure(space.params(X[k]), X[k], outcomes[k].verdict, None, False)
                     for k in unconfirmed]  # fmt: skip
    passed_again = {k for k in chosen if checked_again[k].verdict == "passed"}
    skipped = sum(o.skipped for o in outcomes)
    inconclusive = sum(
        1 for k, o in enumerate(outcomes)
        if not o.skipped and k not in set(confirmed) and k not in passed_again
        and (not o.conclusive or (o.failing and not confirmed))
    )  # fmt: skip
    if reached < len(X):
        notes.append(f"max_time reached: {reached} of {len(X)} points checked")
    minimal = minimal_result = None
    if confirmed:
        first = min(confirmed, key=lambda k: [shrink.complexity(float(v)) for v in X[k]])
        start = X[first]

        def fails(x: np.ndarray) -> bool:
            return screen.outcome(x).failing

        shrunk = shrink.shrink(start, fails, space)
        minimal_result = recheck(shrunk, screen.outcome(shrunk).steps)
        if minimal_result.verdict != "failed":  # the screen's simplification did not hold
            shrunk, minimal_result = start, checked_again[first]
        minimal = space.params(shrunk)
    if book is not None:
        notes.append(book.note())
    suspicious = abrupt_zeros(space, X[:reached], outcomes, screen.grad_dtype)
    for zero in suspicious:
        notes.append(str(zero))
        inconclusive += sum(  # zeros "verified" against flat differences: not on faith
            1 for x, o in zip(X[:reached, 0], outcomes)
            if o.conclusive and min(zero.first, zero.far) <= x <= max(zero.first, zero.far)
        )  # fmt: skip
    checked = reached - skipped
    if confirmed:
        verdict = "failed"
    elif suspicious or inconclusive > checked / 2:
        verdict = "inconclusive"
    else:
        verdict = "passed"
    if inconclusive and verdict == "passed":
        notes.append(
            f"{inconclusive} point(s) inconclusive: finite differences cannot resolve the "
            "gradient there (an underflowing tail, a flat region): not counted as passed"
        )
    return ExploreResult(
        verdict=verdict,
        n_points=len(X),
        n_checked=reached - skipped,
        n_failed=len(confirmed) + (len(unconfirmed) if confirmed else 0),
        n_inconclusive=inconclusive,
        n_skipped=skipped,
        failures=tuple(failures),
        regions=regions_of(space, [f.x for f in failures], [f.screen for f in failures]),
        minimal=minimal,
        minimal_result=minimal_result,
        notes=tuple(notes),
        seconds=time.monotonic() - started,
        check="grad",
        suspicious=tuple(suspicious),
    )


@dataclasses.dataclass(frozen=True)
class AbruptZero:
    """A gradient that drops to exactly 0 (or stops being finite) while fn stays smooth: at
    `edge` it is `before`, a value at the rounding level of f, and from there to `far` it is 0
    (the expm1 tail below -37, sigmoid above +37 in float64: a formula y + 1 or s·(1 − s)
    that rounds to 0, where a smooth derivative decays through the subnormal numbers)."""

    path: str
    edge: float  # the last point (along the element) where the gradient is non-zero
    before: float  # the gradient there
    first: float  # the first point where it is 0 (or not finite)
    far: float  # the farthest such point in that direction
    count: int

    def __str__(self) -> str:
        return (
            f"suspicious: the gradient of {self.path} is exactly 0 (or not finite) from "
            f"{self.first:.6g} to {self.far:.6g} ({self.count} point(s)), where fn is smooth and "
            f"finite; at {self.edge:.6g} it is {self.before:.3g}, at the rounding level of f, "
            "and a smooth derivative would decay through the subnormal numbers: a formula that "
            "rounds to 0 (y + 1 for expm1, s·(1 − s) for sigmoid). Finite differences cannot "
            "resolve it there either: check the rule's formula"
        )


def abrupt_zeros(space: Space, X: np.ndarray, outcomes: list[Outcome], g_dtype) -> list[AbruptZero]:
    """Where a one-element exploration's gradient drops from non-zero at the rounding level
    of f to exactly 0 (or non-finite) with fn smooth and finite on both sides: the zeros
    beyond that edge (neither verified nor failed: suspicious). Elements of larger
    explorations have no neighbours along their own axis: not looked for."""
    if space.n != 1 or not len(X):
        return []
    (leaf, _, _) = space.spans()[0]
    rows = [(float(X[k, 0]), o.verdict, o.f0) for k, o in enumerate(outcomes)
            if not o.skipped and o.verdict is not None]  # fmt: skip
    rows.sort(key=lambda r: r[0])
    u = st.unit_roundoff(g_dtype)
    found = []
    for direction in (1, -1):
        seq = rows if direction == 1 else rows[::-1]
        for k in range(len(seq) - 1):
            (xa, a, fa), (_, b, _) = seq[k], seq[k + 1]
            ga, gb = float(a.analytic[0]), float(b.analytic[0])
            smooth = all(int(v.status[0]) != st.KINK for v in (a, b))
            if not (np.isfinite(ga) and ga != 0 and (gb == 0 or not np.isfinite(gb)) and smooth):
                continue
            level = ABRUPT * u * abs(fa) / max(abs(xa), 1.0)  # f's rounding, per unit of x
            if abs(ga) > level:
                continue  # a derivative that is not small: a kink or a real step (ReLU)
            zeros = []
            for xc, c, _ in seq[k + 1 :]:
                gc = float(c.analytic[0])
                if gc == 0 or not np.isfinite(gc):
                    zeros.append(xc)
                else:
                    break
            found.append(AbruptZero(leaf.path, xa, ga, zeros[0], zeros[-1], len(zeros)))
    return found


def _identities(fn, args, space, X, check, rtol, atol, precision, seed, max_time, started,
                progress) -> ExploreResult:  # fmt: skip
    from .._rules.identities import check_jvp, check_vjp

    run = check_vjp if check == "vjp" else check_jvp
    bar = _progress.bar(progress, len(X))
    results: list[tuple[int, Any]] = []
    skipped = 0
    try:
        for k, x in enumerate(X):
            if max_time is not None and time.monotonic() - started > max_time and results:
                break
            p = space.params(x)
            try:
                with runtime.numerics(precision):
                    value = fn(p, *args)
                finite = all(np.isfinite(np.asarray(v)).all()
                             for v in jax.tree_util.tree_leaves(value))  # fmt: skip
            except Exception:  # noqa: BLE001 - fn fails here: the domain's edge
                finite = False
            if not finite:
                skipped += 1
                bar.update(1)
                continue
            results.append((k, run(fn, p, *args, rtol=rtol, atol=atol, precision=precision,
                                   seed=seed, transforms=())))  # fmt: skip
            bar.update(1)
    finally:
        bar.close()
    failed = [(k, r) for k, r in results if not r.passed]
    notes = []
    reached = len(results) + skipped
    if reached < len(X):
        notes.append(f"max_time reached: {reached} of {len(X)} points checked")
    minimal = minimal_result = None
    failures = tuple(PointFailure(space.params(X[k]), X[k], None, r, True) for k, r in failed)
    if failed:

        def fails(x: np.ndarray) -> bool:
            try:
                return not run(
                    fn,
                    space.params(x),
                    *args,
                    rtol=rtol,
                    atol=atol,
                    precision=precision,
                    seed=seed,
                    transforms=(),
                ).passed
            except Exception:  # noqa: BLE001 - a simplification fn rejects is no simpler
                return False

        simplest = shrink.shrink(X[failed[0][0]], fails, space, budget=64)
        minimal = space.params(simplest)
        minimal_result = run(fn, minimal, *args, rtol=rtol, atol=atol, precision=precision,
                             seed=seed, transforms=())  # fmt: skip
    return ExploreResult(
        verdict="failed" if failed else "passed",
        n_points=len(X),
        n_checked=len(results),
        n_failed=len(failed),
        n_inconclusive=0,
        n_skipped=skipped,
        failures=failures,
        regions=regions_of(space, [f.x for f in failures], [None for _ in failures]),
        minimal=minimal,
        minimal_result=minimal_result,
        notes=tuple(notes),
        seconds=time.monotonic() - started,
        check=check,
    )
