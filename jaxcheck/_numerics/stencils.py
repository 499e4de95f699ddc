"""Step sizes and the error model that decides pass or fail per element.

A finite difference D (a method's weights over its points, `methods`) is compared with a
second estimate from more points, so that its truncation error is estimated from the data
(for central differences |D(h) − D₄(h)| = |D(2h) − D(h)| / 3); f(θ) and four more points give
the noise in f from the fourth difference. At a kink (ReLU, max, abs) the one-sided slopes D±
bracket the analytic value while D does not. See NUMERICS.md (shared) for the derivations;
every constant here is in CHANGELOG.md.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import ml_dtypes
import numpy as np

from . import methods
from .methods import Method

KAPPA = 4.0  # safety factor on the estimated finite-difference error
GRAD_FLOOR = 10.0  # × u(gradient dtype) × max|g| of the check: rounding in the tested gradient
_SQRT70 = float(np.sqrt(70.0))  # ‖(1, −4, 6, −4, 1)‖: std of the 4th difference of white noise
HALF_NORMAL_MEDIAN = 0.6745  # median of |N(0, 1)|
SCREEN_MARGIN = 64.0  # |g| above this many resolutions: more points cannot make it unverifiable
# An exact zero (g_i = 0, f bit-identical at the mirrored points) is verified when its
# resolution is at most this fraction of the gradients' scale (`verify_zeros`).
ZERO_RESOLUTION = 1e-2
# A zero to rounding (|g_i| within the gradient floor, GRAD_FLOOR·u_g·max|g|: a bias before a
# batch norm, g_i = 1e-17) whose D_i is as small, to a resolution of at most this fraction of
# the gradients' scale, is verified: both agree to that fraction, as a default float64 rtol.
NEGLIGIBLE = 1e-6


class Status(enum.IntEnum):
    """An element's status: the int8 codes of `Verdict.status`, and their names in reports."""

    OK = 0  # agrees within its tolerance
    UNVERIFIABLE = 1  # |g| and |D| both below the resolution: cannot be told from zero here
    MISMATCH = 2  # |g − D| beyond the tolerance
    NONFINITE = 3  # g or D is NaN or inf
    NONDETERMINISTIC = 4  # f (or the gradient) differs between two calls at one point
    KINK = 5  # a mismatch at a kink of f at θ (g between the one-sided slopes)

    @property
    def label(self) -> str:
        """The name reports use: "ok", "mismatch", ..."""
        return self.name.lower()


OK, UNVERIFIABLE, MISMATCH, NONFINITE, NONDETERMINISTIC, KINK = Status
STATUSES = tuple(s.label for s in Status)
FAILING = (MISMATCH, NONFINITE, NONDETERMINISTIC)


def unit_roundoff(dtype: Any) -> float:
    """Machine epsilon of a float dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
    return float(np.finfo(dtype).eps)


def smallest_normal(u: float) -> float:
    """The smallest normal number of the float dtype whose unit roundoff is u (float64's,
    float32's, bfloat16's or float16's; float64's for another u)."""
    for dtype in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16):
        if float(np.finfo(dtype).eps) == u:
            return float(np.finfo(dtype).tiny)
    return float(np.finfo(np.float64).tiny)


def default_rtol(grad_dtype: Any) -> float:
    """Relative tolerance for a gradient computed in `grad_dtype`.

    1e-6 for float64 gradients: a real backprop bug is rarely smaller, and a correct float64
    gradient agrees with a float64 finite difference to ~1e-9. Lower precisions get 64 u
    (7.6e-6 in float32), at most 1/16: a correct bfloat16 gradient is within ~2 u of the
    truth (median 0.8 u on a tanh MLP), and 64 u = 0.5 would pass a gradient twice too large.
    """
    return max(1e-6, min(64.0 * unit_roundoff(grad_dtype), 1 / 16))


def default_steps(
    theta: np.ndarray, typical: float, method: Method, u: float | None = None
) -> np.ndarray:
    """h_i = u^p · max(|θ_i|, typical), p the method's (1/3 for central differences), u the
    unit roundoff of θ's dtype or (u) of the coarser precision fn computes in.

    u^(1/3) is the central-difference optimum when |f'''| ~ |f|; higher orders take larger
    steps. `typical` (the leaf's RMS value, or the model's when the leaf is all zeros) keeps
    the step finite for parameters that are exactly zero, such as freshly initialized biases.
    """
    c = (unit_roundoff(theta.dtype) if u is None else u) ** method.power
    return c * np.maximum(np.abs(theta.astype(np.float64)), typical)


@dataclasses.dataclass(frozen=True)
class Stencil:
    """The perturbed values of one leaf's elements and the displacements actually applied."""

    theta: np.ndarray  # [n] the unperturbed values, in the working dtype
    offsets: tuple[float, ...]  # nominal multiples of h, ascending, without 0
    points: np.ndarray  # [m, n] θ + o·h rounded to the working dtype
    disp: np.ndarray  # [m, n] points − θ, exactly, in float64
    h: np.ndarray  # [n] the nominal step

    def take(self, idx: np.ndarray) -> Stencil:
        """The stencil of the elements idx only."""
        return Stencil(
            self.theta[idx], self.offsets, self.points[:, idx], self.disp[:, idx], self.h[idx]
        )

    def row(self, offset: float) -> int:
        return self.offsets.index(offset)

    def lost(self) -> np.ndarray:
        """Elements whose points collapse: θ + o·h rounds back to θ or onto another point."""
        collapsed = (self.disp == 0).any(axis=0) | (np.diff(self.disp, axis=0) <= 0).any(axis=0)
        return np.flatnonzero(collapsed)


def make_stencil(theta: np.ndarray, h: np.ndarray, method: Method) -> Stencil:
    """Perturbed values rounded to the working dtype, and the displacements they really are.

    Weighting by the applied displacements instead of the nominal ones removes an error as
    large as the whole error budget in float32 (NUMERICS.md).
    """
    t64 = theta.astype(np.float64)
    points = np.stack([(t64 + o * h).astype(theta.dtype) for o in method.offsets])
    disp = points.astype(np.float64) - t64
    return Stencil(theta, method.offsets, points, disp, np.asarray(h, np.float64))


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """What an element's tolerance is built from (`compare`, `screen`, `compare_chord`).

    u_f: the unit roundoff of f's values (its rounding, u_f·|f|). u_g: the gradient's (the
    assumed gradient floor g_floor·u_g·max|g|; 0: none). g_floor: how many units of the
    largest gradient that floor assumes (GRAD_FLOOR; fewer where the gradient's rounding is
    measured instead, `rounding`). rtol, atol: the user's (or the
    defaults; an array where each element or direction has its own). g_scale: the largest |g|
    of the whole check. noise_floor: a lower bound on f's noise σ̂_f (nondet_tol; a jump that
    f makes whatever the step). g_noise: the gradient's measured rounding as it projects onto a
    unit direction (directional mode's probes).
    """

    u_f: float
    u_g: float
    rtol: float
    atol: float | np.ndarray
    g_scale: float = 0.0
    noise_floor: float | np.ndarray = 0.0
    g_noise: float = 0.0
    g_floor: float = GRAD_FLOOR

    def replace(self, **changes: Any) -> Tolerance:
        return dataclasses.replace(self, **changes)

    def gradient_floor(self, g: np.ndarray) -> float:
        """g_floor·u_g·max(max|g|, g_scale): the rounding a computed gradient carries.

        g_scale: the largest |g| of the whole check. Backpropagation's rounding in one leaf
        scales with the gradients flowing through the model, not with that leaf's own result:
        a float32 bias before a batch norm has a true gradient of 0 and a computed one of ~u
        times the upstream gradients.
        """
        finite_g = np.abs(g[np.isfinite(g)])
        return self.g_floor * self.u_g * max(finite_g.max() if finite_g.size else 0.0, self.g_scale)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Per-element outcome for one leaf (all arrays flat, float64)."""

    analytic: np.ndarray  # g, the gradient under test
    numeric: np.ndarray  # D, the method's finite difference
    abs_error: np.ndarray  # |g − D|
    tolerance: np.ndarray  # τ_i
    resolution: np.ndarray  # the finite-difference error estimate (κ · (noise + trunc))
    excess_noise: np.ndarray  # σ̂_f / (u_f · max|f|): ≫ 1 when f is noisier than round-off
    status: np.ndarray  # int8 `Status` codes
    checked: np.ndarray | None = None  # where only some elements were checked: their mask
    # g_i == 0 and f bit-identical at the mirrored points of the estimate (`verify_zeros`)
    exact_zero: np.ndarray | None = None
    truncation: np.ndarray | None = None  # the truncation part of the resolution (κ·|D − D'|)
    noise: np.ndarray | None = None  # σ̂_f, the noise in one value of f
    at_kinks: np.ndarray | None = None  # where kinks="fail" made a kink a mismatch
    rounding: np.ndarray | None = None  # the gradient's own measured rounding, where measured

    def expand(self, idx: np.ndarray, n: int) -> Verdict:
        """This verdict of elements idx as one of all n elements: NaN and "ok" elsewhere."""
        out = {}
        for f in dataclasses.fields(self):
            x = getattr(self, f.name)
            if f.name == "checked" or x is None:
                continue
            full = np.zeros(n, x.dtype) if x.dtype != np.float64 else np.full(n, np.nan)
            full[idx] = x
            out[f.name] = full
        checked = np.zeros(n, bool)
        checked[idx] = True
        return Verdict(**out, checked=checked)


def estimate(stencil: Stencil, F: np.ndarray, f0, offsets) -> tuple[np.ndarray, np.ndarray]:
    """(D, Σ|w|) of the finite difference over `offsets` (0 is f(θ)); NaN where a point is
    missing. F: [m, n] values at the stencil's points, NaN where not evaluated."""
    n = stencil.h.shape[0]
    rows = [None if o == 0 else stencil.row(o) for o in offsets]
    disp = np.stack([np.zeros(n) if r is None else stencil.disp[r] for r in rows])
    vals = np.stack([np.broadcast_to(f0, (n,)) if r is None else F[r] for r in rows])
    w = methods.weights(disp, stencil.h)
    return np.sum(w * vals, axis=0), np.sum(np.abs(w), axis=0)


def screen(
    g,
    f0,
    F,
    stencil: Stencil,
    method: Method,
    tol: Tolerance,
) -> np.ndarray:
    """Elements whose verdict may depend on the points beyond `method.first`.

    From the first points alone, an element that agrees with g within the tolerance without
    its truncation and fourth-difference terms, and whose gradient is far above that
    tolerance's resolution, is "ok" whatever the other points turn out to be: those terms
    only widen τ, and would only call it "unverifiable" if the truncation error were a large
    fraction of the derivative itself. Every other element (a disagreement, a gradient near
    the resolution, a non-finite value) needs them.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d, wsum = estimate(stencil, F, f0, method.primary)
        first = [stencil.row(o) for o in method.first]
        fmax = np.maximum(np.max(np.abs(F[first]), axis=0), np.abs(f0))
        resolution = KAPPA * np.maximum(tol.u_f * fmax, tol.noise_floor) * wsum
        tolerance = tol.atol + resolution + tol.rtol * np.abs(g) + tol.gradient_floor(g)
        clear = (np.abs(g - d) <= tolerance) & (
            np.maximum(np.abs(g), np.abs(d)) > SCREEN_MARGIN * resolution
        )
    return ~(clear & np.isfinite(d) & np.isfinite(g))


def compare(
    g: np.ndarray,
    f0,
    F: np.ndarray,
    stencil: Stencil,
    method: Method,
    tol: Tolerance,
) -> Verdict:
    """Apply the error model to one leaf.

    τ_i = atol + κ·(σ̂_f·Σ|w_i| + |D_i − D'_i|) + rtol·|g_i| + 10·u_g·max|g|

    (max|g| over the leaf and g_scale, the whole check's: `Tolerance.gradient_floor`),

    with D the method's estimate, w its weights, D' the check estimate. σ̂_f, the noise in one
    value of f, is the largest of u_f·max|f|, this element's fourth difference
    |f(−2s) − 4f(−s) + 6f(0) − 4f(s) + f(2s)| / √70, and the leaf's median of it. An element
    whose |g_i| and |D_i| both lie below κ·(noise + truncation) is "unverifiable": finite
    differences cannot tell its gradient from zero here. Nothing scales with |g| alone, so a
    correct gradient does not fail when it becomes tiny near a minimum. A mismatch
    whose g_i lies within τ of the one-sided slopes [min(D±), max(D±)], where the slopes jump
    by the same amount at twice the step (a kink, not curvature), is a "kink".

    F: [m, n] f at the stencil's points, NaN where not evaluated (elements `screen` found
    clear): there the truncation and fourth-difference terms are taken as zero. f0: f(θ),
    one number or one per element. noise_floor: a lower bound on σ̂_f (per element or one),
    where f was seen to jump by that much whatever the step.
    """
    n = g.shape[0]
    f0 = np.broadcast_to(np.asarray(f0, np.float64), (n,))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d, wsum = estimate(stencil, F, f0, method.primary)
        extra = [stencil.row(o) for o in method.check if o != 0 and o not in method.primary]
        has_check = ~np.isnan(F[extra]).all(axis=0) if extra else np.ones(n, bool)
        d_check = np.full(n, np.nan)
        sub = np.flatnonzero(has_check)  # most elements skip the check points (`screen`)
        if sub.size:
            d_check[sub] = estimate(stencil.take(sub), F[:, sub], f0[sub], method.check)[0]
        fmax = np.maximum(np.fmax.reduce(np.abs(F), axis=0), np.abs(f0))
        r = [stencil.row(o) for o in method.noise_offsets]
        d4 = np.abs(F[r[0]] - 4 * F[r[1]] + 6 * f0 - 4 * F[r[2]] + F[r[3]]) / _SQRT70
        lo, hi, jumps = _kinks(f0, F, stencil, method.kink)
        has4 = ~np.isnan(d4) & ~jumps  # a kink's fourth difference is not noise
        finite_d4 = d4[has4 & np.isfinite(d4)]
        leaf_noise = np.median(finite_d4) / HALF_NORMAL_MEDIAN if finite_d4.size else 0.0
        noise = np.maximum(np.maximum(tol.u_f * fmax, np.where(has4, d4, 0.0)), leaf_noise)
        noise = np.maximum(noise, tol.noise_floor)
        # below the smallest normal number f is flushed to 0 (XLA on CPU and GPU): its
        # values there are rounded to that, not to u·|f| (x² at 1e-155 is 0). Not where g is
        # 0: an exact zero of f ≡ 0 (floor on [0, 1)) stays an exact zero, resolution 0
        noise = np.maximum(noise, np.where(g != 0, smallest_normal(tol.u_f), 0.0))
        trunc = np.abs(d_check - d)
        trunc = np.where(np.isfinite(trunc), trunc, np.inf)  # unknown: nothing can be resolved
        trunc = np.where(has_check, trunc, 0.0)
        resolution = KAPPA * (noise * wsum + trunc)
        tolerance = tol.atol + resolution + tol.rtol * np.abs(g) + tol.gradient_floor(g)
        abs_error = np.abs(g - d)

    with np.errstate(invalid="ignore"):
        kink = jumps & (g >= lo - tolerance) & (g <= hi + tolerance)
    status = classify(g, d, abs_error, tolerance, resolution, kink)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = noise / (tol.u_f * fmax)
    zero = _exact_zero(g, f0, F, stencil, method)
    return Verdict(
        g, d, abs_error, tolerance, resolution, excess, status, exact_zero=zero,
        truncation=KAPPA * trunc, noise=noise,
    )  # fmt: skip


def _exact_zero(g, f0, F, stencil: Stencil, method: Method) -> np.ndarray:
    """g_i == 0 where f is bit-identical at each point of the estimate and its mirror image
    (f(θ) for a one-sided method): D_i is then exactly zero too, not a rounded small number."""
    same = g == 0
    for o in method.primary:
        if o != 0:
            mirror = F[stencil.row(-o)] if -o in method.primary else f0
            same = same & (F[stencil.row(o)] == mirror)
    return same


def verify_zeros(verdicts, natural: float = 0.0, u_g: float = 0.0) -> None:
    """Exact zeros are agreement, not "unverifiable": a dead ReLU unit or a statistic the loss
    does not use has g_i = 0 and f(θ + h e_i) == f(θ − h e_i) bit for bit. So are zeros to
    rounding: |g_i| within the gradient floor (GRAD_FLOOR·u_g·max|g|, u_g the gradients'
    unit roundoff, or the gradient's measured rounding where the verdict has it, itself at
    most ZERO_RESOLUTION × the gradients' scale) and D_i as small, to a resolution below
    NEGLIGIBLE × the gradients' scale. A
    small gradient above the floor that D cannot resolve stays unverifiable.

    They are promoted to "ok" where their resolution is small against the scale of the
    gradients (ZERO_RESOLUTION × the largest |g| or |D| of the whole check): where it is
    not, a step that rounds away in f (bfloat16) would make an all-zero wrong gradient look
    verified. natural: the scale to use where every g and D of the check is exactly zero
    (a piecewise-constant loss): |f(θ)| over the parameters' scale. Mutates the verdicts'
    status.
    """
    verdicts = [v for v in verdicts if v is not None and v.exact_zero is not None]

    def scale(v: Verdict) -> float:
        with np.errstate(invalid="ignore"):
            m = np.fmax(np.abs(v.analytic), np.abs(v.numeric))
        m = m[np.isfinite(m)]
        return float(m.max()) if m.size else 0.0

    reference = max(map(scale, verdicts), default=0.0) or natural
    finite = [np.abs(v.analytic[np.isfinite(v.analytic)]) for v in verdicts]
    floor = GRAD_FLOOR * u_g * max((float(a.max()) for a in finite if a.size), default=0.0)
    for v in verdicts:
        own = floor if v.rounding is None else np.fmax(floor, v.rounding)
        with np.errstate(invalid="ignore"):
            fine = v.resolution <= ZERO_RESOLUTION * reference
            rounding = (np.abs(v.analytic) <= own) & (v.resolution <= NEGLIGIBLE * reference)
            # D as small, and a rounding small against the gradients' scale: in bfloat16 near
            # a minimum the gradient's rounding can exceed the gradients themselves, and
            # "zero to rounding" would then verify anything
            rounding &= np.abs(v.numeric) <= own + v.resolution
            rounding &= own <= ZERO_RESOLUTION * reference
        verified = (v.exact_zero & fine) | rounding
        v.status[(v.status == UNVERIFIABLE) & verified] = OK


def classify(
    g: np.ndarray,
    d: np.ndarray,
    abs_error: np.ndarray,
    tolerance: np.ndarray,
    resolution: np.ndarray,
    kink: np.ndarray | None = None,
) -> np.ndarray:
    """Status codes: "unverifiable" where |g| and |D| are both within the resolution,
    "mismatch" beyond the tolerance ("kink" where `kink` says so), "nonfinite" first of all."""
    status = np.full(g.shape, OK, dtype=np.int8)
    status[np.maximum(np.abs(g), np.abs(d)) <= resolution] = UNVERIFIABLE
    status[abs_error > tolerance] = MISMATCH
    if kink is not None:
        status[kink & (status == MISMATCH)] = KINK
    status[~np.isfinite(g) | ~np.isfinite(d)] = NONFINITE
    return status


def compare_chord(g, shift, f0, fp1, fm1, fp2, fm2, h: float, tol: Tolerance) -> Verdict:
    """Central differences along chords through θ at ±h and ±2h (random directions, H·v).

    The ±2h chord differs from the ±h one by rounding: `shift`, the change of the analytic
    derivative between the two chords, is taken out of its values so that the truncation
    estimate compares derivatives along the same direction. g: the analytic derivative along
    the ±h chord.
    """
    n = len(g)
    h1, h2 = np.full(n, h, np.float64), np.full(n, 2 * h, np.float64)
    disp = np.stack([-h2, -h1, h1, h2])
    method = methods.get("central")
    stencil = Stencil(np.zeros(n), method.offsets, disp, disp, h1)
    F = np.stack([fm2 + 2 * h * shift, fm1, fp1, fp2 - 2 * h * shift])  # at −2h, −h, h, 2h
    return compare(g, f0, F, stencil, method, tol)


def _kinks(f0, F, stencil: Stencil, o: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, jumps): the one-sided slopes' interval, and where f has a kink at θ.

    D±(o) = (f(θ ± o·h) − f(θ)) / (±o·h). For a smooth f the jump J(o) = D+(o) − D−(o) ≈ o·h·f''
    doubles with the step; at a kink at θ it is the jump of the derivative, the same at 2o. A
    smooth function with a wrong gradient inside the interval is therefore not called a kink.
    """
    n = F.shape[1]
    if o is None:
        return np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)

    def slopes(k: int) -> tuple[np.ndarray, np.ndarray]:
        plus, minus = stencil.row(k * o), stencil.row(-k * o)
        return (F[plus] - f0) / stencil.disp[plus], (f0 - F[minus]) / -stencil.disp[minus]

    with np.errstate(invalid="ignore", divide="ignore"):
        (d_plus, d_minus), (wide_plus, wide_minus) = slopes(1), slopes(2)
        j1, j2 = d_plus - d_minus, wide_plus - wide_minus
        jumps = (np.abs(j2 - j1) <= 0.5 * np.abs(j1)) & (np.abs(j1) > 0)
        return np.minimum(d_plus, d_minus), np.maximum(d_plus, d_minus), jumps
