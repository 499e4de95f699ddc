"""The result of `check_vjp` / `check_jvp`: prints, renders in a notebook, serializes."""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Mapping
from typing import Any

from .._core.result import WORST_SHOWN, ElementReport, _json_float
from .._core.tables import html_table, table


@dataclasses.dataclass(frozen=True)
class IdentityLeaf:
    """One floating-point leaf of the primals."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    directions: int  # random (u, w) pairs on this leaf
    max_error: float  # largest |⟨u, Jᵀw⟩ − ⟨Ju, w⟩| among them
    tolerance: float  # the smallest tolerance among them
    n_failed: int  # elements located
    passed: bool  # the identity holds and the rule is linear on this leaf
    located: str = ""  # why the wrong elements could not be isolated ("" if they were)
    holds: bool = True  # ⟨u, Jᵀw⟩ = ⟨Ju, w⟩ for every pair on this leaf
    linear: str = ""  # why the rule is not linear in its cotangent/tangent here ("" if it is)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return {k: _json_float(v) for k, v in d.items()}


def element_record(leaf, i: int, under_test, reference, err, tol, part: str) -> ElementReport:
    """An element whose column of J disagrees: ⟨w, J e_i⟩ from the rule and the reference."""
    return ElementReport(
        path=leaf.path,
        index=leaf.index(i),
        flat_index=leaf.offset + i,
        analytic=float(under_test),
        numeric=float(reference),
        abs_error=float(err),
        tolerance=float(tol),
        status="mismatch",
        part=part,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class IdentityResult:
    """What `jaxcheck.check_vjp` or `jaxcheck.check_jvp` found.

    Attributes:
        passed: every leaf satisfies the identity, the rule is linear in its cotangent
            (tangent) on every leaf, its primal output is fn's, and every transform agrees.
        kind: "vjp" or "jvp", the rule under test.
        leaves: primal leaf path, named after fn's parameters as check_grad names them
            (`['x']`, `['params']['W']`; `['arg0']` where fn's signature has no name)
            -> `IdentityLeaf`.
        failures: located elements, worst first, as `ElementReport`s whose `analytic` is
            ⟨w, J e_i⟩ from the rule under test and `numeric` the same from the reference
            (exact, not a finite difference, unless JAX cannot differentiate fn: the notes
            say so).
        transforms: {"jit": "ok" or what differed or raised, "vmap": ...}; empty for a
            handwritten `vjp=`/`jvp=` JAX cannot trace (NumPy code: a note says so).
        notes: what the reference was, and where the check departed from the plain case.
        primal_output: "ok", or where the primal output of the rule under test (a
            `custom_vjp` fwd's, a `custom_jvp` rule's, a `jvp=`'s `out`) differs from fn's
            value; None where the rule has none (a `vjp=`).
    """

    passed: bool
    kind: str
    leaves: Mapping[str, IdentityLeaf]
    failures: tuple[ElementReport, ...]
    transforms: Mapping[str, str]
    notes: tuple[str, ...]
    precision: str
    primal_output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "kind": self.kind,
            "precision": self.precision,
            "leaves": {p: leaf.to_dict() for p, leaf in self.leaves.items()},
            "failures": [e.to_dict() for e in self.failures],
            "transforms": dict(self.transforms),
            "notes": list(self.notes),
            "primal_output": self.primal_output,
        }

    def to_json(self, **json_kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **json_kwargs)

    def _headline(self) -> str:
        identity = "⟨u, Jᵀw⟩ = ⟨Ju, w⟩"
        bad = [p for p, leaf in self.leaves.items() if not leaf.holds]
        nonlinear = [p for p, leaf in self.leaves.items() if leaf.linear]
        broken = [t for t, v in self.transforms.items() if v != "ok"]
        if self.passed:
            k = max((leaf.directions for leaf in self.leaves.values()), default=0)
            under = f"; agrees under {', '.join(self.transforms)}" if self.transforms else ""
            n = len(self.leaves)
            what = "cotangent" if self.kind == "vjp" else "tangent"
            return (
                f"PASSED: {identity} for {k} random pairs on each of {n} leaves; linear in the "
                f"{what}{under}"
            )
        parts = []
        if bad:
            parts.append(f"{len(bad)} of {len(self.leaves)} leaves break {identity}")
        if nonlinear:
            what = "cotangent" if self.kind == "vjp" else "tangent"
            parts.append(f"{len(nonlinear)} of {len(self.leaves)} leaves not linear in the {what}")
        if self.primal_output not in (None, "ok"):
            parts.append("the primal output differs from fn's")
        if broken:
            parts.append(f"differs under {', '.join(broken)}")
        return "FAILED: " + "; ".join(parts)

    def _rows(self) -> list[list[str]]:
        return [
            [
                leaf.path,
                str(leaf.shape),
                str(leaf.directions),
                f"{leaf.max_error:.1e}",
                f"{leaf.tolerance:.1e}",
                str(leaf.n_failed),
                "ok" if leaf.passed else "FAILED",
            ]
            for leaf in self.leaves.values()
        ]

    def _element_rows(self) -> list[list[str]]:
        return [
            [e.name, f"{e.analytic: .6g}", f"{e.numeric: .6g}", f"{e.abs_error:.1e}",
             f"{e.tolerance:.1e}"]
            for e in self.failures[:WORST_SHOWN]
        ]  # fmt: skip

    def __str__(self) -> str:
        lines = [f"jaxcheck.check_{self.kind}: {self._headline()}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += ["", *table(_HEADER, self._rows())]
        lines += [f"  {leaf.path}: {leaf.located}" for leaf in self.leaves.values() if leaf.located]
        lines += [f"  {leaf.path}: {leaf.linear}" for leaf in self.leaves.values() if leaf.linear]
        if self.primal_output is not None:
            lines.append(f"  primal output: {self.primal_output}")
        lines += [f"  {name}: {v}" for name, v in self.transforms.items()]
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            lines += ["", f"worst elements, ⟨w, J e_i⟩ ({shown} of {len(self.failures)}):"]
            lines += table(_ELEMENT_HEADER, self._element_rows())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"IdentityResult({self.kind}: {self._headline()})"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.passed else "#cf222e"
        parts = [
            f'<div><p><b style="color:{color}">jaxcheck.check_{self.kind}: '
            f"{html.escape(self._headline())}</b>",
            *(f"<br>note: {html.escape(n)}" for n in self.notes),
            *(f"<br>{html.escape(t)}: {html.escape(v)}" for t, v in self.transforms.items()),
            *(
                f"<br>{html.escape(x.path)}: {html.escape(said)}"
                for x in self.leaves.values()
                for said in (x.located, x.linear)
                if said
            ),
            *(
                [f"<br>primal output: {html.escape(self.primal_output)}"]
                if self.primal_output is not None
                else []
            ),
            "</p>",
            html_table(_HEADER, self._rows()),
        ]
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            parts += [
                f"<p>worst elements, ⟨w, J e_i⟩ ({shown} of {len(self.failures)})</p>",
                html_table(_ELEMENT_HEADER, self._element_rows()),
            ]
        return "".join(parts) + "</div>"


_HEADER = ["leaf", "shape", "pairs", "max|err|", "tolerance", "located", ""]
_ELEMENT_HEADER = ["element", "under test", "reference", "|error|", "tolerance"]
