"""Error types and the helpers that make their messages name a place."""

from __future__ import annotations

from collections.abc import Sequence


class GradCheckError(AssertionError):
    """A gradient check failed: some element is wrong, non-finite or nondeterministic.

    Subclasses `AssertionError` so that test runners show it as a failed assertion.
    The full report is in `.result` (a `jaxcheck.CheckResult`).
    """

    def __init__(self, result):
        self.result = result
        message = getattr(result, "failure_message", None)
        super().__init__(message() if message else str(result))


GradCheckError.__module__ = "jaxcheck"


def format_index(index: Sequence[int]) -> str:
    """`(2, 3)` -> `"[2, 3]"`; a scalar leaf (empty index) -> `""`."""
    return "[" + ", ".join(str(int(i)) for i in index) + "]" if len(index) else ""


def list_paths(paths: Sequence[str], limit: int = 12) -> str:
    """A short, readable list of leaf paths for an error message."""
    shown = ", ".join(paths[:limit])
    more = len(paths) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")
