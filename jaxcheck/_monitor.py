"""GradMonitor: check the gradient every N steps of a training loop, and keep the history.

Seed 002 asked "when should I check?": throughout training, with a check whose tolerance
comes from an error model, so that it stays green as the gradient shrinks towards a minimum.
The monitor is called once per step with the step number and the current parameters (and
the step's loss, if the loop has it). Every `every` steps it runs `check_grad` in a cheap mode
(full for small models, directional for large ones) and records the verdict, the difference
per leaf and the smallest |g|. It never changes the training: it reads the parameters, draws
no random numbers from the loop's keys, and leaves JAX's configuration as it found it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ._core.errors import GradCheckError
from ._core.plots import pyplot
from ._core.result import CheckResult
from ._grad.calling import validate_functions
from ._grad.check import check_with
from ._grad.options import Options

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FULL_UP_TO = 20_000  # parameters: above this the default mode is "directional"
ON_FAILURE = ("warn", "raise", "ignore")


@dataclasses.dataclass(frozen=True)
class Record:
    """One step the monitor saw."""

    step: int
    loss: float  # NaN where the loop passed none and no check ran
    checked: bool
    passed: bool | None = None  # None: not checked at this step
    difference: float = math.nan  # ‖g − D‖ / (‖g‖ + ‖D‖) over the checked elements
    leaf_difference: dict[str, float] = dataclasses.field(default_factory=dict)
    min_abs_grad: float = math.nan  # min |g_i| over every element of the gradient under test
    n_failed: int = 0


class GradMonitor:
    """Check `fn`'s gradient every `every` steps; call it as `monitor(step, params, *args)`.

    Args:
        fn, grad_fn: as for `check_grad` (grad_fn None: jax.grad(fn) is checked).
        every: check at steps 0, every, 2·every, ...
        mode: None: "full" up to 20,000 parameters, else "directional".
        on_failure: "warn" (default: a warning with the report's headline), "raise" (a
            `GradCheckError`, which stops the loop) or "ignore" (only recorded).
        **options: passed to `check_grad` (method, precision, only, rtol, ...); validated
            here, so a mistake in them is refused before the training starts.

    Example:
        monitor = jaxcheck.GradMonitor(loss, every=50)
        for step in range(steps):
            value, grads = jax.value_and_grad(loss)(params, x, y)
            monitor(step, params, x, y, loss=value)
            updates, state = opt.update(grads, state)
            params = optax.apply_updates(params, updates)
        monitor.plot()
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        every: int = 100,
        *,
        grad_fn: Callable[..., Any] | None = None,
        mode: str | None = None,
        on_failure: str = "warn",
        **options: Any,
    ):
        if not (isinstance(every, int) and every > 0):
            raise ValueError(f"every={every!r}: pass a positive number of steps between checks.")
        if on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure={on_failure!r}: pass one of {ON_FAILURE}.")
        if "progress" not in options:
            options["progress"] = False  # a training log is no place for progress bars
        validate_functions(fn, grad_fn)
        mine = ("fn", "every", "grad_fn", "mode", "on_failure")
        self.options = Options.make("GradMonitor()", mine, mode=mode or "full", **options)
        self.fn, self.grad_fn, self.every, self.mode = fn, grad_fn, every, mode
        self.on_failure = on_failure
        self.history: list[Record] = []
        self.last: CheckResult | None = None

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        checks = self.checks
        if not checks:
            state = "no check yet"
        elif self.passed:
            state = f"{len(checks)} checks, all passed (last at step {checks[-1].step})"
        else:
            first = next(r for r in checks if not r.passed)
            state = (
                f"{len(checks)} checks, {sum(not r.passed for r in checks)} failed (first at "
                f"step {first.step}; last: {self.last.summary() if self.last else '?'})"
            )
        return f"GradMonitor({name}, every={self.every}: {state})"

    @property
    def passed(self) -> bool:
        """Every check so far passed."""
        return all(r.passed for r in self.history if r.checked)

    @property
    def checks(self) -> list[Record]:
        return [r for r in self.history if r.checked]

    def __call__(self, step: int, params: Any, *args: Any, loss: Any = None) -> CheckResult | None:
        """Record this step; check the gradient when step is a multiple of `every`.

        Returns the `CheckResult` at a checked step, else None.
        """
        value = math.nan if loss is None else float(loss)
        if step % self.every:
            self.history.append(Record(step, value, checked=False))
            return None
        mode = self.mode or ("full" if _size(params) <= FULL_UP_TO else "directional")
        result = check_with(self.fn, params, args, self.grad_fn, self.options.replace(mode=mode))
        if loss is None:
            value = float(self.fn(params, *args))
        record = Record(
            step,
            value,
            checked=True,
            passed=result.passed,
            difference=result.difference,
            leaf_difference={p: leaf.difference for p, leaf in result.leaves.items()},
            min_abs_grad=self._min_abs(result, params, args),
            n_failed=result.n_failed,
        )
        self.history.append(record)
        self.last = result
        if not result.passed:
            if self.on_failure == "raise":
                raise GradCheckError(result)
            if self.on_failure == "warn":
                warnings.warn(f"jaxcheck at step {step}: {result.summary()}", stacklevel=2)
        return result

    def _min_abs(self, result: CheckResult, params: Any, args: tuple) -> float:
        """min |g_i|: from the check's record of g, or (directional mode records only the
        located elements) from the gradient under test itself."""
        values = _finite_abs(result.analytic)
        if values.size < result.n_checked or not values.size:
            grad = self.grad_fn or jax.grad(self.fn)
            values = _finite_abs(grad(params, *args))
        return float(values.min()) if values.size else math.nan

    def to_dict(self) -> list[dict[str, Any]]:
        """The history as JSON-ready dicts (NaN as None)."""
        clean = lambda x: None if isinstance(x, float) and not math.isfinite(x) else x  # noqa: E731
        return [{k: clean(v) for k, v in dataclasses.asdict(r).items()} for r in self.history]

    def plot(self, fig: Figure | None = None) -> np.ndarray:
        """Three panels over the training steps: the cost, the gradient difference at each
        check (red where it failed) and the smallest |g|. Needs matplotlib; returns the three
        Axes (an array, as `plt.subplots` does; `.figure` of any is the Figure), like every
        plot of jaxcheck returns its Axes."""
        plt = pyplot("GradMonitor.plot")
        if fig is None:
            fig = plt.figure(figsize=(10, 3.2))
        axes = fig.subplots(1, 3)
        steps = [r.step for r in self.history]
        axes[0].plot(steps, [r.loss for r in self.history])
        axes[0].set_title("cost")
        checks = self.checks
        colors = ["tab:green" if r.passed else "tab:red" for r in checks]
        axes[1].scatter([r.step for r in checks], [r.difference for r in checks], c=colors, s=12)
        axes[1].set_yscale("log")
        axes[1].set_title("gradient difference (red: failed)")
        axes[2].plot([r.step for r in checks], [r.min_abs_grad for r in checks], marker=".")
        axes[2].set_yscale("log")
        axes[2].set_title("min |g|")
        for ax in axes:
            ax.set_xlabel("step")
        fig.tight_layout()
        return axes


def _size(params: Any) -> int:
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params) if hasattr(x, "shape"))


def _finite_abs(tree: Any) -> np.ndarray:
    leaves = [np.abs(np.ravel(np.asarray(g, np.float64))) for g in jax.tree_util.tree_leaves(tree)]
    values = np.concatenate(leaves) if leaves else np.array([])
    return values[np.isfinite(values)]
