"""Element-wise finite differences of one leaf: the stencils, the evaluations, the verdict.

Every element is evaluated at its method's first points; the rest (the error estimate's, the
noise estimate's, the kink test's) only on a sample and where the verdict depends on them;
suspicious elements are evaluated again to tell nondeterminism from a wrong gradient.
"""

from __future__ import annotations

import numpy as np

from . import _stencils as st
from ._coords import Coords, Leaf
from ._errors import format_index

CONFIRM_AT_MOST = 64  # suspicious elements re-evaluated per leaf to tell nondeterminism from a bug
NOISE_SAMPLE = 256  # elements per leaf always evaluated at ±2h, for the leaf's noise estimate
NOISY = 1e3  # noise in f above this many round-off units makes an element suspicious


def stencils(coords: Coords, values: list, steps: dict, typical: dict, method) -> dict:
    """Each checked leaf's `Stencil`; typical: `_typical_scale`."""
    out = {}
    for leaf in coords.checked:
        theta = np.asarray(values[leaf.position]).reshape(-1)
        if leaf.path in steps:
            h = np.full(theta.shape, steps[leaf.path])
        else:
            h = st.default_steps(theta, typical[leaf.path], method)
        stencil = st.make_stencil(theta, h, method)
        lost = stencil.lost()
        if lost.size:
            i = int(lost[0])
            raise ValueError(
                f"the step {h[i]:.3g} vanishes at params{leaf.path}{format_index(leaf.index(i))} = "
                f"{float(theta[i])!r} in {theta.dtype}: θ ± h rounds back to θ "
                f"({lost.size} element(s) of this leaf). Use a larger eps, or eps=None for steps "
                "relative to each element."
            )
        out[leaf.path] = stencil
    return out


def judge_leaf(engine, leaf: Leaf, s: st.Stencil, method, g, tol: dict, subset=None):
    """Evaluate f at θ and at the method's first points for every element of the leaf, and
    at the rest (the error estimate's, the noise estimate's, the kink test's) where needed.

    Elements that are clearly right from the first points alone (`stencils.screen`) skip the
    rest, except for a random sample that keeps the leaf's noise estimate honest. A wrong or
    doubtful element always gets every point. subset: check only these elements (the verdict
    covers the leaf, NaN elsewhere). tol: u_f, u_g, rtol, atol.
    """
    idx = np.arange(leaf.size) if subset is None else np.asarray(subset, np.int64)
    theta0 = s.theta[:1]  # f(θ): element 0 set to its own value
    if subset is not None:
        s, g = s.take(idx), g[idx]
    n = len(idx)
    sample = np.random.default_rng(leaf.position).choice(n, min(n, NOISE_SAMPLE), replace=False)
    first = [s.row(o) for o in method.first]
    rest = [r for r in range(len(s.offsets)) if r not in first]
    F = np.full((len(s.offsets), n), np.nan)
    points = [theta0, *(s.points[r] for r in first), *(s.points[r][sample] for r in rest)]
    f = engine.evaluate(
        leaf,
        np.concatenate([[0], *[idx] * len(first), *[idx[sample]] * len(rest)]),
        np.concatenate(points),
    )
    f0, parts = f[0], np.split(f[1:], np.cumsum([n] * len(first) + [len(sample)] * len(rest)))
    for r, part in zip(first, parts):
        F[r] = part
    for r, part in zip(rest, parts[len(first) :]):
        F[r, sample] = part
    need = st.screen(g, f0, F, s, method, **tol)
    need[sample] = False
    second = np.flatnonzero(need)
    if second.size and rest:
        f2 = engine.evaluate(
            leaf,
            np.concatenate([idx[second]] * len(rest)),
            np.concatenate([s.points[r][second] for r in rest]),
        )
        for r, part in zip(rest, np.split(f2, len(rest))):
            F[r, second] = part
    verdict = st.judge(g, f0, F, s, method, **tol)
    confirm(engine, leaf, s, idx, verdict, F[first], first, f0, tol["u_f"])
    return verdict if subset is None else verdict.expand(idx, leaf.size)


def confirm(engine, leaf, s, idx, verdict, before, rows, f0, u_f) -> None:
    """Re-evaluate suspicious elements: values that move between calls are nondeterministic.

    Suspicious are mismatches, and elements whose f is far noisier than round-off: randomness
    that appears only away from the base point inflates the noise estimate and would otherwise
    hide as "unverifiable". s, verdict, before (f at the stencil rows `rows`): of the elements
    idx of the leaf.
    """
    suspicious = (verdict.status == st.MISMATCH) | (verdict.excess_noise > NOISY)
    bad = np.flatnonzero(suspicious & (verdict.status != st.NONFINITE))
    if not bad.size:
        return
    worst = bad[np.argsort(-(verdict.abs_error[bad] / verdict.tolerance[bad]))][:CONFIRM_AT_MOST]
    again = engine.evaluate(
        leaf,
        np.concatenate([idx[worst]] * len(rows)),
        np.concatenate([s.points[r][worst] for r in rows]),
    ).reshape(len(rows), -1)
    was = before[:, worst]
    moved = (np.abs(again - was) > 8 * u_f * np.maximum(np.abs(was), abs(f0))).any(axis=0)
    verdict.status[worst[moved]] = st.NONDETERMINISTIC
