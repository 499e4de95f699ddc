"""A second look at the elements whose verdict may be the step's fault, at smaller steps.

A step can be the checker's fault: it crosses a kink or a jump near θ (max, sort, rem),
leaves the function's domain (arcsin near ±1: NaN), is longer than the scale on which f
varies (a small element of a leaf of large ones; fresnel at 30), or meets rounding larger
than u·|f| (pinv, det near singular). Before an element fails, and where a long step left
an element poorly resolved, it is judged again:

1. with its noise measured where no step matters (`measured_noise`): a mismatch that
   rounding explains is not one;
2. at h/4, h/16, ... (at most `LEVELS`), with the method's whole stencil:

- a smaller step that agrees with g, resolved, with |g − D| plus half its resolution below
  the discrepancy at h (a wrong g would disagree there by at least as much): the
  discrepancy was the step's;
- a difference D that moves with the step (from the last step's or from h's) by more than
  both resolutions: the larger step's estimate was not what it claimed; the smaller step's
  "ok" replaces it, its "unverifiable" is kept to fall back on;
- D the same at two smaller steps in a row, with a second difference that shrinks as h²
  (or is rounding): it is the derivative, and the mismatch stands;
- a "kink" that smaller steps see as smooth, with g disagreeing: a kink inside the
  stencil, so a mismatch; a kink seen again at two smaller steps is a kink at θ, and so is
  a D that stays put while the second difference shrinks as h rather than h² (a slope
  that jumps at θ: a tie of several equal values in sort, where JAX's gradient is the
  slope of a piece no single-coordinate step reaches, so finite differences cannot check
  it);
- f(θ + h e_i) − f(θ − h e_i) that does not shrink with the step (a jump, structured
  noise), or a step at which f is rough (a truncation or fourth difference far above the
  measured noise): that verdict is kept to fall back on where the steps run out;
- g = 0 with f bit-identical at a smaller step: an exact zero (`stencils.verify_zeros`);
- a mismatch whose D moves beyond both resolutions at two smaller steps in a row: the
  error model fails for f on these scales (a staircase of rounded values): "unverifiable",
  with that movement as its resolution;
- an "ok" element resolved worse than `REFINE`·|g| where f is rough on the scale of the
  step (truncation, or a fourth difference far above rounding): each smaller step
  that resolves it better replaces its verdict, so a wrong g that a long step's error bound
  covered is seen (and then looked at as a mismatch).
"""

from __future__ import annotations

import numpy as np

from .._core.coords import Leaf
from .._engine.evaluator import Evaluator
from .._numerics import stencils as st
from .._numerics.methods import Method

SHRINK = 4.0  # each level divides the step by this
LEVELS = 7  # h/4 … h/16384
MAX_LEVELS = 64  # down to an element's own scale, where that is far smaller
REFINE = 1e-3  # "ok" elements resolved worse than this × |g| by truncation are refined
SAMPLE = 256  # more suspects (or loose elements) than this per leaf: a sample first
NOISE_ULPS = 64  # the noise probe's spacing, in units in the last place of θ_i
_BINOMIAL6 = np.array([1.0, -6.0, 15.0, -20.0, 15.0, -6.0, 1.0])  # ‖·‖² = 924
FIELDS = ("analytic", "numeric", "abs_error", "tolerance", "resolution", "excess_noise",
          "status", "exact_zero", "truncation", "noise")  # fmt: skip


def second_look(
    engine: Evaluator,
    leaf: Leaf,
    s: st.Stencil,
    idx: np.ndarray,
    method: Method,
    g: np.ndarray,
    f0: float,
    tol: st.Tolerance,
    verdict: st.Verdict,
    F: np.ndarray,
) -> st.Verdict:
    """The verdict of the elements idx of the leaf (stencil s, values F at its points, g),
    after a second look at the suspicious and the poorly resolved ones."""
    with np.errstate(invalid="ignore"):
        suspect = np.isin(verdict.status, (st.MISMATCH, st.KINK)) | (
            (verdict.status == st.NONFINITE) & np.isfinite(g) & ~np.isfinite(verdict.numeric)
        )
        loose = (verdict.status == st.OK) & rough(verdict, tol.noise_floor)
        loose &= verdict.resolution > REFINE * np.abs(g)
    if not (suspect | loose).any():
        return verdict
    rng = np.random.default_rng(leaf.position)
    loose = _at_most(loose, SAMPLE, rng)  # refinement is a spot check: a sample will do
    if suspect.sum() > SAMPLE:
        # A leaf wrong as a whole (a transposed gradient) has thousands of real mismatches:
        # a sample of them first; only if the step is to blame there are all looked at.
        first = _at_most(suspect, SAMPLE, rng)
        looked = _Look(engine, leaf, s, idx, method, g, f0, tol, verdict, F, first, loose).run()
        if (looked.status[first] == verdict.status[first]).all():  # none overturned
            return looked
    return _Look(engine, leaf, s, idx, method, g, f0, tol, verdict, F, suspect, loose).run()


def _at_most(mask: np.ndarray, k: int, rng) -> np.ndarray:
    """mask with at most k of its True entries kept, chosen at random."""
    where = np.flatnonzero(mask)
    if where.size <= k:
        return mask
    out = np.zeros_like(mask)
    out[rng.choice(where, k, replace=False)] = True
    return out


class _Look:
    """Per-element state (arrays over the elements idx) of one leaf's second look."""

    def __init__(
        self,
        engine: Evaluator,
        leaf: Leaf,
        s: st.Stencil,
        idx: np.ndarray,
        method: Method,
        g: np.ndarray,
        f0: float,
        tol: st.Tolerance,
        verdict: st.Verdict,
        F: np.ndarray,
        suspect: np.ndarray,
        loose: np.ndarray,
    ) -> None:
        self.engine, self.leaf, self.s, self.idx, self.method = engine, leaf, s, idx, method
        self.g, self.f0, self.tol, self.checked, self.F = g, f0, tol, verdict.checked, F
        self.out = {f: getattr(verdict, f).copy() for f in FIELDS}
        self.active, self.suspect = suspect | loose, suspect.copy()
        self.was_kink = verdict.status == st.KINK
        self.floor = np.full(len(g), float(np.max(tol.noise_floor)))
        self.plus = s.row(max(o for o in method.primary if o != 0))
        mirror = -s.offsets[self.plus]
        self.minus = s.row(mirror) if mirror in s.offsets else None
        # what the previous step saw: D, f(θ+h)−f(θ−h), resolution, second difference
        self.seen = {"d": verdict.numeric.copy(), "res": verdict.resolution.copy()}
        self.first = (verdict.numeric.copy(), verdict.resolution.copy())  # at h
        self.seen["delta"], self.seen["bend"] = self._spread(F), self._bend(F)[0]
        self.excess = np.where(np.isfinite(verdict.abs_error), verdict.abs_error, np.inf)
        self.agreed = np.zeros(len(g), int)  # levels in a row at which the mismatch stood
        self.kinked = np.zeros(len(g), int)  # levels in a row that saw a kink at θ
        self.erratic = np.zeros(len(g), int)  # levels in a row at which a mismatch's D moved
        self.fallback = {f: x.copy() for f, x in self.out.items()}
        self.has_fallback = np.zeros(len(g), bool)
        self.lasting = np.zeros(len(g), bool)  # the fallback is evidence, not a jump

    # ---- f at the widest primary pair --------------------------------------------------------

    def _spread(self, F: np.ndarray) -> np.ndarray:  # f(θ + o h) − f(θ − o h)
        return F[self.plus] - (F[self.minus] if self.minus is not None else self.f0)

    def _bend(  # (f(θ + o h) + f(θ − o h))/2 − f(θ), and its rounding
        self, F: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(F.shape[1]) if rows is None else rows
        if self.minus is None:
            return np.zeros(F.shape[1]), np.full(F.shape[1], np.inf)
        with np.errstate(invalid="ignore"):
            top = np.fmax(np.fmax(np.abs(F[self.plus]), np.abs(F[self.minus])), abs(self.f0))
        bent = (F[self.plus] + F[self.minus]) / 2 - self.f0
        return bent, 8 * (self.tol.u_f * top + self.floor[rows])

    def _compare(
        self,
        rows: np.ndarray,
        F: np.ndarray,
        stencil: st.Stencil,
        floor: np.ndarray | None = None,
    ) -> st.Verdict:
        floor = self.floor[rows] if floor is None else floor
        tol = self.tol.replace(noise_floor=floor)
        return st.compare(self.g[rows], self.f0, F, stencil, self.method, tol)

    def _write(self, target: dict, rows, v: st.Verdict, mask) -> None:
        for f in target:
            target[f][rows[mask]] = getattr(v, f)[mask]

    # ---- the look --------------------------------------------------------------------------

    def run(self) -> st.Verdict:
        self._noise()
        levels = self._levels()
        for level in range(1, levels + 3):
            if level > levels:  # two more, only for a mismatch waiting for its confirmation
                self.active &= self.agreed == 1
            if not self.active.any():
                break
            self._level(level)
        take = self.has_fallback  # where the steps ran out (or could not shrink further)
        for f in self.out:
            self.out[f][take] = self.fallback[f][take]
        return st.Verdict(**self.out, checked=self.checked)

    def _levels(self) -> int:
        """LEVELS, or as many as it takes a suspect's step down to the rule step of its own
        magnitude: in a leaf spanning 30 orders of magnitude (1 … 1e30), the step of the
        leaf's scale leaves the domain of f at the small elements."""
        rows = np.flatnonzero(self.suspect)
        theta = np.abs(self.s.theta[rows].astype(np.float64))
        own = st.unit_roundoff(self.s.theta.dtype) ** self.method.power * theta
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.log(self.s.h[rows] / own) / np.log(SHRINK)
        need = need[np.isfinite(need)]
        return int(min(max(LEVELS, np.ceil(need.max(initial=0.0))), MAX_LEVELS))

    def _noise(self) -> None:
        """Measure the noise of the suspects; a mismatch it explains is settled."""
        rows = np.flatnonzero(self.suspect)
        if not rows.size:
            return
        sigma = measured_noise(self.engine, self.leaf, self.s, self.idx[rows], rows, self.f0)
        self.floor[rows] = np.maximum(sigma, self.floor[rows])
        v = self._compare(rows, self.F[:, rows], self.s.take(rows))
        explained = (v.status != st.MISMATCH) & ~(self.was_kink[rows] & (v.status == st.KINK))
        explained &= np.isfinite(self.excess[rows])
        self._write(self.out, rows, v, explained)
        self.active[rows[explained]] = False
        self.suspect[rows[explained]] = False

    def _level(self, level: int) -> None:
        rows = np.flatnonzero(self.active)
        small = st.make_stencil(self.s.theta[rows], self.s.h[rows] / SHRINK**level, self.method)
        lost = small.lost()
        self.active[rows[lost]] = False  # the step cannot shrink further in this dtype
        keep = np.setdiff1d(np.arange(rows.size), lost)
        rows, small = rows[keep], small.take(keep)
        if not rows.size:
            return
        n = len(small.offsets)
        F = self.engine.evaluate(self.leaf, np.tile(self.idx[rows], n), small.points.reshape(-1))
        F = F.reshape(n, -1)
        plain = self._compare(rows, F, small)
        delta, (bent, rounding) = self._spread(F), self._bend(F, rows)
        seen = {k: x[rows] for k, x in self.seen.items()}
        with np.errstate(invalid="ignore"):
            jump = np.isfinite(delta) & (np.abs(delta) > np.abs(seen["delta"]) / 2)
            jump &= seen["delta"] != 0
        v = plain
        if jump.any():  # judged again with the jump as noise
            floor = np.where(jump, np.fmax(np.abs(delta), np.abs(seen["delta"])) / 2, 0.0)
            v = self._compare(rows, F, small, np.maximum(floor, self.floor[rows]))
        suspect = self.suspect[rows]
        self._suspects(rows[suspect], _take(plain, suspect), _take(v, suspect), jump[suspect],
                       bent[suspect], rounding[suspect], seen, suspect)  # fmt: skip
        self._refine(rows[~suspect], _take(plain, ~suspect))
        for key, x in (("d", plain.numeric), ("res", plain.resolution), ("delta", delta),
                       ("bend", bent)):  # fmt: skip
            self.seen[key][rows] = x

    def _suspects(
        self,
        rows: np.ndarray,
        plain: st.Verdict,
        v: st.Verdict,
        jump: np.ndarray,
        bent: np.ndarray,
        rounding: np.ndarray,
        seen: dict[str, np.ndarray],
        mask: np.ndarray,
    ) -> None:
        """One level's decisions for suspicious elements (see the module's docstring)."""
        if not rows.size:
            return
        seen = {k: x[mask] for k, x in seen.items()}
        excess, g = self.excess[rows], self.g[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            tight = v.abs_error + v.resolution / 2 < excess
            agrees = (v.status == st.OK) & tight
            # a first finite difference (the step back inside the domain): final unless it
            # is a mismatch, which is then looked at like any other from here on
            finite_now = ~np.isfinite(excess) & np.isfinite(v.numeric) & ~jump
            settled = finite_now & (v.status != st.MISMATCH)
            restart = finite_now & (v.status == st.MISMATCH)
            moved = np.abs(plain.numeric - seen["d"]) > plain.resolution + seen["res"]
            # or from the first step's D: the discrepancy at h was the step's
            d_h, res_h = (x[rows] for x in self.first)
            away = moved | (np.abs(plain.numeric - d_h) > plain.resolution + res_h)
            settled |= away & ~jump & (v.status == st.OK)  # (unverifiable: a fallback)
            settled |= plain.exact_zero
            local = (np.abs(bent) <= np.abs(seen["bend"]) / 8) | (np.abs(bent) <= rounding)
            confirmed = (plain.status == st.MISMATCH) & ~jump & ~moved & local
            self.agreed[rows] = np.where(confirmed, self.agreed[rows] + 1, 0)
            stands = self.agreed[rows] >= 2
            settled |= stands & self.was_kink[rows]  # a kink inside the stencil: a mismatch
            # a kink at θ: the kink test says so, or D stays put while the second difference
            # shrinks as h (a slope that jumps at θ), not as h²; twice in a row
            ratio = np.abs(seen["bend"]) / np.abs(bent)
            linear = (ratio > 2) & (ratio < 8) & (np.abs(bent) > rounding) & ~moved & ~jump
            at_kink = (plain.status == st.KINK) | linear & (plain.status == st.MISMATCH)
            self.kinked[rows] = np.where(at_kink, self.kinked[rows] + 1, 0)
            kink = self.kinked[rows] >= 2
            settled |= kink
            # a mismatch whose D moves beyond both resolutions at two steps in a row: the
            # error model fails for f on these scales (a staircase of rounded values, as a
            # float32 determinant near singular): finite differences cannot decide
            moving = moved & (plain.status == st.MISMATCH) & ~jump
            self.erratic[rows] = np.where(moving, self.erratic[rows] + 1, 0)
            erratic = (self.erratic[rows] >= 2) & ~kink
            settled |= erratic
            is_rough = rough(plain, self.floor[rows])
            unverifiable = v.status == st.UNVERIFIABLE
            # (noise that hides the rest: the mismatch stands, unless an earlier step showed
            # the discrepancy to be the step's, whose verdict is then the one kept)
            stands |= unverifiable & ~is_rough & np.isfinite(excess) & ~jump & ~away
            decisive = settled | agrees | (self.agreed[rows] >= 2) | kink
        settled &= ~agrees
        self._write(self.out, rows, v, settled | agrees | restart)
        self.excess[rows[restart]] = v.abs_error[restart]
        self.out["status"][rows[kink]] = st.KINK
        spread = np.abs(plain.numeric - seen["d"])[erratic]
        self.out["status"][rows[erratic]] = st.UNVERIFIABLE
        self.out["resolution"][rows[erratic]] = np.fmax(v.resolution[erratic], spread)
        # a verdict to fall back on where the steps run out: a jump or roughness explains it
        # a jump's fallback lasts while f keeps jumping (a saturation shrinks away); one from
        # a D that moved, or a rough f, lasts until a later step decides
        by_jump = jump & (v.status != st.MISMATCH)
        by_evidence = unverifiable & (is_rough | away) & ~jump
        fall = by_jump | by_evidence
        self._write(self.fallback, rows, v, fall)
        kept = self.has_fallback[rows] & ~decisive & (self.lasting[rows] | jump)
        self.has_fallback[rows] = fall | kept
        self.lasting[rows] = np.where(fall, by_evidence, self.lasting[rows] & kept)
        done = settled | stands
        self.active[rows[done]] = False
        # an agreement is final where it resolves well; else it is refined from here on
        still = agrees & (v.resolution > REFINE * np.abs(g)) & rough(v, self.floor[rows])
        self.active[rows[agrees & ~still]] = False
        self.suspect[rows[agrees]] = False

    def _refine(self, rows: np.ndarray, v: st.Verdict) -> None:
        """One level for "ok" elements resolved poorly by truncation: a better-resolved
        verdict replaces theirs; a better-resolved mismatch makes them suspects."""
        if not rows.size:
            return
        with np.errstate(invalid="ignore"):
            better = np.isfinite(v.numeric) & (v.resolution < self.out["resolution"][rows])
            better &= np.isin(v.status, (st.OK, st.MISMATCH))
            wrong = better & (v.status == st.MISMATCH)
        self._write(self.out, rows, v, better)
        self.suspect[rows[wrong]] = True
        self.excess[rows[wrong]] = v.abs_error[wrong]
        self.agreed[rows[wrong]] = 0
        with np.errstate(invalid="ignore"):
            fine = v.resolution <= REFINE * np.abs(self.g[rows])
        self.active[rows[~better | (fine & ~wrong)]] = False


def rough(v: st.Verdict, floor) -> np.ndarray:
    """Where f is not smooth on the scale of the step: the resolution is mostly truncation,
    or the fourth difference is far above rounding (u·|f|, or the measured noise floor)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rounding = np.fmax(floor, v.noise / v.excess_noise)  # noise / excess = u_f·max|f|
        truncation = np.zeros_like(v.resolution) if v.truncation is None else v.truncation
        return (truncation > v.resolution / 2) | (v.noise > 4 * rounding)


def _take(v: st.Verdict, mask) -> st.Verdict:
    return st.Verdict(**{f: getattr(v, f)[mask] for f in FIELDS})


def measured_noise(engine, leaf, s: st.Stencil, where: np.ndarray, rows: np.ndarray, f0):
    """σ̂_f per element of rows (of the stencil s; leaf elements `where`), from the sixth
    difference of f at θ + k·δ, k = −3 … 3, δ = 64 units in the last place of θ_i (Moré and
    Wild's ECnoise): no function varies on that scale, so f's changes there are its rounding,
    which grows with fn's conditioning. At least the median over the elements (one
    difference is a small sample of the noise)."""
    theta = s.theta[rows].astype(np.float64)
    theta_abs = np.abs(s.theta[rows])
    scale = np.where(theta_abs > 0, theta_abs, (s.h[rows] / 64).astype(s.theta.dtype))
    delta = NOISE_ULPS * np.spacing(scale).astype(np.float64)
    ks = np.array([-3, -2, -1, 1, 2, 3])
    points = np.stack([(theta + k * delta).astype(s.theta.dtype) for k in ks])
    f = engine.evaluate(leaf, np.tile(where, len(ks)), points.reshape(-1)).reshape(len(ks), -1)
    table = np.insert(f, 3, f0, axis=0)
    with np.errstate(invalid="ignore"):
        d6 = np.abs(_BINOMIAL6 @ table) / np.sqrt(924.0)
        d6 = np.where(np.isfinite(d6), d6, 0.0)
    return np.maximum(d6, np.median(d6) / st.HALF_NORMAL_MEDIAN)
