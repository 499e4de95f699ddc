"""Where `explore` checks a gradient: points drawn from a domain, hard cases first.

A gradient rule is usually right at ordinary points and wrong in a region: at exact zeros
(ldexp, i0, xlogy, x ** y), near zero (sinc), in the far tails (expm1 below -37, sigmoid above
+40), where an argument is zero (logsumexp with b == 0). So a `Domain` draws, per element:

- the special values inside its interval, each for every element at once first: 0, -0, ±1,
  ±2, ±1/2, the endpoints, small integers and half-integers, the smallest normal and
  subnormal numbers, values near overflow, and 10^k for every decade the interval reaches;
- then magnitudes uniform on a log scale, from the largest down to the dtype's resolution
  relative to it (1e-8 and 1e+30 are reached, not only the middle of the range), with both
  signs, alternating with values uniform in the interval, and with
  points mixing special values across elements.

Every value is rounded to the leaf's dtype (the points are representable), deterministic for
a seed. A domain is a `(lo, hi)` for every leaf, a dict {leaf path: (lo, hi)}, or a callable
`sampler(rng, n) -> [n, size]` array per leaf; None takes ±√(the dtype's largest value).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._core.coords import Coords, Leaf
from .._core.errors import list_paths
from .._core.paths import qualified

Sampler = Callable[[np.random.Generator, int], np.ndarray]  # (rng, n) -> [n, leaf size]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A leaf's values: lo ≤ x ≤ hi (lo == hi: a constant leaf)."""

    lo: float
    hi: float

    @property
    def scale(self) -> float:
        """The interval's natural scale: its largest magnitude, at most 1 (a step relative
        to it resolves a gradient near 0, where |x| alone would not)."""
        return min(1.0, max(abs(self.lo), abs(self.hi))) or 1.0


@dataclasses.dataclass(frozen=True)
class Domain:
    """Each checked leaf's interval, or its own sampler."""

    intervals: dict[str, Interval]
    samplers: dict[str, Sampler]

    @staticmethod
    def make(spec: Any, coords: Coords) -> Domain:
        """The domain of these leaves from `explore`'s domain= (validated: where it is wrong,
        which leaf, and how to write it)."""
        leaves = coords.checked
        paths = [leaf.path for leaf in leaves]
        if callable(spec):
            return Domain({}, {p: spec for p in paths})
        if spec is None:
            return Domain({leaf.path: _default(leaf) for leaf in leaves}, {})
        if isinstance(spec, Mapping):
            unknown = [str(k) for k in spec if k not in paths]
            if unknown:
                raise ValueError(
                    f"domain= names {list_paths(unknown)}, which are not checked leaves. Use "
                    f"key paths as the report writes them: {list_paths(paths)}."
                )
            intervals, samplers = {}, {}
            for leaf in leaves:
                given = spec.get(leaf.path)
                if callable(given):
                    samplers[leaf.path] = given
                else:
                    intervals[leaf.path] = (
                        _default(leaf) if given is None else _interval(given, leaf.path)
                    )
            return Domain(intervals, samplers)
        interval = _interval(spec, None)
        return Domain({p: interval for p in paths}, {})

    def scale(self, path: str) -> float:
        interval = self.intervals.get(path)
        return 1.0 if interval is None else interval.scale

    def draw(self, leaf: Leaf, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, leaf.size] values of the leaf, in its dtype, special cases first."""
        dtype = np.dtype(leaf.dtype)
        sampler = self.samplers.get(leaf.path)
        if sampler is not None:
            out = np.asarray(sampler(rng, n), np.float64).reshape(n, -1)
            if out.shape[1] != leaf.size:
                raise ValueError(
                    f"domain= sampler for {qualified(leaf.path)} returned {out.shape[1]} values "
                    f"per point; the leaf has {leaf.size} (shape {leaf.shape}). Return an array "
                    f"[n, {leaf.size}] (or [n, *{leaf.shape}])."
                )
            return out.astype(dtype)
        return _draw(self.intervals[leaf.path], leaf.size, n, rng, dtype)


def _default(leaf: Leaf) -> Interval:
    big = math.sqrt(float(np.finfo(np.dtype(leaf.dtype)).max))
    return Interval(-big, big)


def _interval(spec: Any, path: str | None) -> Interval:
    where = f" for {qualified(path)}" if path is not None else ""
    ok = (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in spec)
    )
    if not ok:
        raise ValueError(
            f"domain={spec!r}{where}: pass (lo, hi), two numbers with lo <= hi; a dict "
            "{leaf path: (lo, hi)}; a function sampler(rng, n) -> [n, leaf size] array; or "
            "None for the dtype's range."
        )
    lo, hi = float(spec[0]), float(spec[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(
            f"domain={spec!r}{where}: lo and hi must be finite with lo <= hi (got {lo}, {hi})."
        )
    return Interval(lo, hi)


def special_values(interval: Interval, dtype: np.dtype) -> np.ndarray:
    """The hard cases inside the interval, in dtype, simplest first, without repeats."""
    info = np.finfo(dtype)
    lo, hi = interval.lo, interval.hi
    tiny, subnormal = float(info.tiny), float(info.smallest_subnormal)
    big = float(info.max)
    candidates = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, lo, hi]
    candidates += [float(k) for k in range(-8, 9)] + [k + 0.5 for k in range(-8, 8)]
    candidates += [tiny, -tiny, subnormal, -subnormal, big / 4, -big / 4, big / 2, -big / 2]
    top = math.log10(max(abs(lo), abs(hi), 1e-300))
    for k in range(max(int(math.floor(math.log10(tiny))), -40), int(math.ceil(top)) + 1):
        candidates += [10.0**k, -(10.0**k)]
    out, seen = [], set()
    for x in candidates:
        if not lo <= x <= hi:
            continue
        v = np.asarray(x, np.float64).astype(dtype)
        key = (float(v), math.copysign(1.0, float(v)))
        if np.isfinite(v) and key not in seen:
            seen.add(key)
            out.append(v)
    return np.asarray(out, dtype)


def _log_uniform(interval: Interval, size: int, rng: np.random.Generator, dtype) -> np.ndarray:
    """Magnitudes uniform on a log scale between the dtype's smallest normal number (or the
    interval's inner edge) and its largest magnitude, signs where the interval allows."""
    lo, hi = interval.lo, interval.hi
    top = max(abs(lo), abs(hi))
    if top == 0:
        return np.zeros(size)
    inner = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    # down to the dtype's resolution relative to the range (16 decades in float64, 7 in
    # float32); the decades beyond, and the smallest numbers, are among the special values
    bottom = max(inner, float(np.finfo(dtype).tiny), top * float(np.finfo(dtype).eps))
    exponent = rng.uniform(math.log10(bottom), math.log10(top), size)
    magnitude = 10.0**exponent
    if lo >= 0:
        sign = np.ones(size)
    elif hi <= 0:
        sign = -np.ones(size)
    else:
        sign = rng.choice([-1.0, 1.0], size)
    return np.clip(sign * magnitude, lo, hi)


def _draw(interval: Interval, size: int, n: int, rng: np.random.Generator, dtype) -> np.ndarray:
    special = special_values(interval, dtype).astype(np.float64)
    rows: list[np.ndarray] = [np.full(size, x) for x in special[:n]]
    kinds = ("log", "uniform", "mixed")
    while len(rows) < n:
        kind = kinds[len(rows) % 3]
        if kind == "log":
            rows.append(_log_uniform(interval, size, rng, dtype))
        elif kind == "uniform":
            rows.append(rng.uniform(interval.lo, interval.hi, size))
        else:  # special values mixed with log-scale ones across the elements
            mixed = _log_uniform(interval, size, rng, dtype)
            pick = rng.random(size) < 0.5
            if special.size:
                mixed[pick] = rng.choice(special, int(pick.sum()))
            rows.append(mixed)
    return np.stack(rows[:n]).astype(dtype)
