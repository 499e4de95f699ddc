"""What every engine offers the modes: f at perturbed points of one leaf.

Three evaluators implement it: `batched.JaxEngine` (a jit-compiled program per leaf),
`flat.FlatEngine` (one program over the raveled leaves) and `host.HostEngine` (NumPy code JAX
cannot trace, one point at a time). Which one a check uses is decided in one place,
`_grad/evaluators.py`'s `choose`. Each takes its progress bar and its journal when it is made,
and closes both when the check is done with it (`close`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._core.coords import Leaf
from .progress import Progress


@runtime_checkable
class Evaluator(Protocol):
    name: str  # the report's engine: "jax", "jax-flat", "jax-mixed", "host"
    n_devices: int  # devices each chunk of perturbations is split over
    one_at_a_time: bool  # each point costs a call of fn (the host), not a share of a batch
    progress: Progress | None  # told how many points each finished block had
    journal: Any  # a `journal.Journal` (blocks recorded there are not run again), or None

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where the leaf's element idx[k] is set to vals[k]."""
        ...

    def evaluate_leaf(self, leaf: Leaf, rows: np.ndarray) -> np.ndarray:
        """f with the whole leaf set to each row of rows ([points, leaf.size])."""
        ...

    def evaluate_along(self, leaf: Leaf, grad, keys, labels, groups, ts) -> tuple:
        """f and ⟨grad, x − θ⟩ at θ + t·v for each direction (keys[b], restricted to labels ==
        groups[b]) and each t in ts, and the weights ⟨|grad|, |v|⟩, Σ|v|."""
        ...

    def direction_cost(self, leaf: Leaf) -> float | None:
        """A direction's cost over one element evaluation's (None: unknown)."""
        ...

    def close(self) -> None:
        """The progress bar and the journal closed."""
        ...
