"""The reference side from finite differences, where JAX cannot differentiate fn's primal
computation: a `jax.pure_callback` (NumPy or C code), a `pallas_call` whose JVP rule fails,
a rule JAX keeps as its own that has no forward mode.

⟨w, J u⟩ is the derivative at t = 0 of φ(t) = Re⟨w, f(x + t·u)⟩, estimated by central
differences along the unit direction u/‖u‖ at ±h and ±2h and judged by the element-wise error
model applied to the one-dimensional φ (`stencils.compare_chord`): round-off from the noise in φ
(at least u_f·Σ|w_i||f_i|, the rounding of the pairing itself) and truncation from the ±2h
pair. That error estimate is the side's slack, added to the identity's tolerance. The step is
the directional mode's (`direction_step`), for the coarser of the leaf's and fn's output
dtypes. fn is evaluated in float64 wherever it accepts it (as Chainer's `check_backward`
computes its numerical gradient in float64 for a float32 rule): under precision="native" the
primals are cast to float64 for the differences unless fn refuses them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import numpy.typing as npt

from .._core.coords import Leaf
from .._core.errors import one_line
from .._numerics import stencils as st
from .._numerics.directions import direction_step
from .sides import Pairs, Point, Side
from .transforms import is_float0

ALONG = (1.0, -1.0, 2.0, -2.0)  # multiples of the step, in the order compare_chord takes them


def underivable(reference: Callable, point: Point) -> str:
    """ "" if JAX can take the JVP of fn's primal computation, else what it raised."""
    tangents = point.tangents({})
    try:
        jax.eval_shape(lambda p, t: jax.jvp(reference, p, t), point.primals, tangents)
    except Exception as e:  # noqa: BLE001 - whatever stops JAX, differences do not need it
        return one_line(e)
    return ""


class FiniteDifferences:
    """leaf -> `Side` by central differences of fn (see the module docstring)."""

    def __init__(self, fn: Callable, point: Point, precision: str):
        self.fn, self.point = fn, point
        self.x64 = False
        if precision == "native":
            self.x64 = self._accepts_float64()
        self.values = self._cast(self.x64)  # under "float64" they are float64 already
        leaves = [np.abs(np.asarray(self.values[x.position])) for x in point.coords.checked]
        rms = float(np.sqrt(np.mean(np.concatenate([x.reshape(-1) for x in leaves]) ** 2)))
        self.typical = rms if rms > 0 else 1.0
        self.in_float64 = precision != "native" or self.x64
        self._programs: dict[int, list] = {}

    def _cast(self, x64: bool) -> list:
        """The primals' leaves, in float64 (complex128) where x64."""
        out = list(self.point.values)
        for leaf in self.point.coords.inexact_leaves if x64 else ():
            dtype = np.complex128 if leaf.is_complex else np.float64
            out[leaf.position] = np.asarray(out[leaf.position], dtype)
        return out

    def _context(self):
        return jax.enable_x64(True) if self.x64 else contextlib.nullcontext()

    def _accepts_float64(self) -> bool:
        try:
            with jax.enable_x64(True):
                out = self.fn(*self.point.coords.unflatten(self._cast(True)))
                leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(out)]
        except Exception:  # noqa: BLE001 - fn takes its own dtypes only: evaluate it there
            return False
        return all(np.isfinite(x).all() for x in leaves if _inexact(x.dtype))

    def _evaluate(self, leaf: Leaf, X: np.ndarray) -> list[np.ndarray]:
        """fn's output leaves [B, ...] with the leaf at each row of X [B, n]."""
        if leaf.position not in self._programs:

            def at(x: jax.Array) -> Any:
                v = list(self.values)
                v[leaf.position] = x.reshape(leaf.shape)
                return self.fn(*self.point.coords.unflatten(v))

            self._programs[leaf.position] = [jax.jit(jax.vmap(at)), jax.jit(at)]
        programs = self._programs[leaf.position]
        with self._context():
            if programs[0] is not None:
                try:
                    return [np.asarray(x) for x in jax.tree_util.tree_leaves(programs[0](X))]
                except Exception:  # noqa: BLE001 - a callback without vmap_method: one by one
                    programs[0] = None
            rows = [[np.asarray(x) for x in jax.tree_util.tree_leaves(programs[1](x))] for x in X]
        return [np.stack(parts) for parts in zip(*rows)]

    def side(self, leaf: Leaf) -> Side:
        theta = np.asarray(self.values[leaf.position]).reshape(-1)
        f0 = self._evaluate(leaf, theta[None])
        w0 = jax.tree_util.tree_leaves(self.point.w[0])
        used = [i for i, x in enumerate(f0) if _inexact(x.dtype) and not is_float0(w0[i])]
        f0 = [f0[i] for i in used]
        w = [[np.asarray(jax.tree_util.tree_leaves(wj)[i]) for i in used] for wj in self.point.w]
        u_f = max((st.unit_roundoff(_real(x.dtype)) for x in f0), default=0.0)
        coarse = max([_real(theta.dtype)] + [_real(x.dtype) for x in f0], key=st.unit_roundoff)
        h = direction_step(np.abs(theta).astype(coarse), self.typical, None)

        def apply(U: np.ndarray, js: np.ndarray) -> Pairs:
            B = len(js)
            norms = np.linalg.norm(U, axis=1)
            V = U / np.where(norms > 0, norms, 1.0)[:, None]
            points = np.concatenate([theta + s * h * V for s in ALONG]).astype(theta.dtype)
            F = self._evaluate(leaf, points)
            F = [F[i] for i in used]
            wb = [np.stack([w[j][i] for j in js]) for i in range(len(used))]  # [leaf][B, ...]
            at0 = [np.broadcast_to(x, (B, *x.shape[1:])) for x in f0]
            phi = [_pairing(wb, [x[k * B : (k + 1) * B] for x in F], B) for k in range(len(ALONG))]
            absw = [np.abs(x) for x in wb]
            verdict = st.compare_chord(
                np.zeros(B), np.zeros(B), _pairing(wb, at0, B), phi[0], phi[1], phi[2], phi[3], h,
                st.Tolerance(u_f=u_f, u_g=0.0, rtol=0.0, atol=0.0,
                             noise_floor=u_f * _pairing(absw, [np.abs(x) for x in at0], B)),
            )  # fmt: skip
            with np.errstate(invalid="ignore", over="ignore"):
                slope = [np.abs(x[:B] - x[B : 2 * B]) / (2 * h) for x in F]
                value = np.where(np.isfinite(verdict.resolution), verdict.numeric, np.nan)
            scale = _pairing(absw, slope, B)
            return Pairs(value * norms, scale * norms, verdict.resolution * norms)

        return apply


def _real(dtype: npt.DTypeLike) -> np.dtype:
    """The real dtype of a float or complex dtype."""
    return np.finfo(dtype).dtype


def _inexact(dtype: npt.DTypeLike) -> bool:
    return bool(np.issubdtype(dtype, np.inexact))


def _pairing(w: list[np.ndarray], f: list[np.ndarray], B: int) -> np.ndarray:
    """Re Σ w_b·f_b for each row b < B, summed over fn's output leaves (each [B, ...])."""
    total = np.zeros(B)
    for wl, fl in zip(w, f):
        with np.errstate(invalid="ignore", over="ignore"):
            prod = np.real(wl.astype(np.complex128) * fl.astype(np.complex128))
        total = total + prod.reshape(prod.shape[0], -1).sum(axis=1)
    return np.asarray(total, np.float64)
