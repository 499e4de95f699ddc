"""method="complex_step": ∂f/∂θ_i = Im f(θ + i·h·e_i) / h, with no subtraction to lose digits.

For a loss whose complex extension is analytic (matmul, tanh, exp, log, sums) the imaginary
part carries the derivative to within rounding. Three things break it, and none of them
raises: code that is not analytic (abs, norm, var/std and softplus/logaddexp take moduli or
real parts, so Im f loses the term), code that drops the imaginary part (a cast to a real
dtype), and complex arithmetic that is not exact (XLA's convolutions use the
3-multiplication complex product, whose imaginary part carries the round-off of the real
parts: an error like a finite difference's, u·|f|/h). So every leaf is verified first: along
`VERIFY_DIRECTIONS` random unit directions v, Im f(θ + i·h·v)/h is compared with central
differences of f along v (`stencils.compare_chord`, the complex step's own error estimate added
to the tolerance). A leaf where they disagree, or where the complex step is not more exact
than central differences, or whose fn refuses complex input, is checked with the
finite-difference method instead, with a note saying why. After the check, every element the
complex step calls wrong is judged again by finite differences; where the two disagree, the
finite differences decide (a non-analytic term too small to show along random directions).

Step h_i = u^(1/2)·max(|θ_i|, typical): the truncation error h²f'''/6 is then of order u,
and an inexact product's u·|f|/h stays large enough for the verification to see. The error
estimate of each element is κ·(|D(h) − D(3h)| + 4u·|D(h)|): D(h) − D(3h) is 8/6·h²f''' plus
the difference of two roundings (2h would scale every imaginary part by exactly 2 and
repeat the same rounding), and at least the leaf's median round-off in Im f over h, as
for finite differences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords, Leaf
from .._core.paths import qualified
from .._engine.batched import JaxEngine
from .._engine.evaluator import Evaluator
from .._engine.host import HostEngine
from .._numerics import stencils as st

NAME = "complex_step"
VERIFY_DIRECTIONS = 4  # random directions per leaf the complex step is verified along
POWER = 0.5  # h = u^POWER · scale
ROUNDING = 4.0  # × u·|D|: the rounding of the imaginary part itself
WHY_WRONG = (
    "the loss is not complex-analytic there (abs, norm, var/std, softplus/logaddexp, a cast "
    "to a real dtype)"
)


def validate(coords: Coords) -> None:
    """The complex step needs real parameters: it perturbs them along the imaginary axis."""
    for leaf in coords.checked:
        if leaf.is_complex:
            raise ValueError(
                f"method='complex_step' needs real parameters, but {qualified(leaf.path)} is "
                f"{np.dtype(leaf.dtype)}: its imaginary axis is already a coordinate. Use "
                "method='central' (the default) for complex parameters."
            )


def default_steps(theta: np.ndarray, typical: float) -> np.ndarray:
    """h_i = u^(1/2)·max(|θ_i|, typical)."""
    c = st.unit_roundoff(theta.dtype) ** POWER
    return c * np.maximum(np.abs(theta.astype(np.float64)), typical)


class ComplexStep:
    """Complex-step derivatives of one check's leaves, each leaf verified before it is used.

    fn_scalar, values, coords, args: as the finite-difference engine gets them; host: fn
    cannot be traced (evaluate it with NumPy, one point at a time).
    """

    def __init__(self, fn_scalar, values, coords, args, key, engine_options, host: bool):
        xp = np if host else jnp
        self._imag = lambda params, *a: xp.imag(fn_scalar(params, *a))
        self.values, self._coords, self._args = list(values), coords, args
        self._key, self._host = key, host
        self._engine_options = dict(engine_options)  # progress and journal included

    def _engine(self, leaf: Leaf):
        """An engine of Im f, with this leaf complex."""
        values = list(self.values)
        theta = np.asarray(values[leaf.position])
        values[leaf.position] = theta.astype(np.result_type(theta.dtype, np.complex64))
        if self._host:
            o = self._engine_options
            engine: Evaluator = HostEngine(self._imag, values, self._coords, self._args,
                                progress=o["progress"], journal=o["journal"])  # fmt: skip
        else:
            key = (self._key, NAME)
            engine = JaxEngine(
                self._imag, values, self._coords, self._args, cache_key=key,
                **self._engine_options,
            )  # fmt: skip
        return engine

    def verify(
        self,
        leaf: Leaf,
        real_engine: Evaluator,
        g: np.ndarray,
        f0: float,
        t: float,
        h: float,
        rng: np.random.Generator,
        tol: st.Tolerance,
    ) -> tuple[object, str]:
        """(the complex engine, "") if the complex step agrees with central differences along
        random directions over the leaf and is more exact; else (None, why).

        g: the flat gradient under test (only to correct for the rounding of the real chord);
        f0: f(θ); t: the central-difference step along a unit direction; h: the complex step
        along one; tol: its u_f and u_g (rtol and atol do not apply: no gradient is judged).
        """
        theta = np.asarray(self.values[leaf.position]).reshape(-1)
        t64 = theta.astype(np.float64)
        v = rng.standard_normal((VERIFY_DIRECTIONS, leaf.size))
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        chord = np.stack([(t64 + s * v).astype(theta.dtype) for s in (t, -t, 2 * t, -2 * t)])
        f = real_engine.evaluate_leaf(leaf, chord.reshape(-1, leaf.size))
        f = f.reshape(4, VERIFY_DIRECTIONS)
        s = (chord.astype(np.float64) - t64) @ g  # ⟨g, x − θ⟩ along the chord actually taken
        along = (s[0] - s[1]) / (2 * t)
        shift = (s[2] - s[3]) / (4 * t) - along
        try:
            engine = self._engine(leaf)
            cdtype = np.result_type(theta.dtype, np.complex64)
            z = np.concatenate([t64 + 1j * k * h * v for k in (1, 3)]).astype(cdtype)
            im = engine.evaluate_leaf(leaf, z).reshape(2, VERIFY_DIRECTIONS)
        except Exception as e:  # noqa: BLE001 - any refusal of complex input means: fall back
            message = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            return None, (
                f"fn does not accept complex parameters ({type(e).__name__}: {message}; the "
                "complex step needs fn's constants, kernels and carries in the parameters' dtype)"
            )
        d1, d3 = im[0] / h, im[1] / (3 * h)
        own = _resolution(d1, d3, tol.u_f)
        # The complex step along v, moved onto the real chord's rounded direction.
        verdict = st.compare_chord(
            d1 + along - v @ g, shift, f0, f[0], f[1], f[2], f[3], t,
            st.Tolerance(u_f=tol.u_f, u_g=tol.u_g, rtol=0.0, atol=own, g_floor=tol.g_floor),
        )  # fmt: skip
        wrong = np.isin(verdict.status, st.FAILING)
        if wrong.any():
            b = int(np.flatnonzero(wrong)[0])
            return None, (
                f"Im f(θ + ih·v)/h = {d1[b]:.6g} but central differences give "
                f"{verdict.numeric[b]:.6g} along a random direction: {WHY_WRONG}"
            )
        if np.median(own) >= np.median(verdict.resolution):
            return None, (
                f"its error estimate ({np.median(own):.1e}) is no smaller than central "
                f"differences' ({np.median(verdict.resolution):.1e}): {WHY_WRONG}, or its "
                "complex arithmetic is inexact (XLA's convolutions multiply complex numbers "
                "with three real products)"
            )
        return engine, ""

    def compare(
        self,
        engine: Evaluator,
        leaf: Leaf,
        g: np.ndarray,
        h: np.ndarray,
        tol: st.Tolerance,
        subset: np.ndarray | None = None,
        confirm: Callable[[np.ndarray], st.Verdict] | None = None,
    ) -> tuple[st.Verdict, int]:
        """Im f(θ + i·h_i·e_i)/h_i against g_i for every element (or `subset`).

        confirm(indices) -> the finite-difference verdict of those elements (over the leaf):
        it decides every element the complex step calls wrong where the two disagree. Returns
        (the verdict, how many elements it decided that way).
        """
        idx = np.arange(leaf.size) if subset is None else np.asarray(subset, np.int64)
        theta = np.asarray(self.values[leaf.position]).reshape(-1)[idx]
        cdtype = np.result_type(theta.dtype, np.complex64)
        hs = h[idx]
        z = np.concatenate([theta + 1j * k * hs for k in (1, 3)]).astype(cdtype)
        im = engine.evaluate(leaf, np.concatenate([idx, idx]), z)
        d1, d3 = im[: len(idx)] / hs, im[len(idx) :] / (3 * hs)
        gi = g[idx]
        with np.errstate(invalid="ignore", over="ignore"):
            resolution = _resolution(d1, d3, tol.u_f, hs)
            tolerance = tol.atol + resolution + tol.rtol * np.abs(gi) + tol.gradient_floor(g)
            abs_error = np.abs(gi - d1)
        status = st.classify(gi, d1, abs_error, tolerance, resolution)
        verdict = st.Verdict(gi, d1, abs_error, tolerance, resolution, np.ones(len(idx)), status,
                             exact_zero=(gi == 0) & (d1 == 0))  # fmt: skip
        if subset is not None:
            verdict = verdict.expand(idx, leaf.size)
        bad = np.flatnonzero(np.isin(verdict.status, st.FAILING))
        if confirm is None or not bad.size:
            return verdict, 0
        return _overrule(verdict, confirm(bad), bad)


def _resolution(
    d1: np.ndarray, d3: np.ndarray, u_f: float, h: np.ndarray | None = None
) -> np.ndarray:
    """κ·(|D(h) − D(3h)| + 4u·|D(h)|); with the elements' steps h, at least the leaf's typical
    round-off in Im f (the median of |D(h) − D(3h)|·h, over the half-normal median) over h:
    inexact complex products put noise of the same size into every element's Im f, as
    round-off does into f for finite differences, and one element's difference can be small
    by chance."""
    diff = np.abs(d1 - d3)
    if h is not None:
        noise = diff * h
        finite = noise[np.isfinite(noise)]
        if finite.size:
            diff = np.maximum(diff, np.median(finite) / st.HALF_NORMAL_MEDIAN / h)
    return st.KAPPA * (diff + ROUNDING * u_f * np.abs(d1))


def _overrule(cs: st.Verdict, fd: st.Verdict, bad: np.ndarray) -> tuple[st.Verdict, int]:
    """Where the complex step and finite differences disagree beyond both error estimates,
    the finite-difference verdict replaces the complex step's. Returns (verdict, count)."""
    with np.errstate(invalid="ignore"):
        apart = np.abs(cs.numeric[bad] - fd.numeric[bad]) > cs.resolution[bad] + fd.resolution[bad]
        apart |= ~np.isfinite(cs.numeric[bad]) & np.isfinite(fd.numeric[bad])
    use = bad[apart]
    if not use.size:
        return cs, 0
    fields = {}
    for f in dataclasses.fields(cs):
        x = getattr(cs, f.name)
        if f.name == "checked" or x is None:
            fields[f.name] = x
            continue
        x = x.copy()
        x[use] = getattr(fd, f.name)[use]
        fields[f.name] = x
    return st.Verdict(**fields), int(use.size)
