"""What a check turns on while it runs: float64 where asked, full-precision matmuls, and
JAX's persistent compilation cache."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import numpy as np


def working_dtype(precision: str, *, traced: bool) -> Any:
    """leaf -> the dtype a check works in: float64; or under "native" the leaf's own, as JAX
    computes it under the current config when fn is traced (float64 becomes float32 without
    x64). Complex leaves get the complex counterpart (`Coords.cast`)."""
    if precision != "native":
        return lambda leaf: np.float64
    if traced:
        return lambda leaf: jax.dtypes.canonicalize_dtype(leaf.dtype)
    return lambda leaf: leaf.dtype


@contextlib.contextmanager
def numerics(precision: str):
    """float64 where asked, and full-precision matmuls (no TF32 or bf16 passes) always."""
    with contextlib.ExitStack() as stack:
        if precision != "native":
            stack.enter_context(jax.enable_x64(True))
        stack.enter_context(jax.default_matmul_precision("highest"))
        yield


CACHE_ENV = "JAXCHECK_CACHE_DIR"


def compilation_cache(cache_dir: str | os.PathLike | None) -> None:
    """Turn on JAX's persistent compilation cache in cache_dir (None: $JAXCHECK_CACHE_DIR,
    else leave JAX's own setting alone), for every compilation of this process from now on.

    Every executable is cached, however fast it compiled (JAX's defaults skip those under a
    second, which is most of a check's), so a rerun in a fresh process compiles nothing.
    """
    path = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    if path is None:
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir={cache_dir!r}: pass a directory path (a str or os.PathLike), or None "
            f"for ${CACHE_ENV} or no persistent cache."
        )
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"cache_dir={os.fspath(cache_dir or path)!r} cannot be used as the compilation "
            f"cache: {e.strerror}. Give a directory you can write to."
        ) from None
    if jax.config.jax_compilation_cache_dir == path:  # type: ignore[attr-defined]
        return
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cc.reset_cache()  # JAX reads the directory once: read it again
