"""One identity check (`check_vjp`, `check_jvp`): the point, the random tangents and
cotangents, both sides of ⟨u, Jᵀw⟩ = ⟨Ju, w⟩ per leaf, the elements of a failing leaf
located; the rule's linearity and primal output; the rule under test compared under jit and
vmap with its eager values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords, Leaf
from .._core.errors import one_line
from .._core.paths import leaf_paths
from .._numerics import directions as _directions
from . import linearity as _linearity
from . import primal as _primal
from . import sides as _sides
from . import transforms as _transforms
from .finite import FiniteDifferences, underivable
from .report import IdentityLeaf, IdentityResult, element_record

LOCATE_ALL = 4096  # failing leaves up to this size: every element is evaluated
BASIS_CHUNK = 256  # directions per vectorized call while locating


class TraceError(TypeError):
    """fn could not be traced by JAX; `cause` is the error, in one line."""

    def __init__(self, kind: str, e: Exception):
        self.cause = one_line(e, 200)
        super().__init__(
            f"fn could not be traced by JAX ({self.cause}). check_{kind} compares JAX "
            "derivative rules and needs fn written with jax.numpy; for a NumPy loss use "
            "jaxcheck.check_grad with grad_fn=."
        )


class Identity:
    """One check: the point, the random cotangents, both sides of the identity."""

    def __init__(self, kind, fn, coords: Coords, values, rule, k, rtol, atol, seed):
        self.kind, self.coords, self.k, self.fn = kind, coords, k, fn
        primals = tuple(coords.unflatten(values))
        self.atol = atol or 0.0
        self.rng = np.random.default_rng(seed)
        self.notes: list[str] = []
        try:
            self.reference, n_rules, n_jax = _primal.primal_function(fn, primals)
            out = jax.eval_shape(fn, *primals)
        except Exception as e:  # noqa: BLE001 - any failure to trace is the user's to fix
            raise TraceError(kind, e) from e
        # rounding of the coarsest dtype the identity passes through, inputs and outputs alike
        # (a float32 output of float64 inputs rounds like float32)
        dtypes = [np.asarray(values[leaf.position]).dtype for leaf in coords.checked] + [
            s.dtype for s in jax.tree_util.tree_leaves(out) if jnp.issubdtype(s.dtype, jnp.inexact)
        ]
        self.u = max(float(jnp.finfo(d).eps) for d in dtypes)
        self.rtol = math.sqrt(self.u) if rtol is None else rtol
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
        self.reference_note = (
            f"reference: JAX's derivative of fn with its {n_rules} custom rule(s) replaced by "
            "the primal computation"
            if n_rules
            else ""
        )
        self.out_shape = out
        w = tuple(self._cotangent(out) for _ in range(k))
        positional = tuple(p for p, _ in leaf_paths(primals))
        self.point = _sides.Point(coords, list(values), primals, positional, w)
        self.given = rule is not None
        self.rule = rule if rule is not None else self._jax_rule(fn)
        # the linearity identities' own directions: the identity's stay those of the seed
        self.rng_linear = np.random.default_rng([seed, 1])
        self.test_vectors: list[dict] | None = None
        self._jvp_at_zero: Any = None  # the JVP's (out, tangent_out) at a zero tangent
        self.why = ""  # why JAX cannot differentiate fn's primal computation ("" if it can)
        self.reference_name = ""  # what the reference side is, for the notes

    def _jax_rule(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if self.kind == "vjp":
            return lambda *args: jax.vjp(fn, *args[:-1])[1](args[-1])
        return lambda primals, tangents: jax.jvp(fn, primals, tangents)

    def _cotangent(self, out: Any, rng: np.random.Generator | None = None) -> Any:
        rng = self.rng if rng is None else rng

        def draw(s: jax.ShapeDtypeStruct) -> jax.Array | np.ndarray:
            if jnp.issubdtype(s.dtype, jnp.inexact):
                x = rng.standard_normal(s.shape)
                if jnp.issubdtype(s.dtype, jnp.complexfloating):
                    x = x + 1j * rng.standard_normal(s.shape)
                return jnp.asarray(x, s.dtype)  # a JAX array, as JAX hands to a custom_vjp
            return np.zeros(s.shape, jax.dtypes.float0)

        return jax.tree_util.tree_map(draw, out)

    # ---- the sides of the identity: ⟨w, J u⟩ for a batch of directions u on one leaf -------

    def _reference_forward(self, leaf: Leaf) -> _sides.Side:
        ref_jvp = lambda p, t: jax.jvp(self.reference, p, t)  # noqa: E731
        return _sides.forward(self.point, ref_jvp, leaf, vectorize=True)

    def _jax_reference(self, side, name: str):
        """A reference side from JAX's derivative of the primal computation."""
        self.reference_name = f"{name} of the primal computation"
        if self.reference_note:
            self.notes.append(self.reference_note)
        return side

    def _finite(self, why: str, precision: str) -> Callable[[Leaf], _sides.Side]:
        fd = FiniteDifferences(self.fn, self.point, precision)
        self.reference_name = "central differences of fn"
        dtype = "float64" if fd.in_float64 else "fn's own dtypes (it refuses float64)"
        self.notes.append(
            f"JAX cannot differentiate fn's primal computation ({why}): the reference "
            f"⟨w, Ju⟩ is central differences of fn along each u, in {dtype}, within their "
            "estimated error (added to the tolerance)"
        )
        return fd.side

    def _sides(self, precision: str):
        """(test side, reference side), each leaf -> Side."""
        why = self.why = underivable(self.reference, self.point)
        if self.kind == "vjp":
            self.test_vectors = _sides.vjp_vectors(self.point, self.rule, "vjp")
            explicit = _sides.explicit(self.test_vectors)
            if why:
                return explicit, self._finite(why, precision)
            return explicit, self._jax_reference(self._reference_forward, "jax.jvp")
        first = self.coords.checked[0]
        try:
            _sides.forward(self.point, self.rule, first, True)(
                np.zeros((1, first.size), self.point.dtype(first)), np.zeros(1, np.int32)
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

        def test(leaf: Leaf) -> _sides.Side:
            return _sides.forward(self.point, self.rule, leaf, vec)

        def ref_vjp(*args: Any) -> Any:
            return jax.vjp(self.reference, *args[:-1])[1](args[-1])

        try:
            vectors = _sides.vjp_vectors(self.point, ref_vjp, "reference")
            return test, self._jax_reference(_sides.explicit(vectors), "JAX's reverse mode")
        except Exception as e:  # noqa: BLE001 - reverse mode unavailable: use forward mode
            if why:
                return test, self._finite(why, precision)
            self.notes.append(
                f"JAX's reverse mode fails on fn ({type(e).__name__}): the JVP under test is "
                "compared with jax.jvp of the primal computation directly"
            )
            return test, self._jax_reference(self._reference_forward, "jax.jvp")

    def _gaussian(self, leaf: Leaf, B: int, mask=None) -> np.ndarray:
        U = self.rng.standard_normal((B, leaf.size))
        if leaf.is_complex:
            U = U + 1j * self.rng.standard_normal((B, leaf.size))
        if mask is not None:
            U = U * mask
        return U.astype(self.point.dtype(leaf))

    def _verdict(self, t_side, r_side, U, js, spread: bool = False):
        """(under test, reference, |error|, tolerance) along the directions U."""
        a, r = t_side(U, js), r_side(U, js)
        with np.errstate(invalid="ignore"):
            err = np.abs(a.value - r.value)
        m = np.maximum(a.scale, r.scale)
        if spread:  # single elements: rounding relative to the leaf's typical column too
            m = m + np.mean(m)
        return a.value, r.value, err, self.rtol * m + self.atol + a.slack + r.slack

    # ---- the check ------------------------------------------------------------------------

    def run(self, transforms: tuple[str, ...], precision: str) -> IdentityResult:
        try:
            test, ref = self._sides(precision)
            linear = self._linearity()
        except Exception as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            if self.given or not self.why or first not in self.why:
                raise  # not JAX failing on fn: the user's rule raised
            raise TypeError(
                f"JAX cannot differentiate fn ({self.why}) and the {self.kind.upper()} under "
                f"test fails on it ({type(e).__name__}): check_{self.kind} checks a derivative "
                "rule, and fn has none JAX can run. Wrap the part JAX cannot differentiate (a "
                f"pure_callback, a pallas_call) in jax.custom_{self.kind} with its rule, or pass "
                f"{self.kind}=; to check fn against finite differences alone use "
                "jaxcheck.check_grad(lambda x: jnp.sum(w * fn(x)), x) with a random w."
            ) from e
        leaves, failures = {}, []
        for leaf in self.coords.checked:
            t_side, r_side = test(leaf), ref(leaf)
            _, b, err, tol = self._verdict(t_side, r_side, self._gaussian(leaf, self.k),
                                         np.arange(self.k))  # fmt: skip
            bad = ~(err <= tol)
            note = ""
            records: list[Any] = []
            if not np.isfinite(b).all():
                self.notes.append(
                    f"the reference ({self.reference_name}) is not finite along {leaf.path}: "
                    "the derivative of what fn computes is NaN or infinite at these primals "
                    "(sqrt or log at 0, a singular solve), so the rule cannot be compared "
                    "there; its elements are listed as failing"
                )
            if bad.any():
                j = int(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), -1)))
                records, note = self._locate(leaf, t_side, r_side, j)
            failures += records
            leaves[leaf.path] = IdentityLeaf(
                path=leaf.path, shape=leaf.shape, dtype=str(leaf.dtype), directions=self.k,
                max_error=float(np.max(err)), tolerance=float(np.min(tol)),
                n_failed=len(records), passed=not bad.any() and not linear[leaf.path],
                located=note, holds=not bad.any(), linear=linear[leaf.path],
            )  # fmt: skip
        primal = self._primal_output()
        checked = self._transforms(transforms)
        failures.sort(key=lambda e: -e.abs_error / max(e.tolerance, 1e-300))
        return IdentityResult(
            passed=all(v.passed for v in leaves.values())
            and all(v == "ok" for v in checked.values())
            and primal in (None, "ok"),
            kind=self.kind,
            leaves=leaves,
            failures=tuple(failures),
            transforms=checked,
            notes=tuple(self.notes),
            precision=precision,
            primal_output=primal,
        )

    def _locate(self, leaf: Leaf, t_side, r_side, j: int) -> tuple[list, str]:
        """The wrong elements of a failing leaf, along cotangent w_j."""
        note = ""
        if leaf.size <= LOCATE_ALL:
            candidates = np.arange(leaf.size)
        else:

            def probe_fn(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
                U = np.stack([self._gaussian(leaf, 1, labels == g)[0] for g in groups])
                _, _, err, tol = self._verdict(t_side, r_side, U, np.full(len(groups), j))
                return ~(err <= tol)

            located = _directions.locate(probe_fn, leaf.size, self.rng)
            candidates, note = located.candidates, located.note
        parts = (1, 1j) if leaf.is_complex else (1,)
        records = []
        for start in range(0, len(candidates), BASIS_CHUNK):
            idx = candidates[start : start + BASIS_CHUNK]
            for p, unit in enumerate(parts):
                U = np.zeros((len(idx), leaf.size), self.point.dtype(leaf))
                U[np.arange(len(idx)), idx] = unit
                a, b, err, tol = self._verdict(t_side, r_side, U, np.full(len(idx), j), True)
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

    # ---- what a rule must be besides the identity -------------------------------------------

    def _linearity(self) -> dict[str, str]:
        """{leaf path: "" or why the rule is not linear in its cotangent/tangent there}."""
        if self.kind == "jvp":
            self._jvp_at_zero = self.rule(self.point.primals, self.point.tangents({}))
            t0 = _sides.tangent_out(self._jvp_at_zero)
            return _linearity.jvp_messages(self.point, self.rule, self.u, self.rng_linear, t0)
        ws, vs = list(self.point.w[:2]), list((self.test_vectors or [])[:2])
        if len(ws) < 2:
            ws.append(self._cotangent(self.out_shape, self.rng_linear))
            vs += _sides.vjp_vectors(self.point, self.rule, "vjp", ws=ws[1:])
        return _linearity.vjp_messages(self.point, self.rule, "vjp", self.u, ws, vs)

    def _primal_output(self) -> str | None:
        """The rule's primal output against fn's value; None where the rule has none."""
        if self.kind == "vjp" and self.given:
            return None  # a handwritten VJP returns cotangents only
        if self.kind == "vjp":
            got = jax.vjp(self.fn, *self.point.primals)[0]
        else:
            got = self._jvp_at_zero[0]
        expected = self.fn(*self.point.primals)
        return _transforms.primal_output(got, expected, self.rtol, self.atol)

    # ---- jit and vmap ---------------------------------------------------------------------

    def _transforms(self, names: tuple[str, ...]) -> dict[str, str]:
        """{name: "ok", or what differs or fails when the rule under test runs under it}."""
        if self.kind == "vjp":
            inputs = list(self.point.w)
            call = lambda p, x: self.rule(*p, x)  # noqa: E731
        else:
            checked = self.coords.checked
            inputs = [
                self.point.tangents({x.position: self._gaussian(x, 1)[0] for x in checked})
                for _ in range(self.k)
            ]
            call = lambda p, x: _sides.tangent_out(self.rule(p, x))  # noqa: E731
        given = self.given and names
        why = _transforms.untraceable(call, self.point.primals, inputs[0]) if given else ""
        if why:
            self.notes.append(
                f"the {self.kind}= under test cannot be traced by JAX ({why}), so it is not "
                f"checked under {', '.join(names)}: a handwritten {self.kind.upper()} that is "
                "only called eagerly (NumPy code) need not be; a custom rule in fn must be, "
                "and is"
            )
            return {}
        try:  # once for every transform
            eager = [call(self.point.primals, x) for x in inputs] if names else None
        except Exception:  # noqa: BLE001 - each transform reports it
            eager = None
        p, rtol, atol = self.point.primals, self.rtol, self.atol
        return {t: _transforms.consistency(t, call, p, inputs, rtol, atol, eager) for t in names}
