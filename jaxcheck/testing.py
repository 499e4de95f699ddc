"""Gradient checks in a test suite: `assert_grad`, `assert_vjp`, `assert_jvp`, and over a
whole input domain `assert_grad_everywhere`.

    from jaxcheck.testing import assert_grad

    def test_backward():
        assert_grad(loss, params, x, y, grad_fn=backward)

Each runs the check and raises `jaxcheck.GradCheckError` (an AssertionError) when it fails,
with a message written for pytest's output: the verdict, the worst elements with their leaf
paths, values and tolerances, then the per-leaf table. jaxcheck's own frames are hidden from
pytest's traceback, so the failure points at the test's line. On success the result is
returned for further assertions. No plugin or fixture: a plain function is all a test needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ._core.errors import GradCheckError
from ._core.result import CheckResult
from ._grad.check import check_grad
from ._grad.explore import explore
from ._grad.explore_report import ExploreResult
from ._rules.identities import check_jvp, check_vjp
from ._rules.report import IdentityResult

__all__ = ["assert_grad", "assert_grad_everywhere", "assert_jvp", "assert_vjp"]


def assert_grad(fn: Callable[..., Any], params: Any, *args: Any, **options: Any) -> CheckResult:
    """`jaxcheck.check_grad(fn, params, *args, **options)`, raising when it fails.

    Returns the `CheckResult` when the check passes; the error carries it in `.result`.
    Also available as `jaxcheck.assert_grad`.
    """
    __tracebackhide__ = True
    return _passed_or_raise(check_grad(fn, params, *args, **options))


def assert_vjp(fn: Callable[..., Any], *primals: Any, **options: Any) -> IdentityResult:
    """`jaxcheck.check_vjp(fn, *primals, **options)`, raising when it fails."""
    __tracebackhide__ = True
    return _passed_or_raise(check_vjp(fn, *primals, **options))


def assert_jvp(fn: Callable[..., Any], *primals: Any, **options: Any) -> IdentityResult:
    """`jaxcheck.check_jvp(fn, *primals, **options)`, raising when it fails."""
    __tracebackhide__ = True
    return _passed_or_raise(check_jvp(fn, *primals, **options))


def assert_grad_everywhere(
    fn: Callable[..., Any], params: Any, *args: Any, **options: Any
) -> ExploreResult:
    """`jaxcheck.explore(fn, params, *args, **options)`, raising when the gradient fails at
    some point of the domain; the message leads with the simplest failing input found and
    check_grad's report there. An inconclusive exploration (points finite differences cannot
    resolve, an abrupt zero in a tail) does not raise: its result says where."""
    __tracebackhide__ = True
    result = explore(fn, params, *args, **options)
    if result.verdict == "failed":
        raise GradCheckError(result)
    return result


Result = TypeVar("Result", CheckResult, IdentityResult)


def _passed_or_raise(result: Result) -> Result:
    __tracebackhide__ = True
    if not result.passed:
        raise GradCheckError(result)
    return result
