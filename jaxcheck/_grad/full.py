"""mode="full" (every element of every leaf) and mode="sample" (`samples` random elements of
each): finite differences element by element, or the complex step where asked and usable.
"""

from __future__ import annotations

import numpy as np

from .._engine.evaluator import Evaluator
from .._numerics import stencils as st
from .._numerics.directions import direction_step
from . import complex_step as _complex_step
from .mode import Judged
from .plan import Plan
from .problem import Problem
from .session import Session


def judge(problem: Problem, plan: Plan, evaluator: Evaluator | None) -> Judged:
    """Each checked leaf's element verdict."""
    assert evaluator is not None  # `evaluators.choose` made one
    session = Session(problem, plan, evaluator)
    cs = None
    if plan.method == _complex_step.NAME:
        p = problem
        options = {**plan.engine, "progress": evaluator.progress, "journal": evaluator.journal}
        cs = _complex_step.ComplexStep(p.fn_scalar, p.values, p.coords, p.args, p.key,
                                       options, not p.traced)  # fmt: skip
    verdicts, used, steps = {}, {}, {}
    for leaf in problem.coords.checked:
        g, tol = session.gradient(leaf)
        rng = np.random.default_rng([plan.options.seed, leaf.position])
        subset = None
        if plan.options.mode == "sample":
            subset = np.sort(
                rng.choice(leaf.size, min(leaf.size, plan.options.samples), replace=False)
            )
        if cs is not None:
            verdict, h, why = _complex_step_leaf(cs, session, leaf, g, tol, subset)
            if verdict is not None:
                verdicts[leaf.path], used[leaf.path] = verdict, _complex_step.NAME
                steps[leaf.path] = h
                session.notes += [why] if why else []
                continue
            session.notes.append(
                f"complex step not used on {leaf.path}: {why}; checked with "
                f"{session.method.name} differences"
            )
        used[leaf.path] = session.method.name
        verdicts[leaf.path] = session.elements(leaf, g, tol, subset)
    return session.finish(verdicts, used, steps)


def _complex_step_leaf(cs, session: Session, leaf, g, tol, subset):
    """(verdict, median step, note) by the complex step, or (None, None, why not)."""
    p, plan = session.problem, session.plan
    theta = np.asarray(cs.values[leaf.position]).reshape(-1)
    scale, eps = p.typical[leaf.path], plan.steps.get(leaf.path)
    t = direction_step(theta, scale, eps)
    along = direction_step(theta, scale, eps, power=_complex_step.POWER)
    rng = np.random.default_rng([plan.options.seed, leaf.position, 1])
    cs_engine, why = cs.verify(leaf, session.engine, g, p.f0, t, along, rng, tol)
    if cs_engine is None:
        return None, None, why
    h = np.full(theta.shape, eps) if eps else _complex_step.default_steps(theta, scale)

    def elements(subset: np.ndarray | None = None) -> st.Verdict:
        return session.elements(leaf, g, tol, subset)

    verdict, overruled = cs.compare(cs_engine, leaf, g, h, tol, subset, confirm=elements)
    note = ""
    if overruled:
        note = (
            f"complex step and finite differences disagree at {overruled} element(s) of "
            f"{leaf.path} ({_complex_step.WHY_WRONG}): judged by finite differences"
        )
    return verdict, float(np.median(h)), note
