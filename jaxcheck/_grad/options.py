"""Options of check_grad: validated eagerly, before any tracing, with the fix in the message."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from .._core.coords import Coords
from .._core.errors import list_paths
from .._numerics.methods import METHODS

MODES = ("full", "directional", "sample")
PRECISIONS = ("float64", "upcast", "native")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


# Names people reach for, from other checkers and papers, and the option that does it here.
ALIASES = {
    "tol": "rtol= (relative) or atol= (absolute)",
    "rel_tol": "rtol=",
    "abs_tol": "atol=",
    **dict.fromkeys(("epsilon", "h", "step", "delta", "dx"), "eps="),
    "raise_exception": "jaxcheck.assert_grad (raises) instead of check_grad (returns)",
    "verbose": "print(result) (the report), or progress=True for a progress bar",
    "n_samples": "samples=",
    "num_directions": "directions=",
    "argnum": "argnums=",
    "backward": "grad_fn=",
    "grad": "grad_fn=",
    "df": "cotangent=",
    "dout": "cotangent=",
}


def refuse_unknown(unknown: Mapping[str, Any]) -> None:
    """A keyword check_grad does not take: say which one it has."""
    if not unknown:
        return
    import difflib
    import inspect

    from . import check as _check

    known = [p for p in inspect.signature(_check.check_grad).parameters if p not in
             ("fn", "params", "args", "unknown")]  # fmt: skip
    lines = []
    for name in unknown:
        fix = ALIASES.get(name) or ", ".join(
            f"{m}=" for m in difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        )
        lines.append(f"{name}=" + (f" (did you mean {fix}?)" if fix else ""))
    raise TypeError(
        f"check_grad() got an unexpected keyword argument {'; '.join(lines)}. Its options: "
        + ", ".join(known)
        + "."
    )


def validate(fn, grad_fn, mode, rtol, atol, precision, seed, chunk_size, progress) -> None:
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
    if mode not in MODES:
        raise ValueError(
            f"mode={mode!r} is not available; choose one of {MODES}: 'full' checks every "
            "element, 'directional' k random directions per leaf (then locates wrong elements), "
            "'sample' m random elements per leaf."
        )
    validate_numerics(rtol, atol, precision, seed)
    if chunk_size is not None and not (isinstance(chunk_size, numbers.Integral) and chunk_size > 0):
        raise ValueError(f"chunk_size={chunk_size!r}: pass a positive integer, or None.")
    if progress not in (None, True, False):
        raise ValueError(
            f"progress={progress!r}: pass True (always show a progress bar), False (never), "
            "or None (default: on a terminal, for checks that take more than two seconds)."
        )


def validate_method(method, kinks, order, mode) -> None:
    if method is not None and method not in (*METHODS, "complex_step"):
        raise ValueError(
            f"method={method!r} is not available; choose one of {(*METHODS, 'complex_step')}: "
            "'central', 'central4'/'central6' (higher order), 'richardson' (extrapolated, most "
            "accurate in float32), 'forward' (cheapest: n + 1 evaluations), 'complex_step' "
            "(no subtraction error, for complex-analytic losses)."
        )
    if method == "complex_step" and mode == "directional":
        raise ValueError(
            "method='complex_step' checks elements (mode='full' or 'sample'); "
            "mode='directional' uses central differences: leave method=None with it."
        )
    if kinks not in ("report", "fail"):
        raise ValueError(
            f"kinks={kinks!r}: pass 'report' (default: kinks are reported, not failed) or 'fail'."
        )
    if order == 2 and method not in (None, "central"):
        raise ValueError(
            f"order=2 with method={method!r}: Hessian-vector products are checked with central "
            "differences of the gradient; leave method at 'central'."
        )


def validate_order(order, hvp_fn, mode) -> None:
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"order={order!r}: pass 1 (check the gradient) or 2 (check Hessian-vector products)."
        )
    if hvp_fn is not None and not callable(hvp_fn):
        raise TypeError(
            f"hvp_fn must be a function hvp_fn(params, v, *args) -> H·v, or None for "
            f"jax.jvp(jax.grad(fn)); got {type(hvp_fn).__name__}."
        )
    if hvp_fn is not None and order != 2:
        raise ValueError("hvp_fn= is the Hessian-vector product under test: pass order=2 with it.")
    if order == 2 and mode != "full":
        raise ValueError(
            f"order=2 with mode={mode!r}: Hessian-vector products are checked along random "
            "directions already (directions= per leaf), every element of each; leave mode "
            "at 'full'."
        )


def validate_numerics(rtol, atol, precision, seed) -> None:
    """The options every check shares: tolerances, precision, seed."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r}: choose 'float64' (default: finite differences in "
            "float64, the gradient under test in the parameters' dtype), 'upcast' (both in "
            "float64) or 'native' (both in the parameters' dtype)."
        )
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (_is_real(value) and 0 <= value < math.inf):
            raise ValueError(
                f"{name}={value!r}: pass a finite number >= 0, or None for the default."
            )
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r}: pass an integer.")


def working_dtype(precision: str, *, traced: bool) -> Any:
    """leaf -> the dtype a check works in: float64; or under "native" the leaf's own, as JAX
    computes it under the current config when fn is traced (float64 becomes float32 without
    x64). Complex leaves get the complex counterpart (`Coords.cast`)."""
    if precision != "native":
        return lambda leaf: np.float64
    if traced:
        return lambda leaf: jax.dtypes.canonicalize_dtype(leaf.dtype)
    return lambda leaf: leaf.dtype


@contextlib.contextmanager
def numerics(precision: str):
    """float64 where asked, and full-precision matmuls (no TF32 or bf16 passes) always."""
    with contextlib.ExitStack() as stack:
        if precision != "native":
            stack.enter_context(jax.enable_x64(True))
        stack.enter_context(jax.default_matmul_precision("highest"))
        yield


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


STEP_RULES = ("auto", "rule")


def steps_option(eps: Any, coords: Coords) -> dict[str, float]:
    """{leaf path: absolute step} for leaves with a user step."""
    if eps is None or (isinstance(eps, str) and eps in STEP_RULES):
        return {}
    if isinstance(eps, str):
        raise ValueError(
            f"eps={eps!r}: pass a step (a number, or {{leaf path: number}}), 'auto' (steps "
            "chosen from the data), 'rule' (u^p·scale), or None for the default."
        )
    if isinstance(eps, Mapping):
        known = {leaf.path for leaf in coords.checked}
        unknown = [k for k in eps if k not in known]
        if unknown:
            raise ValueError(
                f"eps= names {list_paths([str(k) for k in unknown])}, which are not checked "
                "leaves. Use key paths as the report writes them: "
                f"{list_paths(sorted(known))}."
            )
        items = dict(eps)
    else:
        items = {leaf.path: eps for leaf in coords.checked}
    for path, value in items.items():
        if not (_is_real(value) and 0 < value < math.inf):
            where = f" for {path}" if isinstance(eps, Mapping) else ""
            raise ValueError(
                f"eps={value!r}{where}: a step must be a finite number > 0 (e.g. 1e-6), "
                "or None for the default."
            )
    return {k: float(v) for k, v in items.items()}


def memory_option(max_memory: Any) -> int | None:
    """Bytes, from an integer or a string such as "512MB" or "2GiB"; None for the default."""
    if max_memory is None:
        return None
    value = max_memory
    if isinstance(max_memory, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", max_memory)
        if m and m.group(2).lower() in _UNITS:
            value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not _is_real(value) or not 2**20 <= value < math.inf:
        raise ValueError(
            f"max_memory={max_memory!r}: pass a number of bytes of at least 1 MiB, or a string "
            'such as "512MB" or "2GiB", or None for the default (a quarter of an '
            "accelerator's memory; on CPU the smaller of 2 GiB and an eighth of the RAM)."
        )
    return int(value)


def nondet_option(value: Any) -> float:
    """nondet_tol: a finite number >= 0."""
    if not (_is_real(value) and 0 <= value < math.inf):
        raise ValueError(
            f"nondet_tol={value!r}: pass a finite number >= 0, the largest difference allowed "
            "between two evaluations of fn at the same point (0: none beyond rounding)."
        )
    return float(value)


def count_option(name: str, value: Any, what: str) -> int:
    """A positive integer option (directions=, samples=)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name}={value!r}: pass a positive integer, the number of {what}.")
    return int(value)


def journal_option(journal: Any, order: int):
    """The journal path, validated (None: no journal)."""
    if journal is None:
        return None
    if not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"journal={journal!r}: pass a file path (str or pathlib.Path), or None.")
    if order == 2:
        raise ValueError("journal= records order=1 checks; run order=2 without a journal.")
    if jax.process_count() > 1:
        raise ValueError(
            "journal= is for single-process checks: with jax.distributed every process would "
            "append to it. Run without a journal, or check from one process."
        )
    return journal


def devices_option(devices: Any):
    """None, or a non-empty list of distinct jax devices."""
    if devices is None:
        return None
    if isinstance(devices, jax.Device):
        devices = [devices]
    devices = list(devices) if isinstance(devices, (list, tuple)) else devices
    if (
        not isinstance(devices, list)
        or not devices
        or not all(isinstance(d, jax.Device) for d in devices)
        or len({d.id for d in devices}) != len(devices)
    ):
        raise ValueError(
            f"devices={devices!r}: pass a list of distinct jax devices (e.g. jax.devices()[:4]), "
            "or None for every local device."
        )
    return devices


CACHE_ENV = "JAXCHECK_CACHE_DIR"


def compilation_cache(cache_dir: str | os.PathLike | None) -> None:
    """Turn on JAX's persistent compilation cache in cache_dir (None: $JAXCHECK_CACHE_DIR,
    else leave JAX's own setting alone), for every compilation of this process from now on.

    Every executable is cached, however fast it compiled (JAX's defaults skip those under a
    second, which is most of a check's), so a rerun in a fresh process compiles nothing.
    """
    path = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir={cache_dir!r}: pass a directory path (a str or os.PathLike), or None "
            f"for ${CACHE_ENV} or no persistent cache."
        )
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"cache_dir={os.fspath(cache_dir or path)!r} cannot be used as the compilation "
            f"cache: {e.strerror}. Give a directory you can write to."
        ) from None
    if jax.config.jax_compilation_cache_dir == path:
        return
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cc.reset_cache()  # JAX reads the directory once: read it again
