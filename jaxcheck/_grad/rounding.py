"""The gradient under test's own rounding, measured rather than assumed.

A gradient is a sum of per-example (and per-path) terms. Near a minimum they cancel: |g| falls
by orders of magnitude while the rounding of the computed gradient stays that of the terms (a
float32 tanh MLP trained with Adam: max|g32 − g64| ≈ 4e-8 at every step while max|g| falls
from 1.6 to 5e-3). A floor proportional to u·max|g| therefore fails correct gradients as
training converges. The rounding is measured instead, the way ECnoise (Moré and Wild)
measures the noise of f:

1. Noise. The gradient under test is evaluated, exactly as it was computed, at
   θ_k = θ + k·r·s⊙δ for k = 0..POINTS (r = ULPS units of its rounding, s_i the element's
   scale max(|θ_i|, the leaf's RMS), δ random signs). Over so short a stretch the smooth part
   of g is a low-degree polynomial in k; the fourth differences of the values leave its
   rounding: σ_i = RMS(Δ⁴g_i) / √70, at least the leaf's median σ.
2. Backward error. Rounding is accepted only up to what a backward-stable computation can
   make: C·u·(|g_i| + |(H·(θ⊙δ))_i|) + u·max|g|, the second term (what rounding θ itself
   changes) an RMS over a few random sign vectors δ, from the gradient in the working
   precision at θ and θ + t·θ⊙δ; the last one unit of the whole check's largest gradient
   (backpropagation's rounding in one leaf scales with the gradients flowing through the
   model: a float32 bias before a batch norm has a true gradient of 0 and a computed one of
   ~u times the upstream gradients). A formula that cancels catastrophically (JAX's float32
   `sinc` gradient near 0, 2% off at 3e-4) has noise far above it and is not excused.

Before it is measured, an element's tolerance holds ASSUMED·u·max|g| for the gradient's
rounding, one unit of the check's largest gradient (10·u·max|g| would be 8% of it in
bfloat16, and hid a 50% error in an element a third that size); the measured floor is added
where an element would fail.
Where the gradient did not move at all over the points (a grad_fn that returns a stored
array, a loss linear in the element) nothing was measured, and κ_g·u·max|g| is assumed.

An element that disagrees with the finite difference by no more than κ_g·min(σ_i, cap_i)
beyond its tolerance is right to its own rounding. The re-evaluation at k = 0 is also the
reentrancy test (torch's "Backward is not reentrant"): a gradient that changes between two
calls at the same point by more than rounding and `nondet_tol` is nondeterministic.

Measured only where needed: the re-evaluation always (one call of the gradient), the rest
when some element would otherwise fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords, Leaf
from .._numerics import precision as _precision
from .._numerics import stencils as st

POINTS = 16  # evaluations beyond θ for the difference table (4th differences: POINTS − 3 of them)
ULPS = 256  # spacing of the points, in units of the gradient's rounding (at most 2^-12)
KAPPA_G = 10.0  # safety factor on the measured rounding
BACKWARD = 64.0  # C: what a backward-stable computation can make, in u·(|g| + |H·θ|)
SLOPE_STEP = 1e-3  # t: the relative step of the working-precision slope H·(θ⊙δ)
SLOPE_DIRECTIONS = 4  # random sign vectors δ the slope is an RMS over
JITTER = 8.0  # re-evaluations within this many u·|g| are rounding, not nondeterminism
ASSUMED = 1.0  # before it is measured, the gradient's rounding is taken as this many u·max|g|


@dataclasses.dataclass
class Rounding:
    """How the gradient under test was computed, to measure its rounding lazily."""

    at: Callable[[list, bool], dict[str, np.ndarray]]  # (every leaf, as tested) -> gradients
    coords: Coords
    tested: list  # every leaf, as the gradient under test was computed (own dtype or working)
    working: list  # every leaf in the working precision
    grads: dict[str, np.ndarray]  # the gradient under test at θ, flat, float64
    scale: float  # the largest finite |g| of the whole check
    typical: dict[str, float]
    u: float  # the unit roundoff of the gradient: its dtype's or fn's coarser computed one
    nondet_tol: float
    seed: int
    _floor: dict[str, np.ndarray] | None = None
    unstable: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    jitter: float = 0.0  # the largest re-evaluation difference accepted as rounding

    def reentrant(self) -> None:
        """Evaluate the gradient again at θ: elements that move beyond rounding and
        nondet_tol (and beyond its measured rounding) go to `unstable`."""
        again = self._flat(self.at(self.tested, True))
        for path, g in self.grads.items():
            with np.errstate(invalid="ignore", over="ignore"):  # an inf gradient: inf − inf
                diff = np.abs(again[path] - g)
                allowed = np.maximum(JITTER * self.u * np.maximum(np.abs(g), np.abs(again[path])),
                                     self.nondet_tol)  # fmt: skip
                moved = diff > allowed
            if moved.any():
                moved &= diff > self.floor(path)
            if moved.any():
                self.unstable[path] = moved
            within = diff[np.isfinite(diff) & ~moved]
            self.jitter = max(self.jitter, float(within.max(initial=0.0)))

    def floor(self, path: str) -> np.ndarray:
        """κ_g·min(σ_i, cap_i) for the leaf's elements (flat): the gradient's rounding."""
        if self._floor is None:
            self._floor = self._measure()
        return self._floor[path]

    def _measure(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 7])
        checked = self.coords.checked
        scale = {leaf.path: self._scale(leaf) for leaf in checked}
        signs = {leaf.path: rng.choice([-1.0, 1.0], leaf.size) for leaf in checked}
        r = max(self.u, min(ULPS * self.u, 2.0**-12))
        step = {}
        for leaf in checked:
            theta = np.asarray(self.tested[leaf.position])
            step[leaf.path] = signs[leaf.path] * _representable(
                theta.astype(np.float64).reshape(-1), r * scale[leaf.path], theta.dtype
            )
        table = [self.grads]
        for k in range(1, POINTS + 1):
            moved = self._shifted(self.tested, {p: k * step[p] for p in step})
            table.append(self._flat(self.at(moved, True)))
        slope = self._slope(rng)
        out = {}
        for leaf in checked:
            G = np.stack([t[leaf.path] for t in table])
            with np.errstate(invalid="ignore", over="ignore"):
                sigma = np.sqrt(np.mean(np.diff(G, 4, axis=0) ** 2, axis=0) / 70.0)
                sigma = _at_least_median(sigma)
                cap = BACKWARD * self.u * (np.abs(self.grads[leaf.path]) + slope[leaf.path])
                cap = cap + self.u * self.scale
                floor = KAPPA_G * np.minimum(sigma, cap)
                # A gradient that did not move at all is not measured by it (a grad_fn that
                # returns a stored array, a loss linear in the element): assumed instead.
                floor[(G == G[0]).all(axis=0)] = KAPPA_G * self.u * self.scale
                out[leaf.path] = np.nan_to_num(floor, nan=0.0)
        return out

    def _slope(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """|H·(θ⊙δ)| per element, as an RMS over SLOPE_DIRECTIONS random sign vectors δ (one
        alone can cancel), from the gradient in the working precision at θ and θ + t·θ⊙δ;
        unbounded where that gradient cannot be had."""
        t, paths = SLOPE_STEP, [leaf.path for leaf in self.coords.checked]
        try:
            base = self._flat(self.at(self.working, False))
            total = {p: np.zeros_like(base[p]) for p in paths}
            for _ in range(SLOPE_DIRECTIONS):
                shift = {}
                for leaf in self.coords.checked:
                    theta = np.asarray(self.working[leaf.position], np.float64).reshape(-1)
                    shift[leaf.path] = t * np.abs(theta) * rng.choice([-1.0, 1.0], leaf.size)
                plus = self._flat(self.at(self._shifted(self.working, shift), False))
                for p in paths:
                    total[p] += ((plus[p] - base[p]) / t) ** 2
        except Exception:  # noqa: BLE001 - without it the measured noise is not capped
            return {p: np.full(np.shape(self.grads[p]), np.inf) for p in paths}
        return {p: np.sqrt(total[p] / SLOPE_DIRECTIONS) for p in paths}

    def _scale(self, leaf: Leaf) -> np.ndarray:
        theta = np.asarray(self.working[leaf.position], np.float64).reshape(-1)
        return np.maximum(np.abs(theta), self.typical[leaf.path])

    def _shifted(self, values: list, shift: dict[str, np.ndarray]) -> list:
        out = list(values)
        for leaf in self.coords.checked:
            given = values[leaf.position]
            x = np.asarray(given)
            moved = (x.astype(np.float64).reshape(-1) + shift[leaf.path]).astype(x.dtype)
            moved = moved.reshape(x.shape)
            # a JAX array stays one (eqx.filter_grad differentiates JAX arrays only)
            out[leaf.position] = jnp.asarray(moved) if isinstance(given, jax.Array) else moved
        return out

    def _flat(self, grads: dict) -> dict[str, np.ndarray]:
        return {
            leaf.path: np.asarray(grads[leaf.path], np.float64).reshape(-1)
            for leaf in self.coords.checked
        }


def _representable(theta: np.ndarray, step: np.ndarray, dtype) -> np.ndarray:
    """|step| made a whole number of units in the last place of the largest value the points
    reach, so that θ + k·step is exact in dtype for k = 0..POINTS: equally spaced points.
    Rounded points are not (in bfloat16 a point is off by up to half a unit of θ_i), and the
    fourth differences would see g's slope times that, which the gradient at θ never has."""
    end = np.abs(theta) + POINTS * step
    tiny = float(np.finfo(dtype).tiny) if np.dtype(dtype).kind == "f" else 0.0
    if not tiny:  # not a float (complex pairs are not measured): left as it is
        return step
    ulp = _precision.eps(dtype) * np.exp2(np.floor(np.log2(np.maximum(end, tiny))))
    return np.maximum(np.round(step / ulp), 1.0) * ulp


def _at_least_median(x: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    return np.fmax(x, np.median(finite)) if finite.size else x


def widen(verdict: st.Verdict, floor: np.ndarray) -> tuple[st.Verdict, int, int]:
    """The verdict with the gradient's measured rounding added to every tolerance; mismatches
    it explains become "ok", or "unverifiable" where the rounding (with the resolution) is as
    large as the element itself. Returns the verdict and how many became each."""
    with np.errstate(invalid="ignore"):
        tolerance = verdict.tolerance + np.where(np.isnan(verdict.tolerance), np.nan, floor)
        status = verdict.status.copy()
        rescued = (status == st.MISMATCH) & (verdict.abs_error <= tolerance)
        # the rounding is as large as the element itself: it cannot be told from zero
        low = np.maximum(np.abs(verdict.analytic), np.abs(verdict.numeric)) <= (
            verdict.resolution + floor
        )
    status[rescued] = np.where(low[rescued], st.UNVERIFIABLE, st.OK)
    drowned = int((rescued & low).sum())
    verdict = dataclasses.replace(verdict, tolerance=tolerance, status=status)
    return verdict, int(rescued.sum()) - drowned, drowned


def mark_unstable(verdict: st.Verdict, unstable: np.ndarray | None) -> st.Verdict:
    """Elements whose gradient changed between two calls at θ are "nondeterministic"."""
    if unstable is None:
        return verdict
    status = verdict.status.copy()
    checked = np.ones(len(status), bool) if verdict.checked is None else verdict.checked
    status[unstable & checked] = st.NONDETERMINISTIC
    return dataclasses.replace(verdict, status=status)


def make(at, coords: Coords, tested, working, grads, typical, computed, nondet_tol, seed) -> Any:
    """A `Rounding` with its reentrancy already tested. computed: the precision fn computes in
    where coarser than the leaves' (None: theirs); the gradient's rounding is the coarser of
    it and the gradient's dtype."""
    g_dtype = max((np.asarray(g).dtype for g in grads.values()), key=_precision.eps)
    u = _precision.eps(g_dtype if computed is None else _precision.coarser(g_dtype, computed))
    flat = {
        leaf.path: np.asarray(grads[leaf.path], np.float64).reshape(-1) for leaf in coords.checked
    }
    finite = [np.abs(g[np.isfinite(g)]) for g in flat.values()]
    scale = max((float(a.max()) for a in finite if a.size), default=0.0)
    rounding = Rounding(at, coords, tested, working, flat, scale, typical, u, nondet_tol, seed)
    rounding.reentrant()
    return rounding
