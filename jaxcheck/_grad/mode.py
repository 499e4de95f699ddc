"""A mode of a check, and what it returns.

A mode is a module with `judge(problem, plan, evaluator) -> Judged` (`Mode`): `full`
(mode="full" and "sample"), `directional`, and `hessian` (order=2, which evaluates gradients,
not f, and gets no evaluator). The evaluator is `evaluators.choose`'s. `check.py`'s table
picks the mode; adding one touches its own module and the table. No mode imports another:
what two share lives below them (`session.Session`, `_numerics/directions.py`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._engine.evaluator import Evaluator
    from .plan import Plan
    from .problem import Problem


@dataclasses.dataclass
class Judged:
    """What a mode returns: each checked leaf's verdict, and how it was judged."""

    verdicts: dict[str, Any]  # leaf path -> `directions.LeafOutcome`
    steps: dict[str, float]  # leaf path -> the median step (directional verdicts carry theirs)
    engine: str  # the engine's name: "jax", "host", ...
    notes: list[str]
    methods: dict[str, str] = dataclasses.field(default_factory=dict)  # where it differs
    advice: str = ""  # what would make an inconclusive check conclusive
    thetas: dict[str, Any] | None = None  # leaf path -> values, for the diagnosis


class Mode(Protocol):
    """A mode: each checked leaf of the problem judged under the plan."""

    def judge(self, problem: Problem, plan: Plan, evaluator: Evaluator | None) -> Judged: ...
