"""From the leaves' verdicts to a `CheckResult`: the leaf reports and the check's outcome.

A leaf fails when some element does (or, in directional mode, some direction disagrees); a
leaf with no failure is conclusive when at least `CONCLUSIVE` of its checked elements
(directions) are verified, else "inconclusive"; the check takes the worst of its leaves.
"""

from __future__ import annotations

import math

import numpy as np

from . import _complex, _stencils
from ._result import CheckResult, ElementReport, LeafReport

# A leaf is conclusive when at least this fraction of its checked elements (directions, in
# directional mode) is verified: "ok" (exact zeros included) or a kink bracketed by the
# one-sided slopes. Below it, a leaf with no failure is "inconclusive", never "passed".
CONCLUSIVE = 0.5


def assemble(
    coords,
    judged,
    steps,
    notes,
    precision,
    engine,
    mode="full",
    order=1,
    method="central",
    leaf_methods=None,
    advice="",
) -> CheckResult:
    """Build the result from each checked leaf's `Verdict` or `DirectionalVerdict`.

    steps: {leaf path: the median step} (directional verdicts carry their own). method: the
    check's; leaf_methods: {leaf path: the method that judged it} where that differs.
    advice: what would make the check conclusive, shown when it is not.
    """
    leaf_methods = leaf_methods or {}
    numeric, analytic, resolution, reports = [], [], [], {}
    failures, unverifiable, kinks = [], [], []
    totals = np.zeros(3)  # Σ(g − d)², Σg², Σd² over finite elements (or directions)
    for leaf in coords.leaves:
        outcome = judged.get(leaf.path)
        nan = np.full(leaf.shape, np.nan) if leaf.dtype is not None else None
        directional = getattr(outcome, "probes", None) is not None
        v = outcome.elements if directional else outcome
        as_given = _complex.complex_view if leaf.complex_pairs else lambda x: x
        numeric.append(as_given(nan if v is None else v.numeric.reshape(leaf.shape)))
        analytic.append(as_given(nan if v is None else v.analytic.reshape(leaf.shape)))
        both = (lambda x: x[..., 0] + 1j * x[..., 1]) if leaf.complex_pairs else as_given
        resolution.append(both(nan if v is None else v.resolution.reshape(leaf.shape)))
        if outcome is None:
            continue
        compared = outcome.probes if directional else v
        sums = _sums(compared)
        totals += sums
        records, n_checked, n_unverifiable, extra = [], 0, 0, {}
        n_ok = n_kinks = 0
        if v is not None:
            failing = np.isin(v.status, _stencils.FAILING)
            records = [_record(leaf, v, i) for i in np.flatnonzero(failing)]
            weak = np.flatnonzero(v.status == _stencils.UNVERIFIABLE)
            unverifiable += [_record(leaf, v, i) for i in weak]
            at_kinks = np.flatnonzero(v.status == _stencils.KINK)
            kinks += [_record(leaf, v, i) for i in at_kinks]
            checked = np.ones(leaf.size, bool) if v.checked is None else v.checked
            n_checked = int(checked.sum())
            n_unverifiable, n_kinks = len(weak), len(at_kinks)
            n_ok = int(np.count_nonzero(checked & (v.status == _stencils.OK)))
        failures += records
        if v is not None and records:
            spread = _spread_note(leaf.path, v)
            notes = [*notes, spread] if spread else notes
        passed = not records
        # conclusive: enough verified, counted over elements (directions in directional mode)
        counted, total = n_ok + n_kinks, n_checked
        if directional:
            pv = outcome.probes
            passed = passed and outcome.passed
            counted, total = (
                int(np.isin(pv.status, (_stencils.OK, _stencils.KINK)).sum()),
                len(pv.status),
            )
            located = outcome.located
            extra = dict(
                directions=len(pv.status),
                probes=0 if located is None else located.probes,
                directional_error=float(np.max(pv.abs_error)),
                directional_tolerance=float(np.min(pv.tolerance)),
                miss_probability=outcome.miss_probability,
                detectable_norm=outcome.detectable_norm,
                located="" if located is None else located.note,
            )
            step = outcome.step
        else:
            step = steps[leaf.path]
        ok = np.isfinite(compared.abs_error)
        nonfinite = bool(np.any(compared.status == _stencils.NONFINITE))
        reports[leaf.path] = LeafReport(
            path=leaf.path,
            shape=leaf.shape[:-1] if leaf.complex_pairs else leaf.shape,
            dtype=str(
                np.result_type(leaf.dtype, np.complex64) if leaf.complex_pairs else leaf.dtype
            ),
            n_checked=n_checked,
            n_failed=len(records),
            n_unverifiable=n_unverifiable,
            # a non-finite element has no finite difference: NaN, not the others' agreement
            difference=math.nan if nonfinite else _difference(sums),
            max_abs_error=math.nan
            if nonfinite
            else float(np.max(compared.abs_error, initial=0.0, where=ok)),
            step=step,
            passed=passed and counted >= CONCLUSIVE * total,
            method=leaf_methods.get(leaf.path, method),
            verdict=_verdict(passed, counted, total),
            n_verified=n_ok,
            n_kinks=n_kinks,
            **extra,
        )
    failures.sort(key=lambda e: -_badness(e))
    verdicts = {r.verdict for r in reports.values()}
    verdict = next((v for v in ("failed", "inconclusive") if v in verdicts), "passed")
    verdict = "failed" if failures else verdict
    return CheckResult(
        passed=verdict == "passed",
        verdict=verdict,
        advice=advice if verdict == "inconclusive" else "",
        difference=_difference(totals),
        leaves=reports,
        failures=tuple(failures),
        unverifiable=tuple(unverifiable),
        kinks=tuple(kinks),
        resolution=coords.unflatten(resolution),
        numeric=coords.unflatten(numeric),
        analytic=coords.unflatten(analytic),
        skipped=coords.skipped,
        notes=tuple(notes),
        method=method,
        precision=precision,
        engine=engine,
        mode=mode,
        order=order,
    )


APPROXIMATE = 1e-2  # mismatches under this relative size, spread over a leaf: approximate


def _spread_note(path: str, v: _stencils.Verdict) -> str:
    """A note where a leaf's mismatches are small, cover most of what was resolved, and vary
    in sign and size from element to element: an approximate gradient by design (a constant
    factor would be the same everywhere), not a wrong rule."""
    checked = np.ones(v.status.shape, bool) if v.checked is None else v.checked
    wrong = checked & (v.status == _stencils.MISMATCH)
    resolved = checked & np.isin(v.status, (_stencils.OK, _stencils.MISMATCH))
    if wrong.sum() < 2 or wrong.sum() < 0.5 * resolved.sum():
        return ""
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = v.analytic[wrong] / v.numeric[wrong] - 1  # a constant factor: the same everywhere
    rel = rel[np.isfinite(rel)]
    if not rel.size:
        return ""
    size = float(np.median(np.abs(rel)))
    if size > APPROXIMATE or abs(float(np.mean(rel))) > 2 * float(np.std(rel)):
        return ""
    return (
        f"{path}: a small error spread over the leaf ({int(wrong.sum())} of "
        f"{int(resolved.sum())} resolved elements off by about {size:.1e} relative, at most "
        f"{float(np.max(np.abs(rel))):.1e}, of either sign): typical of a gradient that is "
        "approximate by design (an adaptive ODE solver's gradient holding its step-size "
        "controller fixed, an iterative solve stopped at its tolerance, a truncated adjoint), "
        "not of a wrong rule; if that is expected, pass rtol= about that size"
    )


def _verdict(passed: bool, counted: int, total: int) -> str:
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
        status=_stencils.STATUSES[v.status[i]],
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
