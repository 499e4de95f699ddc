"""GradMonitor: check the gradient every N steps of a training loop, and keep the history.

When should a gradient be checked? Throughout training, with a check whose tolerance
comes from an error model, so that it stays green as the gradient shrinks towards a minimum.
The monitor is called once per step with the step number and the current parameters (and
the step's loss, if the loop has it). Every `every` steps it runs `check_grad` in a cheap mode
(full for small models, directional for large ones) and records the verdict, the difference
per leaf and the smallest |g|. It never changes the training: it reads the parameters, draws
no random numbers from the loop's keys, and leaves JAX's configuration as it found it.

Most training steps are jitted, and a check cannot run inside jit (it compiles and runs
programs of its own, on concrete values). Called inside a jitted step, the monitor stages a
`jax.debug.callback` that hands the step's values to the host (at checked steps; the step
number and loss at the others), and the check runs there, in a worker thread beside the
training: never inside the callback itself, since a callback that calls back into JAX can
deadlock (JAX's documentation of callbacks says not to). `wait()` waits for the checks
scheduled so far; the history waits for them before it is read.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
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
PENDING = 4  # checks from jitted steps waiting to run: beyond this a step's check is skipped


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

    Inside a jitted training step, call it the same way, with the step number as a traced
    value (an argument of the step, or the optimizer's count): the checks then run on the
    host, beside the training (see the module docstring), and the call returns None.

        @jax.jit
        def train_step(step, params, state, x, y):
            value, grads = jax.value_and_grad(loss)(params, x, y)
            monitor(step, params, x, y, loss=value)
            updates, state = opt.update(grads, state)
            return optax.apply_updates(params, updates), state

    Reading the history (`history`, `passed`, `last`, `plot()`) waits for the checks
    scheduled so far; `monitor.wait()` does too, and raises the `GradCheckError` of a failed
    check with on_failure="raise" (inside jit that error also stops the next step, as a
    `jax.errors.JaxRuntimeError` carrying its report: an exception cannot leave a callback
    as itself).
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
        self._history: list[Record] = []
        self._last: CheckResult | None = None
        # Jitted steps: the checks their callbacks queued, the thread that runs them, and the
        # error of one that failed (on_failure="raise") or could not run, for `wait`.
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._staged = False
        self._skipped = 0

    @property
    def history(self) -> list[Record]:
        """Every step the monitor saw, in order (waiting for the checks jitted steps queued)."""
        self._settle()
        return self._history

    @property
    def last(self) -> CheckResult | None:
        """The latest check's result."""
        self._settle()
        return self._last

    def wait(self) -> None:
        """Wait for the checks that jitted steps have scheduled so far, and raise the error of
        one that failed with on_failure="raise" (a `GradCheckError`) or could not run. Outside
        jit every check has run when the call returns, and this does nothing."""
        self._settle()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _settle(self) -> None:
        if self._staged:
            jax.effects_barrier()  # the steps' callbacks have run (and queued their checks)
            self._queue.join()

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

        Returns the `CheckResult` at a checked step, else None; None inside a jitted step,
        whose check runs on the host beside the training (see the class docstring).
        """
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(
                (step, params, args, loss))):  # fmt: skip
            self._stage(step, params, args, loss)
            return None
        value = math.nan if loss is None else float(loss)
        if step % self.every:
            self._history.append(Record(step, value, checked=False))
            return None
        return self._check(step, params, args, loss, stacklevel=3)

    def _stage(self, step: Any, params: Any, args: tuple, loss: Any) -> None:
        """In a traced step: a callback hands the host the values of a checked step (the
        step number and loss of the others), where `_receive` queues them."""
        self._staged = True

        def checked() -> None:
            jax.debug.callback(self._receive, step, params, args, loss, True)

        def unchecked() -> None:
            jax.debug.callback(self._receive, step, None, (), loss, False)

        if isinstance(step, jax.core.Tracer):
            jax.lax.cond(step % self.every == 0, checked, unchecked)
        else:  # a step number fixed when the step was traced
            (unchecked if step % self.every else checked)()

    def _receive(self, step: Any, params: Any, args: tuple, loss: Any, check: bool) -> None:
        """On the host, in the step's callback, which must not call into JAX: host copies of
        the values, queued for the worker thread (`_work`)."""
        if self._error is not None:  # stop the training: a check failed (on_failure="raise")
            raise self._error
        step = int(step)
        value = math.nan if loss is None else float(np.asarray(loss))
        self._history.append(Record(step, value, checked=False))  # the check fills it in
        if not check:
            return
        if self._queue.unfinished_tasks >= PENDING:
            self._skipped += 1
            if self._skipped == 1:
                warnings.warn(
                    f"jaxcheck.GradMonitor: the checks take longer than the {self.every} steps "
                    f"between them; the check at step {step} was skipped (and later ones will "
                    "be while checks are waiting). Pass a larger every= to check every one.",
                    stacklevel=2,
                )
            return
        values = jax.tree_util.tree_map(np.array, (params, args))  # copies: buffers are reused
        self._queue.put((len(self._history) - 1, step, *values, None if loss is None else value))
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="GradMonitor", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        """The worker thread: runs the queued checks, outside any callback."""
        while True:
            slot, step, params, args, loss = self._queue.get()
            try:
                self._check(step, params, args, loss, stacklevel=2, slot=slot)
            except Exception as e:  # noqa: BLE001 - kept for `wait` and the next step
                self._error = e
            finally:
                self._queue.task_done()

    def _check(
        self, step: int, params: Any, args: tuple, loss: Any, stacklevel: int, slot: int = -1
    ) -> CheckResult:
        """Check at this step and record it (in the history's `slot`, where a jitted step's
        callback left one; else at its end)."""
        value = math.nan if loss is None else float(loss)
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
        if slot < 0:
            self._history.append(record)
        else:
            self._history[slot] = record
        self._last = result
        if not result.passed:
            if self.on_failure == "raise":
                raise GradCheckError(result)
            if self.on_failure == "warn":
                message = f"jaxcheck at step {step}: {result.summary()}"
                warnings.warn(message, stacklevel=stacklevel)
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
