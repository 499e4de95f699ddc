"""From the leaves' verdicts to a `CheckResult`: the leaf reports and the check's outcome.

A leaf fails when some element does (or, in directional mode, some direction disagrees); a
leaf with no failure is conclusive when at least `CONCLUSIVE` of its checked elements
(directions) are verified, else "inconclusive"; the check takes the worst of its leaves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core.coords import Leaf
from .._core.result import CheckResult, ElementReport, LeafReport, VerdictName
from .._numerics import complex as _complex
from .._numerics import diagnosis as _diagnosis
from .._numerics import directions as _directions
from .._numerics import stencils as _stencils
from .mode import Judged
from .plan import Plan
from .problem import Problem

# A leaf is conclusive when at least this fraction of its checked elements (directions, in
# directional mode) is verified: "ok" (exact zeros included) or a kink bracketed by the
# one-sided slopes. Below it, a leaf with no failure is "inconclusive", never "passed".
CONCLUSIVE = 0.5


def assemble(problem: Problem, plan: Plan, judged: Judged) -> CheckResult:
    """The result of a check from what its mode judged of each leaf (`LeafOutcome`), the
    problem's notes before the mode's."""
    coords, method, steps = problem.coords, plan.method, judged.steps
    leaf_methods, thetas = judged.methods, judged.thetas or {}
    judged_leaves, advice, o = judged.verdicts, judged.advice, plan.options
    views: dict[str, list] = {"numeric": [], "analytic": [], "resolution": []}
    reports: dict[str, LeafReport] = {}
    elements: dict[str, list[ElementReport]] = {"failures": [], "unverifiable": [], "kinks": []}
    totals = np.zeros(3)  # Σ(g − d)², Σg², Σd² over finite elements (or directions)
    for leaf in coords.leaves:
        outcome = judged_leaves.get(leaf.path)
        for name, view in _views(leaf, outcome).items():
            views[name].append(view)
        if outcome is None:
            continue
        method_used = leaf_methods.get(leaf.path, method)
        report, records, sums = _leaf(leaf, outcome, steps, method_used, thetas.get(leaf.path))
        reports[leaf.path] = report
        for name, found in records.items():
            elements[name] += found
        totals += sums
    failures = sorted(elements["failures"], key=lambda e: -_badness(e))
    verdicts = {r.verdict for r in reports.values()}
    verdict: VerdictName = "failed" if failures or "failed" in verdicts else "passed"
    if verdict == "passed" and "inconclusive" in verdicts:
        verdict = "inconclusive"
    return CheckResult(
        passed=verdict == "passed",
        verdict=verdict,
        advice=advice if verdict == "inconclusive" else "",
        difference=_difference(totals),
        leaves=reports,
        failures=tuple(failures),
        unverifiable=tuple(elements["unverifiable"]),
        kinks=tuple(elements["kinks"]),
        **{name: coords.unflatten(view) for name, view in views.items()},
        skipped=coords.skipped,
        notes=(*problem.notes, *judged.notes),
        method=method,
        precision=o.precision,
        engine=judged.engine,
        mode=o.mode,
        order=o.order,
    )


def _views(leaf: Leaf, outcome: _directions.LeafOutcome | None) -> dict[str, np.ndarray | None]:
    """The leaf's numeric, analytic and resolution arrays, shaped as given (NaN where it was
    not checked; None for a leaf that is not an array of numbers)."""
    if leaf.dtype is None:
        return {"numeric": None, "analytic": None, "resolution": None}
    nan = np.full(leaf.shape, np.nan)
    v = _directions.elements_of(outcome)
    as_given = _complex.complex_view if leaf.complex_pairs else lambda x: x
    both = (lambda x: x[..., 0] + 1j * x[..., 1]) if leaf.complex_pairs else as_given
    return {
        "numeric": as_given(nan if v is None else v.numeric.reshape(leaf.shape)),
        "analytic": as_given(nan if v is None else v.analytic.reshape(leaf.shape)),
        "resolution": both(nan if v is None else v.resolution.reshape(leaf.shape)),
    }


def _leaf(
    leaf: Leaf,
    outcome: Any,  # a `_directions.LeafOutcome`: narrowed by `directional` below
    steps: dict[str, float],
    method: str,
    theta: np.ndarray | None,
) -> tuple[LeafReport, dict, np.ndarray]:
    """The leaf's report, its failing, unverifiable and kink elements, and its sums."""
    directional = isinstance(outcome, _directions.DirectionalOutcome)
    v = _directions.elements_of(outcome)
    compared = _directions.compared_of(outcome)
    sums = _sums(compared)
    found: dict[str, list[ElementReport]] = {"failures": [], "unverifiable": [], "kinks": []}
    n_checked = n_ok = 0
    if v is not None:
        for name, statuses in (("failures", _stencils.FAILING),
                               ("unverifiable", [_stencils.UNVERIFIABLE]),
                               ("kinks", [_stencils.KINK])):  # fmt: skip
            at = np.flatnonzero(np.isin(v.status, statuses))
            found[name] = [_record(leaf, v, int(i)) for i in at]
        checked = np.ones(leaf.size, bool) if v.checked is None else v.checked
        n_checked = int(checked.sum())
        n_ok = int(np.count_nonzero(checked & (v.status == _stencils.OK)))
    records = found["failures"]
    diagnosis = ""
    if v is not None and records and not leaf.complex_pairs:
        diagnosis = _diagnosis.diagnose(v, leaf.shape, theta)
    passed = not records
    # conclusive: enough verified, counted over elements (directions in directional mode)
    counted, total = n_ok + len(found["kinks"]), n_checked
    extra = {}
    if directional:
        pv = outcome.probes
        passed = passed and outcome.passed
        counted = int(np.isin(pv.status, (_stencils.OK, _stencils.KINK)).sum())
        total = len(pv.status)
        extra = _directional_fields(outcome)
    ok = np.isfinite(compared.abs_error)
    nonfinite = bool(np.any(compared.status == _stencils.NONFINITE))
    report = LeafReport(
        path=leaf.path,
        shape=leaf.shape[:-1] if leaf.complex_pairs else leaf.shape,
        dtype=str(np.result_type(leaf.dtype, np.complex64) if leaf.complex_pairs else leaf.dtype),
        n_checked=n_checked,
        n_failed=len(records),
        n_unverifiable=len(found["unverifiable"]),
        # a non-finite element has no finite difference: NaN, not the others' agreement
        difference=math.nan if nonfinite else _difference(sums),
        max_abs_error=math.nan
        if nonfinite
        else float(np.max(compared.abs_error, initial=0.0, where=ok)),
        step=outcome.step if directional else steps[leaf.path],
        passed=passed and counted >= CONCLUSIVE * total,
        method=method,
        verdict=_verdict(passed, counted, total),
        n_verified=n_ok,
        n_kinks=len(found["kinks"]),
        diagnosis=diagnosis,
        **extra,
    )
    return report, found, sums


def _directional_fields(outcome: _directions.DirectionalOutcome) -> dict:
    """A directional leaf's report fields: its directions, and what locating found."""
    pv, located = outcome.probes, outcome.located
    return dict(
        directions=len(pv.status),
        probes=0 if located is None else located.probes,
        directional_error=float(np.max(pv.abs_error)),
        directional_tolerance=float(np.min(pv.tolerance)),
        miss_probability=outcome.miss_probability,
        detectable_norm=outcome.detectable_norm,
        located="" if located is None else located.note,
    )


def _verdict(passed: bool, counted: int, total: int) -> VerdictName:
    """A leaf's verdict: failed, or inconclusive when under CONCLUSIVE of it is verified."""
    if not passed:
        return "failed"
    return "passed" if counted >= CONCLUSIVE * total else "inconclusive"


def _sums(v: _stencils.Verdict) -> np.ndarray:
    ok = np.isfinite(v.numeric) & np.isfinite(v.analytic)
    d, g = v.numeric[ok], v.analytic[ok]
    return np.array([np.sum((g - d) ** 2), np.sum(g**2), np.sum(d**2)])


def _record(leaf, v: _stencils.Verdict, i: int) -> ElementReport:
    index, part, sign = leaf.index(int(i)), "", 1.0
    flat = int(i)
    if leaf.complex_pairs:  # (∂f/∂x, ∂f/∂y) against (Re g, −Im g): show Re g and Im g
        index, part, flat = index[:-1], ("real", "imag")[index[-1]], flat // 2
        sign = -1.0 if part == "imag" else 1.0
    return ElementReport(
        path=leaf.path,
        index=index,
        flat_index=leaf.offset + flat,
        analytic=sign * float(v.analytic[i]),
        numeric=sign * float(v.numeric[i]),
        abs_error=float(v.abs_error[i]),
        tolerance=float(v.tolerance[i]),
        status=_stencils.Status(int(v.status[i])).label,  # type: ignore[arg-type] # not "ok"
        part=part,
    )


def _badness(e: ElementReport) -> float:
    if e.status == "nonfinite" or not math.isfinite(e.abs_error):
        return math.inf
    return e.abs_error / e.tolerance if e.tolerance > 0 else math.inf


def _difference(sums: np.ndarray) -> float:
    """‖g − d‖ / (‖g‖ + ‖d‖), and 0 when both are zero."""
    denom = math.sqrt(sums[1]) + math.sqrt(sums[2])
    return math.sqrt(sums[0]) / denom if denom > 0 else 0.0
