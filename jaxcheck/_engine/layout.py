"""One program per leaf, or one for many leaves: the cost model that picks.

A check's perturbations run in compiled chunk programs. Per leaf, only that leaf is batched
(and the sparse path, `sparse`, propagates a one-element change as a rank-1 update), so a
perturbation is cheap, but every leaf costs its own compilations. Flat, the card's own
design: the checked leaves raveled into one vector, one `vmap`-ed program over its
perturbed copies (every leaf, every step, every retry), so a perturbation costs a whole
forward pass but the check compiles once. For a small model the compilations dominate
(a 16-layer network: 64 compilations, a pair per leaf, against 2 flat); for a large one
the forward passes do. `choose` puts the smallest leaves in the flat program as long as the
forward passes they add cost less than the compilations they save, estimated from fn's
jaxpr; the others keep a program each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jcore
import numpy as np

from .._core.coords import Coords

# Forward-pass FLOPs the flat program may add per compilation it saves: about what a
# compilation of a small model costs (0.1-0.3 s on a CPU core, much less than a second of an
# accelerator's arithmetic).
FLOPS_PER_COMPILE = {"cpu": 3e8, "other": 1e11}
MAX_ELEMENTS = 2**17  # beyond this, a check is long anyway: per leaf (sparse) wins
WHILE_TRIPS = 16  # iterations assumed for a while loop of unknown length


class Flat(NamedTuple):
    """The checked leaves raveled: leaf position -> (offset, size) in one vector of dtype."""

    spans: dict[int, tuple[int, int]]
    size: int
    dtype: Any

    def embed(self, position: int, part: np.ndarray, fill) -> np.ndarray:
        """A flat vector equal to `fill` except on the leaf's span, which holds `part`."""
        offset, n = self.spans[position]
        out = np.full(self.size, fill, dtype=np.asarray(part).dtype)
        out[offset : offset + n] = np.asarray(part).reshape(-1)
        return out


def choose(
    coords: Coords,
    values: Sequence[Any],
    flops: Callable[[], float | None],
    platform: str,
    points: Mapping[int, int] | None = None,
    force: bool | None = None,
) -> Flat | None:
    """The flat layout (a `Flat`) or None for one program per leaf.

    force: True or False to decide; None for the cost model: flat for the smallest leaves
    whose forward passes (one whole pass of `flops()` per point; `points[leaf.position]` the
    points the check is expected to evaluate there, None for a full sweep's 2 per element
    and one more) cost less
    than the compilations it saves; the other leaves keep a program each (a model whose
    biases and small layers sit beside one large kernel). Flat needs one dtype for every
    checked leaf, and at least two leaves.
    """
    leaves = coords.checked
    dtypes = {np.dtype(np.asarray(values[leaf.position]).dtype) for leaf in leaves}
    if not leaves or len(dtypes) != 1 or force is False:
        return None
    chosen = list(leaves)
    if force is None:
        expected = points or {leaf.position: 2 * leaf.size + 1 for leaf in leaves}
        budget = FLOPS_PER_COMPILE["cpu" if platform == "cpu" else "other"]
        by_size = sorted(leaves, key=lambda leaf: leaf.size)
        per_point, chosen = None, []
        for k in range(2, len(by_size) + 1):
            some = by_size[:k]
            if sum(leaf.size for leaf in some) > MAX_ELEMENTS:
                break
            per_point = flops() if per_point is None else per_point
            if per_point is None:
                return None
            cost = sum(expected[leaf.position] for leaf in some) * per_point
            if cost <= budget * 2 * (k - 1):  # a prepare/run pair each
                chosen = some
        if len(chosen) < 2:
            return None
    spans, offset = {}, 0
    positions = {leaf.position for leaf in chosen}
    for leaf in leaves:  # in ravel_pytree order
        if leaf.position in positions:
            spans[leaf.position] = (offset, leaf.size)
            offset += leaf.size
    return Flat(spans, offset, dtypes.pop())


def forward_flops(jaxpr: jcore.Jaxpr) -> float:
    """Arithmetic of one evaluation of jaxpr, roughly: products and convolutions counted as
    multiply-adds, everything else as one operation per output element."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        inner = [_inner(v) for v in (*eqn.params.values(), *eqn.params.get("branches", ()))]
        subs = [j for j in inner if j is not None]
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            k = np.prod([_shape(eqn.invars[0])[d] for d in lhs_contract])
            total += 2.0 * _size(eqn.outvars[0]) * k
        elif name == "conv_general_dilated":
            rhs = _shape(eqn.invars[1])
            out_feature = eqn.params["dimension_numbers"].rhs_spec[0]
            total += 2.0 * _size(eqn.outvars[0]) * np.prod(rhs) / rhs[out_feature]
        elif name == "cond":
            total += max((forward_flops(b) for b in subs), default=0.0)
        elif subs:
            trips = eqn.params.get("length", WHILE_TRIPS if name == "while" else 1)
            total += trips * sum(forward_flops(s) for s in subs)
        else:
            total += sum(_size(v) for v in eqn.outvars)
    return total


def _shape(var: jcore.Var | jcore.Literal) -> tuple[int, ...]:
    return tuple(getattr(var.aval, "shape", ()))


def _inner(v: Any) -> jcore.Jaxpr | None:
    if isinstance(v, jcore.ClosedJaxpr):
        return v.jaxpr
    if isinstance(v, jcore.Jaxpr):
        return v
    return None


def _size(v: jcore.Var) -> float:
    return float(np.prod(getattr(v.aval, "shape", ())))


def flops_of(fn: Callable, *dynamic) -> float | None:
    """`forward_flops` of fn at these inputs (None where it does not trace)."""
    try:
        return forward_flops(jax.make_jaxpr(fn)(*dynamic).jaxpr)
    except Exception:  # noqa: BLE001 - the per-leaf programs will say what is wrong
        return None
