"""Error types and the helpers that make their messages name a place."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

import jax

P = ParamSpec("P")
R = TypeVar("R")

# What tracing raises where fn is not JAX code (NumPy on a tracer), whatever its dtypes.
NOT_JAX_CODE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class GradCheckError(AssertionError):
    """A gradient check failed: some element is wrong, non-finite or nondeterministic.

    Subclasses `AssertionError` so that test runners show it as a failed assertion.
    The full report is in `.result` (a `jaxcheck.CheckResult`).
    """

    def __init__(self, result: Any) -> None:  # a CheckResult or an IdentityResult
        self.result = result
        message = getattr(result, "failure_message", None)
        super().__init__(message() if message else str(result))


GradCheckError.__module__ = "jaxcheck"


class WrongGradient(Exception):  # noqa: N818 - a mixin: the errors below are its names
    """The gradient under test cannot even be compared: a leaf missing, None, transposed or
    of another shape. A wrong gradient, so the CLI exits 1 (a failed check), not 2.

    `reasons`: (leaf path, why) for each leaf that cannot be compared (none where the gradient
    as a whole cannot be read); `comparable`: the other leaves the check was to compare, so
    that a report can still be made of them (the CLI's --json and --baseline)."""

    reasons: tuple[tuple[str, str], ...] = ()
    comparable: tuple[str, ...] = ()


class GradientValueError(WrongGradient, ValueError):
    pass


class GradientTypeError(WrongGradient, TypeError):
    pass


def one_line(e: BaseException, limit: int = 160) -> str:
    """An error in one line, "Type: message": the message's first line, or its last where
    the first opens a traceback (an error raised inside a callback carries the callback's)."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    if not lines:
        return type(e).__name__
    line = lines[-1] if "Traceback" in lines[0] else lines[0]
    return f"{type(e).__name__}: {line[:limit]}"


def format_index(index: Sequence[int]) -> str:
    """`(2, 3)` -> `"[2, 3]"`; a scalar leaf (empty index) -> `""`."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]" if len(index) else ""


def list_paths(paths: Sequence[str], limit: int = 12) -> str:
    """A short, readable list of leaf paths for an error message."""
    shown = ", ".join(paths[:limit])
    more = len(paths) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # jaxcheck/


class input_errors:  # noqa: N801 - used as a context manager, like contextlib's
    """Where jaxcheck itself refuses the input (a ValueError or TypeError raised by its own
    code), drop the traceback: the message names the leaf and the fix, and the user's own
    line is what matters, not a wall of jaxcheck frames. Where such an error explains one
    raised in the user's code (its `__cause__`: fn failing with swapped arguments), that one
    keeps the user's frames and loses jaxcheck's. Errors raised inside the user's fn or
    grad_fn, and anything else, keep theirs; JAXCHECK_TRACEBACK=1 (the CLI's --traceback)
    keeps every traceback."""

    def __enter__(self) -> input_errors:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if os.environ.get("JAXCHECK_TRACEBACK"):  # debugging jaxcheck itself: keep them all
            return False
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: where it landed says nothing (a
            exc.__traceback__ = None  # check says in one line what it had done)
            return False
        if isinstance(exc, (ValueError, TypeError)) and tb is not None and _ours(_last(tb)):
            exc.__traceback__ = None
            cause = exc.__cause__
            if cause is not None and cause.__traceback__ is not None:
                if not _ours(_last(cause.__traceback__)):  # raised in the user's code
                    cause.__traceback__ = _without_ours(cause.__traceback__)
        return False


def _last(tb: TracebackType) -> TracebackType:
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _ours(tb: TracebackType) -> bool:
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE + os.sep)


def _without_ours(tb: TracebackType | None) -> TracebackType | None:
    """The traceback less jaxcheck's frames: the user's own lines (and the libraries' they
    call) in order."""
    kept = []
    while tb is not None:
        if not _ours(tb):
            kept.append(tb)
        tb = tb.tb_next
    out = None
    for t in reversed(kept):
        out = TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def hides_input_errors(f: Callable[P, R]) -> Callable[P, R]:
    """f with `input_errors`: a refused input shows the caller's line and the message. Typed
    with f's own signature (ParamSpec), so a type checker sees check_grad(...) -> CheckResult."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        __tracebackhide__ = True  # noqa: F841 - read by pytest
        with input_errors():
            return f(*args, **kwargs)

    return wrapper
