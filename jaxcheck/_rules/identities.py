"""check_vjp and check_jvp: exact identities between derivative rules, with no step size.

For the Jacobian J of fn at the primals and any tangent u and cotangent w,

    ⟨u, Jᵀw⟩ = ⟨Ju, w⟩,   ⟨a, b⟩ = Re Σ a_i b_i

(the pairing JAX's transposes use, complex numbers included). `check_vjp` takes Jᵀw from the
VJP under test (a `custom_vjp` rule reached through `jax.vjp`, or a handwritten backward) and
Ju from `jax.jvp` of the *primal computation*: fn with every custom rule replaced by what the
function computes (`primal`). `check_jvp` takes Ju from the JVP under test and Jᵀw from JAX's
reverse mode of the primal computation (its forward mode where reverse mode is unavailable,
as through a `while_loop`). Both sides are exact, so the tolerance is rounding only:
rtol·Σ|a_i b_i| with rtol = √u of the working dtype by default.

Each floating-point leaf of the primals gets its own k directions, so a wrong cotangent for a
small bias is not hidden by a large weight. A failing leaf is then checked element by element
(group testing first for leaves over `identity.LOCATE_ALL` elements), and the rule under test is
evaluated under `jit` and `vmap` and compared with its eager values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from .._core.coords import Coords
from .._core.errors import hides_input_errors
from .._grad import context, options
from .identity import Identity
from .report import IdentityResult

TRANSFORMS = ("jit", "vmap")


@hides_input_errors
def check_vjp(
    fn: Callable[..., Any],
    *primals: Any,
    vjp: Callable[..., Any] | None = None,
    directions: int = options.DIRECTIONS,
    rtol: float | None = None,
    atol: float | None = None,
    precision: str = "float64",
    seed: int = 0,
    transforms: tuple[str, ...] = TRANSFORMS,
) -> IdentityResult:
    """Check a VJP (a `custom_vjp` rule or a handwritten backward) against `jax.jvp`.

    For `directions` random pairs (u, w) per floating-point leaf of the primals, compares
    ⟨u, vjp(w)⟩ with ⟨J u, w⟩, where J u comes from `jax.jvp` of fn with its custom rules
    replaced by the primal computation. Exact: no finite differences, no step size.

    Args:
        fn: `fn(*primals)` returns any pytree of arrays. It must be JAX-traceable.
        *primals: the point, any pytrees of arrays; non-float leaves are skipped.
        vjp: the VJP under test, `vjp(*primals, cotangent)` returning one cotangent per
            primal (a tuple; the bare cotangent when there is one primal). None: `jax.vjp(fn)`,
            which runs fn's `custom_vjp`/`custom_jvp` rules.
        directions: random (u, w) pairs per leaf.
        rtol, atol: the identity holds within rtol·Σ|u_i (Jᵀw)_i| + atol (and the same on
            the other side); rtol defaults to √u of the working dtype (1.5e-8 in float64).
        precision: "float64" (default) casts the primals to float64 inside `jax.enable_x64`;
            "native" keeps their dtypes.
        seed: seed of the random directions.
        transforms: which transformations of the VJP under test must agree with its eager
            values: any of "jit", "vmap" (over a batch of primals and cotangents).

    Returns:
        An `IdentityResult`.

    Example:
        >>> import jax, jax.numpy as jnp, jaxcheck
        >>> @jax.custom_vjp
        ... def square(x):
        ...     return x**2
        >>> square.defvjp(lambda x: (x**2, x), lambda x, g: (g * x,))  # should be 2·g·x
        >>> jaxcheck.check_vjp(square, jnp.arange(1.0, 4.0)).passed
        False
    """
    return _run("vjp", fn, primals, vjp, directions, rtol, atol, precision, seed, transforms)


@hides_input_errors
def check_jvp(
    fn: Callable[..., Any],
    *primals: Any,
    jvp: Callable[..., Any] | None = None,
    directions: int = options.DIRECTIONS,
    rtol: float | None = None,
    atol: float | None = None,
    precision: str = "float64",
    seed: int = 0,
    transforms: tuple[str, ...] = TRANSFORMS,
) -> IdentityResult:
    """Check a JVP (a `custom_jvp` rule or a handwritten one) against JAX's reverse mode.

    For `directions` random pairs (u, w) per floating-point leaf of the primals, compares
    ⟨jvp(u), w⟩ with ⟨u, Jᵀw⟩, where Jᵀw comes from `jax.vjp` of fn with its custom rules
    replaced by the primal computation (from `jax.jvp` of it where reverse mode is not
    available). Exact: no finite differences, no step size.

    Args:
        fn: `fn(*primals)` returns any pytree of arrays. It must be JAX-traceable.
        *primals: the point, any pytrees of arrays; non-float leaves are skipped.
        jvp: the JVP under test, `jvp(primals, tangents)` returning `(out, tangent_out)` like
            `jax.jvp` (primals and tangents are tuples). None: `jax.jvp(fn)`, which runs
            fn's `custom_jvp` rules.
        directions, rtol, atol, precision, seed, transforms: as in `check_vjp`.

    Returns:
        An `IdentityResult`.
    """
    return _run("jvp", fn, primals, jvp, directions, rtol, atol, precision, seed, transforms)


# ---- setup -----------------------------------------------------------------------------------


def _validate(kind, fn, rule, primals, directions, rtol, atol, precision, seed, transforms):
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(*primals); got {type(fn).__name__}.")
    if rule is not None and not callable(rule):
        signature = "vjp(*primals, cotangent)" if kind == "vjp" else "jvp(primals, tangents)"
        raise TypeError(
            f"{kind}= must be a function {signature}, or None for jax.{kind}(fn); got "
            f"{type(rule).__name__}."
        )
    if not primals:
        raise ValueError(
            f"check_{kind}(fn, *primals) needs the point: pass fn's arguments after fn, "
            f"e.g. check_{kind}(fn, x, W)."
        )
    options.validate_numerics(rtol, atol, precision, seed)
    options.count_option("directions", directions, "random direction pairs per leaf")
    if isinstance(transforms, str) or not all(t in TRANSFORMS for t in transforms):
        raise ValueError(
            f"transforms={transforms!r}: pass a tuple of {TRANSFORMS} (or () for none), the "
            f"transformations under which the {kind.upper()} must equal its eager values."
        )


def _run(kind, fn, primals, rule, k, rtol, atol, precision, seed, transforms) -> IdentityResult:
    _validate(kind, fn, rule, primals, k, rtol, atol, precision, seed, transforms)
    coords = Coords.build(tuple(primals))
    with context.numerics(precision):
        leaves = jax.tree_util.tree_leaves(tuple(primals))
        values = coords.cast(leaves, context.working_dtype(precision, traced=True))
        coords.check_finite(values)
        try:
            return Identity(kind, fn, coords, values, rule, k, rtol, atol, seed).run(
                transforms, precision
            )
        except ValueError as e:
            if "callbacks do not support JVP" not in str(e):
                raise
            raise TypeError(
                f"check_{kind} builds its reference from jax.jvp of fn's primal computation, "
                "and fn calls jax.pure_callback (or io_callback), which JAX cannot "
                "differentiate. The reference needs a JAX-differentiable forward: write it with "
                "jax.numpy, or check the rule against finite differences with "
                "jaxcheck.check_grad(lambda x: jnp.sum(w * fn(x)), x) (a random w), which only "
                "evaluates fn."
            ) from None
