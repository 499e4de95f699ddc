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
- `has_aux`: fn returns (loss, aux); the aux is dropped;
- keywords (`check_grad(loss, params, x=x, y=y)`): passed on to fn and grad_fn as keywords and
  not differentiated, as `jax.grad(fn)(params, x=x)` passes them; they travel as one dict
  after the positional data, so they are cast and keyed like it (`split_keywords`).

It also refuses, with the fix, the calls that cannot work: arguments fn's signature cannot
take (targets forgotten, parameters as one tuple for a function that takes them one by one,
data for keyword-only parameters given positionally), traced values (check_grad inside
jax.jit), a transform passed as grad_fn (`jax.grad` itself), a layer's `backward(dout,
cache)` passed as grad_fn. And where fn fails on its first call with the arguments in an
order that looks swapped (data first, a dict of parameters after it), the error says so
(`explained`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import jax
import numpy as np

from .._core.errors import one_line
from .._core.paths import ROOT, leaf_paths, qualified
from .options import ALIASES, NAMES


@dataclasses.dataclass(frozen=True)
class Call:
    """The check in its one shape: fn(params, *args), grad_fn(params, *args) or None."""

    fn: Callable[..., Any]
    params: Any
    args: tuple
    grad_fn: Callable[..., Any] | None
    cotangent: np.ndarray | None
    # What to say where fn raises on its first call (the arguments look swapped); "": nothing.
    if_fn_fails: str = ""


def adapt(
    fn: Callable[..., Any],
    params: Any,
    args: Sequence[Any],
    grad_fn: Callable[..., Any] | None,
    argnums: int | Sequence[int] = 0,
    cotangent: Any = None,
    has_aux: bool = False,
    keywords: Mapping[str, Any] | None = None,
) -> Call:
    """The check of `fn(params, *args, **keywords)` (arguments as check_grad received them)
    with the arguments `argnums` as the parameters; see the module docstring."""
    refuse_transform(grad_fn)
    keywords = dict(keywords or {})
    positional = (params, *args)
    refuse_traced(fn, positional, keywords)
    selected = _argnums(argnums, len(positional))
    _bind("fn", fn, positional, selected, keywords)
    if grad_fn is not None:
        _bind("grad_fn", grad_fn, positional, selected, keywords)
    if has_aux not in (True, False):
        raise TypeError(f"has_aux={has_aux!r}: pass True (fn returns (loss, aux)) or False.")
    if cotangent is not None:
        cotangent = _as_array(cotangent, "cotangent")
    names = _names(fn, selected) if isinstance(argnums, tuple) else None
    # The same adapted function for the same fn and call: JAX caches traces per function,
    # so a repeated check traces less (executables are kept by program: `fingerprint`).
    how = (has_aux, selected, None if names is None else tuple(names), len(positional),
           bool(keywords))  # fmt: skip
    try:
        fn_p = _adapted(fn, *how)
    except TypeError:  # an unhashable callable: adapted afresh (and compiled afresh) each time
        fn_p = _adapted.__wrapped__(fn, *how)
    hint = _swapped(fn, positional) if selected == (0,) and names is None else ""
    if selected == (0,) and names is None and not keywords:
        return Call(fn_p, params, tuple(args), grad_fn, cotangent, hint)
    rest_positions = [i for i in range(len(positional)) if i not in selected]
    merged = _merger(selected, names, len(positional))

    new_params = (
        {n: positional[i] for n, i in zip(names, selected)} if names else positional[selected[0]]
    )
    new_grad = None
    if grad_fn is not None:

        def new_grad(p: Any, *rest: Any) -> Any:
            rest, kw = _keywords_of(rest, bool(keywords))
            out = grad_fn(*merged(p, rest), **kw)
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

    rest = tuple(positional[i] for i in rest_positions) + ((keywords,) if keywords else ())
    return Call(fn_p, new_params, rest, new_grad, cotangent, hint)


@functools.lru_cache(maxsize=64)
def _adapted(fn, has_aux: bool, selected: tuple, names: tuple | None, n: int, keyworded: bool):
    """fn(params, *rest) for the check: the selected arguments from params, aux dropped, the
    keywords (where given) from the dict that ends rest."""
    loss = _without_aux(fn) if has_aux else fn
    if selected == (0,) and names is None and not keyworded:
        return loss
    merged = _merger(selected, names, n)

    def fn_p(p: Any, *rest: Any) -> Any:
        rest, kw = _keywords_of(rest, keyworded)
        return loss(*merged(p, rest), **kw)

    return fn_p


def _keywords_of(rest: tuple, keyworded: bool) -> tuple[tuple, dict]:
    """(positional data, keywords) from the check's args: the keywords are its last one."""
    return (rest[:-1], rest[-1]) if keyworded else (rest, {})


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


def _bind(what: str, f, positional: tuple, selected, keywords: Mapping[str, Any]) -> None:
    """Refuse, with the fix, arguments that f's signature cannot take."""
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
        signature.bind(*positional, **keywords)
    except TypeError as e:
        hint = _bind_hint(what, f, signature, positional, keywords, str(e))
        n = len(positional)
        raise TypeError(
            f"{what} is called as {what}(params, *args) with the {n} positional "
            f"argument{'s' if n != 1 else ''} check_grad was given after fn"
            + (f" and the keywords {', '.join(k + '=' for k in keywords)}" if keywords else "")
            + f", but its signature is {_name(f, what)}{signature}: {e}.{hint}"
        ) from None


def _bind_hint(what: str, f, signature, positional: tuple, keywords, error: str) -> str:
    """The fix for arguments f cannot take, where the mistake is a common one."""
    parameters = list(signature.parameters.values())
    by_position = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in by_position if p.default is p.empty]
    keyword_only = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY]
    first, name = positional[0], _name(f, what)
    if (what == "fn" and isinstance(first, (tuple, list)) and len(first) > 1
            and _binds(signature, (*first, *positional[1:]), keywords)):  # fmt: skip
        k = len(first)
        unpacked = [p.name for p in by_position[:k]]
        if len(positional) == 1:
            return (
                f" The inputs came as one {type(first).__name__} of {k}, as "
                "torch.autograd.gradcheck(f, inputs) takes them: here pass them unpacked and "
                f"say which to check, check_grad(f, *inputs, argnums={tuple(range(k))})."
            )
        data = [p.name for p in by_position[k : k + len(positional) - 1]]
        return (
            f" The parameters came as one {type(first).__name__} of {k}, but {name} takes them "
            f"one by one ({', '.join(unpacked)}): pass them unpacked and say which to check, "
            f"check_grad({name}, {', '.join(unpacked + data)}, argnums={tuple(range(k))}) "
            f"(the leaves are then named {', '.join(repr(u) for u in unpacked)}); or make "
            f"{name} take them as one argument: def {name}(params, {', '.join(data)}) with "
            f"{', '.join(unpacked)} = params inside."
        )
    extra = len(positional) - len(by_position)
    if keyword_only and extra > 0 and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        given = [p.name for p in by_position] + [f"{k}={k}" for k in keyword_only[:extra]]
        return (
            f" {name} takes {', '.join(keyword_only[:extra])} by keyword only: pass "
            f"{'it' if extra == 1 else 'them'} as keywords, check_grad({name}, "
            f"{', '.join(given)}), and check_grad passes {'it' if extra == 1 else 'them'} "
            "on to fn as keywords (not differentiated, as jax.grad does)."
        )
    missing = [p.name for p in parameters if f"'{p.name}'" in error]
    options = [m for m in missing if m in NAMES]
    if "missing" in error and options:
        m = options[0]
        return (
            f" {m}= is also one of check_grad's own options, so check_grad takes it as "
            f"its {m}= and fn never sees it: give fn its {m} another way, "
            f"check_grad(functools.partial({name}, {m}={m}), ...) or a lambda."
        )
    if what == "fn" and len(positional) < len(required):
        return (
            " Pass the data and targets too: check_grad(fn, params, x, y) calls fn(params, x, y)."
        )
    return ""


def _binds(signature: inspect.Signature, positional: tuple, keywords) -> bool:
    try:
        signature.bind(*positional, **keywords)
    except TypeError:
        return False
    return True


def _name(f: Any, default: str) -> str:
    name = getattr(f, "__name__", default)
    return name if name.isidentifier() else default  # a lambda: "fn"


def split_keywords(
    fn: Callable[..., Any], keywords: Mapping[str, Any], hvp_fn: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """check_grad's keywords that are not its options, split into data for fn (a parameter
    fn's signature names, or any keyword where fn takes **kwargs, unless it reads like a
    mistyped option) and the rest (refused by `Options.make` with the option meant).

    Like `jax.grad(fn)(params, x=x)`, check_grad passes data keywords on to fn (and to
    grad_fn) without differentiating them."""
    if not keywords:
        return {}, {}
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}, dict(keywords)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    data, unknown = {}, {}
    for key, value in keywords.items():
        named = key in parameters and parameters[key].kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        mistyped = key in ALIASES or difflib.get_close_matches(key, NAMES, n=1, cutoff=0.75)
        if named or (takes_any and not mistyped):
            data[key] = value
        else:
            unknown[key] = value
    if data and hvp_fn is not None:
        raise TypeError(
            f"hvp_fn= with data given as keywords ({', '.join(k + '=' for k in data)}): "
            "hvp_fn(params, v, *args) takes the data positionally; pass it so, "
            "check_grad(fn, params, x, y, order=2, hvp_fn=...)."
        )
    return data, unknown


def refuse_traced(fn: Callable[..., Any], positional: tuple, keywords: Mapping[str, Any]) -> None:
    """check_grad inside jax.jit (vmap, grad, ...): its arguments are tracers, and a check
    compiles and runs programs of its own, on concrete values."""
    names = _positional_names(fn, len(positional))
    for where, value in [*zip(names, positional), *keywords.items()]:
        for path, x in leaf_paths(value):
            if isinstance(x, jax.core.Tracer):
                leaf = where if path == ROOT else where + path
                raise TypeError(
                    f"{qualified(path) if where == 'params' else leaf} is a traced value "
                    f"({type(x).__name__}): check_grad was called inside jax.jit, vmap, grad "
                    "or another transform. A check compiles and runs programs of its own and "
                    "needs concrete values: call it outside the transformed function, on the "
                    "values going in or coming out, e.g.\n"
                    "    params, opt_state = train_step(params, opt_state, x, y)\n"
                    "    jaxcheck.check_grad(loss, params, x, y)\n"
                    "To check the gradient during a jitted training loop, call a "
                    "jaxcheck.GradMonitor inside the step: it runs its checks outside the "
                    "step, on the step's values."
                )


def _positional_names(fn: Callable[..., Any], n: int, first: str | None = "params") -> list[str]:
    """How a message names check_grad's positional arguments: `first` (None: fn's own name)
    then fn's names for the data (args[i] where fn's signature does not say)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [named[i] if i < len(named) else f"args[{i - 1}]" for i in range(n)]
    return [first or (named[0] if named else "params"), *names[1:]]


# ---- fn failing on its first call: the arguments swapped --------------------------------------


def _is_array(x: Any) -> bool:
    return (
        hasattr(x, "shape")
        and hasattr(x, "dtype")
        and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x))
    )


def _parameter_like(x: Any) -> str:
    """What a container of float arrays is, "a dict of 3 arrays ('W1', 'b1', 'W2')"; else
    "" (an array, or no float array in it)."""
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)):
        return ""
    arrays = [
        leaf for leaf in jax.tree_util.tree_leaves(x)
        if _is_array(leaf) and np.issubdtype(np.dtype(leaf.dtype), np.inexact)
    ]  # fmt: skip
    if not arrays:
        return ""
    keys = f" ({', '.join(repr(k) for k in list(x)[:6])})" if isinstance(x, Mapping) else ""
    return f"a {type(x).__name__} of {len(arrays)} array{'s' if len(arrays) > 1 else ''}{keys}"


def _swapped(fn: Callable[..., Any], positional: tuple) -> str:
    """Where check_grad's first argument is one array and a later one a container of float
    arrays (data first, parameters after), what to say if fn then fails on its first call."""
    if not _is_array(positional[0]):
        return ""
    found = [(j, _parameter_like(x)) for j, x in enumerate(positional[1:], start=1)]
    found = [(j, looks) for j, looks in found if looks]
    if not found:
        return ""
    j, looks = found[0]
    name = _name(fn, "fn")
    order = ", ".join(_positional_names(fn, len(positional), first=None))
    ordinal = {1: "second", 2: "third", 3: "fourth"}.get(j, f"argument {j + 1}")
    return (
        f"its arguments look swapped: check_grad passes params first, {name}(params, *args), "
        f"but the first argument given is an array of "
        f"shape {tuple(positional[0].shape)}, which looks like data, while the {ordinal} is "
        f"{looks}, which looks like the parameters. Pass the parameters first: "
        f"check_grad({name}, {order}) calls {name}({order})."
    )


def _raised_in(fn: Callable[..., Any], tb: TracebackType | None) -> bool:
    """Whether the traceback passes through fn's own code."""
    f = fn
    for _ in range(8):  # jax.jit, functools.wraps and partial wrap the code that ran
        inner = getattr(f, "__wrapped__", None)
        inner = f.func if isinstance(f, functools.partial) else inner
        if inner is None:
            break
        f = inner
    code = getattr(f, "__code__", None)
    if code is None and callable(f):  # an object with __call__
        code = getattr(type(f).__call__, "__code__", None)
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def explained(call: Call, fn: Callable[..., Any]) -> Iterator[None]:
    """Around the first calls of fn (`problem.prepare`): where fn raises and the call's
    arguments look swapped (`Call.if_fn_fails`), a TypeError that says so, with fn's own
    error as its cause (`errors.input_errors` keeps the user's frames of that one only)."""
    try:
        yield
    except Exception as exc:
        if call.if_fn_fails and _raised_in(fn, exc.__traceback__):
            raise TypeError(
                f"{_name(fn, 'fn')} raised {one_line(exc)} on its first call, and "
                f"{call.if_fn_fails}"
            ) from exc
        raise


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
