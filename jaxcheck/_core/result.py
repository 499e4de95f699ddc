"""The result of a check: a value that prints, renders in a notebook, serializes and asserts."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

from .errors import format_index
from .paths import leaf_paths
from .tables import html_table, table

# A check's verdict, and an element's status in a report (`stencils.Status`'s labels, less "ok").
VerdictName = Literal["passed", "failed", "inconclusive"]
StatusName = Literal["mismatch", "nonfinite", "nondeterministic", "unverifiable", "kink"]

WORST_SHOWN = 10  # worst elements listed in a report
_STATUS_WORD = {"passed": "ok", "failed": "FAILED", "inconclusive": "inconclusive"}
_LEAF_HEADER = ["leaf", "shape", "checked", "failed", "unverifiable", "difference", "max|err|", ""]
_DIRECTIONAL_HEADER = ["leaf", "shape", "directions", "max|err|", "tolerance", "detects ‖δ‖≥",
                       "P(miss 1%)", "probes", "located", ""]  # fmt: skip
_ELEMENT_HEADER = ["element", "analytic", "numeric", "|error|", "tolerance", "status"]


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
    status: StatusName
    part: str = ""  # complex leaves: "real" or "imag", the part of the gradient compared

    @property
    def name(self) -> str:
        part = f".{self.part}" if self.part else ""
        return f"{self.path}{format_index(self.index)}{part}"

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
    step: float  # median step h over the leaf (directional: the step along unit directions)
    passed: bool  # verdict == "passed"
    method: str = "central"  # the method that judged this leaf
    verdict: VerdictName = "passed"  # "inconclusive": too little verified
    n_verified: int = 0  # elements (directions, in directional mode) that agree and resolve
    n_kinks: int = 0
    # mode="directional" only:
    directions: int = 0  # random directions over the whole leaf
    probes: int = 0  # further directions spent locating wrong elements
    directional_error: float = math.nan  # largest |⟨g, v⟩ − D_v| over the whole-leaf directions
    directional_tolerance: float = math.nan  # the smallest tolerance among them
    miss_probability: float = math.nan  # P(an error of norm 1% of ‖g‖ passes every direction)
    detectable_norm: float = math.nan  # an error of this norm is missed with P ≤ 0.001
    located: str = ""  # why the wrong elements could not be isolated ("" if they were)
    diagnosis: str = ""  # a failing leaf: what kind of bug the errors fit ("" if none fits)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class CheckResult:
    """What `jaxcheck.check_grad` found.

    Attributes:
        verdict: "failed" when some element is a mismatch, non-finite or nondeterministic (or,
            in directional mode, a leaf disagrees along a direction); else "inconclusive" when
            some leaf has fewer than half of its checked elements verified (the rest below
            what finite differences resolve here); else "passed".
        passed: verdict == "passed".
        difference: ‖g − g_fd‖ / (‖g‖ + ‖g_fd‖) over all checked elements.
        leaves: leaf key path -> `LeafReport`, in ravel_pytree order.
        failures: every failing element, worst first (largest |error| / tolerance).
        unverifiable: elements whose gradient is below what finite differences resolve here.
        kinks: elements at a kink of f (ReLU, max, abs at θ): the gradient lies between the
            one-sided slopes while the difference disagrees. Not failures unless kinks="fail".
        resolution: a pytree like params: each element's finite-difference error estimate
            (κ·(noise·Σ|w| + truncation)), the part of the tolerance that is not rtol/atol.
        numeric, analytic: pytrees shaped like params (NaN where an element was not checked).
        skipped: (path, reason) for leaves that were not checked.
        notes: how the check was done, where it departs from the plain case.
    """

    passed: bool
    difference: float
    leaves: Mapping[str, LeafReport]
    failures: tuple[ElementReport, ...]
    unverifiable: tuple[ElementReport, ...]
    kinks: tuple[ElementReport, ...]
    numeric: Any
    analytic: Any
    resolution: Any
    skipped: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    method: str
    precision: str
    engine: str
    mode: str = "full"
    order: int = 1  # 2: Hessian-vector products were checked
    verdict: VerdictName = "passed"
    advice: str = ""  # for an inconclusive check: what would make it conclusive

    @property
    def n_checked(self) -> int:
        return sum(leaf.n_checked for leaf in self.leaves.values())

    @property
    def n_verified(self) -> int:
        return sum(leaf.n_verified for leaf in self.leaves.values())

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def to_dict(self, *, arrays: bool = False) -> dict[str, Any]:
        """A JSON-ready dict. `arrays=True` adds the numeric and analytic gradients as lists."""
        d = {
            "passed": self.passed,
            "verdict": self.verdict,
            "difference": _json_float(self.difference),
            "n_checked": self.n_checked,
            "n_failed": self.n_failed,
            "mode": self.mode,
            "order": self.order,
            "method": self.method,
            "precision": self.precision,
            "engine": self.engine,
            "leaves": {p: leaf.to_dict() for p, leaf in self.leaves.items()},
            "failures": [e.to_dict() for e in self.failures],
            "unverifiable": [e.to_dict() for e in self.unverifiable],
            "kinks": [e.to_dict() for e in self.kinks],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "notes": list(self.notes),
            "advice": self.advice,
            "versions": _versions(),
        }
        if arrays:
            for name in ("numeric", "analytic"):
                d[name] = {
                    p: [_json_float(x) for x in np.ravel(v)]
                    for p, v in leaf_paths(getattr(self, name))
                }
        return d

    def to_json(self, *, arrays: bool = False, **json_kwargs: Any) -> str:
        """`json.dumps(self.to_dict(arrays=arrays), **json_kwargs)`; NaN and inf become null."""
        return json.dumps(self.to_dict(arrays=arrays), **json_kwargs)

    # ---- rendering ----------------------------------------------------------------------

    def plot(self, ax=None, per_leaf: int = 2000):
        """A per-leaf overview: each element's |g − D| (up to `per_leaf` per leaf, sampled),
        failures in red, and the leaf's median error estimate (resolution) as a black bar, with
        a legend saying so. Needs matplotlib; returns the Axes."""
        from .plots import result_overview

        return result_overview(self, ax, per_leaf)

    def __repr__(self) -> str:
        return f"CheckResult({self._headline()})"

    # ---- how it reads: the report, the failure message, the summary, the notebook's HTML

    def _headline(self) -> str:
        leaves = list(self.leaves.values())
        n_bad = sum(leaf.verdict == "failed" for leaf in leaves)
        n_weak = sum(leaf.verdict == "inconclusive" for leaf in leaves)
        if self.mode == "directional":
            k = max((leaf.directions for leaf in leaves), default=0)
            if self.verdict == "passed":
                return f"PASSED: {k} random directions agree on each of {len(leaves)} leaves"
            if self.verdict == "inconclusive":
                return (
                    f"INCONCLUSIVE: no direction disagrees, but on {n_weak} of {len(leaves)} "
                    "leaves fewer than half of the directions are resolved by finite differences"
                )
            return (
                f"FAILED: {n_bad} of {len(leaves)} leaves disagree along random "
                f"directions; {self.n_failed} wrong element(s) located"
            )
        n, n_ok = self.n_checked, self.n_verified
        parts = [
            f"{len(self.unverifiable)} unverifiable" if self.unverifiable else "",
            f"{len(self.kinks)} at kinks" if self.kinks else "",
        ]
        others = ", ".join(o for o in parts if o)
        if self.verdict == "passed":
            verdict = (
                f"PASSED: {n_ok} of {n} checked elements agree, none wrong ({others})"
                if others
                else f"PASSED: all {n} checked elements agree"
            )
        elif self.verdict == "inconclusive":
            verdict = (
                f"INCONCLUSIVE: only {n_ok} of {n} checked elements verified, none wrong "
                f"({others}); {n_weak} of {len(leaves)} leaves under half verified"
            )
        else:
            verdict = (
                f"FAILED: {self.n_failed} of {n} elements wrong, in {n_bad} of {len(leaves)} "
                "leaves" + (f" ({others})" if others else "")
            )
        return f"{verdict} (difference {self.difference:.2e})"

    def _method_line(self) -> str:
        engine = {
            "jax": "batched JAX engine",
            "jax-flat": "batched JAX engine, one program for every leaf",
            "jax-mixed": "batched JAX engine, one program for the small leaves",
        }.get(self.engine, "NumPy host loop")
        mode = {"full": "", "sample": ", sampled elements", "directional": ", random directions"}
        what = "" if self.order == 1 else " of the gradient against Hessian-vector products"
        name = f"{self.method} differences"
        if self.method == "complex_step":
            name = "complex-step derivatives"
            others = sorted({leaf.method for leaf in self.leaves.values()} - {self.method})
            n = sum(leaf.method != self.method for leaf in self.leaves.values())
            name += "".join(
                f" ({m} differences on {n} of {len(self.leaves)} leaves)" for m in others
            )
        return f"{name}{what} in {self.precision}{mode[self.mode]}, {engine}"

    def _leaf_header(self) -> list[str]:
        return _DIRECTIONAL_HEADER if self.mode == "directional" else _LEAF_HEADER

    def _leaf_rows(self) -> list[list[str]]:
        if self.mode == "directional":
            return [
                [
                    leaf.path,
                    str(leaf.shape),
                    str(leaf.directions),
                    f"{leaf.directional_error:.1e}",
                    f"{leaf.directional_tolerance:.1e}",
                    f"{leaf.detectable_norm:.1e}",
                    f"{leaf.miss_probability:.1e}",
                    str(leaf.probes),
                    str(leaf.n_failed),
                    _STATUS_WORD[leaf.verdict],
                ]
                for leaf in self.leaves.values()
            ]
        rows = []
        for leaf in self.leaves.values():
            rows.append(
                [
                    leaf.path,
                    str(leaf.shape),
                    str(leaf.n_checked),
                    str(leaf.n_failed),
                    str(leaf.n_unverifiable),
                    f"{leaf.difference:.1e}",
                    f"{leaf.max_abs_error:.1e}",
                    _STATUS_WORD[leaf.verdict],
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
        lines += [f"  to make it conclusive: {self.advice}"] if self.advice else []
        for section in self._sections():
            lines.append("")
            for item in section:
                lines += table(*item) if isinstance(item, _Table) else [item]
        return "\n".join(lines)

    def _sections(self) -> list[list[str | _Table]]:
        """The report below its header, as sections of lines and tables: one content for the
        text (`__str__`) and the notebook's HTML (`_repr_html_`), so neither leaves a line out."""
        leaves = self.leaves.values()
        sections: list[list[str | _Table]] = [
            [
                _Table(self._leaf_header(), self._leaf_rows()),
                *(f"  {leaf.path}: {leaf.located}" for leaf in leaves if leaf.located),
            ]
        ]
        if diagnosis := self._diagnosis_lines():
            sections.append([*diagnosis])
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            sections.append(
                [
                    f"worst elements ({shown} of {len(self.failures)}):",
                    _Table(_ELEMENT_HEADER, self._element_rows()),
                ]
            )
        if self.unverifiable:
            sections.append(
                [
                    f"{len(self.unverifiable)} element(s) unverifiable: their gradient is below "
                    "what finite differences resolve here (not a failure)."
                ]
            )
        if self.kinks:
            sections.append(
                [
                    f"{len(self.kinks)} element(s) at kinks of f (ReLU, max, abs at these "
                    "parameters): the gradient lies between the one-sided slopes (not a failure; "
                    "kinks='fail' fails them): "
                    + ", ".join(e.name for e in self.kinks[:WORST_SHOWN])
                ]
            )
        if self.skipped:
            sections.append(["skipped: " + ", ".join(f"{p} ({r})" for p, r in self.skipped)])
        return sections

    def _diagnosis_lines(self) -> list[str]:
        return [
            f"diagnosis {leaf.path}: {leaf.diagnosis}"
            for leaf in self.leaves.values()
            if leaf.diagnosis
        ]

    def failure_message(self) -> str:
        """The report as a failed test should show it: the verdict and the wrong leaves, the
        worst elements (leaf path, values, tolerance), then how it was checked and the leaves."""
        bad = [leaf.path for leaf in self.leaves.values() if leaf.verdict == "failed"]
        weak = [leaf.path for leaf in self.leaves.values() if leaf.verdict == "inconclusive"]
        lines = [f"gradient check {self._headline()}"]
        lines += [f"  wrong leaves: {', '.join(bad)}"] if bad else []
        lines += [f"  {line}" for line in self._diagnosis_lines()]
        if self.verdict == "inconclusive":
            lines += [f"  leaves under half verified: {', '.join(weak)}"]
            lines += [f"  to make it conclusive: {self.advice}"] if self.advice else []
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            lines += [f"worst elements ({shown} of {len(self.failures)}):"]
            lines += table(_ELEMENT_HEADER, self._element_rows())
        lines += [f"checked with {self._method_line()}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += table(self._leaf_header(), self._leaf_rows())
        lines += [f"  {leaf.path}: {leaf.located}" for leaf in self.leaves.values() if leaf.located]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the verdict, the wrong leaves (with a diagnosis where one fits) and the
        worst element, for a log or a warning."""
        parts = [self._headline()]
        bad = [leaf for leaf in self.leaves.values() if leaf.verdict == "failed"]
        if bad:
            parts.append("wrong: " + ", ".join(
                leaf.path + (f" ({leaf.diagnosis.split(':')[0]})" if leaf.diagnosis else "")
                for leaf in bad))  # fmt: skip
        if self.failures:
            e = self.failures[0]
            parts.append(f"worst {e.name}: analytic {e.analytic:.6g}, numeric {e.numeric:.6g}")
        return "; ".join(parts)

    def _repr_html_(self) -> str:
        color = {"passed": "#1a7f37", "failed": "#cf222e"}.get(self.verdict, "#9a6700")
        parts = [
            f'<div><p><b style="color:{color}">jaxcheck: {html.escape(self._headline())}</b><br>',
            html.escape(self._method_line()),
            *(f"<br>note: {html.escape(n)}" for n in self.notes),
            *([f"<br>to make it conclusive: {html.escape(self.advice)}"] if self.advice else []),
            "</p>",
        ]
        for section in self._sections():
            lines: list[str] = []  # consecutive lines make one paragraph
            for item in [*section, None]:
                if isinstance(item, str):
                    lines.append(html.escape(item.strip()))
                    continue
                if lines:
                    parts.append("<p>" + "<br>".join(lines) + "</p>")
                    lines = []
                if item is not None:
                    parts.append(html_table(*item))
        return "".join(parts) + "</div>"


class _Table(NamedTuple):
    """A table in a report: rendered by `tables.table` as text and `tables.html_table` as HTML."""

    header: list[str]
    rows: list[list[str]]


def _json_float(x: Any) -> Any:
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _versions() -> dict[str, str]:
    """What produced a report: jaxcheck's, jax's and jaxlib's versions."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("jaxcheck", "jax", "jaxlib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out
