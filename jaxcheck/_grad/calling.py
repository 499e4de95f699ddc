"""How a check calls fn and grad_fn: `argnums`, `cotangent`, `has_aux`, and the arguments.

The rest of jaxcheck checks one shape of problem: `fn(params, *args)` returns a scalar,
`grad_fn(params, *args)` returns a pytree like params. The checks people write come in other
shapes, and `adapt` turns each into that one, before anything is traced:

- `argnums` (as `jax.grad`'s): the arguments checked, an int or a tuple. With a tuple the
  params become a dict named after fn's parameters (`x`, `w`, `b`), and `grad_fn` returns
  one gradient per argument, in `argnums` order;
- `cotangent`: fn returns an array and the gradient under test is that of ⟨cotangent, fn⟩
  (a layer's backward with an upstream gradient, as CS231n's `eval_numerical_gradient_array`
  checks it); applied where the output is scalarized (`check`);
- `has_aux`: fn returns (loss, aux); the aux is dropped.

It also refuses, with the fix, the calls that cannot work: arguments fn's signature cannot
take (targets forgotten), a transform passed as grad_fn (`jax.grad` itself), a layer's
`backward(dout, cache)` passed as grad_fn.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Call:
    """The check in its one shape: fn(params, *args), grad_fn(params, *args) or None."""

    fn: Callable[..., Any]
    params: Any
    args: tuple
    grad_fn: Callable[..., Any] | None
    cotangent: np.ndarray | None


def adapt(
    fn: Callable[..., Any],
    params: Any,
    args: Sequence[Any],
    grad_fn: Callable[..., Any] | None,
    argnums: int | Sequence[int] = 0,
    cotangent: Any = None,
    has_aux: bool = False,
) -> Call:
    """The check of `fn(params, *args)` (positional arguments as check_grad received them)
    with the arguments `argnums` as the parameters; see the module docstring."""
    refuse_transform(grad_fn)
    positional = (params, *args)
    selected = _argnums(argnums, len(positional))
    _bind("fn", fn, positional, selected)
    if grad_fn is not None:
        _bind("grad_fn", grad_fn, positional, selected)
    if has_aux not in (True, False):
        raise TypeError(f"has_aux={has_aux!r}: pass True (fn returns (loss, aux)) or False.")
    if cotangent is not None:
        cotangent = _as_array(cotangent, "cotangent")
    names = _names(fn, selected) if isinstance(argnums, tuple) else None
    # The same adapted function for the same fn and call: JAX caches traces per function,
    # so a repeated check traces less (executables are kept by program: `fingerprint`).
    how = (has_aux, selected, None if names is None else tuple(names), len(positional))
    try:
        fn_p = _adapted(fn, *how)
    except TypeError:  # an unhashable callable: adapted afresh (and compiled afresh) each time
        fn_p = _adapted.__wrapped__(fn, *how)
    if selected == (0,) and names is None:
        return Call(fn_p, params, tuple(args), grad_fn, cotangent)
    rest_positions = [i for i in range(len(positional)) if i not in selected]
    merged = _merger(selected, names, len(positional))

    new_params = (
        {n: positional[i] for n, i in zip(names, selected)} if names else positional[selected[0]]
    )
    new_grad = None
    if grad_fn is not None:

        def new_grad(p: Any, *rest: Any) -> Any:
            out = grad_fn(*merged(p, rest))
            if not names:
                return out
            if not isinstance(out, (tuple, list)) or len(out) != len(names):
                raise ValueError(
                    f"with argnums={tuple(selected)}, grad_fn returns one gradient per "
                    f"argument, in argnums order (as jax.grad(fn, argnums={tuple(selected)}) "
                    f"does): a tuple of {len(names)} ({', '.join(names)}); it returned "
                    f"{_describe(out)}."
                )
            return dict(zip(names, out))

    rest = tuple(positional[i] for i in rest_positions)
    return Call(fn_p, new_params, rest, new_grad, cotangent)


@functools.lru_cache(maxsize=64)
def _adapted(fn, has_aux: bool, selected: tuple, names: tuple | None, n: int):
    """fn(params, *rest) for the check: the selected arguments from params, aux dropped."""
    loss = _without_aux(fn) if has_aux else fn
    if selected == (0,) and names is None:
        return loss
    merged = _merger(selected, names, n)

    def fn_p(p: Any, *rest: Any) -> Any:
        return loss(*merged(p, rest))

    return fn_p


def _merger(selected: tuple, names, n: int):
    """(params, rest) -> fn's positional arguments in order."""
    rest_positions = [i for i in range(n) if i not in selected]

    def merged(p: Any, rest: Sequence[Any]) -> list[Any]:
        full = dict(zip(rest_positions, rest))
        parts = [p[k] for k in names] if names else [p]
        full.update(zip(selected, parts))
        return [full[i] for i in range(n)]

    return merged


def refuse_transform(grad_fn: Callable[..., Any] | None) -> None:
    """grad_fn=jax.grad (the transform, not the gradient function) gets the fix."""
    if grad_fn is None:
        return
    transforms = {id(jax.grad): "jax.grad", id(jax.value_and_grad): "jax.value_and_grad",
                  id(jax.jacrev): "jax.jacrev", id(jax.jacfwd): "jax.jacfwd",
                  id(jax.vjp): "jax.vjp"}  # fmt: skip
    for module, names in (("flax.nnx", ("grad", "value_and_grad")),
                          ("equinox", ("filter_grad", "filter_value_and_grad"))):  # fmt: skip
        lib = sys.modules.get(module)
        for name in names if lib is not None else ():
            if hasattr(lib, name):
                transforms[id(getattr(lib, name))] = f"{module.split('.')[-1]}.{name}"
    named = transforms.get(id(grad_fn))
    if named:
        raise TypeError(
            f"grad_fn={named} is the transform itself, not a gradient function: pass "
            f"grad_fn={named}(fn) (or leave grad_fn=None, which checks jax.grad(fn))."
        )


def _argnums(argnums, n: int) -> tuple[int, ...]:
    one = isinstance(argnums, int) and not isinstance(argnums, bool)
    many = (
        isinstance(argnums, (tuple, list))
        and argnums
        and all(isinstance(a, int) and not isinstance(a, bool) for a in argnums)
    )
    if not (one or many):
        raise TypeError(
            f"argnums={argnums!r}: pass an int or a tuple of ints, the positions of the "
            "arguments to check, as in jax.grad."
        )
    selected = tuple(a % n if -n <= a < n else a for a in ((argnums,) if one else argnums))
    bad = [a for a in selected if not 0 <= a < n]
    if bad:
        raise ValueError(
            f"argnums={argnums!r} names argument {bad[0]}, but check_grad was given {n} "
            f"positional argument{'s' if n != 1 else ''} after fn (positions 0 to {n - 1})."
        )
    if len(set(selected)) != len(selected):
        raise ValueError(f"argnums={argnums!r} repeats an argument; name each one once.")
    return selected


def _names(fn, selected: Sequence[int]) -> list[str]:
    """fn's parameter names at the selected positions (arg<k> where it has none)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [positional[i] if i < len(positional) else f"arg{i}" for i in selected]
    return names if len(set(names)) == len(names) else [f"arg{i}" for i in selected]


def _bind(what: str, f, positional: tuple, selected) -> None:
    """Refuse, with the fix, positional arguments that f's signature cannot take."""
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):  # a builtin or a C function: let the call say
        return
    names = list(signature.parameters)
    if what == "grad_fn" and names[:2] == ["dout", "cache"]:
        raise TypeError(
            f"grad_fn looks like a layer's backward{signature}: grad_fn is called like fn, "
            "with the inputs, grad_fn(params, *args). Pass cotangent=dout and "
            "grad_fn=lambda *inputs: backward(dout, forward(*inputs)[1]), with argnums= "
            "selecting the inputs backward returns gradients for."
        )
    try:
        signature.bind(*positional)
    except TypeError as e:
        hint = ""
        required = [p for p in signature.parameters.values() if p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]  # fmt: skip
        first = positional[0]
        if (what == "fn" and len(positional) == 1 and isinstance(first, (tuple, list))
                and len(first) == len(required) > 1):  # fmt: skip
            n = len(first)
            hint = (
                f" The inputs came as one {type(first).__name__} of {n}, as "
                "torch.autograd.gradcheck(f, inputs) takes them: here pass them unpacked and "
                f"say which to check, check_grad(f, *inputs, argnums={tuple(range(n))})."
            )
        elif what == "fn" and len(positional) < len(required):
            hint = (
                " Pass the data and targets too: check_grad(fn, params, x, y) calls "
                "fn(params, x, y)."
            )
        raise TypeError(
            f"{what} is called as {what}(params, *args) with the {len(positional)} positional "
            f"argument{'s' if len(positional) != 1 else ''} check_grad was given after fn, "
            f"but its signature is {f.__name__ if hasattr(f, '__name__') else what}"
            f"{signature}: {e}.{hint}"
        ) from None


def _without_aux(fn: Callable[..., Any]) -> Callable[..., Any]:
    def loss(*a: Any) -> Any:
        out = fn(*a)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(
                f"has_aux=True: fn must return (loss, aux), a pair; it returned {_describe(out)}."
            )
        return out[0]

    return loss


def _as_array(x, what: str) -> np.ndarray:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach().cpu().numpy()
    try:
        out = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - say what was passed
        raise TypeError(f"{what} must be an array; got {type(x).__name__} ({e}).") from None
    if not np.issubdtype(out.dtype, np.floating):
        raise TypeError(f"{what} has dtype {out.dtype}; pass a floating-point array.")
    return out


def _describe(out: Any) -> str:
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    shape = getattr(out, "shape", None)
    return f"a {type(out).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def validate_functions(fn: Callable[..., Any], grad_fn: Callable[..., Any] | None) -> None:
    """fn and grad_fn are functions (grad_fn may be None)."""
    if not callable(fn):
        raise TypeError(
            f"fn must be a function fn(params, *args) -> loss; got {type(fn).__name__}."
        )
    if grad_fn is not None and not callable(grad_fn):
        hint = ""
        if isinstance(grad_fn, (dict, list, tuple)) or hasattr(grad_fn, "shape"):
            hint = (
                " It looks like the gradients themselves: pass the function that computes "
                "them, e.g. grad_fn=lambda params, *args: backward(params, *args) (or, for "
                "values computed at these very params, grad_fn=lambda *_: grads)."
            )
        raise TypeError(
            f"grad_fn must be a function grad_fn(params, *args) -> gradients, or None for "
            f"jax.grad(fn); got a {type(grad_fn).__name__}.{hint}"
        )
