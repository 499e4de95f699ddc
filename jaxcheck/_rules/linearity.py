"""A VJP is linear in its cotangent and a JVP in its tangent: identities of their own.

    vjp(0) = 0,   vjp(a·w₁ + w₂) = a·vjp(w₁) + vjp(w₂)   (and the same for a JVP in u)

⟨u, Jᵀw⟩ = ⟨Ju, w⟩ is judged with a tolerance relative to Σ|u_i (Jᵀw)_i|, which can hide a
rule that adds a small constant to its result (torch's gradcheck test "backward not
multiplied by grad_output": g + 1e-2), above all when the user loosens rtol. These identities
do not depend on J, so they are judged on rounding alone, element by element: a zero cotangent
gives an exact zero in any linear computation (allowed ZERO_ROUNDING·u times the leaf's mean
magnitude), and the combination is allowed √u·(m_i + mean m) with m_i = |a·v₁| + |v₂| + |v₁₂|,
u the unit roundoff of the coarsest dtype of the check (the reductions in a rule round each
result by up to ~n·u of the magnitudes they sum). Elements where a value is not finite are
not judged (g·∞ at a zero cotangent is NaN in JAX's own rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .._core.coords import Leaf
from .._core.errors import format_index
from .sides import Point, tangent_out, vjp_vectors
from .transforms import is_float0

A = -1.5  # the scalar a of the combination: negative, so that |w| and max(w, 0) fail it
ZERO_ROUNDING = 16.0  # a zero cotangent's result may be this many u of the leaf's mean |v|


def vjp_messages(point: Point, vjp: Callable, who: str, u: float, ws, vs) -> dict[str, str]:
    """{leaf path: "" or why the VJP is not linear in its cotangent on that leaf}.

    ws: two cotangents w₁, w₂; vs: their {leaf path: flat Jᵀw} from this VJP."""
    zero = jax.tree_util.tree_map(lambda x: x if is_float0(x) else 0 * x, ws[0])
    combo = jax.tree_util.tree_map(lambda a, b: a if is_float0(a) else A * a + b, *ws)
    v0, v12 = vjp_vectors(point, vjp, who, ws=[zero, combo])
    out = {}
    for leaf in point.coords.checked:
        p = leaf.path

        def name(i: int, leaf: Leaf = leaf) -> str:
            return f"{leaf.path}{format_index(leaf.index(i))}"

        out[p] = _verdict(v0[p], vs[0][p], vs[1][p], v12[p], u, name, ("cotangent", "vjp", "w"))
    return out


def jvp_messages(point: Point, jvp: Callable, u: float, rng, t0: Any) -> dict[str, str]:
    """{leaf path: "" or why the JVP is not linear in its tangent along that leaf}.

    t0: the JVP's tangent output for a zero tangent."""
    zero, names = _flat(t0)
    out = {}
    for leaf in point.coords.checked:
        us = [_gaussian(rng, leaf, point.dtype(leaf)) for _ in range(2)]
        us.append(A * us[0] + us[1])
        t1, t2, t12 = (
            _flat(tangent_out(jvp(point.primals, point.tangents({leaf.position: x}))))[0]
            for x in us
        )
        out[leaf.path] = _verdict(zero, t1, t2, t12, u, names, ("tangent", "jvp", "u"))
    return out


def _verdict(v0, v1, v2, v12, u: float, name: Callable[[int], str], words) -> str:
    """ "" or the worst element breaking linearity (see the module docstring)."""
    what, rule, x = words
    with np.errstate(invalid="ignore", over="ignore"):
        mags = np.abs(v1) + np.abs(v2)
        scale = float(np.mean(mags[np.isfinite(mags)])) if np.isfinite(mags).any() else 0.0
        off = np.where(np.isfinite(v0), np.abs(v0), 0.0)
        bad = off > ZERO_ROUNDING * u * scale
        if bad.any():
            i = int(np.argmax(off))
            return (
                f"not linear in the {what}: for a zero {what} the {rule.upper()} returns "
                f"{v0[i]:.6g} at {name(i)}, not 0 ({_count(bad)})"
            )
        expected = A * v1 + v2
        m = np.abs(A * v1) + np.abs(v2) + np.abs(v12)
        tol = np.sqrt(u) * (m + (np.mean(m[np.isfinite(m)]) if np.isfinite(m).any() else 0.0))
        ratio = np.abs(v12 - expected) / np.maximum(tol, np.finfo(np.float64).tiny)
        ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    bad = ratio > 1.0
    if not bad.any():
        return ""
    i = int(np.argmax(ratio))
    return (
        f"not linear in the {what}: {rule}(a·{x}₁ + {x}₂) is {v12[i]:.6g} at {name(i)} but "
        f"a·{rule}({x}₁) + {rule}({x}₂) is {expected[i]:.6g} (a = {A}, tolerance "
        f"{tol[i]:.1e}; {_count(bad)})"
    )


def _count(bad: np.ndarray) -> str:
    return f"{int(bad.sum())} of {bad.size} elements"


def _gaussian(rng: np.random.Generator, leaf, dtype) -> np.ndarray:
    x = rng.standard_normal(leaf.size)
    if leaf.is_complex:
        x = x + 1j * rng.standard_normal(leaf.size)
    return x.astype(dtype)


def _flat(tree: Any) -> tuple[np.ndarray, Callable[[int], str]]:
    """The inexact leaves of a tangent output, flat and concatenated, and the name of
    element i (`output['y'][2]`)."""
    parts, spans = [], []
    offset = 0
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.asarray(x)
        if is_float0(x) or not np.issubdtype(x.dtype, np.inexact):
            continue
        parts.append(x.reshape(-1).astype(np.result_type(x.dtype, np.float64)))
        spans.append((offset, jax.tree_util.keystr(path), x.shape))
        offset += x.size

    def name(i: int) -> str:
        start, path, shape = [s for s in spans if s[0] <= i][-1]
        index = tuple(int(j) for j in np.unravel_index(i - start, shape)) if shape else ()
        return f"output{path}{format_index(index)}"

    return (np.concatenate(parts) if parts else np.zeros(0)), name
