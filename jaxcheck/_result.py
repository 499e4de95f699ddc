"""The result of a check: a value that prints, renders in a notebook, serializes and asserts."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from . import _stencils
from ._errors import format_index

WORST_SHOWN = 10


@dataclasses.dataclass(frozen=True)
class ElementReport:
    """One parameter element that did not simply pass."""

    path: str  # the leaf's key path, e.g. "['b1']"
    index: tuple[int, ...]  # multi-index within the leaf
    flat_index: int  # coordinate in ravel_pytree(params) order
    analytic: float  # the gradient under test
    numeric: float  # the central finite difference
    abs_error: float  # |analytic − numeric|
    tolerance: float  # what the error model allows for this element
    status: str  # "mismatch", "nonfinite", "nondeterministic" or "unverifiable"

    @property
    def name(self) -> str:
        return f"{self.path or 'params'}{format_index(self.index)}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["index"] = list(self.index)
        return {k: _json_float(v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True)
class LeafReport:
    """Summary of one checked leaf."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    n_checked: int
    n_failed: int
    n_unverifiable: int
    difference: float  # ‖g − g_fd‖ / (‖g‖ + ‖g_fd‖) over this leaf's finite elements
    max_abs_error: float
    step: float  # median step h over the leaf
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class CheckResult:
    """What `jaxcheck.check_grad` found.

    Attributes:
        passed: False exactly when some element is a mismatch, non-finite or nondeterministic.
        difference: ‖g − g_fd‖ / (‖g‖ + ‖g_fd‖) over all checked elements (the seeds' number).
        leaves: leaf key path -> `LeafReport`, in ravel_pytree order.
        failures: every failing element, worst first (largest |error| / tolerance).
        unverifiable: elements whose gradient is below what finite differences resolve here.
        numeric, analytic: pytrees shaped like params (NaN where an element was not checked).
        skipped: (path, reason) for leaves that were not checked.
        notes: how the check was done, where it departs from the plain case.
    """

    passed: bool
    difference: float
    leaves: Mapping[str, LeafReport]
    failures: tuple[ElementReport, ...]
    unverifiable: tuple[ElementReport, ...]
    numeric: Any
    analytic: Any
    skipped: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    method: str
    precision: str
    engine: str

    @property
    def n_checked(self) -> int:
        return sum(leaf.n_checked for leaf in self.leaves.values())

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """A JSON-ready dict. `arrays=True` adds the numeric and analytic gradients as lists."""
        d = {
            "passed": self.passed,
            "difference": _json_float(self.difference),
            "n_checked": self.n_checked,
            "n_failed": self.n_failed,
            "method": self.method,
            "precision": self.precision,
            "engine": self.engine,
            "leaves": {p: leaf.to_dict() for p, leaf in self.leaves.items()},
            "failures": [e.to_dict() for e in self.failures],
            "unverifiable": [e.to_dict() for e in self.unverifiable],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "notes": list(self.notes),
        }
        if arrays:
            for name in ("numeric", "analytic"):
                flat = jax.tree_util.tree_flatten_with_path(getattr(self, name))[0]
                d[name] = {
                    jax.tree_util.keystr(k): [_json_float(x) for x in np.ravel(v)] for k, v in flat
                }
        return d

    def to_json(self, *, arrays: bool = False, **json_kwargs: Any) -> str:
        """`json.dumps(self.to_dict(arrays=arrays), **json_kwargs)`; NaN and inf become null."""
        return json.dumps(self.to_dict(arrays=arrays), **json_kwargs)

    # ---- rendering ----------------------------------------------------------------------

    def _headline(self) -> str:
        n_bad_leaves = sum(not leaf.passed for leaf in self.leaves.values())
        if self.passed:
            verdict = f"PASSED: all {self.n_checked} checked elements agree"
        else:
            verdict = (
                f"FAILED: {self.n_failed} of {self.n_checked} elements wrong, "
                f"in {n_bad_leaves} of {len(self.leaves)} leaves"
            )
        return f"{verdict} (difference {self.difference:.2e})"

    def _method_line(self) -> str:
        engine = "batched JAX engine" if self.engine == "jax" else "NumPy host loop"
        return f"{self.method} differences in {self.precision}, {engine}"

    def _leaf_rows(self) -> list[list[str]]:
        rows = []
        for leaf in self.leaves.values():
            rows.append(
                [
                    leaf.path or "params",
                    str(leaf.shape),
                    str(leaf.n_checked),
                    str(leaf.n_failed),
                    str(leaf.n_unverifiable),
                    f"{leaf.difference:.1e}",
                    f"{leaf.max_abs_error:.1e}",
                    "ok" if leaf.passed else "FAILED",
                ]
            )
        return rows

    def _element_rows(self) -> list[list[str]]:
        return [
            [
                e.name,
                f"{e.analytic: .6g}",
                f"{e.numeric: .6g}",
                f"{e.abs_error:.1e}",
                f"{e.tolerance:.1e}",
                e.status,
            ]
            for e in self.failures[:WORST_SHOWN]
        ]

    def __str__(self) -> str:
        lines = [f"jaxcheck: {self._headline()}", f"  {self._method_line()}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += ["", *_table(_LEAF_HEADER, self._leaf_rows())]
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            lines += ["", f"worst elements ({shown} of {len(self.failures)}):"]
            lines += _table(_ELEMENT_HEADER, self._element_rows())
        if self.unverifiable:
            lines += [
                "",
                f"{len(self.unverifiable)} element(s) unverifiable: their gradient is below what "
                "finite differences resolve here (not a failure).",
            ]
        if self.skipped:
            lines += [
                "",
                "skipped: " + ", ".join(f"{p or 'params'} ({r})" for p, r in self.skipped),
            ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CheckResult({self._headline()})"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#cf222e"
        parts = [
            f'<div><p><b style="color:{color}">jaxcheck: {html.escape(self._headline())}</b><br>',
            html.escape(self._method_line()),
            *(f"<br>note: {html.escape(n)}" for n in self.notes),
            "</p>",
            _html_table(_LEAF_HEADER, self._leaf_rows()),
        ]
        if self.failures:
            parts += ["<p>worst elements</p>", _html_table(_ELEMENT_HEADER, self._element_rows())]
        if self.skipped:
            skipped = ", ".join(f"{p or 'params'} ({r})" for p, r in self.skipped)
            parts.append(f"<p>skipped: {html.escape(skipped)}</p>")
        return "".join(parts) + "</div>"


_LEAF_HEADER = ["leaf", "shape", "checked", "failed", "unverifiable", "difference", "max|err|", ""]
_ELEMENT_HEADER = ["element", "analytic", "numeric", "|error|", "tolerance", "status"]


def _json_float(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(header), *(fmt(r) for r in rows)]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- assembly --------------------------------------------------------------------------------


def assemble(coords, judged, stencils, notes, precision, engine) -> CheckResult:
    """Build the result from each checked leaf's `Verdict` (coords: `Coords`)."""
    numeric, analytic, reports, failures, unverifiable = [], [], {}, [], []
    totals = np.zeros(3)  # Σ(g − d)², Σg², Σd² over finite elements
    for leaf in coords.leaves:
        v = judged.get(leaf.path)
        if v is None:
            nan = np.full(leaf.shape, np.nan) if leaf.dtype is not None else None
            numeric.append(nan)
            analytic.append(nan)
            continue
        numeric.append(v.numeric.reshape(leaf.shape))
        analytic.append(v.analytic.reshape(leaf.shape))
        ok = np.isfinite(v.numeric) & np.isfinite(v.analytic)
        sums = np.array(
            [
                np.sum((v.analytic - v.numeric)[ok] ** 2),
                np.sum(v.analytic[ok] ** 2),
                np.sum(v.numeric[ok] ** 2),
            ]
        )
        totals += sums
        failing = np.isin(v.status, _stencils.FAILING)
        records = [_record(leaf, v, i) for i in np.flatnonzero(failing)]
        failures += records
        unverifiable += [
            _record(leaf, v, i) for i in np.flatnonzero(v.status == _stencils.UNVERIFIABLE)
        ]
        reports[leaf.path] = LeafReport(
            path=leaf.path,
            shape=leaf.shape,
            dtype=str(leaf.dtype),
            n_checked=leaf.size,
            n_failed=len(records),
            n_unverifiable=int(np.sum(v.status == _stencils.UNVERIFIABLE)),
            difference=_difference(sums),
            max_abs_error=float(np.max(v.abs_error, initial=0.0, where=ok)),
            step=float(np.median(stencils[leaf.path].h1)),
            passed=not records,
        )
    failures.sort(key=lambda e: -_badness(e))
    return CheckResult(
        passed=not failures,
        difference=_difference(totals),
        leaves=reports,
        failures=tuple(failures),
        unverifiable=tuple(unverifiable),
        numeric=coords.unflatten(numeric),
        analytic=coords.unflatten(analytic),
        skipped=coords.skipped,
        notes=tuple(notes),
        method="central",
        precision=precision,
        engine=engine,
    )


def _record(leaf, v: _stencils.Verdict, i: int) -> ElementReport:
    return ElementReport(
        path=leaf.path,
        index=leaf.index(int(i)),
        flat_index=leaf.offset + int(i),
        analytic=float(v.analytic[i]),
        numeric=float(v.numeric[i]),
        abs_error=float(v.abs_error[i]),
        tolerance=float(v.tolerance[i]),
        status=_stencils.STATUSES[v.status[i]],
    )


def _badness(e: ElementReport) -> float:
    if e.status == "nonfinite" or not math.isfinite(e.abs_error):
        return math.inf
    return e.abs_error / e.tolerance if e.tolerance > 0 else math.inf


def _difference(sums: np.ndarray) -> float:
    """‖g − d‖ / (‖g‖ + ‖d‖), and 0 when both are zero."""
    denom = math.sqrt(sums[1]) + math.sqrt(sums[2])
    return math.sqrt(sums[0]) / denom if denom > 0 else 0.0
