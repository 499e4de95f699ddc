"""Course-style layer checks (tests/cases/habits.py): each correct backward passes, each
planted bug fails in exactly its leaf, with the diagnosis of its kind."""

import pytest

from tests.cases import habits as hc


@pytest.mark.parametrize("case", hc.CASES, ids=[c.name for c in hc.CASES])
def test_a_layer_passes_and_its_planted_bug_is_located_and_diagnosed(case):
    good = hc.check(case, bug=False)
    assert good.passed, good
    bad = hc.check(case, bug=True)
    assert [p for p, leaf in bad.leaves.items() if leaf.verdict == "failed"] == [
        f"['{case.wrong}']"
    ]
    assert case.diagnosis in bad.leaves[f"['{case.wrong}']"].diagnosis, bad
