"""Resumable checks: `check_grad(..., journal=PATH)` records every finished chunk.

The journal is a text file: a header line with fingerprints of what the check depends on
(the function, the parameters, the data, the options), then one line per finished chunk of
evaluations: a key (a hash of the chunk's inputs: leaf, kind, indices, values) and the
float64 outputs. Each line is written with one unbuffered `os.write` on a file opened for
appending, so a run killed at any moment (SIGKILL included) leaves whole lines, at worst a
torn last line, which is ignored. Started again with the same journal, the check runs the
same chunks in the same order (it is deterministic), finds each recorded one by its key and
computes only the rest. A decision a check makes from what it measured (a program's first
chunk size, bounded at the pace measured on other leaves; a smaller or larger chunk size, where
that chunk ran long or quick) is recorded the same way (`remember`), so that the resumed check
makes the same one and finds its chunks. A journal whose header names other parameters, data,
options or function is refused with a message saying which.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = "jaxcheck-journal-1"
PARTS = ("function", "parameters", "data", "options")


def fingerprint(fn, values, args, options: dict) -> dict[str, str]:
    """Hashes of what a check's results depend on, one per part of PARTS."""
    code = getattr(getattr(fn, "__code__", None), "co_code", b"")
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return {
        "function": _hash([name.encode(), code]),
        "parameters": _hash(_arrays(values)),
        "data": _hash(_arrays(args)),
        "options": _hash([json.dumps(options, sort_keys=True, default=repr).encode()]),
    }


def _arrays(tree: Any) -> list[bytes]:
    out = []
    for x in jax.tree_util.tree_leaves(tree):
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            a = np.asarray(x)
            out += [str((a.shape, a.dtype.str)).encode(), np.ascontiguousarray(a).tobytes()]
        else:
            out.append(repr(x).encode())
    return out


def _hash(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:32]


def chunk_key(tag: tuple, arrays) -> str:
    """The key of one chunk: its tag (leaf position, kind) and the bytes of its inputs."""
    parts = [repr(tag).encode()]
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        parts += [str((a.shape, a.dtype.str)).encode(), a.tobytes()]
    return _hash(parts)


def through(journal: Journal | None, tag: tuple, arrays, compute):
    """compute()'s outputs for the chunk (tag, arrays): read from the journal when recorded
    there, else computed and recorded (no journal: computed)."""
    if journal is None:
        return compute()
    key = chunk_key(tag, arrays)
    found = journal.lookup(key)
    if found is not None:
        return list(found)
    out = compute()
    journal.record(key, out)
    return out


def recall(journal: Journal | None, what: tuple) -> int | None:
    """The number `remember` recorded for `what` (None: none, or no journal)."""
    if journal is None:
        return None
    found = journal.records.get(chunk_key(("decision", what), []))
    return None if found is None else int(found[0][0])


def remember(journal: Journal | None, what: tuple, value: int) -> None:
    """Record a number the check decided for `what` (no journal: nothing to do)."""
    if journal is not None:
        journal.store(chunk_key(("decision", what), []), [np.array([value])])


class Journal:
    """The journal at `path`, opened for appending (created with the header if new)."""

    def __init__(self, path: str | os.PathLike, prints: dict[str, str]):
        self.path = Path(path)
        self.records: dict[str, tuple[np.ndarray, ...]] = {}
        self.replayed = 0
        self.computed = 0
        if not self.path.parent.is_dir():
            raise ValueError(
                f"journal={str(path)!r}: the directory {str(self.path.parent)!r} does not "
                "exist. Create it, or give a path in an existing directory."
            )
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._load(prints)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if fresh:
            self._append({"format": FORMAT, **prints})

    def _load(self, prints: dict[str, str]) -> None:
        lines = self.path.read_bytes().split(b"\n")
        try:
            header = json.loads(lines[0])
            assert header.get("format") == FORMAT
        except (ValueError, AssertionError):
            raise ValueError(
                f"{self.path} is not a jaxcheck journal. Give another path, or delete the file."
            ) from None
        differ = [p for p in PARTS if header.get(p) != prints[p]]
        if differ:
            raise ValueError(
                f"the journal {self.path} was made for other {' and '.join(differ)} than this "
                "check's: its results cannot be mixed in. Resume with exactly the same call, or "
                "give a new journal path (or delete this one) to start over."
            )
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                outputs = tuple(
                    np.frombuffer(base64.b64decode(v), np.float64).reshape(shape)
                    for v, shape in zip(entry["v"], entry["s"])
                )
            except (ValueError, KeyError, TypeError):
                continue  # the torn last line of a killed run
            self.records[entry["k"]] = outputs

    def _append(self, entry: dict) -> None:
        os.write(self._fd, (json.dumps(entry) + "\n").encode())

    def lookup(self, key: str) -> tuple[np.ndarray, ...] | None:
        found = self.records.get(key)
        if found is not None:
            self.replayed += 1
        return found

    def record(self, key: str, outputs) -> None:
        """A chunk's outputs appended under key (and counted in the note)."""
        self.computed += 1
        self.store(key, outputs)

    def store(self, key: str, outputs) -> None:
        """Outputs appended under key."""
        outputs = tuple(np.ascontiguousarray(np.asarray(o, np.float64)) for o in outputs)
        self.records[key] = outputs
        self._append({
            "k": key,
            "s": [list(o.shape) for o in outputs],
            "v": [base64.b64encode(o.tobytes()).decode() for o in outputs],
        })  # fmt: skip

    def close(self) -> None:
        """Closed (again: nothing to do); every line was written when it was recorded."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def note(self) -> str:
        total = self.replayed + self.computed
        return (
            f"journal {self.path}: {self.replayed} of {total} chunks replayed, "
            f"{self.computed} computed"
        )
