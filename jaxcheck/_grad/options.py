"""The options of a gradient check: declared once, validated once, into one frozen value.

`Options` holds every keyword of `check_grad` but the functions under test. Each field
declares its default, the function that validates (and normalizes) it, and its CLI flag;
`Options.make` refuses a keyword it does not know with the option that is meant. check_grad,
`GradMonitor`, the CLI (its flags are the fields') and `jaxcheck.testing` (through
check_grad) all build this one value. What needs the parameters (eps= leaf names, only=) is
checked where they are known: `plan.leaf_steps` and `Coords.build`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from .._engine import progress as _bar
from .._numerics.methods import METHODS

MODES = ("full", "directional", "sample")
PRECISIONS = ("float64", "upcast", "native")
STEP_RULES = ("auto", "rule")
DIRECTIONS = 4  # default k: Gaussian directions per leaf (directional mode, order=2)
SAMPLES = 64  # elements per leaf in mode="sample"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip

# Names people reach for, from other checkers and papers, and the option that does it here.
ALIASES = {
    **dict.fromkeys(("tol", "tolerance"), "rtol= (relative) or atol= (absolute)"),
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


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# ---- one validator per option: the value, normalized, or an error with the fix --------------


def _mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(
            f"mode={mode!r} is not available; choose one of {MODES}: 'full' checks every "
            "element, 'directional' k random directions per leaf (then locates wrong elements), "
            "'sample' m random elements per leaf."
        )
    return mode


def _method(method: str | None) -> str | None:
    if method is not None and method not in (*METHODS, "complex_step"):
        raise ValueError(
            f"method={method!r} is not available; choose one of {(*METHODS, 'complex_step')}: "
            "'central', 'central4'/'central6' (higher order), 'richardson' (extrapolated, most "
            "accurate in float32), 'forward' (cheapest: n + 1 evaluations), 'complex_step' "
            "(no subtraction error, for complex-analytic losses)."
        )
    return method


def _kinks(kinks: str) -> str:
    if kinks not in ("report", "fail"):
        raise ValueError(
            f"kinks={kinks!r}: pass 'report' (default: kinks are reported, not failed) or 'fail'."
        )
    return kinks


def _order(order: int) -> int:
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"order={order!r}: pass 1 (check the gradient) or 2 (check Hessian-vector products)."
        )
    return order


def _hvp_fn(hvp_fn: Callable[..., Any] | None) -> Callable[..., Any] | None:
    if hvp_fn is not None and not callable(hvp_fn):
        raise TypeError(
            f"hvp_fn must be a function hvp_fn(params, v, *args) -> H·v, or None for "
            f"jax.jvp(jax.grad(fn)); got {type(hvp_fn).__name__}."
        )
    return hvp_fn


def _step(value, where: str = ""):
    if not (_is_real(value) and 0 < value < math.inf):
        raise ValueError(
            f"eps={value!r}{where}: a step must be a finite number > 0 (e.g. 1e-6), "
            "or None for the default."
        )
    return float(value)


def _eps(eps: Any) -> str | float | dict[str, float] | None:
    if eps is None or (isinstance(eps, str) and eps in STEP_RULES):
        return eps
    if isinstance(eps, str):
        raise ValueError(
            f"eps={eps!r}: pass a step (a number, or {{leaf path: number}}), 'auto' (steps "
            "chosen from the data), 'rule' (u^p·scale), or None for the default."
        )
    if isinstance(eps, Mapping):
        return {path: _step(value, f" for {path}") for path, value in eps.items()}
    return _step(eps)


def _tolerance(name: str) -> Callable[[Any], Any]:
    def valid(value: float | None) -> float | None:
        if value is not None and not (_is_real(value) and 0 <= value < math.inf):
            raise ValueError(
                f"{name}={value!r}: pass a finite number >= 0, or None for the default."
            )
        return value

    return valid


def nondet_option(value: Any) -> float:
    """nondet_tol: a finite number >= 0."""
    if not (_is_real(value) and 0 <= value < math.inf):
        raise ValueError(
            f"nondet_tol={value!r}: pass a finite number >= 0, the largest difference allowed "
            "between two evaluations of fn at the same point (0: none beyond rounding)."
        )
    return float(value)


def _precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r}: choose 'float64' (default: finite differences in "
            "float64, the gradient under test in the parameters' dtype), 'upcast' (both in "
            "float64) or 'native' (both in the parameters' dtype)."
        )
    return precision


def _seed(seed: int) -> int:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r}: pass an integer.")
    return seed


def count_option(name: str, value: Any, what: str) -> int:
    """A positive integer option (directions=, samples=)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) > 0):
        raise ValueError(f"{name}={value!r}: pass a positive integer, the number of {what}.")
    return int(value)


def _chunk_size(chunk_size: int | None) -> int | None:
    if chunk_size is not None and not (isinstance(chunk_size, numbers.Integral) and chunk_size > 0):
        raise ValueError(f"chunk_size={chunk_size!r}: pass a positive integer, or None.")
    return chunk_size


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


def _progress(progress: bool | None) -> bool | None:
    if progress not in (None, True, False):
        raise ValueError(
            f"progress={progress!r}: pass True (always show a progress bar), False (never), "
            "or None (default: on a terminal, for checks that take more than two seconds)."
        )
    return _bar.ask(progress)  # True without tqdm installed: refused here


def _journal(journal: str | os.PathLike | None) -> str | os.PathLike | None:
    if journal is None:
        return None
    if not isinstance(journal, (str, os.PathLike)):
        raise TypeError(f"journal={journal!r}: pass a file path (str or pathlib.Path), or None.")
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


def _cache_dir(cache_dir: str | os.PathLike | None) -> str | os.PathLike | None:
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir={cache_dir!r}: pass a directory path (a str or os.PathLike), or None "
            "for $JAXCHECK_CACHE_DIR or no persistent cache."
        )
    return cache_dir


def _option(default, valid=None, flag: str | None = None, kind: type = str):
    """A field of Options: its default, its validator, and its CLI flag's help (None: the CLI
    sets it its own way, or not at all) and type."""
    return dataclasses.field(default=default, metadata={"valid": valid, "flag": flag, "type": kind})


# ---- the value -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Options:
    """check_grad's keywords, validated: see check_grad's docstring for each."""

    argnums: Any = _option(0)  # validated against fn's signature (`calling.adapt`)
    cotangent: Any = _option(None)  # validated against fn's output
    has_aux: bool = _option(False)
    mode: str = _option("full", _mode, "full, directional or sample")
    method: str | None = _option(
        None, _method, "central, central4, central6, richardson, forward or complex_step"
    )
    kinks: str = _option("report", _kinks, "report (default) or fail")
    order: int = _option(1, _order, "1 checks the gradient, 2 Hessian-vector products", int)
    hvp_fn: Callable[..., Any] | None = _option(None, _hvp_fn)
    eps: Any = _option(
        None,
        _eps,
        "the step: a number, 'auto' or 'rule'; or PATH=STEP for one leaf "
        "(repeatable: --eps \"['W1']=1e-4\" --eps \"['b1']=1e-5\")",
    )
    rtol: float | None = _option(None, _tolerance("rtol"), "relative tolerance", float)
    atol: float | None = _option(None, _tolerance("atol"), "absolute tolerance", float)
    nondet_tol: float = _option(
        0.0, nondet_option, "accept re-evaluations of fn that differ by this much", float
    )
    only: Any = _option(None)  # validated against the leaves (`Coords.build`)
    precision: str = _option("float64", _precision, "float64 (default), upcast or native")
    seed: int = _option(0, _seed, "seed of random directions, samples and projections", int)
    directions: int = _option(
        DIRECTIONS,
        lambda v: count_option("directions", v, "directions per leaf"),
        "random directions per leaf (mode=directional, order=2)",
        int,
    )
    samples: int = _option(
        SAMPLES,
        lambda v: count_option("samples", v, "elements sampled per leaf"),
        "elements per leaf (mode=sample)",
        int,
    )
    chunk_size: int | None = _option(None, _chunk_size, "perturbations per compiled batch", int)
    max_memory: int | None = _option(None, memory_option, "memory for the batches, e.g. 2GB")
    progress: bool | None = _option(None, _progress)
    journal: str | os.PathLike | None = _option(
        None, _journal, "record finished chunks here; run again with it to resume a killed check"
    )
    devices: Any = _option(None, devices_option)
    cache_dir: str | os.PathLike | None = _option(
        None, _cache_dir, "JAX's persistent compilation cache here: a rerun compiles nothing"
    )

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.metadata["valid"] is not None:
                object.__setattr__(self, f.name, f.metadata["valid"](getattr(self, f.name)))
        _together(self)

    @classmethod
    def make(cls, where: str = "check_grad()", extra: tuple = ("grad_fn",), **keywords):
        """Options from keywords; one it does not know is refused with the option meant.
        where, extra: the caller, and its keywords besides these (for the message)."""
        unknown = [k for k in keywords if k not in NAMES]
        if unknown:
            raise TypeError(_unknown_message(where, unknown, [*extra, *NAMES]))
        return cls(**keywords)

    def replace(self, **changes: Any) -> Options:
        """A copy with these options changed, validated again."""
        return Options.make(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in NAMES}


NAMES = tuple(f.name for f in dataclasses.fields(Options))


def _together(o: Options) -> None:
    """The combinations that cannot go together."""
    if o.hvp_fn is not None and o.order != 2:
        raise ValueError("hvp_fn= is the Hessian-vector product under test: pass order=2 with it.")
    if o.order == 2 and o.mode != "full":
        raise ValueError(
            f"order=2 with mode={o.mode!r}: Hessian-vector products are checked along random "
            "directions already (directions= per leaf), every element of each; leave mode "
            "at 'full'."
        )
    if o.method == "complex_step" and o.mode == "directional":
        raise ValueError(
            "method='complex_step' checks elements (mode='full' or 'sample'); "
            "mode='directional' uses central differences: leave method=None with it."
        )
    if o.order == 2 and o.method not in (None, "central"):
        raise ValueError(
            f"order=2 with method={o.method!r}: Hessian-vector products are checked with "
            "central differences of the gradient; leave method at 'central'."
        )
    if o.journal is not None and o.order == 2:
        raise ValueError("journal= records order=1 checks; run order=2 without a journal.")


def closest(name: str, known: Sequence[str], n: int) -> list[str]:
    """The known names an unknown one means: the longest known name it begins with (eps_size:
    eps), else up to n close ones (rtl: rtol). The CLI answers unknown flags with it too."""
    prefix = sorted((k for k in known if len(k) >= 3 and name.startswith(k)), key=len)[-1:]
    return prefix or difflib.get_close_matches(name, known, n=n, cutoff=0.6)


def _unknown_message(where: str, unknown: list[str], known: list[str]) -> str:
    lines = []
    for name in unknown:
        fix = ALIASES.get(name) or ", ".join(f"{m}=" for m in closest(name, known, n=2))
        lines.append(f"{name}=" + (f" (did you mean {fix}?)" if fix else ""))
    return (
        f"{where} got an unexpected keyword argument {'; '.join(lines)}. Its options: "
        + ", ".join(known)
        + "."
    )


def validate_numerics(rtol: float | None, atol: float | None, precision: str, seed: int) -> None:
    """The options every check shares (check_vjp and check_jvp too)."""
    _precision(precision)
    _tolerance("rtol")(rtol)
    _tolerance("atol")(atol)
    _seed(seed)
