"""Course-style layer checks (scripts/habits_cases.py): each correct backward passes, each
planted bug fails in exactly its leaf, with the diagnosis of its kind."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))

import habits_cases as hc  # noqa: E402


@pytest.mark.parametrize("case", hc.CASES, ids=[c.name for c in hc.CASES])
def test_a_layer_passes_and_its_planted_bug_is_located_and_diagnosed(case):
    good = hc.check(case, bug=False)
    assert good.passed, good
    bad = hc.check(case, bug=True)
    assert [p for p, leaf in bad.leaves.items() if leaf.verdict == "failed"] == [
        f"['{case.wrong}']"
    ]
    assert case.diagnosis in bad.leaves[f"['{case.wrong}']"].diagnosis, bad
