"""How a CheckResult reads: its headline and method line, the tables, the report printed,
the failure message a test shows, the one-line summary, the notebook's HTML."""

from __future__ import annotations

import html

WORST_SHOWN = 10  # worst elements listed in a report
_STATUS_WORD = {"passed": "ok", "failed": "FAILED", "inconclusive": "inconclusive"}
_LEAF_HEADER = ["leaf", "shape", "checked", "failed", "unverifiable", "difference", "max|err|", ""]
_DIRECTIONAL_HEADER = ["leaf", "shape", "directions", "max|err|", "tolerance", "detects ‖δ‖≥",
                       "P(miss 1%)", "probes", "located", ""]  # fmt: skip
_ELEMENT_HEADER = ["element", "analytic", "numeric", "|error|", "tolerance", "status"]


class Rendering:
    """The renderings of a `CheckResult` (a mixin: the result's fields are read, never set)."""

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
        others = [
            f"{len(self.unverifiable)} unverifiable" if self.unverifiable else "",
            f"{len(self.kinks)} at kinks" if self.kinks else "",
        ]
        others = ", ".join(o for o in others if o)
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
        lines += ["", *_table(self._leaf_header(), self._leaf_rows())]
        lines += [f"  {leaf.path}: {leaf.located}" for leaf in self.leaves.values() if leaf.located]
        lines += self._diagnosis_lines()
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
        if self.kinks:
            lines += [
                "",
                f"{len(self.kinks)} element(s) at kinks of f (ReLU, max, abs at these "
                "parameters): the gradient lies between the one-sided slopes (not a failure; "
                "kinks='fail' fails them): " + ", ".join(e.name for e in self.kinks[:WORST_SHOWN]),
            ]
        if self.skipped:
            lines += [
                "",
                "skipped: " + ", ".join(f"{p} ({r})" for p, r in self.skipped),
            ]
        return "\n".join(lines)

    def _diagnosis_lines(self) -> list[str]:
        found = [leaf for leaf in self.leaves.values() if leaf.diagnosis]
        return (
            [""] + [f"diagnosis {leaf.path}: {leaf.diagnosis}" for leaf in found] if found else []
        )

    def failure_message(self) -> str:
        """The report as a failed test should show it: the verdict and the wrong leaves, the
        worst elements (leaf path, values, tolerance), then how it was checked and the leaves."""
        bad = [leaf.path for leaf in self.leaves.values() if leaf.verdict == "failed"]
        weak = [leaf.path for leaf in self.leaves.values() if leaf.verdict == "inconclusive"]
        lines = [f"gradient check {self._headline()}"]
        lines += [f"  wrong leaves: {', '.join(bad)}"] if bad else []
        lines += [f"  {line}" for line in self._diagnosis_lines()[1:]]
        if self.verdict == "inconclusive":
            lines += [f"  leaves under half verified: {', '.join(weak)}"]
            lines += [f"  to make it conclusive: {self.advice}"] if self.advice else []
        if self.failures:
            shown = min(WORST_SHOWN, len(self.failures))
            lines += [f"worst elements ({shown} of {len(self.failures)}):"]
            lines += _table(_ELEMENT_HEADER, self._element_rows())
        lines += [f"checked with {self._method_line()}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += _table(self._leaf_header(), self._leaf_rows())
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
            _html_table(self._leaf_header(), self._leaf_rows()),
            *(
                f"<p>{html.escape(leaf.path)}: {html.escape(leaf.located)}</p>"
                for leaf in self.leaves.values()
                if leaf.located
            ),
        ]
        if self.failures:
            parts += ["<p>worst elements</p>", _html_table(_ELEMENT_HEADER, self._element_rows())]
        if self.skipped:
            skipped = ", ".join(f"{p} ({r})" for p, r in self.skipped)
            parts.append(f"<p>skipped: {html.escape(skipped)}</p>")
        return "".join(parts) + "</div>"


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
