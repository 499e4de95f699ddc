"""sweep_eps: the error between the gradient and its finite difference over a range of steps.

People ask "why ε = 1e-4?". The answer is a V: as the step h shrinks the truncation error
falls (∝ h² for central differences) until round-off, ∝ u·|f| / h, takes over and the error
rises again. `sweep_eps` measures that curve per leaf, with the same engine and the same
difference as `check_grad` (each step is one `check_grad(..., eps=h)`), so the bottom of the V
is where that method is most accurate on *this* model, and the default step can be compared
with it.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from .._core.errors import hides_input_errors
from .._core.plots import pyplot
from .._core.result import CheckResult
from .._core.tables import html_table, table

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """What `jaxcheck.sweep_eps` measured.

    Attributes:
        steps: the absolute steps h, descending.
        difference: {leaf path: ‖g − D(h)‖ / (‖g‖ + ‖D(h)‖) per step} (NaN where the step
            vanishes in the working dtype).
        max_abs_error: {leaf path: max_i |g_i − D_i(h)| per step}.
        default_step: {leaf path: the median step check_grad takes by default}.
        method: the finite difference swept.
    """

    steps: np.ndarray
    difference: Mapping[str, np.ndarray]
    max_abs_error: Mapping[str, np.ndarray]
    default_step: Mapping[str, float]
    method: str

    @property
    def best_step(self) -> dict[str, float]:
        """Per leaf, the step with the smallest difference: the bottom of the V."""
        out = {}
        for path, d in self.difference.items():
            finite = np.isfinite(d)
            out[path] = (
                float(self.steps[finite][np.argmin(d[finite])]) if finite.any() else math.nan
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        clean = lambda a: [float(x) if np.isfinite(x) else None for x in a]  # noqa: E731
        return {
            "method": self.method,
            "steps": clean(self.steps),
            "difference": {p: clean(d) for p, d in self.difference.items()},
            "max_abs_error": {p: clean(d) for p, d in self.max_abs_error.items()},
            "default_step": dict(self.default_step),
            "best_step": self.best_step,
        }

    def _parts(self) -> tuple[str, list[str], list[list[str]], list[str]]:
        """Title, table header and rows, and the per-leaf summary lines."""
        paths = list(self.difference)
        header = ["step", *paths]
        rows = [
            [f"{h:.1e}", *(f"{self.difference[p][k]:.1e}" for p in paths)]
            for k, h in enumerate(self.steps)
        ]
        best = self.best_step
        title = f"jaxcheck.sweep_eps: {self.method} differences, ‖g − D‖ / (‖g‖ + ‖D‖) per leaf"
        summary = [
            f"{p}: best step {best[p]:.1e}, default step {self.default_step[p]:.1e}" for p in paths
        ]
        return title, header, rows, summary

    def __str__(self) -> str:
        title, header, rows, summary = self._parts()
        return "\n".join([title, "", *table(header, rows), "", *summary])

    def __repr__(self) -> str:
        return f"SweepResult({len(self.steps)} steps, best {self.best_step})"

    def _repr_html_(self) -> str:
        title, header, rows, summary = self._parts()
        lines = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
        return (
            f"<div><p><b>{html.escape(title)}</b></p>{html_table(header, rows)}"
            f"<ul>{lines}</ul></div>"
        )

    def plot(self, ax: Axes | None = None) -> Axes:
        """The V-shaped curves, one per leaf, on log-log axes (needs matplotlib).

        Returns the matplotlib Axes. The dotted vertical lines are the default steps.
        """
        plt = pyplot("SweepResult.plot")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        for path, d in self.difference.items():
            (line,) = ax.loglog(self.steps, d, marker="o", ms=3, label=path)
            ax.axvline(self.default_step[path], color=line.get_color(), ls=":", lw=1,
                       label=f"{path}: default step")  # fmt: skip
        ax.set_xlabel("step h")
        ax.set_ylabel("‖g − D(h)‖ / (‖g‖ + ‖D(h)‖)")
        ax.set_title(f"{self.method} differences: truncation (right) vs round-off (left)")
        ax.legend(fontsize="small")
        return ax


@hides_input_errors
def sweep_eps(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    steps: Sequence[float] | None = None,
    **options: Any,
) -> SweepResult:
    """Measure the gradient's disagreement with finite differences over a range of steps.

    Args:
        fn, params, *args: as for `check_grad`.
        steps: absolute steps h; default: half-decades from 1e-1 down to the unit round-off
            of the working dtype (1e-15 in float64, 1e-7 for float32 with precision="native").
        **options: passed to `check_grad` (grad_fn, method, precision, only, mode, ...), except
            eps, which each step sets.

    Returns:
        A `SweepResult` with a curve per leaf; `.plot()` draws it, `.best_step` reads it.

    Example:
        >>> import jax.numpy as jnp, jaxcheck
        >>> sweep = jaxcheck.sweep_eps(lambda p: jnp.sum(jnp.sin(p)), jnp.ones(3),
        ...                            steps=[1e-1, 1e-5, 1e-13])
        >>> sweep.best_step["params"]
        1e-05
    """
    from .check import check_grad

    if "eps" in options:
        raise ValueError("sweep_eps sets eps= itself: pass the steps to try as steps=[...].")
    default = check_grad(fn, params, *args, **options)
    if steps is None:
        u = _working_roundoff(default)
        steps = list(10.0 ** np.arange(-1.0, math.log10(u) - 0.25, -0.5))
    tried = np.sort(np.asarray(steps, np.float64))[::-1]
    if tried.size == 0 or not np.all(np.isfinite(tried)) or np.any(tried <= 0):
        raise ValueError(f"steps={tried.tolist()!r}: pass positive, finite step sizes.")
    difference = {p: np.full(tried.size, np.nan) for p in default.leaves}
    max_abs = {p: np.full(tried.size, np.nan) for p in default.leaves}
    for k, h in enumerate(tried):
        try:
            result = check_grad(fn, params, *args, eps=float(h), **options)
        except ValueError as e:
            if "vanishes" in str(e):  # θ ± h == θ somewhere: no difference at this step
                continue
            raise
        for path, leaf in result.leaves.items():
            difference[path][k] = leaf.difference
            max_abs[path][k] = leaf.max_abs_error
    return SweepResult(
        steps=tried,
        difference=difference,
        max_abs_error=max_abs,
        default_step={p: leaf.step for p, leaf in default.leaves.items()},
        method=default.method,
    )


def _working_roundoff(result: CheckResult) -> float:
    """The unit round-off of the dtype the check worked in (the coarsest leaf's)."""
    if result.precision != "native":
        return float(jnp.finfo(jnp.float64).eps)
    return max(float(jnp.finfo(leaf.dtype).eps) for leaf in result.leaves.values())
