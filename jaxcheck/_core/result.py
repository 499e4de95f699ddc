"""The result of a check: a value that prints, renders in a notebook, serializes and asserts."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .errors import format_index
from .paths import leaf_paths
from .rendering import Rendering

# A check's verdict, and an element's status in a report (`stencils.Status`'s labels, less "ok").
VerdictName = Literal["passed", "failed", "inconclusive"]
StatusName = Literal["mismatch", "nonfinite", "nondeterministic", "unverifiable", "kink"]


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
class CheckResult(Rendering):
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
        failures in red, and the leaf's median error estimate (resolution) as a black bar.
        Needs matplotlib; returns the Axes."""
        from .plots import result_overview

        return result_overview(self, ax, per_leaf)

    def __repr__(self) -> str:
        return f"CheckResult({self._headline()})"


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
