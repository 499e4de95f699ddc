"""What kind of bug a failing leaf has: a one-line diagnosis fitted from (g, D, θ).

A wrong gradient is rarely wrong at random. The usual bugs leave a shape in g − D that a few
least-squares fits recognise, each stated with its fitted numbers:

- zero where D is not: a path that never reaches the parameter (a dropped term, a detached
  value, a stop_gradient);
- g ≈ c·D: a wrong constant (4/m for 1/m, a missing 1/2); c ≈ −1: the sign;
- g ≈ Dᵀ: a transposed matrix product (square leaves, where the shapes cannot tell);
- g − D ≈ c: a constant added to the gradient;
- g − D ≈ λ·θ: a weight-decay term in the loss and not in the gradient (or the reverse);
- the failures confined to one slice (one row, one column, one index of an axis): an
  indexing or broadcasting bug;
- failures only where fn has a kink (kinks="fail");
- small relative errors of either sign over most of the leaf: an approximate gradient.

Each hypothesis must explain the leaf, not just fit it: a fit is claimed only where it leaves
a small residual (FIT) and the simpler "g = D" does not, so random errors get no diagnosis
(a test plants them). Where more than one holds (at θ = ones a constant and λ·θ are the
same; where D is nearly constant, so are a factor and a constant), the diagnosis names each
and says that this point cannot tell them apart. A leaf with fewer
resolved elements than a fit needs (a scalar) states its ratio g/D where every element has
the same one, as a measurement rather than a hypothesis.
"""

from __future__ import annotations

import numpy as np

from . import stencils as st

FIT = 0.05  # a fit explains the leaf when its residual is under this fraction of ‖g − D‖
MIN_FIT = 3  # resolved elements a fit needs (a scalar fits any factor, a pair often one)
SLICE_MIN = 3  # failures confined to a slice: at least this many ...
SLICE_SHARE = 0.5  # ... covering at least this share of the slice's resolved elements
APPROXIMATE = 1e-2  # mismatches under this relative size, spread over a leaf: approximate


def diagnose(v: st.Verdict, shape: tuple[int, ...], theta: np.ndarray | None = None) -> str:
    """The diagnosis of a failing leaf's verdict, or "" where no hypothesis holds."""
    checked = np.ones(v.status.shape, bool) if v.checked is None else v.checked
    failing = checked & np.isin(v.status, st.FAILING)
    if not failing.any():
        return ""
    resolved = checked & np.isin(v.status, (st.OK, st.MISMATCH, st.KINK)) & np.isfinite(v.numeric)
    a, d = v.analytic, v.numeric
    for hypothesis in (_zero, _few):
        found = hypothesis(a, d, resolved, failing, shape, theta)
        if found:
            return found
    fits = [h(a, d, resolved, failing, shape, theta) for h in (_factor, _transposed, _offset,
                                                              _theta_term)]  # fmt: skip
    fits = [f for f in fits if f]
    if len(fits) == 1:
        return fits[0]
    if fits:  # the fitted numbers first (a GradMonitor warning shows up to the first colon)
        shorts = "; or ".join(f.split(":")[0] for f in fits)
        return (
            f"{shorts}: more than one pattern fits, and this point cannot tell them apart "
            "(check at one where θ and the gradient vary across the leaf): " + "; or ".join(fits)
        )
    kinks = getattr(v, "at_kinks", None)
    if kinks is not None and kinks[failing].all():
        return (
            f"fails only where fn has a kink ({int(failing.sum())} elements where the one-sided "
            "slopes differ: ReLU at 0, a max with ties, abs at 0); kinks='report' accepts a "
            "gradient between them"
        )
    return _slice(failing, resolved, shape) or _spread(a, d, failing, resolved)


def _zero(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    wrong = failing & np.isfinite(d)
    if not wrong.any() or np.any(a[wrong] != 0):
        return ""
    whole = bool(np.all(a[resolved] == 0)) and resolved.sum() == wrong.sum()
    where = "everywhere" if whole else f"at {int(wrong.sum())} elements"
    return (
        f"the gradient is 0 {where} where the numeric one is not (|D| up to "
        f"{float(np.max(np.abs(d[wrong]))):.3g}): a path that never reaches this parameter "
        "(a dropped term, a detached value or stop_gradient, a branch not taken)"
    )


def _explains(residual: float, gap: float) -> bool:
    return gap > 0 and residual <= FIT * gap


def _factor(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    x, y = d[resolved], a[resolved]
    dd = float(x @ x)
    if dd == 0 or resolved.sum() < MIN_FIT:
        return ""
    c = float(x @ y) / dd
    gap = float(np.linalg.norm(y - x))
    if not _explains(float(np.linalg.norm(y - c * x)), gap):
        return ""
    if abs(c + 1) <= FIT:
        return "analytic ≈ −numeric: the sign is flipped (a − for a +, or −∇ returned as ∇)"
    such = "" if _fraction(c) == "1/m" else f"such as {_fraction(c)} for 1/m: "
    return (
        f"analytic ≈ {c:.4g} × numeric: a wrong constant factor ({such}a normalization, a 1/2 "
        "of a square, a mean against a sum)"
    )


def _few(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    """Fewer resolved elements than a fit needs, all failing with one ratio g/D: that ratio."""
    n = int(resolved.sum())
    if not 0 < n < MIN_FIT or not (failing[resolved]).all() or np.any(d[resolved] == 0):
        return ""
    ratios = a[resolved] / d[resolved]
    c = float(np.mean(ratios))
    if np.max(np.abs(ratios - c)) > FIT * abs(c):
        return ""
    what = "its element" if n == 1 else f"its {n} elements"
    if abs(c + 1) <= FIT:
        return f"analytic = −numeric at {what}: the sign is flipped"
    return (
        f"analytic = {c:.3g} × numeric at {what} (too few elements to tell a constant factor "
        "from another error)"
    )


def _offset(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    """g − D ≈ c, one constant."""
    if resolved.sum() < MIN_FIT:
        return ""
    r = (a - d)[resolved]
    c = float(np.mean(r))
    if not _explains(float(np.linalg.norm(r - c)), float(np.linalg.norm(r))):
        return ""
    return f"analytic − numeric ≈ {c:.3g} at every element: a constant added to the gradient"


def _fraction(c: float) -> str:
    """c as p/(q·m) where it is near a small ratio p/q, for the message (c/m otherwise)."""
    sign, x = ("−" if c < 0 else ""), abs(c)
    for q in range(1, 17):
        for p in range(1, 65):
            if abs(x - p / q) <= 0.01 * x:
                if q == 1:
                    return f"{sign}{p}/m"
                return f"{sign}{p}/({q}m)"
    return f"{c:.3g}/m"


def _transposed(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 2 or not resolved.all():
        return ""
    g, D = a.reshape(shape), d.reshape(shape)
    gap = float(np.linalg.norm(g - D))
    if not _explains(float(np.linalg.norm(g - np.swapaxes(D, -1, -2))), gap):
        return ""
    return (
        "analytic ≈ numeric transposed: a matrix product with swapped operands (dW = δᵀ·a "
        "where it should be aᵀ·δ)"
    )


def _theta_term(
    a: np.ndarray,
    d: np.ndarray,
    resolved: np.ndarray,
    failing: np.ndarray,
    shape: tuple,
    theta: np.ndarray | None,
) -> str:
    if theta is None:
        return ""
    t = np.asarray(theta, np.float64).reshape(-1)[resolved]
    r = (a - d)[resolved]
    tt = float(t @ t)
    if tt == 0 or resolved.sum() < MIN_FIT:
        return ""
    lam = float(t @ r) / tt
    if not _explains(float(np.linalg.norm(r - lam * t)), float(np.linalg.norm(r))):
        return ""
    if lam < 0:
        return (
            f"analytic − numeric ≈ {lam:.3g}·θ: a weight-decay term {-lam / 2:.3g}·‖θ‖² in the "
            "loss is missing from the gradient"
        )
    return (
        f"analytic − numeric ≈ {lam:.3g}·θ: the gradient has a term {lam:.3g}·θ (weight decay, "
        f"{lam / 2:.3g}·‖θ‖²) that the loss does not"
    )


def _slice(failing: np.ndarray, resolved: np.ndarray, shape: tuple) -> str:
    n = int(failing.sum())
    if n < SLICE_MIN or len(shape) < 2:
        return ""
    where = np.array(np.unravel_index(np.flatnonzero(failing), shape))  # [ndim, n]
    best = None
    for axis in range(len(shape)):
        values = np.unique(where[axis])
        if len(values) != 1 or shape[axis] < 2:
            continue
        k = int(values[0])
        in_slice = np.zeros(shape, bool)
        in_slice[(slice(None),) * axis + (k,)] = True
        covered = n / max(int((in_slice.reshape(-1) & resolved).sum()), 1)
        if covered >= SLICE_SHARE and (best is None or covered > best[2]):
            best = (axis, k, covered)
    if best is None:
        return ""
    axis, k, _ = best
    name = {0: f"row {k}", 1: f"column {k}"} if len(shape) == 2 else {}
    if axis == len(shape) - 1 and len(shape) > 2:
        name[axis] = f"index {k} of the last axis"
    slab = name.get(axis, f"index {k} along axis {axis}")
    return (
        f"only {slab} is wrong ({n} failing elements, all there): an indexing or "
        "broadcasting bug (an off-by-one, a slice or a broadcast over the wrong axis)"
    )


def _spread(a: np.ndarray, d: np.ndarray, failing: np.ndarray, resolved: np.ndarray) -> str:
    wrong = failing & np.isfinite(d)
    if wrong.sum() < 2 or wrong.sum() < 0.5 * resolved.sum():
        return ""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = a[wrong] / d[wrong] - 1
    rel = rel[np.isfinite(rel)]
    if not rel.size:
        return ""
    size = float(np.median(np.abs(rel)))
    if size > APPROXIMATE or abs(float(np.mean(rel))) > 2 * float(np.std(rel)):
        return ""
    return (
        f"a small error spread over the leaf ({int(wrong.sum())} of {int(resolved.sum())} "
        f"resolved elements off by about {size:.1e} relative, at most "
        f"{float(np.max(np.abs(rel))):.1e}, of either sign): typical of a gradient that is "
        "approximate by design (an adaptive ODE solver's gradient holding its step-size "
        "controller fixed, an iterative solve stopped at its tolerance, a truncated adjoint), "
        "not of a wrong rule; if that is expected, pass rtol= about that size"
    )
