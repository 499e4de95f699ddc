"""--baseline: compare a check's per-leaf numbers with a stored JSON report.

A leaf got worse when its difference ‖g − D‖ / (‖g‖ + ‖D‖) grew by more than `factor` over
the stored one (differences below FLOOR count as FLOOR: at rounding level a ratio means
nothing), when it passed before and fails now, or when its gradient could not be compared
(transposed, missing: the report marks it `"compared": false`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .spec import SpecError

FACTOR = 10.0  # default allowed growth of a leaf's difference
FLOOR = 1e-12  # differences below this are rounding: compared as equal to it


def read(path: str) -> dict[str, Any]:
    try:
        stored = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(
            f"no baseline at {path}: write one first with --json {path} (on a run you trust)."
        ) from None
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read the baseline {path}: {e}") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("leaves"), dict):
        raise SpecError(f"{path} is not a jaxcheck JSON report (written by --json): no 'leaves'.")
    return stored


def compare(now: dict[str, Any], before: dict[str, Any], factor: float) -> tuple[list, list]:
    """(regressions, remarks): one line each, about the leaves of two JSON reports."""
    worse, remarks = [], []
    modes = (before.get("mode"), now.get("mode"))
    if None not in modes and modes[0] != modes[1]:
        remarks.append(
            f"the baseline was a mode={modes[0]!r} run, this one is mode={modes[1]!r}: their "
            "differences cover other elements (or directions), so the comparison is loose"
        )
    if now.get("error") and not now["leaves"]:
        worse.append(f"no leaf could be compared: {now['error'].splitlines()[0]}")
    for path, leaf in now["leaves"].items():
        old = before["leaves"].get(path)
        name = path or "params"
        if leaf.get("compared", True) is False:
            why = str(leaf.get("reason", "")).split(". ")[0]  # its first sentence
            worse.append(f"{name}: could not be compared now: {why}")
            continue
        if old is None:
            remarks.append(f"{name}: not in the baseline")
            continue
        d_new, d_old = _number(leaf.get("difference")), _number(old.get("difference"))
        ratio = max(d_new, FLOOR) / max(d_old, FLOOR)
        if old.get("passed") and not leaf.get("passed"):
            worse.append(f"{name}: passed in the baseline, fails now")
        elif ratio > factor:
            worse.append(
                f"{name}: difference {d_old:.1e} -> {d_new:.1e} ({ratio:.0f}x worse; allowed "
                f"{factor:g}x)"
            )
    gone = [p or "params" for p in before["leaves"] if p not in now["leaves"]]
    if gone:
        remarks.append(f"in the baseline but not checked now: {', '.join(gone)}")
    return worse, remarks


def _number(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.inf
