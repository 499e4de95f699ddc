"""The progress bar of long checks: tqdm's, when it is installed (`pip install jaxcheck[progress]`).

tqdm is an optional dependency: a check without it runs the same, silently. The bar counts
evaluated points, appears only after two seconds (short checks print nothing), and by default
only on a terminal, so logs and notebooks' captured output stay clean.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from typing import Protocol

DELAY_S = 2.0


def ask(progress: bool | None) -> bool | None:
    """The validated option; True without tqdm installed is an error, before any work."""
    if progress and importlib.util.find_spec("tqdm") is None:
        raise ImportError(
            "progress=True needs tqdm: pip install 'jaxcheck[progress]' (or pip install tqdm), "
            "or pass progress=None to show a bar only where tqdm is available."
        )
    return progress


class Progress(Protocol):
    """What an evaluator tells of its progress: points finished, and the end."""

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class _Silent:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def bar(progress: bool | None, total: int) -> Progress:
    """An object with update(n) and close(): a tqdm bar, or a silent stand-in."""
    if progress is False or importlib.util.find_spec("tqdm") is None:
        return _Silent()
    with warnings.catch_warnings():  # in Jupyter without ipywidgets: the text bar, no warning
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc="jaxcheck",
        unit="pt",
        unit_scale=True,
        delay=DELAY_S,
        disable=None if progress is None else False,  # None: only on a terminal
        file=sys.stderr,
        leave=False,
    )
