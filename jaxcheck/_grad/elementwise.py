"""Element-wise finite differences of one leaf: the stencils, the evaluations, the verdict.

Every element is evaluated at its method's first points; the rest (the error estimate's, the
noise estimate's, the kink test's) only on a sample and where the verdict depends on them;
suspicious elements are evaluated again to tell nondeterminism from a wrong gradient, and
then at smaller steps (`second_look`) before they fail.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.coords import Coords, Leaf
from .._core.errors import format_index
from .._core.paths import qualified
from .._engine.evaluator import Evaluator
from .._numerics import stencils as st
from .._numerics.methods import Method
from . import rounding as _rounding
from .second_look import second_look

CONFIRM_AT_MOST = 64  # suspicious elements re-evaluated per leaf to tell nondeterminism from a bug
NOISE_SAMPLE = 256  # elements per leaf always evaluated at ±2h, for the leaf's noise estimate
NOISY = 1e3  # noise in f above this many round-off units makes an element suspicious
WIDEN = 16.0  # an unverifiable element is judged again at steps this many times longer ...
WIDE_LEVELS = 3  # ... at most this many times (16h, 256h, 4096h) ...
WIDE_SCALE = 4.0  # ... with every point within this many times the element's scale ...
WIDE_UP_TO = 1e-12  # ... where the differences are taken in float64 (not native float32)


@dataclasses.dataclass
class Nondet:
    """nondet_tol: re-evaluations of f at one point that differ by at most `tol` are accepted
    (torch's meaning: GPU atomics reorder additions), and that much noise is allowed in f;
    `seen` is the largest such difference found."""

    tol: float = 0.0
    seen: float = 0.0


class Stencils:
    """Each checked leaf's `Stencil`, built when first asked for and kept.

    Every leaf whose stencil is kept, and every leaf with a given step, is validated when
    this is made (a vanishing step raises before the long part), one leaf at a time.
    keep=False keeps none of them: in directional mode only the leaves that fail ever need
    their element stencils, and those hold up to ten rows of the leaf's size; otherwise
    every leaf needs its stencil, so the validated one is kept.
    typical: `_typical_scale`. u: the unit roundoff of the precision fn computes in, where it
    is coarser than the leaves' (None: theirs).
    """

    def __init__(
        self, coords: Coords, values, steps: dict, typical: dict, method, keep: bool, u=None
    ):
        self._coords, self._values, self._steps, self._u = coords, values, steps, u
        self._typical, self._method = typical, method
        self._built: dict[str, st.Stencil] = {}
        for leaf in coords.checked:
            # The default steps, u^p·max(|θ_i|, the leaf's scale), never vanish: only given
            # ones are validated where the stencil would not be kept (directional mode on
            # ten million elements: 6 s of stencils that only a failing leaf needs).
            if keep or leaf.path in steps:
                stencil = self._build(leaf)  # raises on a vanishing step
                if keep:
                    self._built[leaf.path] = stencil

    def _build(self, leaf: Leaf) -> st.Stencil:
        theta = np.asarray(self._values[leaf.position]).reshape(-1)
        stencil = st.make_stencil(theta, self.nominal(leaf), self._method)
        lost = stencil.lost()
        if lost.size:
            i = int(lost[0])
            h = stencil.h[i]
            where = f"{qualified(leaf.path)}{format_index(leaf.index(i))}"
            raise ValueError(
                f"the step {h:.3g} vanishes at {where} = "
                f"{float(theta[i])!r} in {theta.dtype}: θ ± h rounds back to θ "
                f"({lost.size} element(s) of this leaf). Use a larger eps, or eps=None for steps "
                "relative to each element."
            )
        return stencil

    def nominal(self, leaf: Leaf) -> np.ndarray:
        """The leaf's default (or given) steps h, before any data-chosen factor."""
        theta = np.asarray(self._values[leaf.position]).reshape(-1)
        if leaf.path in self._steps:
            return np.full(theta.shape, self._steps[leaf.path], np.float64)
        u = None if self._u is None else max(self._u, st.unit_roundoff(theta.dtype))
        return st.default_steps(theta, self._typical[leaf.path], self._method, u)

    def __getitem__(self, leaf: Leaf) -> st.Stencil:
        if leaf.path not in self._built:
            self._built[leaf.path] = self._build(leaf)
        return self._built[leaf.path]

    def __setitem__(self, leaf: Leaf, stencil: st.Stencil) -> None:
        self._built[leaf.path] = stencil

    def median_step(self, leaf: Leaf) -> float:
        """The leaf's median step: the one used if its stencil was built, else the nominal."""
        built = self._built.get(leaf.path)
        return float(np.median(built.h if built is not None else self.nominal(leaf)))


def compare_leaf(
    engine, leaf: Leaf, s: st.Stencil, method, g, tol: st.Tolerance, subset=None, nondet=None,
    *, typical: float, rounding=None,
):  # fmt: skip
    """Evaluate f at θ and at the method's first points for every element of the leaf, and
    at the rest (the error estimate's, the noise estimate's, the kink test's) where needed.

    Elements that are clearly right from the first points alone (`stencils.screen`) skip the
    rest, except for a random sample that keeps the leaf's noise estimate honest. A wrong or
    doubtful element always gets every point. subset: check only these elements (the verdict
    covers the leaf, NaN elsewhere). tol: u_f, u_g, rtol, atol (g_scale, noise_floor).
    nondet: a `Nondet` (None: any difference between re-evaluations is nondeterminism).
    """
    idx = np.arange(leaf.size) if subset is None else np.asarray(subset, np.int64)
    theta0 = s.theta[:1]  # f(θ): element 0 set to its own value
    if subset is not None:
        s, g = s.take(idx), g[idx]
    n = len(idx)
    sample = np.random.default_rng(leaf.position).choice(n, min(n, NOISE_SAMPLE), replace=False)
    first = [s.row(o) for o in method.first]
    rest = [r for r in range(len(s.offsets)) if r not in first]
    F = np.full((len(s.offsets), n), np.nan)
    points = [theta0, *(s.points[r] for r in first), *(s.points[r][sample] for r in rest)]
    f = engine.evaluate(
        leaf,
        np.concatenate([[0], *[idx] * len(first), *[idx[sample]] * len(rest)]),
        np.concatenate(points),
    )
    f0, parts = f[0], np.split(f[1:], np.cumsum([n] * len(first) + [len(sample)] * len(rest)))
    for r, part in zip(first, parts):
        F[r] = part
    for r, part in zip(rest, parts[len(first) :]):
        F[r, sample] = part
    need = st.screen(g, f0, F, s, method, tol)
    need[sample] = False
    second = np.flatnonzero(need)
    if second.size and rest:
        f2 = engine.evaluate(
            leaf,
            np.concatenate([idx[second]] * len(rest)),
            np.concatenate([s.points[r][second] for r in rest]),
        )
        for r, part in zip(rest, np.split(f2, len(rest))):
            F[r, second] = part
    verdict = st.compare(g, f0, F, s, method, tol)
    confirm(engine, leaf, s, idx, verdict, F[first], first, f0, tol.u_f, nondet or Nondet())
    verdict = second_look(engine, leaf, s, idx, method, g, f0, tol, verdict, F)
    verdict = longer_look(engine, leaf, s, idx, method, g, f0, tol, verdict, typical)
    verdict = wide_look(engine, leaf, s, idx, method, g, f0, tol, verdict, typical, rounding)
    return verdict if subset is None else verdict.expand(idx, leaf.size)


LONGER = (8.0, 64.0)  # a mismatch agreeing with g at both these multiples of h is rounding's


def longer_look(
    engine: Evaluator, leaf: Leaf, s: st.Stencil, idx: np.ndarray, method: Method,
    g: np.ndarray, f0: float, tol: st.Tolerance, verdict: st.Verdict, typical: float,
) -> st.Verdict:  # fmt: skip
    """Mismatches judged again at LONGER steps (within WIDE_SCALE of the element's scale):
    where f is computed through a cancellation its values are rounded far more coarsely than
    u·|f| (float64 log_softmax([x, 0, 1])[0] at x = 27 is −log(1 + 7e-12), in steps of
    2.2e-16 of the 1), a staircase whose slope over a short step can be 3% off while its
    fourth differences happen to vanish. A step 8 and 64 times longer sees through it: a
    mismatch that agrees with g, resolved, at both is the short step's rounding, not the
    gradient's error (a wrong g disagrees at every step). Each longer step must resolve
    finer than the discrepancy at h, so that its agreement is evidence."""
    todo = np.flatnonzero(verdict.status == st.MISMATCH)
    if not todo.size or st.unit_roundoff(s.theta.dtype) > WIDE_UP_TO:
        return verdict
    theta = s.theta.astype(np.float64)
    scale = np.maximum(np.abs(theta), np.sqrt(np.mean(theta**2)) or typical)
    agree = np.ones(todo.size, bool)
    for factor in LONGER:
        wide = st.make_stencil(s.theta[todo], s.h[todo] * factor, method)
        ok = wide.h * method.span <= WIDE_SCALE * scale[todo]
        ok[wide.lost()] = False
        agree &= ok
        if not agree.any():
            return verdict
        F = engine.evaluate(
            leaf, np.concatenate([idx[todo]] * len(wide.offsets)), wide.points.reshape(-1)
        ).reshape(len(wide.offsets), -1)
        v = st.compare(g[todo], f0, F, wide, method, tol)
        # resolved finer than the discrepancy at h: agreement there is evidence (a step whose
        # truncation covers a 1% error would excuse a 1% bug)
        with np.errstate(invalid="ignore"):
            agree &= (v.status == st.OK) & (v.resolution < verdict.abs_error[todo])
    if not agree.any():
        return verdict
    status = verdict.status.copy()
    status[todo[agree]] = st.OK
    return dataclasses.replace(verdict, status=status)


def wide_look(
    engine, leaf, s, idx, method, g, f0, tol: st.Tolerance, verdict, typical: float, rounding=None
) -> st.Verdict:
    """Unverifiable elements judged again at WIDEN·h, WIDEN²·h, ... (at most WIDE_LEVELS).

    Where f computes in a coarse precision (a float32 model under a float64 check) its
    rounding hides small gradients at the default step, and a direction along which f is
    flat (the key bias of an attention layer: softmax does not see it) shows only rounding.
    A longer step resolves both: the first at which an element is resolved and agrees with
    g makes it "ok". A disagreement at one long step is no evidence (f may vary on that
    scale: round, rem, fresnel); one at two steps in a row whose differences D agree within
    the resolutions with each other and with D at h (D behaves as a derivative from h up,
    as where f is linear in the element: det) is a mismatch, so that what a long step can
    verify it can also fail. Elsewhere the smallest resolution reached is kept (an exact or
    rounding zero may then be verified by `stencils.verify_zeros`). A mismatch is taken only
    from steps within WIDE_SCALE times the element's scale, max(|θ_i|, the RMS of the leaf's
    θ, or `typical` for an all-zero leaf, as its steps are sized): beyond it f may saturate
    (a bias before a LayerNorm, moved by 50 scales, sees a flat loss), and a resolution
    reached beyond it is kept only where D there agrees with D at h and at the level before.
    Only where the differences are float64: in a native low-precision check a long step's
    differences are as coarse as the gradient, and verify what they cannot fail.

    rounding: None, or a function of nothing returning the gradient's measured rounding over
    the leaf (`rounding.Rounding.floor`, measured when first asked for), which a long step's
    verdict allows for as the first step's does.
    """
    todo = np.flatnonzero((verdict.status == st.UNVERIFIABLE) & ~verdict.exact_zero)
    if not todo.size or st.unit_roundoff(s.theta.dtype) > WIDE_UP_TO:
        return verdict
    out = {f.name: getattr(verdict, f.name) for f in dataclasses.fields(verdict)}
    out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    theta = s.theta.astype(np.float64)
    scale = np.maximum(np.abs(theta), np.sqrt(np.mean(theta**2)) or typical)
    at_h = (verdict.numeric.copy(), verdict.resolution.copy())
    before = None  # the previous level's (mismatch, D, resolution), over todo
    for level in range(1, WIDE_LEVELS + 1):
        h = s.h[todo] * WIDEN**level
        wide = st.make_stencil(s.theta[todo], h, method)
        keep = np.setdiff1d(np.arange(todo.size), wide.lost())
        if not keep.size:
            break
        todo, wide = todo[keep], wide.take(keep)
        before = None if before is None else tuple(x[keep] for x in before)
        within = wide.h * method.span <= WIDE_SCALE * scale[todo]
        F = engine.evaluate(
            leaf, np.concatenate([idx[todo]] * len(wide.offsets)), wide.points.reshape(-1)
        ).reshape(len(wide.offsets), -1)
        v = st.compare(g[todo], f0, F, wide, method, tol)
        if rounding is not None and (v.status == st.MISMATCH).any():
            v = _rounding.widen(v, rounding()[idx[todo]])[0]
        wrong = v.status == st.MISMATCH
        with np.errstate(invalid="ignore"):
            # D behaves as a derivative from h up: it agrees with D at h and at the last level
            consistent = np.abs(v.numeric - at_h[0][todo]) <= v.resolution + at_h[1][todo]
            if before is not None:
                consistent &= np.abs(v.numeric - before[1]) <= v.resolution + before[2]
        steady = wrong & within & consistent & (before[0] if before is not None else False)
        done = (v.status == st.OK) | steady
        better = done | (
            (v.status == st.UNVERIFIABLE)
            & (within | consistent)
            & (v.resolution < out["resolution"][todo])
        )
        for name in ("numeric", "abs_error", "tolerance", "resolution", "truncation", "noise"):
            out[name][todo[better]] = getattr(v, name)[better]
        out["status"][todo[done]] = v.status[done]
        before = (wrong[~done], v.numeric[~done], v.resolution[~done])
        todo = todo[~done]
        if not todo.size:
            break
    return st.Verdict(**out)


def confirm(engine, leaf, s, idx, verdict, before, rows, f0, u_f, nondet: Nondet) -> None:
    """Re-evaluate suspicious elements: values that move between calls are nondeterministic.

    Suspicious are mismatches, and elements whose f is far noisier than round-off: randomness
    that appears only away from the base point inflates the noise estimate and would otherwise
    hide as "unverifiable". s, verdict, before (f at the stencil rows `rows`): of the elements
    idx of the leaf. Differences within nondet.tol are not nondeterminism (recorded in it).
    """
    suspicious = (verdict.status == st.MISMATCH) | (verdict.excess_noise > NOISY)
    bad = np.flatnonzero(suspicious & (verdict.status != st.NONFINITE))
    if not bad.size:
        return
    worst = bad[np.argsort(-(verdict.abs_error[bad] / verdict.tolerance[bad]))][:CONFIRM_AT_MOST]
    again = engine.evaluate(
        leaf,
        np.concatenate([idx[worst]] * len(rows)),
        np.concatenate([s.points[r][worst] for r in rows]),
    ).reshape(len(rows), -1)
    was = before[:, worst]
    diff = np.abs(again - was)
    rounding = 8 * u_f * np.maximum(np.abs(was), abs(f0))
    moved = (diff > np.maximum(rounding, nondet.tol)).any(axis=0)
    within = diff[:, ~moved][diff[:, ~moved] > rounding[:, ~moved]]
    nondet.seen = max(nondet.seen, float(within.max(initial=0.0)))
    verdict.status[worst[moved]] = st.NONDETERMINISTIC
