"""What `explore` found: `ExploreResult`, its failing points and where they cluster.

A `Region` summarises, per leaf and per sign, the values of the failing elements: their
interval, their magnitudes, and the special values among them (0, ±1, integers). `str()` of
the result leads with the minimal failing input and check_grad's report there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._numerics import stencils as st


@dataclasses.dataclass(frozen=True)
class Region:
    """Failing elements of one leaf, of one sign: where they lie."""

    path: str
    sign: str  # "negative", "zero" or "positive"
    lo: float
    hi: float
    count: int  # failing (point, element) pairs in it
    specials: tuple[float, ...]  # special values among them (0, ±1, integers, half-integers)

    def __str__(self) -> str:
        if self.sign == "zero":
            where = "at 0"
        elif self.lo == self.hi:
            where = f"at {self.lo:.6g}"
        else:
            where = f"in [{self.lo:.3g}, {self.hi:.3g}]"
            a, b = sorted((abs(self.lo), abs(self.hi)))
            if a > 0 and b / a >= 100:
                where += f" (|x| from {a:.1e} to {b:.1e})"
        special = f"; special values: {', '.join(f'{v:g}' for v in self.specials)}" if (
            self.specials
        ) else ""  # fmt: skip
        return f"{self.path} {where}: {self.count} failing element(s){special}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PointFailure:
    """One failing point: params there, the screen's element verdict, check_grad's report
    (None where it was not checked again: `confirmed` False)."""

    params: Any
    x: np.ndarray  # the checked leaves raveled (float64)
    screen: st.Verdict | None
    result: Any  # CheckResult (check="grad") or IdentityResult (check="vjp"/"jvp")
    confirmed: bool


@dataclasses.dataclass(frozen=True, eq=False)
class ExploreResult:
    """What `jaxcheck.explore` found.

    Attributes:
        verdict: "failed" when check_grad (or the identity) fails at some point; else
            "inconclusive" when some point could not be resolved (finite differences cannot
            tell the gradient from zero there: never passed on faith); else "passed".
        passed: verdict == "passed".
        n_points, n_checked, n_failed, n_inconclusive, n_skipped: points drawn; checked; failed
            (confirmed, and beyond `confirm=` unconfirmed); not resolved; skipped because fn is
            not finite there (the domain's edge, not a failure).
        failures: the failing points, worst first (`PointFailure`).
        regions: where the failing elements lie, per leaf and sign (`Region`).
        minimal: the simplest failing params found (None if nothing failed), and
        minimal_result: check_grad's (or the identity's) full report there.
        notes: how the exploration departed from the plain case.
        seconds: wall time.
    """

    verdict: str
    n_points: int
    n_checked: int
    n_failed: int
    n_inconclusive: int
    n_skipped: int
    failures: tuple[PointFailure, ...]
    regions: tuple[Region, ...]
    minimal: Any
    minimal_result: Any
    notes: tuple[str, ...]
    seconds: float
    check: str = "grad"
    suspicious: tuple = ()  # `explore.AbruptZero`: a gradient dropping to exactly 0 abruptly

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def __str__(self) -> str:
        head = (
            f"jaxcheck.explore: {self.verdict.upper()}: {self.n_checked} of {self.n_points} "
            f"points checked ({self.check}), {self.n_failed} failed, {self.n_inconclusive} "
            f"inconclusive, {self.n_skipped} skipped (fn not finite there), {self.seconds:.1f} s"
        )
        lines = [head]
        if self.minimal is not None:
            lines.append(f"minimal failing input: {_short(self.minimal)}")
            report = str(self.minimal_result).splitlines()
            lines += ["  " + line for line in report]
        if self.regions:
            lines.append("where it fails:")
            lines += [f"  {r}" for r in self.regions]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def failure_message(self) -> str:
        """The message of `assert_grad_everywhere`'s error: the report, minimal input first."""
        return str(self)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "check": self.check,
            "n_points": self.n_points,
            "n_checked": self.n_checked,
            "n_failed": self.n_failed,
            "n_inconclusive": self.n_inconclusive,
            "n_skipped": self.n_skipped,
            "regions": [r.to_dict() for r in self.regions],
            "minimal": None if self.minimal is None else _plain(self.minimal),
            "minimal_result": None if self.minimal_result is None
            else self.minimal_result.to_dict(),
            "failures": [
                {"params": _plain(f.params), "confirmed": f.confirmed} for f in self.failures
            ],
            "notes": list(self.notes),
            "seconds": self.seconds,
        }  # fmt: skip


def _plain(tree: Any) -> Any:
    import jax

    return jax.tree_util.tree_map(lambda x: np.asarray(x).tolist(), tree)


def _short(tree: Any) -> str:
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    parts = []
    for path, x in flat:
        a = np.asarray(x)
        shown = np.array2string(a, precision=6, threshold=8) if a.ndim else f"{a.item():.6g}"
        parts.append(f"{jax.tree_util.keystr(path) or 'params'} = {shown} ({a.dtype})")
    return ", ".join(parts)


def _special(v: float) -> bool:
    return v == 0 or abs(v) == 1 or float(v).is_integer() or float(2 * v).is_integer()


def regions_of(space: Any, xs: list[np.ndarray], screens: list[Any]) -> tuple[Region, ...]:
    """Per leaf and sign, the failing elements' values (every element of a point whose
    element verdict is not known: the identities')."""
    out = []
    for leaf, a, b in space.spans():
        values = []
        for x, v in zip(xs, screens):
            mask = np.isin(v.status[a:b], st.FAILING) if v is not None else np.ones(b - a, bool)
            values += [float(t) for t in x[a:b][mask]]
        if not values:
            continue
        arr = np.asarray(values)
        for sign, pick in (("negative", arr < 0), ("zero", arr == 0), ("positive", arr > 0)):
            if not pick.any():
                continue
            vals = arr[pick]
            specials = sorted({float(v) for v in vals if _special(float(v))}, key=abs)[:6]
            out.append(Region(leaf.path, sign, float(vals.min()), float(vals.max()),
                              int(pick.sum()), tuple(specials)))  # fmt: skip
    return tuple(out)
