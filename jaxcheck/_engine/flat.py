"""The flat engine: every leaf's perturbations in one compiled program.

The checked leaves are raveled into one coordinate vector (in `ravel_pytree` order); a chunk
is a batch of points of that space, and one `vmap`-ed program evaluates fn at them, whatever
leaf, step or retry they belong to: the ±h and ±2h sweeps, the second look's smaller steps,
the directions of mode="directional", every leaf of the model. A check compiles it once
(with the `split`, twice), where the per-leaf engine compiles a pair per leaf.

The points are assembled on the host and enter the program as one batched array per leaf,
the leaf's own shape with a batch axis in front: that is the layout XLA compiles fastest
(slicing them on the device out of one batched vector costs a copy kernel per leaf, and on
CPU more compile time than the forward pass itself). The cost model in `layout` picks this
engine where the extra forward passes are cheaper than the compilations they save, for every
leaf or for the small ones: a leaf outside the layout keeps a program of its own (the
per-leaf engine's), and the flat program reads it, like the data, as a constant of the
check, so what depends only on it and the data is computed once (`split`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .._core.coords import Leaf
from . import batched as _engine
from . import layout as _layout
from . import split as _split
from .batched import Compiled, JaxEngine

MAX_CHUNK = 1024  # points per chunk at most
FLAT = ("flat", "points")  # the one program's slot
CHUNK_ELEMENTS = 2**22  # host-assembled coordinates per chunk at most (32 MiB in float64)


class FlatEngine(JaxEngine):
    """`JaxEngine`'s interface, with one program over the raveled leaves of the layout; any
    other checked leaf (a large one, beside small ones) keeps a program of its own."""

    def __init__(self, fn_scalar, values, coords, args, layout: _layout.Flat, **options):
        super().__init__(fn_scalar, values, coords, args, **options)
        self.layout = layout
        # The report's method line: one program for every leaf, or for the small ones.
        self.name = "jax-flat" if len(layout.spans) == len(coords.checked) else "jax-mixed"
        self._flat_residuals = None
        # points a call evaluates: a leaf's directions (mode="directional"), else None for a
        # leaf's first sweep
        self._per_call = len(_engine.ALONG) * self._directions if self._directions else None
        self._leaves = [leaf for leaf in coords.checked if leaf.position in layout.spans]
        parts = [np.asarray(self._values[leaf.position]).reshape(-1) for leaf in self._leaves]
        self._theta = np.concatenate(parts).astype(layout.dtype)  # the raveled leaves
        if self._key is not None:
            self._key = (*self._key, "flat", tuple(layout.spans))  # (directions: in the base)

    # ---- the program ---------------------------------------------------------------------

    def _batch_fn(self) -> Callable:
        """fn at a batch of points: one array [B, *shape] per checked leaf."""
        coords, fn, leaves = self._coords, self._fn, self._leaves
        params_rebuild, args_rebuild = self._params_rebuild, self._args_rebuild

        def one(params_dyn: list[Any], args_dyn: list[Any], *xs: jax.Array) -> Any:
            values = jax.tree_util.tree_leaves(params_rebuild(params_dyn))
            for leaf, x in zip(leaves, xs):
                values[leaf.position] = x
            return fn(coords.unflatten(values), *args_rebuild(args_dyn))

        return jax.vmap(one, in_axes=(None, None) + (0,) * len(leaves))

    def _example(self, size: int) -> list[np.ndarray]:
        dtype = self.layout.dtype
        return [np.zeros((size, *leaf.shape), dtype) for leaf in self._leaves]

    def _program(self) -> Compiled:
        """The one program (compiled once, kept across calls like the per-leaf ones)."""
        slot = FLAT
        if slot in self._cache:
            return self._cache[slot]
        key = None if self._key is None else (*self._key, *slot)
        kept = _engine.EXECUTABLES.get(key)
        if kept is not None:
            self._cache[slot] = kept
            return kept
        # Sized for a call (one leaf's first sweep, or its directions), within memory.
        n, itemsize = self.layout.size, np.dtype(self.layout.dtype).itemsize
        sweep = self._per_call or 2 * max(leaf.size for leaf in self._leaves) + 1
        size = self._chunk or min(
            _engine.first_chunk(n, itemsize, sweep, self._budget, sparse=False),
            MAX_CHUNK,
            1 << max(0, (CHUNK_ELEMENTS // max(n, 1)).bit_length() - 1),
        )
        # a forward pass per point: fn's own FLOPs count the chunk's (the split only removes
        # what does not depend on the points)
        forward, most = self.flops(), size
        members = size * self._n
        size, member = self._bounded(
            slot, size, 1, lambda: None if forward is None else forward * members
        )
        limit, given = self._budget // 2, bool(self._chunk)
        staged, run, size = _engine.fit_to_memory(size, limit, given, self._compile_at)
        program = self._finish_flat(staged, run, size, member, most)
        self._cache[slot] = program
        _engine.EXECUTABLES.put(key, program)
        return program

    def _compile_at(self, size: int):
        """(staged, executable) for `size` points per device, as one device would run them."""
        known = (self._params_dyn, self._args_dyn)
        example = self._example(size * self._n)
        staged = _split.split(self._batch_fn(), known, example)
        if self._global:
            example = self._global_inputs(example, "points")
        self._count_compile()
        return staged, self._jit_points(staged).lower(staged.residual_avals, *example).compile()

    def _finish_flat(  # (prepare: jitted)
        self, staged: Any, run, size: int, flops=None, most: int = 0
    ) -> Compiled:
        prepare = staged.prepare.lower(self._params_dyn, self._args_dyn).compile()
        return Compiled(prepare, run, size * self._n, "flat", flops, max(most, size) * self._n)

    def _slot(self, tag: tuple) -> tuple:
        return FLAT if tag[1] == "flat" else super()._slot(tag)

    def _resize(self, slot: tuple, size: int) -> tuple[Compiled, list]:
        if slot != FLAT:
            return super()._resize(slot, size)
        old = self._cache[slot]
        limit = self._budget // 2
        staged, run, size = _engine.fit_to_memory(size, limit, False, self._compile_at)
        program = self._finish_flat(staged, run, size, old.flops)
        self._cache[slot] = program
        _engine.EXECUTABLES.put(None if self._key is None else (*self._key, *slot), program)
        self._flat_residuals = None
        _, program, residuals = self.prepare()
        return program, residuals

    def _jit_points(self, staged: _split.Staged):
        """The chunk program: on one device as staged, or with the points (and the output)
        split over the mesh's devices and the residuals replicated."""
        if self._mesh is None:
            return staged.run
        replicated, split = self._shardings
        shardings = (replicated, *(split,) * len(self._leaves))
        return jax.jit(staged.run_fn, in_shardings=shardings, out_shardings=split)

    def _global_inputs(self, inputs, kind: str) -> list:
        if kind not in ("points", "flat"):  # a leaf of its own
            return super()._global_inputs(inputs, kind)
        return [self._global_array(x, split=True) for x in inputs]  # every input: points

    def _own(self, leaf: Leaf | None) -> bool:
        """Whether the leaf has a program of its own (not in the flat layout)."""
        return leaf is not None and leaf.position not in self.layout.spans

    def prepare(self, leaf: Leaf | None = None, kind: str = "element"):
        """Compile the program (or find it kept) and compute what its chunks read, once."""
        if leaf is not None and self._own(leaf):
            return super().prepare(leaf, kind)
        program = self._program()
        if self._flat_residuals is None:
            residuals = program.prepare(self._params_dyn, self._args_dyn)
            if self._global:  # every device of every process reads them
                residuals = [self._global_array(r, split=False) for r in residuals]
            elif self._mesh is not None:
                residuals = jax.device_put(residuals, self._shardings[0])
            self._flat_residuals = residuals
            self.paths.update((leaf.path, "flat") for leaf in self._leaves)
        return self._theta, program, self._flat_residuals

    def _split(self, points: np.ndarray) -> list[np.ndarray]:
        """Points [B, n] of the raveled space as the program's per-leaf inputs."""
        out = []
        for leaf in self._leaves:
            offset, n = self.layout.spans[leaf.position]
            out.append(
                np.ascontiguousarray(points[:, offset : offset + n]).reshape(-1, *leaf.shape)
            )
        return out

    # ---- evaluations ---------------------------------------------------------------------

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where leaf element idx[k] is set to vals[k]; float64 on the host."""
        if self._own(leaf):
            return super().evaluate(leaf, idx, vals)
        if self.progress is not None:
            self.progress.at(leaf.path)
        theta, program, residuals = self.prepare()
        offset = self.layout.spans[leaf.position][0]
        dtype = self.layout.dtype

        def expand(idx: np.ndarray, vals: np.ndarray) -> list[np.ndarray]:
            points = np.tile(theta, (len(idx), 1))
            points[np.arange(len(idx)), idx] = vals
            return self._split(points)

        (f,) = self._run_chunks(
            program,
            residuals,
            (),
            [(np.asarray(idx, np.int64) + offset, np.int64, offset), (vals, dtype, theta[offset])],
            points=1,
            tag=((leaf.position, "element"), "flat"),
            expand=expand,
        )
        return f.reshape(-1)

    def evaluate_rows(self, rows: np.ndarray) -> np.ndarray:
        """f at whole points of the raveled space ([B, n] in the leaves' dtype)."""
        theta, program, residuals = self.prepare()
        (f,) = self._run_chunks(
            program,
            residuals,
            (),
            [(rows, self.layout.dtype, theta)],
            points=1,
            tag=("rows", "flat"),
            expand=lambda rows: self._split(rows),
        )
        return f.reshape(-1)

    def evaluate_along(
        self,
        leaf: Leaf,
        grad: np.ndarray,
        keys: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        ts: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """As `JaxEngine.evaluate_along`, the directions drawn on the host (by NumPy, from
        the same keys, as the host engine draws them) and evaluated as points."""
        if self._own(leaf):
            return super().evaluate_along(leaf, grad, keys, labels, groups, ts)
        if self.progress is not None:
            self.progress.at(leaf.path)
        offset, n = self.layout.spans[leaf.position]
        theta = self._theta[offset : offset + n].astype(np.float64)
        dtype = self.layout.dtype
        labels, grad = np.asarray(labels), np.asarray(grad, np.float64)
        f = np.empty((len(keys), len(ts)))
        s = np.empty((len(keys), len(ts)))
        weights = np.empty((len(keys), 2))
        step = _engine.DIRECTION_CHUNK
        for start in range(0, len(keys), step):
            part = slice(start, start + step)
            v = np.stack([
                np.random.default_rng(np.asarray(key)).standard_normal(n) * (labels == group)
                for key, group in zip(keys[part], groups[part])
            ])  # fmt: skip
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float64).tiny)
            x = (theta[None, None] + np.asarray(ts)[None, :, None] * v[:, None]).astype(dtype)
            rows = np.tile(self._theta, (x.shape[0] * len(ts), 1))
            rows[:, offset : offset + n] = x.reshape(-1, n)
            f[part] = self.evaluate_rows(rows).reshape(-1, len(ts))
            s[part] = (x.astype(np.float64) - theta) @ grad
            weights[part] = np.stack([np.abs(v) @ np.abs(grad), np.abs(v).sum(axis=1)], axis=1)
        return f, s, weights
