"""The Taylor test (dolfin-adjoint's `taylor_test`): a gradient judged by convergence rates.

Along a direction δ, with h halving,

    R0(h) = |f(θ + hδ) − f(θ)|                                shrinks as h   (rate 1)
    R1(h) = |f(θ + hδ) − f(θ) − h⟨g, δ⟩|                      shrinks as h²  (rate 2)
    R2(h) = |f(θ + hδ) − f(θ) − h⟨g, δ⟩ − h²/2 ⟨δ, Hδ⟩|       shrinks as h³  (rate 3)

A wrong gradient leaves R1 ∝ h·|⟨g − ∇f, δ⟩|: rate 1. The verdict needs no tolerance, only the
observed rates, over the steps where rounding does not dominate. That range is found from
the data: a remainder counts only where it exceeds ROUNDING times f's rounding (u·|f|) and,
for R1, TEST_ROUNDING times what the gradient's own rounding contributes (h·u_g·Σ|g_i δ_i|);
the report says which steps were used. It checks the whole gradient along one direction at
once, in any precision, without a tolerance to pick; it locates nothing (check_grad does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NOT_JAX_CODE, hides_input_errors
from .._core.plots import pyplot
from .._numerics import stencils as st
from . import options as _options
from . import runtime
from .problem import cast_args

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STEPS = 16  # h = h0, h0/2, ..., h0/2^15
H0 = 0.1  # the first step, relative to the direction's scale
ROUNDING = 100.0  # a remainder counts where above this many units of f's rounding ...
TEST_ROUNDING = 10.0  # ... and R1 above this many times the gradient's rounding's share
PASS_RATE, FAIL_RATE = 1.8, 1.3  # the median rate at the smallest steps used: ≥ passes, ≤ fails
LAST = 3  # rates of the smallest steps used that decide


@dataclasses.dataclass(frozen=True, eq=False)
class TaylorResult:
    """What `jaxcheck.taylor_test` found.

    Attributes:
        verdict: "passed" (R1 converges at rate 2, and R2 at 3 where an H·v was given),
            "failed" (at rate 1: the gradient is wrong along δ; for R2 at rate ≤ 2: the H·v),
            or "inconclusive" (too few steps above rounding, or rates in between).
        steps: the steps h.
        residuals: {"R0": [...], "R1": [...], "R2": [...]} at each step.
        rates: the same, log2 of consecutive ratios (one fewer).
        used: per rate, whether both its steps lie where rounding does not dominate.
        notes: how the range was chosen, and anything unusual.
    """

    verdict: str
    steps: np.ndarray
    residuals: dict[str, np.ndarray]
    rates: dict[str, np.ndarray]
    used: dict[str, np.ndarray]
    notes: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def __str__(self) -> str:
        lines = [f"jaxcheck.taylor_test: {self.verdict.upper()}"]
        for name, r in self.residuals.items():
            lines.append(f"Computed residuals ({name}): {_floats(r)}")
            lines.append(f"Computed convergence rates ({name}): {_floats(self.rates[name])}")
        lines.append("")
        names = list(self.residuals)
        lines.append("h          " + "  ".join(f"{n:<9}" for n in names) + "  " +
                     "  ".join(f"rate {n}" for n in names))  # fmt: skip
        for k, h in enumerate(self.steps):
            rs = "  ".join(f"{self.residuals[n][k]:<9.2e}" for n in names)
            rates = "  ".join(
                f"{self.rates[n][k]:>7.2f}{'' if self.used[n][k] else '*'}"
                if k < len(self.steps) - 1 else " " * 8
                for n in names
            )  # fmt: skip
            lines.append(f"{h:<9.3e}  {rs}  {rates}")
        lines.append("(* a rate where rounding dominates: not used)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    def failure_message(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "steps": self.steps.tolist(),
            "residuals": {k: v.tolist() for k, v in self.residuals.items()},
            "rates": {k: v.tolist() for k, v in self.rates.items()},
            "used": {k: v.tolist() for k, v in self.used.items()},
            "notes": list(self.notes),
        }

    def plot(self, ax: Axes | None = None) -> Axes:
        """The remainders against h on log-log axes, with the reference slopes 1, 2, 3 drawn
        through their smallest used step (needs matplotlib)."""
        plt = pyplot("TaylorResult.plot")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        for order, (name, r) in enumerate(self.residuals.items()):
            (line,) = ax.loglog(self.steps, r, marker="o", ms=3, label=name)
            used = np.flatnonzero(np.append(self.used[name], False) |
                                  np.insert(self.used[name], 0, False))  # fmt: skip
            if used.size:
                k = used[-1]
                ref = r[k] * (self.steps / self.steps[k]) ** (order + 1)
                ax.loglog(self.steps, ref, ls=":", color=line.get_color(),
                          label=f"slope {order + 1}")  # fmt: skip
        ax.set_xlabel("h")
        ax.set_ylabel("remainder")
        ax.set_title(f"Taylor test: {self.verdict}")
        ax.legend(fontsize="small")
        return ax


def _floats(x: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in np.asarray(x)) + "]"


@hides_input_errors
def taylor_test(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    grad_fn: Callable[..., Any] | None = None,
    hvp_fn: Callable[..., Any] | None = None,
    direction: Any = None,
    precision: str = "float64",
    seed: int = 0,
    steps: int = STEPS,
) -> TaylorResult:
    """The Taylor test of the gradient (and of an H·v) of fn at params along one direction.

    Args:
        fn: `fn(params, *args)` returns a scalar.
        params: the point, any pytree of float arrays.
        *args: data, passed to fn, grad_fn and hvp_fn unchanged (float arrays cast to float64
            under precision="float64").
        grad_fn: the gradient under test, `grad_fn(params, *args)`; None: `jax.grad(fn)`.
        hvp_fn: an H·v to test too, `hvp_fn(params, v, *args)` (v shaped like params);
            None: R2 is not computed.
        direction: δ, shaped like params; None: Gaussian, each element scaled by its leaf's
            RMS value (1 where the leaf is zero), seeded by `seed`.
        precision: "float64" (default): f in float64, the gradient under test in its own
            dtype; "native": f in the parameters' dtypes too.
        seed: the random direction's.
        steps: how many steps, h0 = 0.1 and halving.

    Returns:
        A `TaylorResult`; `print(result)` shows the residuals and rates as pyadjoint does.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function fn(params, *args); got {type(fn).__name__}.")
    for name, f in (("grad_fn", grad_fn), ("hvp_fn", hvp_fn)):
        if f is not None and not callable(f):
            raise TypeError(f"{name} must be a function or None; got {type(f).__name__}.")
    _options.count_option("steps", steps, "steps h (halving)")
    if steps < 3:
        raise ValueError(f"steps={steps}: pass at least 3 (rates need consecutive steps).")
    _options.validate_numerics(None, None, precision, seed)
    leaves, tree = jax.tree_util.tree_flatten(params)
    floats = [jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in leaves]
    if not any(floats):
        raise ValueError("params has no floating-point leaf: the Taylor test needs one.")
    rng = np.random.default_rng(seed)
    if direction is None:
        delta = []
        for x, is_float in zip(leaves, floats):
            a = np.asarray(x, np.float64)
            rms = float(np.sqrt(np.mean(a**2))) if a.size else 0.0
            delta.append(rng.standard_normal(a.shape) * (rms or 1.0) if is_float
                         else np.zeros(a.shape))  # fmt: skip
    else:
        given = jax.tree_util.tree_leaves(direction)
        if len(given) != len(leaves) or any(
            np.shape(d) != np.shape(x) for d, x in zip(given, leaves)
        ):
            raise ValueError(
                "direction= must be shaped like params (the same pytree, the same shapes); "
                f"got {len(given)} leaves for params' {len(leaves)}."
            )
        delta = [np.asarray(d, np.float64) for d in given]
    work = np.float64 if precision != "native" else None

    def at(t: float) -> Any:
        values = [
            (np.asarray(x, np.float64) + t * d).astype(work or np.asarray(x).dtype)
            if is_float else x
            for x, d, is_float in zip(leaves, delta, floats)
        ]  # fmt: skip
        return jax.tree_util.tree_unflatten(tree, values)

    with runtime.numerics(precision):
        work_args = cast_args(args, precision)
        f = _scalar(fn, work_args)
        f0 = float(f(at(0.0)))
        g = (jax.grad(fn) if grad_fn is None else grad_fn)(params, *args)
        g_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(g)]
        if len(g_leaves) != len(leaves):
            raise ValueError(
                f"grad_fn returned {len(g_leaves)} leaves for params' {len(leaves)}: return a "
                "pytree shaped like params."
            )
        slope = sum(float(np.sum(a * d)) for a, d in zip(g_leaves, delta))
        g_abs = sum(float(np.sum(np.abs(a * d))) for a, d in zip(g_leaves, delta))
        curvature = None
        if hvp_fn is not None:
            v = jax.tree_util.tree_unflatten(
                tree, [jnp.asarray(d, jnp.asarray(x).dtype) for d, x in zip(delta, leaves)]
            )
            hv = jax.tree_util.tree_leaves(hvp_fn(params, v, *args))
            curvature = sum(float(np.sum(np.asarray(a, np.float64) * d)) for a, d in zip(hv, delta))
        hs = H0 * 0.5 ** np.arange(steps)
        fh = np.array([float(f(at(float(h)))) for h in hs])
    u_f = st.unit_roundoff(np.float64 if work else _dtype(leaves, floats))
    u_g = max(st.unit_roundoff(a.dtype) for a in map(np.asarray, jax.tree_util.tree_leaves(g)))
    diff = fh - f0
    residuals = {"R0": np.abs(diff), "R1": np.abs(diff - hs * slope)}
    if curvature is not None:
        residuals["R2"] = np.abs(diff - hs * slope - hs**2 / 2 * curvature)
    noise = ROUNDING * u_f * max(abs(f0), float(np.max(np.abs(fh))))
    above = {name: r > noise for name, r in residuals.items()}
    above["R1"] &= residuals["R1"] > TEST_ROUNDING * hs * u_g * g_abs
    if "R2" in above:
        above["R2"] &= residuals["R2"] > TEST_ROUNDING * hs * u_g * g_abs
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = {n: np.log2(r[:-1] / r[1:]) for n, r in residuals.items()}
    used = {n: a[:-1] & a[1:] for n, a in above.items()}
    verdict, notes = _verdict(rates, used, residuals, noise)
    return TaylorResult(verdict, hs, residuals, rates, used, tuple(notes))


def _scalar(fn: Callable[..., Any], args: tuple) -> Callable[[Any], Any]:
    """fn(params, *args) as a scalar: compiled where fn is JAX code, else called as it is
    (NumPy code on the host)."""
    compiled: Any = jax.jit(lambda p: jnp.asarray(fn(p, *args)).reshape(()))

    def f(p: Any) -> Any:
        nonlocal compiled
        if compiled is not None:
            try:
                return compiled(p)
            except NOT_JAX_CODE:  # NumPy code: every later call on the host too
                compiled = None
        return np.asarray(fn(p, *args), np.float64).reshape(())

    return f


def _dtype(leaves: list, floats: list) -> np.dtype:
    return np.result_type(*[np.asarray(x).dtype for x, is_float in zip(leaves, floats) if is_float])


def _verdict(rates: dict, used: dict, residuals: dict, noise: float) -> tuple[str, list[str]]:
    notes = [
        f"rates used where the remainders exceed {ROUNDING:g}× f's rounding ({noise:.1e}) and "
        f"R1's the gradient's own rounding's share ({TEST_ROUNDING:g}×)"
    ]
    if not used["R0"].any():
        notes.append("R0 is at rounding at every step: fn does not change along δ")
        return "inconclusive", notes
    expected = {"R1": 2.0, "R2": 3.0}
    verdicts = []
    for name in [n for n in ("R1", "R2") if n in rates]:
        r = rates[name][used[name]]
        if not r.size:
            if not (residuals[name] > noise).any():
                notes.append(f"{name} is at rounding at every step: exact along δ (fn is linear)")
                verdicts.append("passed")
            else:
                notes.append(f"{name}: too few steps above rounding to measure a rate")
                verdicts.append("inconclusive")
            continue
        rate = float(np.median(r[-LAST:]))
        want = expected[name]
        if rate >= want - (2.0 - PASS_RATE):
            verdicts.append("passed")
        elif rate <= want - (2.0 - FAIL_RATE):
            what = "the gradient" if name == "R1" else "the Hessian-vector product"
            notes.append(
                f"{name} converges at rate {rate:.2f}, not {want:g}: {what} is wrong along δ"
            )
            verdicts.append("failed")
        else:
            notes.append(f"{name} converges at rate {rate:.2f}, between the two")
            verdicts.append("inconclusive")
    if "failed" in verdicts:
        return "failed", notes
    return ("passed" if all(v == "passed" for v in verdicts) else "inconclusive"), notes
