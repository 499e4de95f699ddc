"""order=2: Hessian-vector products against central differences of the gradient.

For k unit Gaussian directions v per checked leaf (zero on the other leaves), the product
H v under test (`jax.jvp(jax.grad(f))`, or a handwritten `hvp_fn`) is compared element by
element with (∇f(θ + t v) − ∇f(θ − t v)) / 2t, where ∇f is `jax.grad(f)` or the `grad_fn`
given. As in directional mode the comparison is along the chord actually evaluated (θ ± t v
rounded to the working dtype), the step t = u^(1/3)·‖θ_leaf‖ along the unit direction, and the
verdict is the element-wise error model (`stencils.compare`) applied to each gradient element as
a function of t: round-off from the noise in the gradient values, truncation from ±2t. Each
element is reported with its worst direction; a note names, for every failing leaf of H v, the
leaves whose directions exposed it (the wrong block of H).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core import gradients as _gradients
from .._core.coords import Coords, Leaf
from .._engine.evaluator import Evaluator
from .._engine.programs import split_arrays
from .._numerics import complex as _complex
from .._numerics import directions as _directions
from .._numerics import stencils as st
from . import loss
from .mode import Judged
from .plan import Plan
from .problem import Problem


class Derivatives:
    """∇f and H v at batches of points: JAX's, or the user's grad_fn / hvp_fn."""

    def __init__(self, values, coords: Coords, given: Coords, args, grad_fn, hvp_fn, jax_fns):
        self.values, self.coords, self.given, self.args = values, coords, given, args
        self.grad_fn, self.hvp_fn = grad_fn, hvp_fn
        # None: fn cannot be traced
        self.jax_grads: Any = None
        self.jax_hvps: Any = None
        if jax_fns is not None:
            self.jax_grads, self.jax_hvps = jax_fns

    def _params(self, values: Sequence[Any]) -> Any:
        return self.given.unflatten(_complex.from_pairs(values, self.coords))

    def _user(self, out: Any) -> dict[str, np.ndarray]:
        grads = _complex.gradient_pairs(_gradients.read(self.given, out), self.coords)
        return {path: np.asarray(g, np.float64).reshape(-1) for path, g in grads.items()}

    def gradients(self, leaf: Leaf, points: np.ndarray) -> list[dict[str, np.ndarray]]:
        """∇f with leaf set to each row of points [B, n]; one {path: flat gradient} per row."""
        if self.grad_fn is None:
            return _rows(self.jax_grads(leaf, points), len(points))
        rows = []
        for x in points:
            values = list(self.values)
            values[leaf.position] = x.reshape(leaf.shape)
            rows.append(self._user(self.grad_fn(self._params(values), *self.args)))
        return rows

    def hvps(self, leaf: Leaf, directions: np.ndarray) -> list[dict[str, np.ndarray]]:
        """H v for v = each row of directions [B, n] on leaf (zero elsewhere)."""
        if self.hvp_fn is None:
            return _rows(self.jax_hvps(leaf, directions), len(directions))
        params, rows = self._params(self.values), []
        for v in directions:
            tangent = [
                np.zeros(other.shape, np.asarray(x).dtype) if other.is_float else x
                for other, x in zip(self.coords.leaves, self.values)
            ]
            tangent[leaf.position] = v.reshape(leaf.shape).astype(tangent[leaf.position].dtype)
            rows.append(self._user(self.hvp_fn(params, self.given.unflatten(tangent), *self.args)))
        return rows


def _rows(out: dict, n: int) -> list[dict[str, np.ndarray]]:
    """{path: [n, ...] array} -> n dicts {path: flat float64 row}."""
    return [{p: np.asarray(x[b], np.float64).reshape(-1) for p, x in out.items()} for b in range(n)]


def jax_derivatives(fn_scalar, values, coords: Coords, args):
    """(gradients, hvps) as `Derivatives` wants them, vmapped and compiled, from jax.grad."""
    dyn, rebuild, _ = split_arrays((values, args))
    grad = jax.grad(loss.of_checked(fn_scalar, coords, rebuild))
    base = [jnp.asarray(values[leaf.position]) for leaf in coords.checked]
    slot = {leaf.position: i for i, leaf in enumerate(coords.checked)}

    def with_leaf(i: int, x: jax.Array, fill: Callable[[jax.Array], jax.Array]) -> list[jax.Array]:
        return [x.reshape(b.shape) if j == i else fill(b) for j, b in enumerate(base)]

    @functools.partial(jax.jit, static_argnums=0)
    def grads(i: int, X: jax.Array, dyn: list[Any]) -> Any:
        return jax.vmap(lambda x: grad(with_leaf(i, x, lambda b: b), dyn))(X)

    @functools.partial(jax.jit, static_argnums=0)
    def hvps(i: int, V: jax.Array, dyn: list[Any]) -> Any:
        def one(v: jax.Array) -> Any:
            tangent = with_leaf(i, v, jnp.zeros_like)
            return jax.jvp(lambda sel: grad(sel, dyn), (base,), (tangent,))[1]

        return jax.vmap(one)(V)

    def named(out: Sequence[jax.Array]) -> dict[str, jax.Array]:
        return {leaf.path: x for leaf, x in zip(coords.checked, out)}

    return (
        lambda leaf, X: named(grads(slot[leaf.position], X, dyn)),
        lambda leaf, V: named(hvps(slot[leaf.position], V, dyn)),
    )


def judge(problem: Problem, plan: Plan, evaluator: Evaluator | None = None) -> Judged:
    """order=2: each checked leaf's elements of H·v, along `plan.options.directions` directions.
    Gradients are evaluated by `Derivatives` (evaluator: unused, None: no order-1 evaluator)."""
    p = problem
    if plan.options.hvp_fn is None and not p.traced:
        raise TypeError(
            f"fn could not be traced by JAX ({p.why}), so jax.jvp(jax.grad(fn)) cannot give "
            "the Hessian-vector products to check: pass your own as hvp_fn=."
        )
    if plan.options.hvp_fn is not None and p.coords is not p.given:
        raise ValueError(
            "hvp_fn= with complex parameters is not supported: check H·v with JAX's own "
            "(hvp_fn=None), or pass the real and imaginary parts as separate real leaves."
        )
    ours = jax_derivatives(p.fn_scalar, p.values, p.coords, p.args) if p.traced else None
    derivatives = Derivatives(
        p.values, p.coords, p.given, p.args, p.grad_fn, plan.options.hvp_fn, ours
    )

    def tol_of(leaf: Leaf) -> st.Tolerance:
        return plan.tolerance(np.asarray(p.grads[leaf.path]).dtype)

    kinky = bool(p.kinks) and plan.options.kinks != "fail"
    verdicts, steps, notes = check(derivatives, p.coords, p.grads, p.typical, plan.steps,
                                   plan.options.directions, plan.options.seed, tol_of,
                                   kinky)  # fmt: skip
    # H·v exactly zero where the second differences are zero bit for bit (a linear map) is
    # agreement, as exact zeros of the gradient are: judged against the scale of H·v, or
    # where every product is zero, |g| over the parameters' scale.
    g_max = max((float(np.max(np.abs(g), initial=0.0)) for g in p.grads.values()), default=0.0)
    u_h = max(st.unit_roundoff(np.asarray(g).dtype) for g in p.grads.values())
    st.verify_zeros(list(verdicts.values()), g_max / max(p.typical.values()), u_h)
    engine = "jax" if p.grad_fn is None and plan.options.hvp_fn is None else "host"
    return Judged(verdicts, steps, engine, notes)


def check(
    derivatives: Derivatives, coords: Coords, grads, typical, steps, k, seed, tol_of, kinky=False
):
    """{leaf path: Verdict of the leaf's elements of H v, worst direction}, steps, notes.

    grads: the gradient at θ (the values the differences start from); tol_of(leaf) -> the
    `Tolerance` of that leaf's elements. The gradient's values are noisy to u_g·max|∇f| of
    the whole check, not to u_g·|∇_i f|: an element that cancels to rounding (a bias before a
    batch norm, ∇_i f ≈ 1e-17) has the rounding of the terms that cancel. kinky: fn's program
    is not smooth (ReLU, max), so its gradient jumps and kinks where a unit changes sides: a
    mismatch along a direction is looked at again along the same direction at steps `SHRINK`
    times shorter, and is a kink of the gradient crossed by the chord where a shorter chord
    agrees while its difference moved away from the longer one's (`_kink_crossed`).
    """
    verdicts: dict[str, list[st.Verdict]] = {leaf.path: [] for leaf in coords.checked}
    exposed: dict[str, set[str]] = {leaf.path: set() for leaf in coords.checked}
    used_steps = {}
    g0 = {p: np.asarray(g, np.float64).reshape(-1) for p, g in grads.items()}
    g_max = max((float(np.max(np.abs(g), initial=0.0)) for g in g0.values()), default=0.0)

    def tol(out_leaf: Leaf) -> st.Tolerance:
        t = tol_of(out_leaf)
        return t.replace(noise_floor=np.maximum(t.noise_floor, t.u_g * g_max))

    crossed = 0
    for leaf in coords.checked:
        rng = np.random.default_rng([seed, leaf.position, 2])
        theta = np.asarray(derivatives.values[leaf.position]).reshape(-1)
        t = _directions.direction_step(theta, typical[leaf.path], steps.get(leaf.path))
        used_steps[leaf.path] = t
        v = rng.standard_normal((k, leaf.size))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        along = _along(derivatives, coords, leaf, theta, v, t, g0, tol)
        for shrink in SHRINK if kinky else ():
            failing = [j for j in range(k) if any(_fails(x) for x in along[j].values())]
            if not failing:
                break
            shorter = _along(derivatives, coords, leaf, theta, v[failing], t / shrink, g0, tol)
            for j, again in zip(failing, shorter):
                for p, verdict in along[j].items():
                    crossed += _kink_crossed(verdict, again[p])
        for j in range(k):
            for p, verdict in along[j].items():
                verdicts[p].append(verdict)
                if _fails(verdict):
                    exposed[p].add(leaf.path)
    judged = {p: _worst(vs) for p, vs in verdicts.items()}
    notes = [
        f"order=2: H·v for {k} random unit directions v per leaf ({k * len(coords.checked)} "
        "products), each element against central differences of the gradient along v; an "
        "element shows its worst direction"
    ]
    if crossed:
        notes.append(
            f"order=2: {crossed} element(s) of H·v disagreed along a chord that crossed a kink "
            "of the gradient (fn is not smooth) and agreed along one "
            f"{' or '.join(f'{s:g}×' for s in SHRINK)} shorter: reported as kinks"
        )
    notes += [
        f"H·v wrong in {p} along directions on {', '.join(sorted(by))} (that block of H)"
        for p, by in exposed.items()
        if by
    ]
    return judged, used_steps, notes


# A chord through θ that crosses a kink of the gradient at distance d (a ReLU unit changing
# sides) stops crossing it at steps below d/2; a wrong H·v disagrees at every step. The
# shorter steps tried, in turn, on the directions that still fail.
SHRINK = (8.0, 64.0)
SHRUNK = 4.0  # how much smaller the error along the shorter chord must be


def _along(derivatives: Derivatives, coords: Coords, leaf: Leaf, theta, v, t, g0, tol):
    """[{out leaf path: Verdict of H v's elements}] for each direction (row of v) on leaf,
    against central differences of the gradient at θ ± t v and θ ± 2t v."""
    k = len(v)
    t64 = theta.astype(np.float64)
    points = [(t64 + s * t * v).astype(theta.dtype) for s in (1, -1, 2, -2)]
    g = derivatives.gradients(leaf, np.concatenate(points))
    chord1 = (points[0].astype(np.float64) - points[1]) / (2 * t)
    chord2 = (points[2].astype(np.float64) - points[3]) / (4 * t)
    hv = derivatives.hvps(leaf, np.concatenate([chord1, chord2]).astype(theta.dtype))
    out = []
    for j in range(k):
        row = {}
        for out_leaf in coords.checked:
            p = out_leaf.path
            fp1, fm1, fp2, fm2 = (g[s * k + j][p] for s in range(4))
            h1, h2 = hv[j][p], hv[k + j][p]  # H v along the ±t and the ±2t chord
            row[p] = st.compare_chord(h1, h2 - h1, g0[p], fp1, fm1, fp2, fm2, t, tol(out_leaf))
        out.append(row)
    return out


def _fails(verdict: st.Verdict) -> bool:
    return bool(np.isin(verdict.status, st.FAILING).any())


def _kink_crossed(long: st.Verdict, short: st.Verdict) -> int:
    """Mismatches of `long` that `short` (the same direction, a shorter step) finds "ok",
    relabelled "kink" in `long`; their number. Only where the longer chord's difference moved
    away from the shorter one's beyond its own error estimate (it was no estimate of the
    derivative) and the error shrank at least `SHRUNK`-fold: a wrong H·v is wrong by the same
    amount at every step, and the shorter step's noise alone rarely takes most of it away."""
    with np.errstate(invalid="ignore"):
        moved = np.abs(long.numeric - short.numeric) > long.resolution
        shrank = np.abs(short.analytic - short.numeric) * SHRUNK <= long.abs_error
    kink = (long.status == st.MISMATCH) & (short.status == st.OK) & moved & shrank
    long.status[kink] = st.KINK
    return int(kink.sum())


def _worst(verdicts: list[st.Verdict]) -> st.Verdict:
    """Per element, the verdict of its worst direction: failing first, then by error/τ."""
    status = np.stack([v.status for v in verdicts])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.stack([v.abs_error / v.tolerance for v in verdicts])
    ratio = np.nan_to_num(ratio, nan=np.inf)
    score = np.where(np.isin(status, st.FAILING), 2.0 + np.arctan(ratio), np.arctan(ratio))
    score = np.where(status == st.UNVERIFIABLE, -1.0, score)
    pick = np.argmax(score, axis=0)
    cols = np.arange(status.shape[1])
    fields = ("analytic", "numeric", "abs_error", "tolerance", "resolution", "excess_noise")
    out = {f: np.stack([getattr(v, f) for v in verdicts])[pick, cols] for f in fields}
    zeros = [v.exact_zero for v in verdicts if v.exact_zero is not None]
    exact_zero = np.all(np.stack(zeros), axis=0) if len(zeros) == len(verdicts) else None
    return st.Verdict(**out, status=status[pick, cols], exact_zero=exact_zero)
