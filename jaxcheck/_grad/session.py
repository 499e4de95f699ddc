"""What the order-1 modes share, leaf by leaf: the `Session`.

A full, sample or directional check's mode makes one with the evaluator `evaluators.choose`
chose. `gradient` reads a leaf's gradient under test and its tolerance; `elements` judges a
leaf's elements (choosing its step from the data first under eps="auto"); `finish` judges
what needs every leaf, closes the evaluator and returns `Judged`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .._core.coords import Coords, Leaf
from .._engine.evaluator import Evaluator
from .._numerics import complex as _complex
from .._numerics import directions as _directions
from .._numerics import methods
from .._numerics import stencils as st
from . import autostep as _autostep
from . import complex_step as _complex_step
from . import elementwise, under_test
from . import rounding as _rounding
from .mode import Judged
from .plan import Plan, default_method, native_low
from .problem import Problem


class Session:
    """What one order-1 check keeps while its mode judges leaf by leaf: the evaluator (chosen
    by `evaluators.choose`), the stencils, and what the leaves' verdicts add to the notes."""

    def __init__(self, problem: Problem, plan: Plan, evaluator: Evaluator):
        p = self.problem = problem
        self.plan = plan
        self.engine = evaluator
        self.method = differences(p, plan)
        # fn may compute in a coarser precision than its inputs (a cast inside): steps and
        # the noise of f are that precision's.
        self.u_computed = st.unit_roundoff(p.computed) if p.computed is not None else None
        self.stencils = stencils_of(p, plan)
        self.notes: list[str] = []
        self.u_f = st.unit_roundoff(p.coarser(p.out_dtype))
        self.rescued = 0  # elements within the gradient's own measured rounding
        self.drowned = 0  # elements no larger than it: unverifiable
        self.tuned: set[str] = set()  # leaves whose data-chosen step is settled
        self.g_scale = under_test.scale(p.grads)

    def gradient(self, leaf: Leaf) -> tuple[np.ndarray, st.Tolerance]:
        """The leaf's flat gradient under test (float64) and its tolerances."""
        g = np.asarray(self.problem.grads[leaf.path])
        g_dtype = self.problem.coarser(g.dtype) if np.issubdtype(g.dtype, np.floating) else g.dtype
        tol = self.plan.tolerance(g_dtype, self.u_f).replace(
            # the re-evaluation differences measured, up to nondet_tol (0 by default: none;
            # a deterministic fn measures none, whatever the bound)
            g_scale=self.g_scale,
            noise_floor=min(self.problem.nondet.seen, self.problem.nondet.tol),
        )
        if self.problem.rounding is not None:
            # The gradient's rounding is measured where an element would fail (`rounding`);
            # until then one unit of the largest gradient is assumed, not ten (8% of it in
            # bfloat16, which hid a 50% error in an element a third that size).
            tol = tol.replace(g_floor=_rounding.ASSUMED)
        return g.astype(np.float64).reshape(-1), tol

    def elements(
        self, leaf: Leaf, g: np.ndarray, tol: st.Tolerance, subset: np.ndarray | None = None
    ) -> st.Verdict:
        """The verdict of the leaf's elements (or `subset`), with its settled step."""
        plan = self.plan
        if leaf.path not in self.tuned and plan.step_rule == "auto" and leaf.path not in plan.steps:
            self.stencils[leaf] = _autostep.tuned(
                self.engine, leaf, self.stencils[leaf], self.method, g, tol,
                self.problem.typical[leaf.path], None if subset is None else len(subset),
            )  # fmt: skip
        self.tuned.add(leaf.path)
        s, nondet = self.stencils[leaf], self.problem.nondet
        tol = tol.replace(g_noise=0.0)  # directional's
        verdict = elementwise.compare_leaf(
            self.engine, leaf, s, self.method, g, tol, subset=subset, nondet=nondet,
            typical=self.problem.typical[leaf.path], rounding=self._floor(leaf),
        )  # fmt: skip
        rounding = self.problem.rounding
        if rounding is not None:
            if (verdict.status == st.MISMATCH).any():
                verdict, rescued, drowned = _rounding.widen(verdict, rounding.floor(leaf.path))
                self.rescued += rescued
                self.drowned += drowned
            if (verdict.status == st.UNVERIFIABLE).any():  # a zero to its rounding? (finish)
                verdict = dataclasses.replace(verdict, rounding=rounding.floor(leaf.path))
            verdict = _rounding.mark_unstable(verdict, rounding.unstable.get(leaf.path))
        if plan.options.kinks == "fail":
            at_kinks = verdict.status == st.KINK
            verdict.status[at_kinks] = st.MISMATCH
            verdict = dataclasses.replace(verdict, at_kinks=at_kinks)
        return verdict

    def _floor(self, leaf: Leaf) -> Callable[[], np.ndarray] | None:
        """The leaf's measured gradient rounding, as a function measuring it when called."""
        rounding = self.problem.rounding
        return None if rounding is None else lambda: rounding.floor(leaf.path)

    def finish(self, verdicts: dict, methods_used: dict, steps: dict) -> Judged:
        """What the mode judged, completed across leaves (`across_leaves`), with the
        session's notes (`notes_of`), the engine's resources released (`close`)."""
        p = self.problem
        self.across_leaves(verdicts)
        self.engine.close()  # the journal's note stays readable for `notes_of`
        for leaf in p.coords.checked:
            steps.setdefault(leaf.path, self.stencils.median_step(leaf))
        thetas = {leaf.path: p.values[leaf.position] for leaf in p.coords.checked}
        advice = _advice(self.plan, p.coords, p.computed, self.drowned)
        return Judged(verdicts, steps, self.engine.name, self.notes_of(verdicts), methods_used,
                      advice, thetas)  # fmt: skip

    def across_leaves(self, verdicts: dict) -> None:
        """The judgement that needs every leaf's verdict: zeros verified against the whole
        check's scale of gradients (`stencils.verify_zeros`; mutates the verdicts)."""
        p = self.problem
        natural = abs(p.f0) / max(p.typical.values())  # |f| over the parameters' scale
        u_g = max(st.unit_roundoff(np.asarray(g).dtype) for g in p.grads.values())
        st.verify_zeros(
            [v for o in verdicts.values() for v in _directions.verdicts_of(o)], natural, u_g
        )

    def notes_of(self, verdicts: dict) -> list[str]:
        """The session's notes: the engine's, f's re-evaluations, the gradient's rounding, the
        journal, data-chosen steps, and a conjugated complex gradient."""
        p, plan, notes = self.problem, self.plan, list(self.notes)
        if p.nondet.seen > 0:
            notes.append(
                f"re-evaluations of fn at the same point differ by up to {p.nondet.seen:.1e}, "
                f"within nondet_tol={p.nondet.tol:g}: accepted, and counted as noise in every "
                "element's tolerance"
            )
        notes += _rounding_notes(p.rounding, self.rescued, self.drowned)
        if self.engine.journal is not None:
            notes.append(self.engine.journal.note())
        if plan.step_rule == "auto" and self.tuned - set(plan.steps):
            notes.append(
                "steps chosen from the data per leaf (eps='auto'; eps='rule' for u^p·scale)"
            )
        hint = _complex.conjugate_hint(p.coords, verdicts)
        return notes + ([hint] if hint else [])


def differences(problem: Problem, plan: Plan) -> methods.Method:
    """The finite-difference method: the plan's, or the default one where the plan's is the
    complex step (which falls back to it on leaves where it is unusable)."""
    if plan.method != _complex_step.NAME:
        return methods.get(plan.method)
    _complex_step.validate(problem.given)
    return methods.get(default_method(problem.given, plan.options.precision, 1))


def stencils_of(problem: Problem, plan: Plan) -> elementwise.Stencils:
    """The check's stencils; a vanishing step raises here. In directional mode only the
    leaves with a given step are built (to validate them): the rest are built if they fail."""
    p = problem
    keep = plan.options.mode != "directional"
    u = st.unit_roundoff(p.computed) if p.computed is not None else None
    return elementwise.Stencils(
        p.coords, p.values, plan.steps, p.typical, differences(p, plan), keep, u
    )


def _rounding_notes(rounding, rescued: int, drowned: int = 0) -> list[str]:
    """What the gradient's own rounding changed: elements it explains, elements it drowns,
    calls that differ."""
    if rounding is None:
        return []
    notes = []
    if rescued:
        notes.append(
            f"{rescued} element(s) (or directions) differ from the finite differences by no "
            "more than the gradient under test's own rounding, measured from its values at "
            "points a few hundred units of rounding apart: right to its precision"
        )
    if drowned:
        notes.append(
            f"{drowned} element(s) differ from the finite differences, and the gradient under "
            "test's own rounding (measured) is as large as they are: unverifiable, neither "
            "right nor wrong to its precision"
        )
    if rounding.unstable:
        n = sum(int(m.sum()) for m in rounding.unstable.values())
        paths = ", ".join(rounding.unstable)
        notes.append(
            f"the gradient under test is not reentrant: two calls at the same point differ "
            f"beyond rounding in {n} element(s) of {paths} (nondeterministic). A bound on "
            "such differences as nondet_tol= accepts them"
        )
    elif rounding.jitter > 0:
        notes.append(
            f"two calls of the gradient under test at the same point differ by up to "
            f"{rounding.jitter:.1e}, within rounding and nondet_tol: accepted"
        )
    return notes


def _advice(plan: Plan, coords: Coords, computed=None, drowned: int = 0) -> str:
    """What would let finite differences resolve more of the gradient (or, where the gradient
    under test's own rounding is the limit, what would verify it)."""
    # precision='upcast' cannot help where fn casts to a lower precision itself (below)
    if drowned and plan.options.precision == "float64" and computed is None:
        return (
            f"the gradient under test's own rounding is as large as {drowned} of its elements "
            "(a low precision near a minimum, where per-example terms cancel): check with "
            "precision='upcast' (the gradient in float64 too) to verify the formula, or at a "
            "point where the gradients are larger"
        )
    if computed is not None and not native_low(coords, plan.options.precision):
        return (
            f"fn computes in {computed} inside, so the loss carries {computed}'s rounding "
            f"(about {st.unit_roundoff(computed):.0e} of |f|) and gradients that move it by less "
            "than that over the step cannot be told from zero: check at a point where they "
            f"are larger, or with fn computing in float64 (its {computed} casts or dtype= "
            "settings made float64) to check the formula"
        )
    if native_low(coords, plan.options.precision):
        return (
            "check with precision='float64' (the default: finite differences of the loss in "
            "float64, the gradient under test in its own dtype); in this dtype the loss's "
            "rounding hides most of the gradient"
        )
    tips = ["a larger step (eps=, or jaxcheck.sweep_eps to find one)"]
    if plan.method in ("central", "forward"):
        tips.append("method='central4' or 'richardson'")
    tips.append("another point, where the gradient is not negligible against the loss")
    return "try " + "; ".join(tips)
