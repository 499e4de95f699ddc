"""Where a check's batches run: the memory they may use, and the mesh of devices the
perturbations are split over."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

CPU_MEMORY_CAP = 2 * 2**30


def default_max_memory() -> int:
    """Bytes a check may use: a quarter of an accelerator's memory; on CPU min(2 GiB, RAM/8)."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            return int(device.memory_stats()["bytes_limit"]) // 4
        except Exception:  # noqa: BLE001 - backends that do not report memory
            return CPU_MEMORY_CAP
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return CPU_MEMORY_CAP
    return min(CPU_MEMORY_CAP, ram // 8)


def mesh(devices: Sequence[Any] | None):
    """The 1-D mesh the perturbations are split over: all devices by default (every
    process's, after jax.distributed.initialize) when there are several, the given ones, or
    None for one device (no sharding)."""
    if devices is None:  # with jax.distributed: every process's devices
        devices = jax.devices()
    devices = list(devices)
    if len(devices) <= 1:
        return None
    return jax.sharding.Mesh(np.array(devices), ("p",))
