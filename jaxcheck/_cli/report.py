"""The files the command line writes: where they go (checked before the check runs), and the
JSON report of a check whose gradient could not be compared everywhere.

A missing folder on the way to an output file is created when the file is written, as
pytest's --junitxml does (a CI job writes into `reports/` on a fresh checkout); a path that
cannot be written (a file where a folder should be, no permission, a folder given for the
file) is refused before any work, naming the flag, the path and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._core.errors import WrongGradient
from .._core.result import CheckResult, _versions
from .spec import SpecError


def check_writable(flag: str, path: str) -> None:
    """Refuse, before any work, an output path that could not be written."""
    target = Path(path)
    example = f"{flag} {Path(path) / 'jaxcheck.json'}"
    if target.is_dir():
        raise SpecError(f"{flag} {path} is a folder: give a file path in it, e.g. {example}.")
    folder = target.parent
    existing = folder
    while not existing.exists():  # ends at the root or at "." for a relative path
        existing = existing.parent
    if not existing.is_dir():
        raise SpecError(
            f"{flag} {path}: the folder {folder} cannot be created, because {existing} is a "
            "file. Give a path in a folder (or move that file)."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        missing = "" if existing == folder else f" (to create {folder} in)"
        raise SpecError(
            f"{flag} {path}: the folder {existing} is not writable{missing}. Give a path in a "
            "folder you can write to."
        )
    if target.exists() and not os.access(target, os.W_OK):
        raise SpecError(f"{flag} {path}: the file exists and is not writable. Give another path.")


def write(path: str, text: str) -> None:
    """Write the file, creating missing folders on the way (check_writable said they can be)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def not_compared(e: WrongGradient, rest: CheckResult | None) -> dict[str, Any]:
    """The JSON report of a check stopped by `e`: the report of the leaves that could still be
    compared (`rest`, checked on their own), plus one entry per leaf that could not, with
    `"compared": false` and the reason. Failed, whatever the rest found; "error" says why."""
    report = rest.to_dict() if rest is not None else _empty()
    report.update(passed=False, verdict="failed", error=str(e))
    report["leaves"] = {  # the leaves that could not be compared first: they failed
        **{
            path: {"path": path, "passed": False, "verdict": "failed", "compared": False,
                   "reason": why}
            for path, why in e.reasons
        },
        **report["leaves"],
    }  # fmt: skip
    return report


def _empty() -> dict[str, Any]:
    """The keys of CheckResult.to_dict(), where no leaf was compared."""
    return {
        "passed": False, "verdict": "failed", "difference": None, "n_checked": 0, "n_failed": 0,
        "mode": None, "order": None, "method": None, "precision": None, "engine": None,
        "leaves": {}, "failures": [], "unverifiable": [], "kinks": [], "skipped": [],
        "notes": [], "advice": "", "versions": _versions(),
    }  # fmt: skip
