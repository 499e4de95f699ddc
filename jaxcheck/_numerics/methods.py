"""Finite-difference methods: where f is evaluated, and how the error of each is estimated.

A method is a set of offsets (multiples of the step h) for its derivative estimate, and a
second set whose estimate is compared with it: the difference estimates the truncation error
(NUMERICS.md). The weights are not fixed coefficients: they are computed per element from the
displacements actually applied (θ + o·h rounded to the working dtype, minus θ), so rounding
of the points never biases the estimate (`stencils.estimate`).

| method | estimate from | error estimate from | step h |
|---|---|---|---|
| forward | f(θ), f(θ + h) | f(θ + 2h) too (second order) | u^(1/2)·scale |
| central | ±h | ±2h too (4th order) | u^(1/3)·scale |
| central4 | ±h, ±2h | ±3h too (6th order) | u^(1/5)·scale |
| central6 | ±h, ±2h, ±3h | ±4h too (8th order) | u^(1/7)·scale |
| richardson | ±h, ±h/2, ±h/4 (extrapolated) | the previous extrapolation | u^(1/7)·scale |

Every method also gets five equally spaced points around θ for the noise estimate (the fourth
difference, at spacing h/8 or h/16 for the large steps of the higher orders) and, except
forward, ±o and ±2o for the kink test (one-sided slopes at two steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np

METHODS = ("central", "central4", "central6", "richardson", "forward")


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    primary: tuple[float, ...]  # offsets of the estimate (0 is f(θ), always evaluated)
    check: tuple[float, ...]  # offsets of the estimate compared with it
    noise: float  # spacing s of the fourth difference over −2s, −s, 0, s, 2s
    kink: float | None  # the ±offset of the one-sided slopes; None: no kink test
    power: float  # default step u^power · scale
    check_is_lower: bool = False  # the check is a lower-order estimate (conservative)

    @property
    def noise_offsets(self) -> tuple[float, ...]:
        s = self.noise
        return (-2 * s, -s, s, 2 * s)

    @property
    def offsets(self) -> tuple[float, ...]:
        """Every nonzero offset evaluated for a fully examined element, ascending."""
        every = set(self.primary) | set(self.check) | set(self.noise_offsets)
        if self.kink is not None:  # the one-sided slopes at o and 2o
            every |= {s * k * self.kink for s in (-1, 1) for k in (1, 2)}
        return tuple(sorted(o for o in every if o != 0))

    @property
    def first(self) -> tuple[float, ...]:
        """Offsets evaluated for every element; the rest only where the verdict needs them."""
        return tuple(o for o in self.offsets if o in self.primary)

    @property
    def span(self) -> float:
        return max(abs(o) for o in self.offsets)


_SYMMETRIC = lambda *k: tuple(sorted({s * x for x in k for s in (-1, 1)}))  # noqa: E731

# The noise spacing s keeps the fourth difference a measure of noise: at the large steps of
# the higher orders, (s·h)⁴ times the fourth derivative must stay below the round-off in f.
BY_NAME = {
    "forward": Method("forward", (0.0, 1.0), (0.0, 1.0, 2.0), 1.0, None, 1 / 2),
    "central": Method("central", _SYMMETRIC(1), _SYMMETRIC(1, 2), 1.0, 1.0, 1 / 3),
    "central4": Method("central4", _SYMMETRIC(1, 2), _SYMMETRIC(1, 2, 3), 1 / 8, 1.0, 1 / 5),
    "central6": Method("central6", _SYMMETRIC(1, 2, 3), _SYMMETRIC(1, 2, 3, 4), 1 / 16, 1.0, 1 / 7),
    "richardson": Method(
        "richardson", _SYMMETRIC(1, 0.5, 0.25), _SYMMETRIC(2, 1, 0.5, 0.25), 1 / 8, 0.25, 1 / 7
    ),
}


def get(name: str) -> Method:
    return BY_NAME[name]


def weights(disp: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per element, the weights w_j with Σ_j w_j f(θ + a_j) ≈ f'(θ) for displacements a_j.

    disp: [k, n] displacements (0 for f(θ)); h: [n] the nominal step, for conditioning.
    Exact for polynomials of degree < k (Fornberg's weights, from the Vandermonde system).
    """
    k = disp.shape[0]
    if k == 2:  # the common case, in closed form: 1 / (a_1 − a_0), −1 / (a_1 − a_0)
        inv = 1.0 / (disp[1] - disp[0])
        return np.stack([-inv, inv])
    x = (disp / h).T  # [n, k], O(1)
    powers = x[:, None, :] ** np.arange(k)[None, :, None]  # [n, m, k]: x_j^m
    rhs = np.zeros((x.shape[0], k))
    rhs[:, 1] = 1.0
    w = np.linalg.solve(powers, rhs[..., None])[..., 0]  # [n, k]
    return (w / h[:, None]).T
