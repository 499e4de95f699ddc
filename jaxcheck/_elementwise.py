"""Element-wise finite differences of one leaf: the stencils, the evaluations, the verdict.

Every element is evaluated at its method's first points; the rest (the error estimate's, the
noise estimate's, the kink test's) only on a sample and where the verdict depends on them;
suspicious elements are evaluated again to tell nondeterminism from a wrong gradient.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _stencils as st
from ._coords import Coords, Leaf, qualified
from ._errors import format_index

CONFIRM_AT_MOST = 64  # suspicious elements re-evaluated per leaf to tell nondeterminism from a bug
SHRINK = 4.0  # a failing element is judged again at h/4, h/16, ... (`reconsider`)
LEVELS = 7  # at most this many smaller steps (h/4 … h/16384)
NOISE_SAMPLE = 256  # elements per leaf always evaluated at ±2h, for the leaf's noise estimate
NOISY = 1e3  # noise in f above this many round-off units makes an element suspicious


@dataclasses.dataclass
class Nondet:
    """nondet_tol: re-evaluations of f at one point that differ by at most `tol` are accepted
    (torch's meaning: GPU atomics reorder additions), and that much noise is allowed in f;
    `seen` is the largest such difference found."""

    tol: float = 0.0
    seen: float = 0.0


class Stencils:
    """Each checked leaf's `Stencil`, built when first asked for and kept.

    All leaves are validated when this is made (a vanishing step raises before the long
    part), one leaf at a time. keep=False keeps none of them: in directional mode only the
    leaves that fail ever need their element stencils, and those hold up to ten rows of the
    leaf's size; otherwise every leaf needs its stencil, so the validated one is kept.
    typical: `_typical_scale`.
    """

    def __init__(self, coords: Coords, values, steps: dict, typical: dict, method, keep: bool):
        self._coords, self._values, self._steps = coords, values, steps
        self._typical, self._method = typical, method
        self._built: dict[str, st.Stencil] = {}
        for leaf in coords.checked:
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
        return st.default_steps(theta, self._typical[leaf.path], self._method)

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


def judge_leaf(engine, leaf: Leaf, s: st.Stencil, method, g, tol: dict, subset=None, nondet=None):
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
    need = st.screen(g, f0, F, s, method, **tol)
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
    verdict = st.judge(g, f0, F, s, method, **tol)
    confirm(engine, leaf, s, idx, verdict, F[first], first, f0, tol["u_f"], nondet or Nondet())
    verdict = reconsider(engine, leaf, s, idx, method, g, f0, tol, verdict, F)
    return verdict if subset is None else verdict.expand(idx, leaf.size)


def reconsider(engine, leaf, s, idx, method, g, f0, tol, verdict, F) -> st.Verdict:
    """Judge every failing element again at smaller steps before failing it.

    A step can be the checker's fault: it crosses a kink or a jump near θ (max, sort, rem),
    leaves the function's domain (arcsin near ±1: NaN), or is longer than the scale on which
    f varies (a small element of a leaf of large ones). Each mismatch (and each non-finite
    difference of a finite g) is evaluated at h/4, h/16, ... with the method's full stencil:

    - where a smaller step agrees with g, resolved, and |g − D| plus half its resolution is
      below the discrepancy seen at h (a wrong g would disagree there by at least as much),
      the discrepancy was the step's: that step's verdict replaces it;
    - where the difference D stays the same from one step to the next within their
      resolutions, and the second difference shrinks as it should (or is rounding), it is
      the derivative, and the mismatch stands (a real error: two levels in a row);
    - where D moves with the step by more than both resolutions, the larger step's error
      estimate was wrong (a kink or noise it did not see): the smaller step's verdict, "ok"
      or "unverifiable", replaces it;
    - where f(θ + h e_i) − f(θ − h e_i) does not shrink with the step, f jumps or is noisy
      at θ by that much: judged with that as its noise, which settles it where that explains
      the discrepancy (usually "unverifiable"), else the step shrinks on (f saturates);
    - a non-finite difference whose smaller steps are finite takes their verdict, and so does
      an exact zero (g = 0, f bit-identical at a smaller step).

    s, g, verdict, F: of the elements idx of the leaf. Returns the updated verdict.
    """
    suspects = np.flatnonzero(
        (verdict.status == st.MISMATCH)
        | ((verdict.status == st.NONFINITE) & np.isfinite(g) & ~np.isfinite(verdict.numeric))
    )
    if not suspects.size:
        return verdict
    out = {f: getattr(verdict, f) for f in _FIELDS}
    out = {f: x.copy() for f, x in out.items() if x is not None}
    # First the noise in f, measured where the step cannot matter: rounding that grows with
    # the conditioning of fn (pinv, det near singular) is more than u·|f| and can hide from
    # the fourth difference. A mismatch it explains is not one.
    floor_all = np.full(len(g), float(tol.get("noise_floor", 0.0)))
    sigma = _measured_noise(engine, leaf, s, idx[suspects], suspects, f0)
    floor_all[suspects] = np.maximum(sigma, floor_all[suspects])

    def at(rows):  # the tolerances of the elements rows, with their measured noise
        return {**tol, "noise_floor": floor_all[rows]}

    noisy = st.judge(g[suspects], f0, F[:, suspects], s.take(suspects), method, **at(suspects))
    explained = (noisy.status != st.MISMATCH) & np.isfinite(excess_of(verdict, suspects))
    for f in out:
        out[f][suspects[explained]] = getattr(noisy, f)[explained]
    suspects = suspects[~explained]
    if not suspects.size:
        return st.Verdict(**out, checked=verdict.checked)
    plus = s.row(max(o for o in method.primary if o != 0))
    minus = s.row(-s.offsets[plus]) if -s.offsets[plus] in s.offsets else None

    def spread(F, rows):  # f(θ + o h) − f(θ − o h) at the widest primary offset
        return F[plus, rows] - (F[minus, rows] if minus is not None else f0)

    def bend(F, rows):  # (f(θ + o h) + f(θ − o h))/2 − f(θ), and what rounding makes of it
        if minus is None:
            return np.zeros(F.shape[1]), np.full(F.shape[1], np.inf)
        with np.errstate(invalid="ignore"):
            top = np.fmax(np.fmax(np.abs(F[plus]), np.abs(F[minus])), np.abs(f0))
        return (F[plus] + F[minus]) / 2 - f0, 8 * (tol["u_f"] * top + floor_all[rows])

    seen_d, seen_delta = verdict.numeric[suspects], spread(F, suspects)
    seen_bend = bend(F[:, suspects], suspects)[0]
    agreed = np.zeros(suspects.size, int)  # levels in a row at which the mismatch stood
    seen_res = verdict.resolution[suspects]
    excess = excess_of(verdict, suspects)
    # the verdict with the jump as noise (or the unverifiable one where f is rough), for
    # elements whose f jumped at every step so far: taken where the steps run out (a
    # saturation shrinks away; a jump or noise never does; a smaller step may clear a kink)
    jumped = {f: x.copy() for f, x in out.items()}
    has_jump = np.zeros(len(g), bool)
    for level in range(1, LEVELS + 1):
        if not suspects.size:
            break
        small = st.make_stencil(s.theta[suspects], s.h[suspects] / SHRINK**level, method)
        keep = np.setdiff1d(np.arange(suspects.size), small.lost())  # steps left to shrink
        suspects, seen_d, seen_delta, seen_res, seen_bend, excess, agreed = (
            x[keep] for x in (suspects, seen_d, seen_delta, seen_res, seen_bend, excess, agreed)
        )
        if not suspects.size:
            break
        small = small.take(keep)
        rows = len(small.offsets)
        Fk = engine.evaluate(leaf, np.tile(idx[suspects], rows), small.points.reshape(-1))
        Fk = Fk.reshape(rows, -1)
        vk = plain = st.judge(g[suspects], f0, Fk, small, method, **at(suspects))
        delta = Fk[plus] - (Fk[minus] if minus is not None else f0)
        with np.errstate(invalid="ignore"):
            jump = np.isfinite(delta) & (np.abs(delta) > np.abs(seen_delta) / 2) & (seen_delta != 0)
        if jump.any():  # judged again with the jump as noise
            floor = np.where(jump, np.fmax(np.abs(delta), np.abs(seen_delta)) / 2, 0.0)
            floor = np.maximum(floor, floor_all[suspects])
            vk = st.judge(g[suspects], f0, Fk, small, method, **{**tol, "noise_floor": floor})
        with np.errstate(invalid="ignore"):
            # agreement that a wrong g could not reach: |g − D_s| plus half its resolution
            # (the estimate with a safety of 2 in place of κ = 4) under the discrepancy at h
            tight = vk.abs_error + vk.resolution / 2 < excess
            # (a "kink" at a smaller step is not trusted: a kink at θ shows at h already, and
            # at small steps in low precision the one-sided slopes are mostly noise)
            settled = (vk.status == st.OK) & tight
            settled |= ~np.isfinite(excess) & np.isfinite(vk.numeric) & ~jump
            # D moved with the step by more than both error estimates: the larger step's
            # estimate was not what it claimed, so its discrepancy proves nothing
            moved = np.abs(plain.numeric - seen_d) > plain.resolution + seen_res
            settled |= moved & ~jump & np.isin(vk.status, (st.OK, st.UNVERIFIABLE))
            # g = 0 and f bit-identical at ±h: rounding made the larger step's difference
            # (judged later, with every other exact zero: `stencils.verify_zeros`)
            settled |= plain.exact_zero
            # the second difference shrinks as h² where the step is within the scale of f; a
            # step over many oscillations (fresnel at 30) averages D to the same wrong value
            # at every step, with a second difference that does not shrink
            bent, rounding = bend(Fk, suspects)
            local = (np.abs(bent) <= np.abs(seen_bend) / 8) | (np.abs(bent) <= rounding)
            # twice in a row: an oscillating f can look local at one step by chance
            confirmed = (plain.status == st.MISMATCH) & ~jump & ~moved & local
            agreed = np.where(confirmed, agreed + 1, 0)
            stands = agreed >= 2
            # unverifiable at a smaller step: from rounding, which a smaller step has more of
            # (the mismatch stands), or because f is not smooth on the scale of these steps
            # (a truncation estimate, or a fourth difference, far above the measured noise):
            # then the larger step's verdict is not sound either
            with np.errstate(invalid="ignore", divide="ignore"):
                rounding_noise = np.fmax(floor_all[suspects], plain.noise / plain.excess_noise)
            rough = (plain.truncation > plain.resolution / 2) | (plain.noise > 4 * rounding_noise)
            unverifiable = vk.status == st.UNVERIFIABLE
            stands |= unverifiable & ~rough & np.isfinite(excess) & ~jump & ~moved
        take = suspects[settled]
        for f in out:
            out[f][take] = getattr(vk, f)[settled]
        # a verdict to fall back on: a jump, or a roughness, that explains the discrepancy
        explained = jump & (vk.status != st.MISMATCH) | unverifiable & rough
        has_jump[suspects] = explained
        for f in jumped:
            jumped[f][suspects[explained]] = getattr(vk, f)[explained]
        done = settled | stands
        has_jump[suspects[done]] = False
        seen_d, seen_delta, seen_res, seen_bend = plain.numeric, delta, plain.resolution, bent
        suspects, seen_d, seen_delta, seen_res, seen_bend, excess, agreed = (
            x[~done] for x in (suspects, seen_d, seen_delta, seen_res, seen_bend, excess, agreed)
        )
    for f in out:
        out[f][has_jump] = jumped[f][has_jump]
    return st.Verdict(**out, checked=verdict.checked)


def excess_of(verdict: st.Verdict, rows: np.ndarray) -> np.ndarray:
    """|g − D| of the elements rows, inf where it is not finite."""
    return np.where(np.isfinite(verdict.abs_error), verdict.abs_error, np.inf)[rows]


NOISE_ULPS = 64  # the noise probe's spacing, in units of the last place of θ_i (or of h/64)
_BINOMIAL6 = np.array([1.0, -6.0, 15.0, -20.0, 15.0, -6.0, 1.0])  # ‖·‖² = 924


def _measured_noise(engine, leaf, s: st.Stencil, where: np.ndarray, rows: np.ndarray, f0):
    """σ̂_f per element of rows (of the stencil s; leaf elements `where`), from the sixth
    difference of f at θ + k·δ, k = −3 … 3, δ = 64 units in the last place of θ_i (Moré and
    Wild's ECnoise): no function varies on that scale, so f's changes there are its rounding,
    which grows with fn's conditioning. At least the median over the elements (one
    difference is a small sample of the noise)."""
    theta = s.theta[rows].astype(np.float64)
    scale = np.maximum(np.abs(s.theta[rows]), (s.h[rows] / 64).astype(s.theta.dtype))
    delta = NOISE_ULPS * np.spacing(scale).astype(np.float64)
    ks = np.array([-3, -2, -1, 1, 2, 3])
    points = np.stack([(theta + k * delta).astype(s.theta.dtype) for k in ks])
    f = engine.evaluate(leaf, np.tile(where, len(ks)), points.reshape(-1)).reshape(len(ks), -1)
    table = np.insert(f, 3, f0, axis=0)
    with np.errstate(invalid="ignore"):
        d6 = np.abs(_BINOMIAL6 @ table) / np.sqrt(924.0)
        d6 = np.where(np.isfinite(d6), d6, 0.0)
    return np.maximum(d6, np.median(d6) / st.HALF_NORMAL_MEDIAN)


_FIELDS = ("analytic", "numeric", "abs_error", "tolerance", "resolution", "excess_noise",
           "status", "exact_zero", "truncation", "noise")  # fmt: skip


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
