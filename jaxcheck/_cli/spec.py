"""A check written down: `Spec`, what `jaxcheck check FILE:make_spec` loads and runs.

A regression script (or CI job) names a function that returns a `Spec` (or a dict with the
same fields); the CLI imports it from a file path or a module, builds it, and runs the check.
Every mistake on the way (no such file, no such function, the wrong return type, an unknown
option) is a `SpecError` whose message says what to fix.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._core.result import CheckResult

FIELDS = ("fn", "params", "args", "grad_fn")


class SpecError(Exception):
    """The spec could not be loaded or built; the message says what to fix."""


@dataclasses.dataclass(frozen=True, init=False)
class Spec:
    """One gradient check: `check_grad(fn, params, *args, grad_fn=grad_fn, **options)`.

    Example (in `checks.py`, run with `jaxcheck check checks.py:make_spec`):

        def make_spec():
            params, x, y = ...
            return jaxcheck.Spec(loss, params, (x, y), grad_fn=backward, rtol=1e-6)
    """

    fn: Callable[..., Any]
    params: Any
    args: tuple
    grad_fn: Callable[..., Any] | None
    options: Mapping[str, Any]

    def __init__(
        self,
        fn: Callable[..., Any],
        params: Any,
        args: tuple[Any, ...] | list[Any] = (),
        grad_fn: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(args, (tuple, list)):
            raise SpecError(
                f"Spec args must be a tuple of the arguments after params, e.g. (x, y); got a "
                f"{type(args).__name__}. For a single argument write (x,)."
            )
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "grad_fn", grad_fn)
        object.__setattr__(self, "options", dict(options))

    def check(self, **overrides: Any) -> CheckResult:
        """Run the check; `overrides` replace the spec's options (the CLI's flags do this)."""
        from .._grad.check import check_grad

        options = {**self.options, **overrides}
        return check_grad(self.fn, self.params, *self.args, grad_fn=self.grad_fn, **options)


def load(target: str) -> Spec:
    """The Spec named by "path/to/file.py:make_spec" or "package.module:make_spec"."""
    where, _, name = target.rpartition(":")
    if not where or not name:
        raise SpecError(
            f"{target!r} does not name a spec: write FILE.py:FUNCTION or package.module:FUNCTION "
            "(e.g. checks.py:make_spec), where FUNCTION() returns a jaxcheck.Spec."
        )
    module = _import(where)
    make = getattr(module, name, None)
    if make is None:
        found = [n for n, v in vars(module).items() if inspect.isfunction(v) and not n[0] == "_"]
        raise SpecError(
            f"{where} has no function {name!r}. Functions there: {', '.join(found) or 'none'}."
        )
    if not callable(make):
        raise SpecError(f"{where}:{name} is a {type(make).__name__}, not a function to call.")
    built = make()
    return as_spec(built, f"{where}:{name}()")


def as_spec(built: Any, origin: str) -> Spec:
    if isinstance(built, Spec):
        return built
    if isinstance(built, Mapping):
        missing = [k for k in ("fn", "params") if k not in built]
        if missing:
            raise SpecError(
                f"{origin} returned a dict without {', '.join(repr(k) for k in missing)}: a spec "
                "dict needs 'fn' and 'params', and may have 'args', 'grad_fn' and check_grad "
                "options."
            )
        fields = {k: built[k] for k in FIELDS if k in built}
        return Spec(**fields, **{k: v for k, v in built.items() if k not in FIELDS})
    raise SpecError(
        f"{origin} returned an object of type {type(built).__name__}; it must return "
        "jaxcheck.Spec(fn, params, "
        "args, grad_fn=None, **options) or a dict with those keys."
    )


def _import(where: str):
    looks_like_file = where.endswith(".py") or "/" in where or "\\" in where
    if looks_like_file:
        path = Path(where)
        if not path.is_file():
            raise SpecError(f"no such file: {where} (relative paths start at {Path.cwd()}).")
        name = f"_jaxcheck_spec_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None  # a .py file that exists
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # its own helper modules import
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise SpecError(
                f"no module named {where!r}: give a file path (checks.py:make_spec) or a module "
                "importable from here (install the package, or run from its directory)."
            ) from e
        raise
