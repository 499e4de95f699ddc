"""check_vjp and check_jvp: exact identities between derivative rules, with no step size.

For the Jacobian J of fn at the primals and any tangent u and cotangent w,

    ⟨u, Jᵀw⟩ = ⟨Ju, w⟩,   ⟨a, b⟩ = Re Σ a_i b_i

(the pairing JAX's transposes use, complex numbers included). `check_vjp` takes Jᵀw from the
VJP under test (a `custom_vjp` rule reached through `jax.vjp`, or a handwritten backward) and
Ju from `jax.jvp` of the *primal computation*: fn with every custom rule replaced by what the
function computes (`primal`). `check_jvp` takes Ju from the JVP under test and Jᵀw from JAX's
reverse mode of the primal computation (its forward mode where reverse mode is unavailable,
as through a `while_loop`). Both sides are exact, so the tolerance is rounding only:
rtol·Σ|a_i b_i| with rtol = √u of the working dtype by default. Where JAX cannot differentiate
the primal computation at all (a `pure_callback`, a `pallas_call` without a JVP), the
reference is central differences of fn along each direction, within their error model
(`finite`).

Each floating-point leaf of the primals gets its own k directions, so a wrong cotangent for a
small bias is not hidden by a large weight; leaves are named after fn's parameters, as
check_grad names them for a tuple of argnums (`['x']`, `['W']`). A failing leaf is then checked
element by element (group testing first for leaves over `identity.LOCATE_ALL` elements). The
rule must also be linear in its cotangent (tangent) and return fn's primal output
(`linearity`, `transforms.primal_output`), and it is evaluated under `jit` and `vmap` and
compared with its eager values (skipped, with a note, for a handwritten rule JAX cannot trace).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from .._core.coords import Coords
from .._core.errors import hides_input_errors, one_line
from .._core.paths import leaf_paths
from .._grad import options, runtime
from .._grad.calling import _names as parameter_names
from .dot_test import Identity, TraceError
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
    replaced by the primal computation. Exact: no finite differences, no step size (except
    where JAX cannot differentiate the primal computation: a `pure_callback`, a `pallas_call`
    without a JVP; then J u is a central difference of fn along u, within its error model,
    and a note says so). The VJP must also be linear in its cotangent (vjp(0) = 0,
    vjp(a·w₁ + w₂) = a·vjp(w₁) + vjp(w₂) to rounding) and a `custom_vjp`'s fwd must return
    fn's primal output.

    Args:
        fn: `fn(*primals)` returns any pytree of arrays. It must be JAX-traceable. The
            leaves of the result are named after its parameters (`['x']`, `['W']`).
        *primals: the point, any pytrees of arrays; non-float leaves are skipped.
        vjp: the VJP under test, `vjp(*primals, cotangent)` returning one cotangent per
            primal (a tuple; the bare cotangent when there is one primal). None: `jax.vjp(fn)`,
            which runs fn's `custom_vjp`/`custom_jvp` rules. It may be NumPy code: a `vjp=`
            JAX cannot trace is not checked under `transforms` (a note says why).
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
    available, from central differences of fn where neither is). Exact: no finite
    differences, no step size. The JVP must also be linear in its tangent and return fn's
    value as its primal output.

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


def _validate(
    kind: str,
    fn: Callable[..., Any],
    rule: Callable[..., Any] | None,
    primals: tuple[Any, ...],
    directions: int,
    rtol: float | None,
    atol: float | None,
    precision: str,
    seed: int,
    transforms: tuple[str, ...],
) -> None:
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


def _run(
    kind: str,
    fn: Callable[..., Any],
    primals: tuple[Any, ...],
    rule: Callable[..., Any] | None,
    k: int,
    rtol: float | None,
    atol: float | None,
    precision: str,
    seed: int,
    transforms: tuple[str, ...],
) -> IdentityResult:
    _validate(kind, fn, rule, primals, k, rtol, atol, precision, seed, transforms)
    coords = _named(fn, tuple(primals))
    try:
        return _checked(kind, fn, coords, primals, rule, k, rtol, atol, precision, seed, transforms)
    except Exception as e:
        if precision != "float64":
            raise _explained(kind, e) from e
        failure = e
    # A kernel, or code that builds float32 arrays itself (a scan's carry), raises in float64
    # (when traced, or when run: a Pallas kernel in interpret mode): check it in its dtypes.
    try:
        result = _checked(kind, fn, coords, primals, rule, k, rtol, atol, "native", seed,
                          transforms)  # fmt: skip
    except Exception:  # noqa: BLE001 - fails natively too: the float64 error is the one to see
        raise _explained(kind, failure) from failure
    cause = failure.cause if isinstance(failure, TraceError) else one_line(failure)
    note = (
        f"fn cannot run in float64 ({cause.rstrip(':')}): a kernel, or code that builds "
        "float32 arrays itself; checked in the dtypes it runs in, as precision='native' checks"
    )
    return dataclasses.replace(result, notes=(note, *result.notes))


def _checked(
    kind: str,
    fn: Callable[..., Any],
    coords: Coords,
    primals: tuple[Any, ...],
    rule: Callable[..., Any] | None,
    k: int,
    rtol: float | None,
    atol: float | None,
    precision: str,
    seed: int,
    transforms: tuple[str, ...],
) -> IdentityResult:
    """The identity checked at the primals, cast to the precision's working dtypes."""
    with runtime.numerics(precision):
        leaves = jax.tree_util.tree_leaves(tuple(primals))
        values = coords.cast(leaves, runtime.working_dtype(precision, traced=True))
        coords.check_finite(values)
        identity = Identity(kind, fn, coords, values, rule, k, rtol, atol, seed)
        return identity.run(transforms, precision)


def _explained(kind: str, e: Exception) -> Exception:
    """e, or where it is an assertion without a message (from inside JAX or a kernel), an
    error that says where it stopped and what to try."""
    if not isinstance(e, AssertionError) or str(e).strip():
        return e
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = (
        f" in {tb.tb_frame.f_code.co_name} ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
        if tb is not None
        else ""
    )
    return RuntimeError(
        f"check_{kind} stopped: an assertion without a message failed{where}, while fn, "
        f"its rule or JAX's derivative of it ran at these primals. Check that fn runs on them "
        f"as given (jax.jit(fn)(*primals)) and that its {kind.upper()} does "
        f"(jax.{kind}); a kernel (pallas_call) asserts on block shapes, dtypes and grids: try "
        "precision='native' (the primals in their own dtypes) and transforms=() (the rule not "
        "run under jit and vmap)."
    )


def _named(fn, primals: tuple) -> Coords:
    """The coordinates of the primals, each leaf named after fn's parameter as check_grad
    names the arguments of a tuple of argnums: `['x']`, `['params']['W']` (`['arg1']` where
    the signature has no name for it)."""
    coords = Coords.build(primals)
    names = parameter_names(fn, range(len(primals)))
    paths = [path for name, p in zip(names, primals) for path, _ in leaf_paths({name: p})]
    return dataclasses.replace(
        coords,
        leaves=tuple(dataclasses.replace(x, path=paths[x.position]) for x in coords.leaves),
    )
