"""Layer checks written the way course exercises write them (CS231n-style NumPy layers with an
upstream gradient), each with its correct backward and a planted bug: the verdicts, the leaf
named, and the diagnosis.

    python scripts/habits.py

Cases in tests/cases/habits.py (shared with tests/test_habits.py).
"""

from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.cases import habits as hc  # noqa: E402


def main() -> None:
    rows, bad_verdicts = [], 0
    for case in hc.CASES:
        t = time.perf_counter()
        good, bad = hc.check(case, bug=False), hc.check(case, bug=True)
        wrong = [leaf.path for leaf in bad.leaves.values() if leaf.verdict == "failed"]
        leaf = bad.leaves.get(f"['{case.wrong}']")
        diagnosis = leaf.diagnosis if leaf else ""
        ok = (good.passed and wrong == [f"['{case.wrong}']"]
              and case.diagnosis in diagnosis)  # fmt: skip
        bad_verdicts += not ok
        rows.append((case.name, case.bug, good.verdict, bad.verdict, ", ".join(wrong),
                     diagnosis.split(":")[0], f"{time.perf_counter() - t:.1f}"))  # fmt: skip
    header = ("layer", "planted bug", "correct backward", "buggy backward", "leaves failed",
              "diagnosis", "s")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(rows) - bad_verdicts} of {len(rows)} cases as expected")
    sys.exit(1 if bad_verdicts else 0)


if __name__ == "__main__":
    main()
