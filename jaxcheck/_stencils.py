"""Step sizes and the error model that decides pass or fail per element.

Central differences D(h) = (f(θ + h e_i) − f(θ − h e_i)) / 2h, evaluated also at 2h so that
the truncation error of D(h) can be estimated from the data (|D(2h) − D(h)| / 3), and with
f(θ) so that the noise in f can be estimated from the fourth difference of the five values.
See NUMERICS.md (shared) for the derivations; every constant here is in CHANGELOG.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KAPPA = 4.0  # safety factor on the estimated finite-difference error
GRAD_FLOOR = 10.0  # × u(gradient dtype) × max|g| of the leaf: rounding in the tested gradient
_SQRT70 = float(np.sqrt(70.0))  # ‖(1, −4, 6, −4, 1)‖: std of the 4th difference of white noise
_HALF_NORMAL_MEDIAN = 0.6745  # median of |N(0, 1)|
SCREEN_MARGIN = 64.0  # |g| above this many resolutions: ±2h cannot make an element unverifiable

STATUSES = ("ok", "unverifiable", "mismatch", "nonfinite", "nondeterministic")
OK, UNVERIFIABLE, MISMATCH, NONFINITE, NONDETERMINISTIC = range(5)
FAILING = (MISMATCH, NONFINITE, NONDETERMINISTIC)


def unit_roundoff(dtype) -> float:
    """Machine epsilon of a float dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
    return float(np.finfo(dtype).eps)


def default_rtol(grad_dtype) -> float:
    """Relative tolerance for a gradient computed in `grad_dtype`.

    1e-6 for float64 gradients: a real backprop bug is rarely smaller, and a correct float64
    gradient agrees with a float64 finite difference to ~1e-9. Lower precisions get 64 u.
    """
    return max(1e-6, 64.0 * unit_roundoff(grad_dtype))


def default_steps(theta: np.ndarray, typical: float) -> np.ndarray:
    """h_i = u^(1/3) · max(|θ_i|, typical): the central-difference optimum for |f'''| ~ |f|.

    `typical` (the leaf's RMS value, or the model's when the leaf is all zeros) keeps the step
    finite for parameters that are exactly zero, such as freshly initialized biases.
    """
    c = unit_roundoff(theta.dtype) ** (1.0 / 3.0)
    return c * np.maximum(np.abs(theta.astype(np.float64)), typical)


@dataclasses.dataclass(frozen=True)
class Stencil:
    """The perturbed values of one leaf's elements and the steps actually applied."""

    theta: np.ndarray  # the unperturbed values, flat, in the working dtype
    plus1: np.ndarray  # θ + h, in the working dtype
    minus1: np.ndarray  # θ − h
    plus2: np.ndarray  # θ + 2h
    minus2: np.ndarray  # θ − 2h
    h1: np.ndarray  # ((θ + h) − (θ − h)) / 2, exactly, in float64
    h2: np.ndarray

    def take(self, idx: np.ndarray) -> Stencil:
        """The stencil of the elements idx only."""
        return Stencil(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))


def make_stencil(theta: np.ndarray, h: np.ndarray) -> Stencil:
    """Perturbed values rounded to the working dtype, and the steps they really represent.

    Dividing by the applied step instead of the nominal one removes an error as large as the
    whole error budget in float32 (NUMERICS.md).
    """
    dtype = theta.dtype
    t64 = theta.astype(np.float64)
    plus1, minus1 = (t64 + h).astype(dtype), (t64 - h).astype(dtype)
    plus2, minus2 = (t64 + 2 * h).astype(dtype), (t64 - 2 * h).astype(dtype)
    h1 = (plus1.astype(np.float64) - minus1.astype(np.float64)) / 2
    h2 = (plus2.astype(np.float64) - minus2.astype(np.float64)) / 2
    return Stencil(theta, plus1, minus1, plus2, minus2, h1, h2)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Per-element outcome for one leaf (all arrays flat, float64)."""

    analytic: np.ndarray  # g, the gradient under test
    numeric: np.ndarray  # D(h)
    abs_error: np.ndarray  # |g − D(h)|
    tolerance: np.ndarray  # τ_i
    resolution: np.ndarray  # the finite-difference error bound alone (κ · (noise + trunc))
    excess_noise: np.ndarray  # σ̂_f / (u_f · max|f|): ≫ 1 when f is noisier than round-off
    status: np.ndarray  # int codes into STATUSES
    checked: np.ndarray | None = None  # where only some elements were checked: their mask

    def expand(self, idx: np.ndarray, n: int) -> Verdict:
        """This verdict of elements idx as one of all n elements: NaN and "ok" elsewhere."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "checked":
                continue
            x = getattr(self, f.name)
            full = np.zeros(n, x.dtype) if f.name == "status" else np.full(n, np.nan)
            full[idx] = x
            out[f.name] = full
        checked = np.zeros(n, bool)
        checked[idx] = True
        return Verdict(**out, checked=checked)


def screen(g, f0, fp1, fm1, stencil: Stencil, *, u_f, u_g, rtol, atol) -> np.ndarray:
    """Elements whose verdict may depend on the evaluations at ±2h.

    From f(θ ± h) alone, an element that agrees with g within the tolerance without its
    truncation and fourth-difference terms, and whose gradient is far above that tolerance's
    resolution, is "ok" whatever f(θ ± 2h) turn out to be: those terms only widen τ, and would
    only call it "unverifiable" if the truncation error were a large fraction of the derivative
    itself. Every other element (a disagreement, a gradient near the resolution, a non-finite
    value) needs the ±2h values.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d1 = (fp1 - fm1) / (2 * stencil.h1)
        fmax = np.maximum(np.maximum(np.abs(fp1), np.abs(fm1)), abs(f0))
        resolution = KAPPA * u_f * fmax / stencil.h1
        tolerance = atol + resolution + rtol * np.abs(g) + _g_floor(g, u_g)
        clear = (np.abs(g - d1) <= tolerance) & (
            np.maximum(np.abs(g), np.abs(d1)) > SCREEN_MARGIN * resolution
        )
    return ~(clear & np.isfinite(d1) & np.isfinite(g))


def _g_floor(g, u_g) -> float:
    finite_g = np.abs(g[np.isfinite(g)])
    return GRAD_FLOOR * u_g * (finite_g.max() if finite_g.size else 0.0)


def judge(
    g: np.ndarray,
    f0: float,
    fp1: np.ndarray,
    fm1: np.ndarray,
    fp2: np.ndarray,
    fm2: np.ndarray,
    stencil: Stencil,
    *,
    u_f: float,
    u_g: float,
    rtol: float,
    atol: float,
) -> Verdict:
    """Apply the error model to one leaf.

    τ_i = atol + κ·(σ̂_f / h_i + |D_i(2h) − D_i(h)| / 3) + rtol·|g_i| + 10·u_g·max|g|

    σ̂_f, the noise in one value of f, is the largest of u_f·max|f|, this element's fourth
    difference |f(−2h) − 4f(−h) + 6f(0) − 4f(h) + f(2h)| / √70, and the leaf's median of it.
    An element whose |g_i| and |D_i| both lie below κ·(noise + truncation) is "unverifiable":
    finite differences cannot tell its gradient from zero here. Nothing scales with |g| alone,
    so a correct gradient does not fail when it becomes tiny near a minimum (seed 002).

    fp2 and fm2 are NaN where f(θ ± 2h) was not evaluated (elements `screen` found clear):
    there the truncation and fourth-difference terms are taken as zero.
    """
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        has2 = ~(np.isnan(fp2) & np.isnan(fm2))
        d1 = (fp1 - fm1) / (2 * stencil.h1)
        d2 = (fp2 - fm2) / (2 * stencil.h2)
        fmax = np.fmax.reduce([np.abs(fp1), np.abs(fm1), np.abs(fp2), np.abs(fm2)])
        fmax = np.maximum(fmax, abs(f0))
        d4 = np.abs(fm2 - 4 * fm1 + 6 * f0 - 4 * fp1 + fp2) / _SQRT70
        finite_d4 = d4[has2 & np.isfinite(d4)]
        leaf_noise = np.median(finite_d4) / _HALF_NORMAL_MEDIAN if finite_d4.size else 0.0
        d4 = np.where(has2, d4, 0.0)
        noise = np.maximum(np.maximum(u_f * fmax, d4), leaf_noise)
        trunc = np.abs(d2 - d1) / 3
        trunc = np.where(np.isfinite(trunc), trunc, np.inf)  # unknown: nothing can be resolved
        trunc = np.where(has2, trunc, 0.0)
        resolution = KAPPA * (noise / stencil.h1 + trunc)
        tolerance = atol + resolution + rtol * np.abs(g) + _g_floor(g, u_g)
        abs_error = np.abs(g - d1)

    status = np.full(g.shape, OK, dtype=np.int8)
    small = np.maximum(np.abs(g), np.abs(d1)) <= resolution
    status[small] = UNVERIFIABLE
    status[abs_error > tolerance] = MISMATCH
    status[~np.isfinite(g) | ~np.isfinite(d1)] = NONFINITE
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = noise / (u_f * fmax)
    return Verdict(g, d1, abs_error, tolerance, resolution, excess, status)
