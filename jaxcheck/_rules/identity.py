"""One identity check (`check_vjp`, `check_jvp`): the point, the random tangents and
cotangents, both sides of ⟨u, Jᵀw⟩ = ⟨Ju, w⟩ per leaf, the elements of a failing leaf
located, and the rule under test compared under jit and vmap with its eager values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords, Leaf
from .._core.paths import leaf_paths
from .._grad import directional as _directional
from . import primal as _rules
from . import transforms as _transforms
from .report import IdentityLeaf, IdentityResult, element_record
from .transforms import is_float0 as _is_float0
from .transforms import stack as _stack

LOCATE_ALL = 4096  # failing leaves up to this size: every element is evaluated
BASIS_CHUNK = 256  # directions per vectorized call while locating


def _trace_error(kind: str, e: Exception) -> TypeError:
    return TypeError(
        f"fn could not be traced by JAX ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
        f"check_{kind} compares JAX derivative rules and needs fn written with jax.numpy; for a "
        "NumPy loss use jaxcheck.check_grad with grad_fn=."
    )


class Identity:
    """One check: the point, the random cotangents, both sides of the identity."""

    def __init__(self, kind, fn, coords: Coords, values, rule, k, rtol, atol, seed):
        self.kind, self.coords, self.k = kind, coords, k
        self.primals = tuple(coords.unflatten(values))
        self.values = values
        self.atol = atol or 0.0
        self.rng = np.random.default_rng(seed)
        self.notes: list[str] = []
        try:
            self.reference, n_rules, n_jax = _rules.primal_function(fn, self.primals)
            out = jax.eval_shape(fn, *self.primals)
        except Exception as e:  # noqa: BLE001 - any failure to trace is the user's to fix
            raise _trace_error(kind, e) from e
        # rounding of the coarsest dtype the identity passes through, inputs and outputs alike
        # (a float32 output of float64 inputs rounds like float32)
        dtypes = [self._dtype(leaf) for leaf in coords.checked] + [
            s.dtype for s in jax.tree_util.tree_leaves(out) if jnp.issubdtype(s.dtype, jnp.inexact)
        ]
        u = max(float(jnp.finfo(d).eps) for d in dtypes)
        self.rtol = math.sqrt(u) if rtol is None else rtol
        if rule is None and n_rules == 0:
            own = (
                f"fn's {n_jax} custom rule(s) are JAX's own (kept in the reference: JAX tests them)"
                if n_jax
                else "fn has no custom_vjp/custom_jvp rule"
            )
            self.notes.append(
                f"{own} and no {kind}= was given: JAX's VJP is the transpose of its JVP, so "
                "this compares JAX with itself (it checks only consistency under the transforms)"
            )
        elif n_rules:
            self.notes.append(
                f"reference: JAX's derivative of fn with its {n_rules} custom rule(s) replaced "
                "by the primal computation"
            )
        self.w = [self._cotangent(out) for _ in range(k)]
        self.rule = rule if rule is not None else self._jax_rule(fn)

    def _jax_rule(self, fn):
        if self.kind == "vjp":
            return lambda *args: jax.vjp(fn, *args[:-1])[1](args[-1])
        return lambda primals, tangents: jax.jvp(fn, primals, tangents)

    def _cotangent(self, out) -> Any:
        def draw(s):
            if jnp.issubdtype(s.dtype, jnp.inexact):
                x = self.rng.standard_normal(s.shape)
                if jnp.issubdtype(s.dtype, jnp.complexfloating):
                    x = x + 1j * self.rng.standard_normal(s.shape)
                return jnp.asarray(x, s.dtype)  # a JAX array, as JAX hands to a custom_vjp
            return np.zeros(s.shape, jax.dtypes.float0)

        return jax.tree_util.tree_map(draw, out)

    # ---- the sides of the identity: ⟨w, J u⟩ for a batch of directions u on one leaf -------

    def _tangents(self, given: dict[int, Any]) -> tuple:
        """Tangents: given[position] (flat) where given, zero elsewhere (float0 if not float)."""
        out = []
        for leaf in self.coords.leaves:
            x = self.values[leaf.position]
            if leaf.position in given:
                out.append(jnp.reshape(given[leaf.position], leaf.shape))
            elif leaf.is_float or leaf.is_complex:
                out.append(jnp.zeros(jnp.shape(x), jnp.asarray(x).dtype))
            else:
                out.append(np.zeros(np.shape(x), jax.dtypes.float0))
        return tuple(self.coords.unflatten(out))

    def _forward(self, jvp: Callable, leaf: Leaf, vectorize: bool) -> Callable:
        """(U [B, n], js [B]) -> (⟨w_j, J U_b⟩, Σ|w_j||J U_b|) through a JVP function."""
        w = jax.tree_util.tree_map(_stack, *self.w)

        def one(u, j):
            tangent = _tangent_out(jvp(self.primals, self._tangents({leaf.position: u})))
            wj = jax.tree_util.tree_map(lambda x: x if _is_float0(x) else x[j], w)
            return _pair(tangent, wj)

        if vectorize:
            batched = jax.jit(jax.vmap(one))
            return lambda U, js: tuple(np.asarray(x) for x in batched(U, js))

        def looped(U, js):
            pairs = [one(u, j) for u, j in zip(U, js)]
            return tuple(np.array([float(p[i]) for p in pairs]) for i in (0, 1))

        return looped

    def _explicit(self, cotangents: list[dict]) -> Callable:
        """The same through explicit vectors Jᵀw_j (one dict {leaf path: flat array} per j)."""

        def side(leaf: Leaf):
            def apply(U, js):
                V = np.stack([cotangents[j][leaf.path] for j in js])
                with np.errstate(invalid="ignore"):  # a NaN reference is reported, not warned
                    return np.real(np.sum(U * V, axis=1)), np.sum(np.abs(U) * np.abs(V), axis=1)

            return apply

        return side

    def _vjp_vectors(self, vjp: Callable, who: str) -> list[dict]:
        out = []
        for w in self.w:
            ct = vjp(*self.primals, w)
            if len(self.primals) == 1 and _same_structure(ct, self.primals[0]):
                ct = (ct,)  # one primal: its bare cotangent
            out.append(_cotangent_leaves(self.coords, ct, who))
        return out

    def _sides(self):
        """(test side, reference side), each leaf -> (U, js) -> (values, scales)."""

        def ref_forward(leaf):
            ref_jvp = lambda p, t: jax.jvp(self.reference, p, t)  # noqa: E731
            return self._forward(ref_jvp, leaf, vectorize=True)

        if self.kind == "vjp":
            return self._explicit(self._vjp_vectors(self.rule, "vjp")), ref_forward
        first = self.coords.checked[0]
        try:
            self._forward(self.rule, first, True)(
                np.zeros((1, first.size), self._dtype(first)), np.zeros(1, np.int32)
            )
            vec = True
        except TypeError as e:
            if "custom_vjp" in str(e):
                raise TypeError(
                    "fn contains a custom_vjp function, which JAX cannot run in forward mode "
                    "(jax.jvp): check that rule with jaxcheck.check_vjp."
                ) from e
            vec = False
        except Exception:  # noqa: BLE001 - a rule that cannot be vmapped still gets checked
            vec = False

        def test(leaf):
            return self._forward(self.rule, leaf, vec)

        def ref_vjp(*args):
            return jax.vjp(self.reference, *args[:-1])[1](args[-1])

        try:
            return test, self._explicit(self._vjp_vectors(ref_vjp, "reference"))
        except Exception as e:  # noqa: BLE001 - reverse mode unavailable: use forward mode
            self.notes.append(
                f"JAX's reverse mode fails on fn ({type(e).__name__}): the JVP under test is "
                "compared with jax.jvp of the primal computation directly"
            )
            return test, ref_forward

    def _dtype(self, leaf: Leaf):
        return np.asarray(self.values[leaf.position]).dtype

    def _gaussian(self, leaf: Leaf, B: int, mask=None) -> np.ndarray:
        U = self.rng.standard_normal((B, leaf.size))
        if leaf.is_complex:
            U = U + 1j * self.rng.standard_normal((B, leaf.size))
        if mask is not None:
            U = U * mask
        return U.astype(self._dtype(leaf))

    # ---- the check ------------------------------------------------------------------------

    def run(self, transforms, precision) -> IdentityResult:
        test, ref = self._sides()
        leaves, failures = {}, []
        for leaf in self.coords.checked:
            t_side, r_side = test(leaf), ref(leaf)
            U, js = self._gaussian(leaf, self.k), np.arange(self.k)
            (a, sa), (b, sb) = t_side(U, js), r_side(U, js)
            with np.errstate(invalid="ignore"):
                err = np.abs(a - b)
            tol = self.rtol * np.maximum(sa, sb) + self.atol
            bad = ~(err <= tol)
            note, records = "", []
            if not np.isfinite(b).all():
                side = "JAX's reverse mode" if self.kind == "jvp" else "jax.jvp"
                self.notes.append(
                    f"the reference ({side} of the primal computation) is not finite along "
                    f"{leaf.path}: the derivative of what fn computes is NaN or infinite at "
                    "these primals (sqrt or log at 0, a singular solve), so the rule cannot be "
                    "compared there; its elements are listed as failing"
                )
            if bad.any():
                j = int(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), -1)))
                records, note = self._locate(leaf, t_side, r_side, j)
            failures += records
            leaves[leaf.path] = IdentityLeaf(
                path=leaf.path,
                shape=leaf.shape,
                dtype=str(leaf.dtype),
                directions=self.k,
                max_error=float(np.max(err)),
                tolerance=float(np.min(tol)),
                n_failed=len(records),
                passed=not bad.any(),
                located=note,
            )
        checked = {t: self._transform(t) for t in transforms}
        failures.sort(key=lambda e: -e.abs_error / max(e.tolerance, 1e-300))
        return IdentityResult(
            passed=all(v.passed for v in leaves.values())
            and all(v == "ok" for v in checked.values()),
            kind=self.kind,
            leaves=leaves,
            failures=tuple(failures),
            transforms=checked,
            notes=tuple(self.notes),
            precision=precision,
        )

    def _locate(self, leaf: Leaf, t_side, r_side, j: int) -> tuple[list, str]:
        """The wrong elements of a failing leaf, along cotangent w_j."""
        note = ""
        if leaf.size <= LOCATE_ALL:
            candidates = np.arange(leaf.size)
        else:

            def probe_fn(labels, groups):
                U = np.stack([self._gaussian(leaf, 1, labels == g)[0] for g in groups])
                js = np.full(len(groups), j)
                (a, sa), (b, sb) = t_side(U, js), r_side(U, js)
                return ~(np.abs(a - b) <= self.rtol * np.maximum(sa, sb) + self.atol)

            located = _directional.locate(probe_fn, leaf.size, self.rng)
            candidates, note = located.candidates, located.note
        parts = (1, 1j) if leaf.is_complex else (1,)
        records = []
        for start in range(0, len(candidates), BASIS_CHUNK):
            idx = candidates[start : start + BASIS_CHUNK]
            for p, unit in enumerate(parts):
                U = np.zeros((len(idx), leaf.size), self._dtype(leaf))
                U[np.arange(len(idx)), idx] = unit
                js = np.full(len(idx), j)
                (a, sa), (b, sb) = t_side(U, js), r_side(U, js)
                with np.errstate(invalid="ignore"):
                    err = np.abs(a - b)
                tol = self.rtol * (np.maximum(sa, sb) + np.mean(np.maximum(sa, sb))) + self.atol
                for m in np.flatnonzero(~(err <= tol)):
                    part = ("real", "imag")[p] if leaf.is_complex else ""
                    records.append(
                        element_record(leaf, int(idx[m]), a[m], b[m], err[m], tol[m], part)
                    )
        if not records and not note:
            note = (
                "no single element disagrees on its own (many small errors): the leaf is "
                "reported as a whole"
            )
        return records, note

    # ---- jit and vmap ---------------------------------------------------------------------

    def _transform(self, name: str) -> str:
        """ "ok", or what differs or fails when the rule under test runs under `name`."""
        if self.kind == "vjp":
            inputs = self.w
            call = lambda p, x: self.rule(*p, x)  # noqa: E731
        else:
            inputs = [
                self._tangents({x.position: self._gaussian(x, 1)[0] for x in self.coords.checked})
                for _ in range(self.k)
            ]
            call = lambda p, x: _tangent_out(self.rule(p, x))  # noqa: E731
        return _transforms.consistency(name, call, self.primals, inputs, self.rtol, self.atol)


def _tangent_out(result: Any) -> Any:
    """The tangent output of a JVP function's (out, tangent_out)."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(
            f"the JVP returned a {type(result).__name__}; it must return (out, tangent_out) "
            "like jax.jvp."
        )
    return result[1]


def _pair(a: Any, b: Any) -> tuple[jax.Array, jax.Array]:
    """(Re Σ a_i b_i, Σ |a_i||b_i|) over matching pytrees, skipping float0 leaves."""
    value, scale = 0.0, 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if _is_float0(x) or _is_float0(y):
            continue
        value = value + jnp.real(jnp.sum(x * y))
        scale = scale + jnp.sum(jnp.abs(x) * jnp.abs(y))
    return jnp.asarray(value), jnp.asarray(scale)


def _same_structure(a: Any, b: Any) -> bool:
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)


def _cotangent_leaves(coords: Coords, ct: Any, who: str) -> dict[str, np.ndarray]:
    """{leaf path: flat cotangent} from a VJP's output, with its shape checked."""
    if isinstance(ct, list):
        ct = tuple(ct)
    flat = dict(leaf_paths(ct))
    out = {}
    for leaf in coords.checked:
        if leaf.path not in flat:
            raise ValueError(
                f"the {who} returned no cotangent for primal{leaf.path}: return one cotangent per "
                f"primal, in order, shaped like it (got paths {sorted(flat)[:8]})."
            )
        x = np.asarray(flat[leaf.path])
        if x.shape != leaf.shape:
            raise ValueError(
                f"the {who} returned a cotangent of shape {x.shape} for primal{leaf.path}, "
                f"which has shape {leaf.shape}."
            )
        out[leaf.path] = x.reshape(-1)
    return out
