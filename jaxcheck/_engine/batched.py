"""The batched JAX engine: perturbed evaluations of fn in jit-compiled chunks.

One leaf is perturbed at a time. The fast path (`sparse`) propagates each one-element
perturbation through fn's jaxpr as a sparse change, so a perturbed weight costs a rank-1
update of the layer it enters instead of a forward pass; the plain path vmaps fn over
perturbed copies of the leaf (only that leaf batched, so everything that does not depend on
it is computed once per chunk). The fast path is used wherever it traces; both compute fn's
own values. Either way the traced chunk is split (`split`): what does not depend on the
perturbations (the unperturbed forward pass) is computed once per leaf, not per chunk.
Along random directions (directional mode), f at θ + t·v for unit Gaussian directions v drawn
on the device, over a whole leaf or over labelled parts of it.

Each leaf is compiled once, for a fixed chunk size (the last chunk is padded): the largest
power of two whose compiled working memory, as XLA reports it, fits half the memory budget.
Ctrl-C is only seen between chunks (a script's process even waits for a running chunk to end
before it exits), and should stop a check within a second or two, so no chunk should run
longer than CHUNK_S. Before a program is compiled, its chunk's FLOPs (counted in the traced
chunk's jaxpr, `layout`) at the pace measured so far in the check (RATE before any) bound its
first chunk; after that chunk, the measured time settles the size: smaller where it ran longer
than CHUNK_S, larger where a bounded chunk ran much quicker than estimated (`_settle`).
Executables are kept across calls (like `jax.jit`'s cache, keyed by fn's identity, the
shapes and dtypes of params and args, and the options), so a repeated check compiles nothing.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import numpy.typing as npt

from .._core.coords import Coords, Leaf
from . import journal as _journal
from . import layout as _layout
from . import progress as _progress
from . import sparse as _sparse
from . import split as _split
from .devices import default_max_memory, mesh
from .programs import CACHE_SIZE, cached_jit, split_arrays, working_memory
from .progress import Progress

ALONG = range(4)  # points per direction: θ ± h v, θ ± 2h v
MAX_CHUNK = {True: 4096, False: 1024}  # points per chunk on the fast and the plain path
LEAF_COPIES = 4  # the plain path holds about this many copies of the leaf per point
# Sparse chunks that multiply a changed intermediate by a matrix for every perturbation run
# fastest on CPU when that operand holds about this many elements in all (a tanh MLP: 1.7x
# faster than chunks of 4096); chunks that only do elementwise work and rank-1 updates fuse
# into one loop and prefer the largest chunks.
CHUNK_ELEMENTS = 2**21
DIRECTION_CHUNK = 64  # directions per chunk at most
CHUNK_S = 1.0  # seconds a chunk may run at most (estimated, then measured; see `_settle`)
# FLOPs per second a first chunk is assumed to run at until chunks of the check have been timed:
# below what chunks of dense work reached on two CPU cores (6e9-2e10 on a scan GRU, 1e9 on a
# sparse MLP), so that the estimate errs long and the first chunk short. ("other": accelerators)
RATE = {"cpu": 1e9, "other": 1e11}
GROW_S = CHUNK_S / 16  # a first chunk bounded by the estimate that ran quicker than this grows


class Compiled(NamedTuple):
    """A leaf's program: `prepare` once per check, then `run` per chunk of `size` points."""

    prepare: Any
    run: Any
    size: int
    path: str  # "sparse" or "vmap"
    flops: float | None = None  # FLOPs per member of a chunk, where counted (`_bounded`)
    most: int = 0  # the size before the estimate bounded it: a quick first chunk may grow to it


class Executables:
    """The compiled chunk programs kept across checks (as `jax.jit` keeps its own), keyed by
    what will run (`fingerprint`), the least recently used dropped past `size`: one object
    for every engine (per leaf and flat)."""

    def __init__(self, size: int):
        self._kept: collections.OrderedDict[Any, Compiled] = collections.OrderedDict()
        self._size = size
        self.compiled = 0  # chunk programs compiled in this process (tests count them)

    def clear(self) -> None:
        self._kept.clear()

    def get(self, key: Any) -> Compiled | None:
        if key is None or key not in self._kept:
            return None
        self._kept.move_to_end(key)
        return self._kept[key]

    def put(self, key: Any, program: Compiled) -> None:
        if key is None:
            return
        self._kept[key] = program
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)


EXECUTABLES = Executables(CACHE_SIZE)


def fit_to_memory(size: int, limit: int, given: bool, compile_at: Callable[[int], tuple]):
    """Compile a chunk program for `size` points per device and, while its working memory (as
    XLA reports it) exceeds `limit`, again for fewer: half, or at once the size that should
    fit (activations scale with the chunk). given: the size was chosen by the user
    (chunk_size=), compiled as it is. compile_at(size) -> (staged, executable); returns
    (staged, executable, size)."""
    while True:
        staged, run = compile_at(size)
        used = working_memory(run)
        if given or size == 1 or used <= limit:
            return staged, run, size
        size = max(1, min(size // 2, 1 << (int(size * limit / used).bit_length() - 1)))


def first_chunk(n: int, itemsize: int, n_points: int, budget: int, sparse: bool) -> int:
    """The first chunk size to try for perturbed copies of n elements: a power of two, at
    most n_points (rounded up)."""
    fits = MAX_CHUNK[sparse]
    if not sparse:  # perturbed copies of the leaf: do not even compile what cannot fit in
        # the working memory a compiled chunk is allowed (half the budget; see `_compiled`)
        fits = min(fits, budget // 2 // max(n * itemsize * LEAF_COPIES, 1))
    wanted = 1 << max(0, int(n_points - 1).bit_length())
    return 1 << (max(1, min(fits, wanted)).bit_length() - 1)


class JaxEngine:
    """Evaluates fn_scalar(params with one leaf's elements set to given values)."""

    name = "jax"
    one_at_a_time = False

    def __init__(
        self,
        fn_scalar: Callable[..., Any],
        values: Sequence[Any],
        coords: Coords,
        args: tuple,
        chunk: int | None = None,
        *,
        delta: bool = True,
        max_memory: int | None = None,
        cache_key: Any = None,
        progress: Progress | None = None,
        journal: Any = None,
        devices: Sequence[Any] | None = None,
        directions: int | None = None,
    ):
        self._fn = fn_scalar
        self._coords = coords
        self._values = list(values)
        self._params_dyn, self._params_rebuild, params_key = split_arrays(
            coords.unflatten(self._values)
        )
        self._args_dyn, self._args_rebuild, args_key = split_arrays(args)
        self._chunk = chunk
        self._delta = delta
        # Directions a leaf's first call evaluates (mode="directional"): a chunk no larger,
        # as a chunk is padded to its compiled size. None: DIRECTION_CHUNK.
        self._directions = directions
        self._budget = max_memory or default_max_memory()
        self._mesh = mesh(devices)
        # Each device evaluates chunks of the size one device would: the same program on the
        # same shapes, so the values are bit-identical to a single-device run.
        self._n = 1 if self._mesh is None else self._mesh.devices.size
        self.n_devices = self._n
        # A mesh over several processes (jax.distributed): inputs become global arrays and
        # outputs are gathered from every process.
        self._global = self._mesh is not None and any(
            d.process_index != jax.process_index() for d in self._mesh.devices.flat
        )
        if self._mesh is not None:  # (replicated, split along the perturbations)
            spec = jax.sharding.PartitionSpec
            self._shardings = tuple(
                jax.sharding.NamedSharding(self._mesh, p) for p in (spec(), spec("p"))
            )
        self._key: tuple | None = None
        if cache_key is not None:
            self._key = (
                cache_key,
                params_key,
                args_key,
                chunk,
                delta,
                directions,
                self._budget,
                jax.config.jax_enable_x64,  # type: ignore[attr-defined]
                str(jax.config.jax_default_matmul_precision),  # type: ignore[attr-defined]
                None if self._mesh is None else tuple(d.id for d in self._mesh.devices.flat),
            )
        self._cache: dict[tuple, Compiled] = {}  # (leaf position, kind) -> compiled program
        self._made: dict[tuple, tuple[Leaf, jax.Array]] = {}  # (leaf position, kind) -> its inputs
        self._sized: set[tuple] = set()  # programs whose chunk size is settled (`_settle`)
        self._residuals: dict[tuple, list] = {}  # the current leaf -> what its chunks read
        self.progress = progress
        self.journal = journal  # a `_journal.Journal`: chunks recorded there are not run again
        self.n_compiles = 0
        self.paths: dict[str, str] = {}  # leaf path -> "sparse" or "vmap"
        self._stats: dict[str, int] = {}
        self._forward: list[float | None] = []  # `flops()`, once computed
        self._platform = (list(devices) if devices else jax.devices())[0].platform
        self._timed = [0.0, 0.0]  # FLOPs and seconds of the counted chunks computed so far

    def close(self) -> None:
        """The progress bar and the journal closed (the journal's note stays readable)."""
        if self.progress is not None:
            self.progress.close()
        if self.journal is not None:
            self.journal.close()

    def flops(self) -> float | None:
        """Arithmetic of one evaluation of fn, estimated from its jaxpr (`layout`), once."""

        def run(params_dyn: list[Any], args_dyn: list[Any]) -> Any:
            return self._fn(self._params_rebuild(params_dyn), *self._args_rebuild(args_dyn))

        if not self._forward:
            self._forward.append(_layout.flops_of(run, self._params_dyn, self._args_dyn))
        return self._forward[0]

    def _rate(self) -> float:
        """FLOPs per second: as measured on this check's counted chunks, else RATE's guess."""
        flops, seconds = self._timed
        if seconds > 0:
            return flops / seconds
        return RATE["cpu" if self._platform == "cpu" else "other"]

    def _bounded(
        self, slot: tuple, size: int, points: int, count: Callable[[], float | None]
    ) -> tuple[int, float | None]:
        """A program's first chunk size: `size` members (per device) of `points` evaluations
        each, or a smaller power of two where the chunk's FLOPs (count(): of size × devices
        members) at `_rate()` would take longer than half CHUNK_S (larger chunks ran slower
        per point: a scan GRU's 14 ms at 128 points, 7 ms at 16); and its FLOPs per member,
        where counted (only where one forward pass per point, `flops()`, could take that long).
        Recorded in the journal, as the rate is measured: a resumed check finds its chunks."""
        if self._chunk:  # chunk_size=: the user's
            return size, None
        budget = self._rate() * CHUNK_S / 2
        forward = self.flops()
        member = None
        if forward is None or forward * points * size > budget:
            flops = count()
            member = None if flops is None else flops / (size * self._n)
        key = ("first chunk", slot, size)
        bounded = _journal.recall(self.journal, key)
        if bounded is None:
            bounded = size
            if member is not None and member * size > budget:
                bounded = _progress.shrink(size, member * size, budget)
            _journal.remember(self.journal, key, bounded)
        return bounded, member

    def _with_leaf(self, leaf: Leaf) -> Callable:
        """fn as a function of (the leaf's value, the other dynamic params, the dynamic args)."""
        coords, fn = self._coords, self._fn
        params_rebuild, args_rebuild = self._params_rebuild, self._args_rebuild

        def g(x: jax.Array, params_dyn: list[Any], args_dyn: list[Any]) -> Any:
            values = jax.tree_util.tree_leaves(params_rebuild(params_dyn))
            values[leaf.position] = x
            return fn(coords.unflatten(values), *args_rebuild(args_dyn))

        return g

    def _plain(self, leaf: Leaf) -> Callable:
        """vmap fn over the perturbed copies of the leaf."""
        g = self._with_leaf(leaf)

        def one(
            base_flat: jax.Array,
            params_dyn: list[Any],
            args_dyn: list[Any],
            i: jax.Array,
            v: jax.Array,
        ) -> Any:
            return g(base_flat.at[i].set(v).reshape(leaf.shape), params_dyn, args_dyn)

        return jax.vmap(one, in_axes=(None, None, None, 0, 0))

    def _sparse(self, leaf: Leaf) -> Callable:
        """Propagate the one-element perturbations through fn's jaxpr (`sparse`)."""
        g = self._with_leaf(leaf)
        stats = self._stats

        def chunk(
            base_flat: jax.Array,
            params_dyn: list[Any],
            args_dyn: list[Any],
            idx: jax.Array,
            vals: jax.Array,
        ) -> jax.Array:
            x = base_flat.reshape(leaf.shape)
            closed = jax.make_jaxpr(g)(x, params_dyn, args_dyn)
            if closed.effects:
                raise NotImplementedError("fn has side effects: use the plain path")
            sel = jax.numpy.stack(jax.numpy.unravel_index(idx, leaf.shape), axis=-1)
            sel = sel.reshape(len(idx), len(leaf.shape)).astype(np.int32)
            start = _sparse.Patch(x, range(x.ndim), sel, vals)
            rest = jax.tree_util.tree_leaves((params_dyn, args_dyn))
            return _sparse.evaluate(closed, [start, *rest], stats)

        return chunk

    def _compiled(self, leaf: Leaf, base: jax.Array, kind: str = "element") -> Compiled:
        """The leaf's program and its chunk size, compiled once and kept.

        kind "element": one-element perturbations, the size chosen for the leaf's first sweep
        (about 2n points); kind "direction": dense directions (`evaluate_along`).
        """
        slot = (leaf.position, kind)
        if slot in self._cache:
            return self._cache[slot]
        key = None if self._key is None else (*self._key, *slot)
        kept = EXECUTABLES.get(key)
        if kept is not None:
            self._cache[slot] = kept
            if kind == "element":
                self.paths[leaf.path] = kept.path
            return kept

        # Both kinds: the single-device chunk size on every device (identical values), not
        # 1/n of it.
        def first_size(sparse: bool) -> int:
            n_points = 2 * leaf.size + 1
            itemsize = base.dtype.itemsize
            return self._chunk or first_chunk(leaf.size, itemsize, n_points, self._budget, sparse)

        staged = None
        if kind == "direction":
            wanted = min(DIRECTION_CHUNK, self._directions or DIRECTION_CHUNK)
            size = self._chunk or first_chunk(
                leaf.size, base.dtype.itemsize * len(ALONG), wanted, self._budget, False
            )
            path = "direction"
            chunk_fn = self._chunk_fn(leaf, path)
            staged = self._stage(chunk_fn, base, size, kind)
        elif self._delta:
            size, path = first_size(sparse=True), "sparse"
            chunk_fn = self._chunk_fn(leaf, path)
            try:
                staged = self._stage(chunk_fn, base, size, kind)
                per_point = self._stats["matmul_elements"]
                fits = 1 << max(0, (CHUNK_ELEMENTS // max(per_point, 1)).bit_length() - 1)
                if not self._chunk and fits < size:
                    size = fits
                    staged = self._stage(chunk_fn, base, size, kind)
            except Exception:  # noqa: BLE001 - the plain path computes the same values
                staged = None
        if staged is None:
            size, path = first_size(sparse=False), "vmap"
            chunk_fn = self._chunk_fn(leaf, path)
            staged = self._stage(chunk_fn, base, size, kind)
        example, most, traced = self._inputs(base, size * self._n, kind), size, staged
        size, member = self._bounded(
            slot,
            size,
            len(ALONG) if kind == "direction" else 1,
            lambda: _layout.flops_of(traced.run_fn, traced.residual_avals, *example),
        )
        compile_at = self._compiler(chunk_fn, base, kind, {most: staged})
        staged, run, size = fit_to_memory(size, self._budget // 2, bool(self._chunk), compile_at)
        program = self._finish(staged, run, size, path, base, member, most)
        self._cache[slot] = program
        if kind == "element":
            self.paths[leaf.path] = path
        EXECUTABLES.put(key, program)
        return program

    def _chunk_fn(self, leaf: Leaf, path: str) -> Callable:
        """The traceable chunk of a program's path: "sparse", "vmap" or "direction"."""
        make = {"sparse": self._sparse, "vmap": self._plain, "direction": self._along}[path]
        return make(leaf)

    def _compiler(
        self, chunk_fn: Callable, base: jax.Array, kind: str, traced: dict
    ) -> Callable[[int], tuple]:
        """compile_at(size) -> (staged, executable) for `size` points per device; traced:
        the chunks already traced, by size."""

        def compile_at(size: int):
            if size not in traced:
                traced[size] = self._stage(chunk_fn, base, size, kind)
            example = list(self._inputs(base, size * self._n, kind))
            if self._global:
                example = self._global_inputs(example, kind)
            run = self._jit_run(traced[size], kind).lower(traced[size].residual_avals, *example)
            self._count_compile()
            return traced[size], run.compile()

        return compile_at

    def _finish(
        self, staged: Any, run, size: int, path: str, base, flops=None, most: int = 0
    ) -> Compiled:
        """The program: its chunk (`run`, `size` points per device) and what computes the
        residuals its chunks read; flops per member, and the size it may grow to (`most`)."""
        prepare = staged.prepare.lower(base, self._params_dyn, self._args_dyn).compile()
        return Compiled(prepare, run, size * self._n, path, flops, max(most, size) * self._n)

    def _slot(self, tag: tuple) -> tuple:
        """The program a chunk's tag runs: (leaf position, kind)."""
        return tag

    def _resize(self, slot: tuple, size: int) -> tuple[Compiled, list]:
        """The slot's program compiled again for `size` points per device (or fewer, where
        that does not fit in memory), kept in its place, and the residuals its chunks read."""
        leaf, base = self._made[slot]
        kind, old = slot[1], self._cache[slot]
        compile_at = self._compiler(self._chunk_fn(leaf, old.path), base, kind, {})
        staged, run, size = fit_to_memory(size, self._budget // 2, False, compile_at)
        program = self._finish(staged, run, size, old.path, base, old.flops)
        self._cache[slot] = program
        EXECUTABLES.put(None if self._key is None else (*self._key, *slot), program)
        self._residuals.pop(slot, None)
        _, program, residuals = self.prepare(leaf, kind)
        return program, residuals

    def _settle(
        self,
        slot: tuple,
        program: Compiled,
        residuals: list,
        seconds: float | None,
        left: int,
    ) -> tuple[Compiled, list]:
        """After a program's first chunk: its chunk size, kept, or smaller where that chunk
        (`seconds`; None: read back from the journal) ran longer than CHUNK_S, or larger where
        the estimate bounded it and it ran quicker than GROW_S (aimed at a quarter of CHUNK_S:
        smaller chunks may run faster per point), while `left` members (at least) are to come.
        Decided once per program (a grown one's first chunk once more, to shrink), and
        recorded in the journal, so that a resumed check runs the same chunks and finds them."""
        key = ("chunk size", slot, program.size)
        size = _journal.recall(self.journal, key)
        if size is None:
            if seconds is None:  # replayed, and decided nowhere: the next chunk decides
                return program, residuals
            size, per = program.size, program.size // self._n
            if not self._chunk and left >= program.size:
                if seconds > CHUNK_S and per > 1:
                    size = self._n * _progress.shrink(per, seconds, CHUNK_S)
                elif seconds < GROW_S and program.most > program.size:
                    grown = per << int(math.log2(CHUNK_S / 4 / max(seconds, 1e-9)))
                    grown = self._n * min(grown, program.most // self._n)
                    size = grown if left >= 2 * grown else size
            _journal.remember(self.journal, key, size)
        if size <= program.size:
            self._sized.add(slot)
        if size == program.size:
            return program, residuals
        return self._resize(slot, size // self._n)

    def _jit_run(self, staged: _split.Staged, kind: str):
        """The chunk program: on one device as staged, or with the perturbations (and every
        output) split over the mesh's devices and the residuals replicated."""
        if self._mesh is None:
            return staged.run
        replicated, split = self._shardings
        shardings = (replicated, *(split if b else replicated for b in _batched(kind)))
        return jax.jit(staged.run_fn, in_shardings=shardings, out_shardings=split)

    def _global_array(self, x, split: bool):
        """x (the same on every process) as an array over the whole mesh."""
        x = np.asarray(x)
        sharding = self._shardings[1 if split else 0]
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    def _global_inputs(self, inputs, kind: str) -> list:
        return [self._global_array(x, split=b) for x, b in zip(inputs, _batched(kind))]

    def _gather(self, x: jax.Array) -> np.ndarray:
        if not self._global:
            return np.asarray(x, dtype=np.float64)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True), dtype=np.float64)

    def _stage(self, chunk_fn: Callable, base, size: int, kind: str) -> _split.Staged:
        """The chunk traced for `size` points per device (size × devices in all)."""
        known = (base, self._params_dyn, self._args_dyn)
        return _split.split(chunk_fn, known, self._inputs(base, size * self._n, kind))

    def _count_compile(self) -> None:
        self.n_compiles += 1
        EXECUTABLES.compiled += 1

    @staticmethod
    def _inputs(base, size: int, kind: str) -> tuple:  # laid out as `_batched(kind)` says
        """Example per-chunk inputs: what `run` takes besides the residuals."""
        if kind == "element":  # indices and values
            return np.zeros(size, np.int32), np.zeros(size, base.dtype)
        n = base.shape[0]  # labels, gradient, steps; per direction: key and group
        return (
            np.zeros(n, np.int32),
            np.zeros(n, base.dtype),
            np.zeros(len(ALONG), base.dtype),
            np.zeros((size, 2), np.uint32),
            np.zeros(size, np.int32),
        )

    def prepare(self, leaf: Leaf, kind: str = "element") -> tuple[jax.Array, Compiled, list]:
        """Compile the leaf's program (or find it kept) and compute what its chunks read."""
        # Raveled by NumPy: an eager reshape of a JAX array compiles a program of its own.
        base = jax.device_put(np.asarray(self._values[leaf.position]).reshape(-1))
        program = self._compiled(leaf, base, kind)
        slot = (leaf.position, kind)
        self._made[slot] = leaf, base
        if slot not in self._residuals:
            # One leaf at a time: a check finishes a leaf before it starts the next.
            residuals = program.prepare(base, self._params_dyn, self._args_dyn)
            if self._global:  # every device of every process reads them
                residuals = [self._global_array(r, split=False) for r in residuals]
            elif self._mesh is not None:
                residuals = jax.device_put(residuals, self._shardings[0])
            self._residuals = {k: v for k, v in self._residuals.items() if k[0] == slot[0]}
            self._residuals[slot] = residuals
        return base, program, self._residuals[slot]

    def evaluate(self, leaf: Leaf, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """f at the points where leaf element idx[k] is set to vals[k]; float64 on the host."""
        if self.progress is not None:
            self.progress.at(leaf.path)
        base, program, residuals = self.prepare(leaf)
        (f,) = self._run_chunks(
            program,
            residuals,
            (),
            [
                (idx, np.int32, 0),
                (vals, base.dtype, np.asarray(self._values[leaf.position]).flat[0]),
            ],
            points=1,
            tag=(leaf.position, "element"),
        )
        return f.reshape(-1)

    def evaluate_leaf(self, leaf: Leaf, rows: np.ndarray) -> np.ndarray:
        """f with the whole leaf set to each of rows ([B, n], in any dtype fn accepts, complex
        included), float64 on the host. One compiled batch: for the few dense points of a
        verification, not for sweeps."""
        if self.progress is not None:
            self.progress.at(leaf.path)
        g = self._with_leaf(leaf)

        def batch(rows: jax.Array, params_dyn: list[Any], args_dyn: list[Any]) -> jax.Array:
            return jax.vmap(lambda x: g(x.reshape(leaf.shape), params_dyn, args_dyn))(rows)

        slot = ("rows", self._key, leaf.position)
        run = jax.jit(batch) if self._key is None else cached_jit(slot, lambda: batch)
        out = np.asarray(run(rows, self._params_dyn, self._args_dyn))
        if self.progress is not None:
            self.progress.update(len(rows))
        return out.astype(np.float64)

    def _run_chunks(
        self,
        program: Compiled,
        residuals: list[Any],
        fixed: tuple[np.ndarray, ...],
        batched: Sequence[tuple[np.ndarray, npt.DTypeLike, Any]],
        points: int,
        tag: tuple[Any, str],
        expand: Callable[..., list[np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, ...]:
        """program.run over the batched inputs, chunk by chunk; each output in float64.

        batched: (array, dtype, fill) triples, one row per batch member; the last chunk is
        padded with fill. fixed: inputs passed whole to every chunk. points: evaluations of f
        per member, for the progress bar. tag: (leaf position, kind), naming the chunks in
        the journal, where a chunk already recorded is read instead of run. expand: what
        makes a chunk's program inputs from its batched inputs (None: they are the inputs).
        """
        batched = [(np.asarray(x), dtype, fill) for x, dtype, fill in batched]
        n, slot = len(batched[0][0]), self._slot(tag)
        outs, s = [], 0
        while s < n:  # chunks of the program's size (which `_settle` may make smaller)
            size = program.size
            args = [
                *fixed,
                *(_padded(x[s : s + size], size, dtype, fill) for x, dtype, fill in batched),
            ]
            took: list[float] = []

            def run(
                args: list[Any] = args,
                program: Compiled = program,
                residuals: list = residuals,
                took: list[float] = took,
            ) -> list[np.ndarray]:
                start = _progress.clock()
                inputs = args if expand is None else expand(*args)
                inputs = self._global_inputs(inputs, tag[1]) if self._global else inputs
                out = program.run(residuals, *inputs)
                wait(out)
                out = [self._gather(x) for x in out]
                took.append(_progress.clock() - start)  # only where computed, not read back
                return out

            outs.append(_journal.through(self.journal, (tag, size), args, run))
            done, s = min(size, n - s), s + size
            if took and program.flops is not None:  # the pace that bounds first chunks
                self._timed[0] += program.flops * size / self._n
                self._timed[1] += took[0]
            if self.progress is not None:
                # the program's time per point, padding included; not that of a first chunk
                # the estimate bounded (a few points, where the first run's overhead shows)
                if took and (slot in self._sized or program.most <= program.size):
                    self.progress.pace(size * points, took[0], done * points)
                self.progress.update(done * points)
            if slot not in self._sized:
                left = self.progress.left() if self.progress is not None else (n - s) * points
                seconds = took[0] if took else None
                program, residuals = self._settle(slot, program, residuals, seconds, left // points)
        return tuple(np.concatenate(parts)[:n] for parts in zip(*outs))

    # ---- along random directions (directional mode): f at θ + t·v, v drawn on the device

    def _along(self, leaf: Leaf) -> Callable:
        """f at θ + t·v for unit Gaussian directions v over the leaf (or a labelled part)."""
        g_fn = self._with_leaf(leaf)
        jnp = jax.numpy

        def one(
            base_flat: jax.Array,
            params_dyn: list[Any],
            args_dyn: list[Any],
            labels: jax.Array,
            grad: jax.Array,
            ts: jax.Array,
            key: jax.Array,
            group: jax.Array,
        ) -> tuple[jax.Array, jax.Array, jax.Array]:
            mask = labels == group
            # float32 draws cost half the random bits of float64, and the sequential threefry
            # 0.6x the time of the partitionable one: any direction will do.
            with jax.threefry_partitionable(False):
                v = jax.random.normal(key, base_flat.shape, np.float32)
            v = v.astype(base_flat.dtype) * mask
            v = v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)
            # The points share the direction (drawn once) and one copy of fn's graph.
            xs = base_flat[None] + ts[:, None] * v[None]
            fs = jax.vmap(lambda x: g_fn(x.reshape(leaf.shape), params_dyn, args_dyn))(xs)
            ss = jax.vmap(lambda x: jnp.dot(grad, x - base_flat))(xs)
            weights = jnp.stack([jnp.dot(jnp.abs(grad), jnp.abs(v)), jnp.sum(jnp.abs(v))])
            return fs, ss, weights

        return jax.vmap(one, in_axes=(None,) * 6 + (0, 0))

    def direction_cost(self, leaf: Leaf) -> float | None:
        """A direction's cost over one element evaluation's, from XLA's cost analysis of the
        two compiled programs (FLOPs plus bytes accessed, per member); None if unknown."""

        def per_member(kind: str) -> float | None:
            program = self.prepare(leaf, kind)[1]  # compiled (the check needs both)
            try:
                cost = program.run.cost_analysis()
                cost = cost[0] if isinstance(cost, (list, tuple)) else cost
                return (float(cost["flops"]) + float(cost["bytes accessed"])) / program.size
            except Exception:  # noqa: BLE001 - a backend that does not say
                return None

        d, e = per_member("direction"), per_member("element")
        return d / e if d and e else None

    def evaluate_along(
        self,
        leaf: Leaf,
        grad: np.ndarray,
        keys: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        ts: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """For each direction b: f and ⟨grad, x − θ⟩ at x = θ + ts[j]·v_b, and (⟨|grad|, |v_b|⟩,
        Σ|v_b|). v_b: a unit Gaussian direction drawn from keys[b] (uint32[2]) on the elements
        whose label equals groups[b], zero elsewhere. Arrays [B, len(ts)], [B, len(ts)], [B, 2].
        """
        if self.progress is not None:
            self.progress.at(leaf.path)
        base, program, residuals = self.prepare(leaf, "direction")
        fixed = (
            np.asarray(labels, np.int32),
            np.asarray(grad, base.dtype),
            np.asarray(ts, base.dtype),
        )
        batched = [(keys, np.uint32, 0), (groups, np.int32, -1)]
        tag = (leaf.position, "direction")
        return self._run_chunks(program, residuals, fixed, batched, points=len(ts), tag=tag)


def wait(outputs: Sequence[jax.Array]) -> None:
    """Return once the outputs are computed, where Ctrl-C stops the wait at once: XLA's own
    wait holds the main thread in C++, where Python sees a signal only when the chunk is done.
    Another thread waits instead. Left behind by a Ctrl-C, it ends with the chunk; not a
    daemon, as a daemon thread still inside XLA when the interpreter exits aborts it."""
    if all(x.is_ready() for x in outputs):  # type: ignore[attr-defined]  # (not in the stubs)
        return
    done = threading.Event()

    def block() -> None:
        try:
            jax.block_until_ready(outputs)
        finally:
            done.set()

    threading.Thread(target=block, name="jaxcheck-wait").start()
    done.wait()


def _padded(x: np.ndarray, size: int, dtype: npt.DTypeLike, fill: Any) -> np.ndarray:
    """x's rows, then `fill` up to `size` rows, in `dtype` (a chunk's batched input)."""
    pad = size - len(x)
    return np.concatenate([x, np.full((pad, *np.shape(x)[1:]), fill)]).astype(dtype)


def _batched(kind: str) -> tuple[bool, ...]:
    """Which per-chunk inputs are batched (one row per perturbation, split over devices):
    element: indices, values; direction: labels, gradient, steps (whole), keys, groups."""
    return (True, True) if kind == "element" else (False, False, False, True, True)
