"""What a check compares, prepared once before any mode runs: the `Problem`.

fn traced (or not), its output made one scalar (a cotangent, or a random projection), f(θ)
evaluated, complex leaves turned into (x, y) pairs, and the gradient under test read. Every
mistake found on the way (a pytree returned, a non-finite loss, a gradient of the wrong
shape) is raised here, before the long part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.coords import Coords
from .._core.errors import NOT_JAX_CODE
from .._numerics import complex as _complex
from .._numerics import precision as _precision
from . import fingerprint, loss, under_test
from . import rounding as _rounding
from .elementwise import Nondet
from .plan import Plan
from .runtime import working_dtype


@dataclasses.dataclass
class Problem:
    """fn at θ, and the gradient under test, in the coordinates the check works in."""

    fn: Callable[..., Any]  # fn(params, *args) as the check calls it (`calling.adapt`)
    grad_fn: Callable[..., Any] | None
    given: Coords  # the leaves as given
    coords: Coords  # the leaves checked: complex ones as (x, y) pairs
    values: list  # every leaf, in the working dtype (as pairs where complex)
    args: tuple  # in the working dtype
    fn_scalar: Callable[..., Any]  # the scalar the differences are taken of, on `coords`
    key: tuple | None  # every kept executable's key (`_key`); None: nothing is compiled
    traced: bool  # JAX can trace fn
    why: str  # why not
    f0: float  # f(θ)
    out_dtype: Any
    grads: dict[str, np.ndarray]  # leaf path -> the gradient under test, over `coords`
    typical: dict[str, float]  # leaf path -> the leaf's scale (`typical_scale`)
    nondet: Nondet
    notes: list[str]
    # The coarsest precision fn's program computes in, where coarser than every checked leaf's
    # working dtype (a cast to float32 inside a float64 check); None: the leaves' own.
    computed: Any = None
    rounding: Any = None  # the gradient under test's own rounding (`rounding.Rounding`)
    kinks: tuple[str, ...] = ()  # the non-smooth primitives fn's program uses (`precision.kinks`)

    def coarser(self, dtype: Any) -> np.dtype:
        """dtype, or the precision fn computes in where that is coarser."""
        return (
            np.dtype(dtype) if self.computed is None else _precision.coarser(dtype, self.computed)
        )


def prepare(fn, params, args, coords: Coords, grad_fn, plan: Plan) -> Problem:
    """The problem of checking grad_fn (None: jax.grad) against fn at params."""
    notes: list[str] = []
    nondet = Nondet(plan.options.nondet_tol)
    leaves = jax.tree_util.tree_leaves(params)
    traced, why = _trace(fn, leaves, coords, args, plan.options.precision)
    values = coords.cast(leaves, working_dtype(plan.options.precision, traced=traced is not None))
    work_params, work_args = coords.unflatten(values), cast_args(args, plan.options.precision)
    coords.check_finite(values)
    own_dtype, note = under_test.precision(coords, plan.options.precision, plan.options.order)
    own_note = len(notes)
    notes += [note] if note else []

    if traced is not None:  # compiled: op-by-op evaluation compiles every primitive on its own
        out = _abstract(fn, work_params, work_args, plan.options.precision)
    else:
        out = fn(work_params, *work_args)
    shape, out_dtype = loss.output_info(out, coords)
    w = _projection(shape, out_dtype, plan, grad_fn, notes)
    fn_scalar = loss.scalarized(fn, w)
    key = None  # the host path compiles nothing
    if traced is not None:
        base = loss.program(fn_scalar, work_params, work_args, out_dtype)
        at = (leaves, args) if own_dtype else (values, work_args)  # where JAX's gradient is
        key = _key(base, fn_scalar, coords, at, grad_fn)
        value = None
        if grad_fn is None and not own_dtype and not any(x.is_complex for x in coords.checked):
            # JAX's gradient at these very values: its program gives f(θ) too (one compilation
            # fewer); the gradient is read from the same executable below.
            def value():
                return under_test.jax_grad(fn_scalar, values, coords, work_args, key)[0]

        if base.value is None:
            f0 = loss.base_value(fn_scalar, work_params, work_args, key, out_dtype, value)
        else:  # two traces of fn differ (Python-side randomness) but not their values
            f0 = base.value
    else:  # two calls: Python-side randomness differs between them
        f0 = float(fn_scalar(work_params, *work_args))
        again = float(fn_scalar(work_params, *work_args))
        nondet.seen = loss.check_base(f0, again, out_dtype, nondet.tol)

    given, fn_given = coords, fn_scalar
    if grad_fn is not None:  # a flat vector in the dicts' insertion order: read as such
        grad_fn, order_note = under_test.in_dict_order(
            grad_fn, fn_scalar, params, (work_params, work_args), coords, values,
            plan.options.seed,
        )  # fmt: skip
        notes += [order_note] if order_note else []
    if any(leaf.is_complex for leaf in coords.checked):  # from here on: (x, y) pairs
        coords = _complex.realify(coords)
        values = _complex.to_pairs(values, coords)
        fn_scalar = _complex.of_pairs(fn_scalar, coords)
        if key is not None:
            key = (*key, "pairs", _complex.positions(coords))
        notes.append(
            "complex leaves: real and imaginary parts checked as separate elements, against "
            "JAX's convention g = ∂f/∂x − i·∂f/∂y (the conjugate of PyTorch's)"
        )
    if grad_fn is None and traced is None:
        raise TypeError(
            f"fn could not be traced by JAX ({why}), so jax.grad cannot compute the gradient "
            "to check. Pass your handwritten backward as grad_fn=, or write fn with jax.numpy."
        )
    grads, why_not = under_test.under_test(
        own_dtype, fn_given, fn_scalar, grad_fn, (params, args), (work_params, work_args),
        leaves, values, given, coords, key, f0, traced is not None,
    )  # fmt: skip
    if why_not:
        notes[own_note] = why_not
    if grad_fn is not None:
        notes += under_test.dtype_notes(given, grads)
    typical = typical_scale(coords, values)
    computed = None if traced is None else _computed(base.program, coords, values)
    notes += _computed_note(computed)
    rounding = None
    if given is coords and plan.options.order == 1:  # complex pairs: not measured
        own = own_dtype and not why_not
        at = under_test.evaluator(own, fn_given, grad_fn, given, key, args, work_args)
        rounding = _rounding.make(at, given, leaves if own else values, values, grads, typical,
                                  computed, nondet.tol, plan.options.seed)  # fmt: skip
    return Problem(
        fn, grad_fn, given, coords, values, work_args, fn_scalar, key, traced is not None, why,
        f0, out_dtype, grads, typical, nondet, notes, computed, rounding,
        () if traced is None else _precision.kinks(base.program),
    )  # fmt: skip


def _trace(fn, leaves, coords: Coords, args, precision: str) -> tuple[Any, str]:
    """`loss.trace`; raises `NotInFloat64` where fn traces in its own dtypes only."""
    traced, why = loss.trace(fn, leaves, coords, args)
    not_jax = why in {e.__name__ for e in NOT_JAX_CODE}  # as natively: no second trace
    if traced is None and precision != "native" and not not_jax:
        with jax.enable_x64(False):  # code that builds float32 arrays itself, or a kernel
            if loss.trace(fn, leaves, coords, args)[0] is not None:
                raise NotInFloat64(why)
    return traced, why


def _abstract(fn, params, args, precision: str) -> Any:
    """`loss.abstract_output` in the working dtypes; `NotInFloat64` where fn cannot run so."""
    try:
        return loss.abstract_output(fn, params, args)
    except Exception as e:
        if precision != "native":  # fn traced in its own dtypes (`_trace`), not in these
            raise NotInFloat64(type(e).__name__) from e
        raise


def _computed_note(computed: np.dtype | None) -> list[str]:
    if computed is None:
        return []
    return [
        f"fn computes in {computed} inside (its program rounds to {computed}): the finite "
        f"differences are judged at {computed}'s rounding, with steps sized for it"
    ]


class NotInFloat64(Exception):
    """fn traces in its own dtypes but not in float64 (a kernel, a scan whose carry it builds
    in float32): the check runs in the dtypes fn runs in (`check.check_with`)."""


def _computed(program, coords: Coords, values: list) -> np.dtype | None:
    """The coarsest precision fn's program computes in, where it is coarser than every
    checked leaf's working dtype; else None."""
    computed = _precision.computed_dtype(program)
    leaves = [
        _precision.real_dtype(np.asarray(values[leaf.position]).dtype) for leaf in coords.checked
    ]
    finest = [_precision.eps(d) for d in leaves if d is not None]
    if computed is None or not finest:
        return None
    return computed if _precision.eps(computed) > min(finest) else None


def _key(base: loss.Base, fn_scalar, coords: Coords, at: tuple, grad_fn) -> tuple:
    """Every kept executable's key: what will run, never the Python function (a notebook's
    re-run cell redefines a custom rule, or changes a global or a closure's value, and fn
    stays the same object).

    It holds the digest (`fingerprint`) of fn's program (the projection is a constant
    there); where the gradient under test is JAX's and fn calls custom_jvp or custom_vjp
    rules (which fn's program names only), the digest of the rules (or, where a call cannot
    be traced alone, of the gradient's whole program at `at`: values, args); and the static
    part of the params pytree (a registered node's aux data, an nnx Module's graph), as
    jax.jit retraces on a new treedef.
    """
    rules = None
    if grad_fn is None and fingerprint.has_rules(base.program):
        rules = fingerprint.rules(base.program) or fingerprint.digest(
            under_test.program(fn_scalar, at[0], coords, at[1])
        )
    return (base.digest, rules, coords.treedef)


def _projection(shape: tuple, out_dtype, plan: Plan, grad_fn, notes: list[str]):
    """The w of the scalar ⟨w, fn(...)⟩ checked (None: fn is scalar); its note in notes."""
    if plan.cotangent is not None:
        w = plan.cotangent
        if w.shape != shape:
            raise ValueError(
                f"cotangent has shape {w.shape}, but fn returns shape {shape}: pass the upstream "
                "gradient of fn's output (dout), shaped like the output."
            )
        notes.append(f"checked the gradient of ⟨cotangent, fn(...)⟩ (fn returns shape {shape})")
        return w.astype(out_dtype)
    if int(np.prod(shape)) == 1:
        return None
    if grad_fn is not None:
        raise ValueError(
            f"fn returned an array of shape {shape}, but grad_fn is given: a gradient "
            "belongs to a scalar loss. Make fn return the scalar loss that grad_fn "
            "differentiates (e.g. jnp.sum(...)), or drop grad_fn to check JAX's derivative "
            "of fn through a random projection w·fn(params)."
        )
    seed = plan.options.seed
    notes.append(
        f"fn returns shape {shape}: checked the scalar w·fn(params) for one random "
        f"w ~ N(0, I) (seed={seed}), which exposes any wrong Jacobian column almost surely"
    )
    return np.random.default_rng(seed).standard_normal(shape).astype(out_dtype)


def cast_args(args: tuple, precision: str) -> tuple:
    """The data as a check passes it to fn: float arrays in float64 unless precision is
    "native"."""
    if precision == "native":
        return args

    def cast(x: Any) -> Any:
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(jnp.float64)
        if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
            return x.astype(np.float64)
        return x

    return jax.tree_util.tree_map(cast, args)


def typical_scale(coords: Coords, values: list) -> dict[str, float]:
    """Each leaf's RMS value; the model's for an all-zero leaf (1 if everything is zero)."""
    checked = [np.asarray(values[leaf.position]).reshape(-1) for leaf in coords.checked]
    rms = [float(np.sqrt(np.mean(t.astype(np.float64) ** 2))) for t in checked]
    sizes = [t.size for t in checked]
    model = float(np.sqrt(np.dot(np.square(rms), sizes) / max(sum(sizes), 1)))
    return {leaf.path: r or model or 1.0 for leaf, r in zip(coords.checked, rms)}
