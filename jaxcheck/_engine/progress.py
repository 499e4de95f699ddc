"""What a long check says on stderr while it runs: its cost, its progress, where it stopped.

- The cost line: once the first chunk of perturbations has been computed, a check whose
  estimate (points left × the first chunk's time per point) exceeds COST_S says so in one line,
  with what a faster mode would evaluate. The first chunk's time excludes compilation: the
  engines compile their programs ahead of time, before the first chunk runs.
- Progress: tqdm's bar on a terminal where tqdm is installed (`pip install jaxcheck[progress]`);
  elsewhere (the base install, a log file, a notebook's captured stderr) a plain line every
  EVERY_S seconds: points done of the total, the percentage, the time left. Either appears only
  after DELAY_S seconds, so short checks print nothing. progress=False: none of it.
- Ctrl-C: one line saying what was evaluated and how a re-run resumes (journal=), then the
  KeyboardInterrupt goes on (`interruptions`), so scripts and test runners stop as before.

Every line is a plain `print` to stderr, not a warning: it appears once, whatever the warning
filters, also where stderr is not a terminal (`python script.py 2> log`) and in notebooks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

DELAY_S = 2.0  # nothing is shown before a check has run this long
EVERY_S = 15.0  # seconds between the plain progress lines
COST_S = 30.0  # the cost line: only for a check estimated to take longer than this
clock = time.monotonic  # every duration here and in the engines (tests replace it)

_SAID = "_jaxcheck_said"  # set on a KeyboardInterrupt once its line has been printed


def has_tqdm() -> bool:
    """Whether tqdm is installed (`jaxcheck[progress]`)."""
    return importlib.util.find_spec("tqdm") is not None


def ask(progress: bool | None) -> bool | None:
    """The validated option; True without tqdm installed is an error, before any work."""
    if progress and not has_tqdm():
        raise ImportError(
            "progress=True needs tqdm: pip install 'jaxcheck[progress]' (or pip install tqdm), "
            "or pass progress=None to show a bar only where tqdm is available."
        )
    return progress


def said(e: BaseException) -> bool:
    """Whether a check has already said in its own line what this interruption stopped (the CLI
    then says nothing more)."""
    return bool(vars(e).get(_SAID))


def _say(line: str, bar: Any = None) -> None:
    if bar is not None:  # a line printed under tqdm's bar would be overwritten by it
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


class Progress:
    """One computation's progress, told by the engines: `update` (points finished), `pace`
    (how long computed points took), `at` (the leaf being evaluated); `close` at the end.

    Made with the progress option before anything is known; `start` gives the total (the
    points a passing check evaluates), the leaves in the order they are checked, and for the
    cost line what is checked and the faster alternative.
    """

    def __init__(self, option: bool | None, total: int = 0):
        self.option = option
        self.total = total
        self.done = 0
        self.started = False
        self._leaves: list[str] = []
        self._leaf: str | None = None
        self._what = ""
        self._faster = ""
        self._bar: Any = None
        self._lines = False
        self._t0 = self._last = clock()
        self._costed = False

    def start(
        self, total: int, leaves: Sequence[str] = (), what: str = "", faster: str = ""
    ) -> Progress:
        """From now on points are evaluated: `total` of them, over `leaves` in this order; the
        cost line names `what` is checked ("full check") and the `faster` alternative."""
        self.close()
        self.total, self.done, self.started = total, 0, True
        self._leaves, self._leaf = list(leaves), None
        self._what, self._faster = what, faster
        self._t0 = self._last = clock()
        self._costed = not what  # no cost line where nobody said what the points are
        self._bar, self._lines = None, False
        if self.option is False:
            return self
        if has_tqdm() and (self.option or _on_terminal()):
            with warnings.catch_warnings():  # in Jupyter without ipywidgets: the text bar
                warnings.simplefilter("ignore")
                from tqdm.auto import tqdm as _tqdm

            self._bar = _tqdm(
                total=total,
                desc="jaxcheck",
                unit="pt",
                unit_scale=True,
                delay=DELAY_S,
                file=sys.stderr,
                leave=False,
            )
        else:  # the base install, or stderr not a terminal: plain lines, never silence
            self._lines = True
        return self

    def at(self, leaf: str) -> None:
        """The engines evaluate points of this leaf now."""
        self._leaf = leaf

    def update(self, n: int) -> None:
        """n more points finished (computed, or read back from the journal)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines:
            now = clock()
            if now - self._t0 >= DELAY_S and (
                now - self._last >= EVERY_S or self._last == self._t0
            ):
                self._last = now
                _say(self._line(now))

    def pace(self, points: int, seconds: float, finished: int = 0) -> None:
        """`points` evaluations were just computed in `seconds` (compilation excluded), of
        which `finished` are not yet told by `update`: the first such chunk sets the pace of
        the cost line (said before the progress line `update` may print)."""
        if self._costed or self.option is False or points <= 0:
            return
        self._costed = True
        left = max(self.total - self.done - finished, 0) * seconds / points
        if left > COST_S:
            estimate = clock() - self._t0 + left
            line = (
                f"jaxcheck: this {self._what} evaluates fn at {self.total:,} points, about "
                f"{_duration(estimate)} at the pace of its first chunk"
            )
            line += f"; {self._faster}" if self._faster else ""
            _say(line + "; progress=False silences this line", self._bar)

    def left(self) -> int:
        """Points still to evaluate, as far as the total knows."""
        return max(self.total - self.done, 0)

    def _line(self, now: float) -> str:
        if self.done > self.total:  # a failing check looks again where it failed
            return (
                f"jaxcheck: {self.done:,} points, past the {self.total:,} of a passing check: "
                "looking again where elements failed"
            )
        line = f"jaxcheck: {self.done:,} of {self.total:,} points"
        if 0 < self.done < self.total:
            left = (self.total - self.done) * (now - self._t0) / self.done
            line += f" ({100 * self.done // self.total}%), about {_duration(left)} left"
        return line

    def where(self) -> str:
        """What has been evaluated, for the line said at an interruption."""
        if not self.started or self.done == 0:
            return "before its first chunk of perturbed points was evaluated"
        where = f"after {self.done:,} of {self.total:,} points"
        if self.done > self.total:
            where = f"after {self.done:,} points (a passing check evaluates {self.total:,})"
        if self._leaf is not None and self._leaf in self._leaves:
            k = self._leaves.index(self._leaf)
            where += f", in leaf {k + 1} of {len(self._leaves)} ({self._leaf})"
        return where

    def close(self) -> None:
        """The bar removed (the plain lines need no closing); closing twice is harmless."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._lines = False

    @contextlib.contextmanager
    def interruptions(
        self, journal: str | os.PathLike | None, resumable: bool = True
    ) -> Iterator[None]:
        """A KeyboardInterrupt inside is said in one line on stderr (what was evaluated, and
        how a re-run resumes: from the journal, or with one), then raised on, marked `said`."""
        try:
            yield
        except KeyboardInterrupt as e:
            self.close()
            line = f"jaxcheck: interrupted {self.where()}"
            if resumable and journal is not None:
                line += f"; the same call resumes from the journal {os.fspath(journal)}"
            elif resumable:
                line += '; with journal="check.jsonl" a re-run resumes where it stops'
            if self.option is not False and not said(e):
                _say(line)
                vars(e)[_SAID] = True
            raise


def bar(progress: bool | None, total: int) -> Progress:
    """A started `Progress` of `total` points (no cost line): tqdm's bar, or plain lines."""
    return Progress(progress).start(total)


def shrink(size: int, seconds: float, longest: float) -> int:
    """A chunk size (a power of two below `size`) whose chunk should take at most `longest`
    seconds, where `size` points took `seconds` (or any measure of a chunk's length, in
    `longest`'s unit: the engines also bound a first chunk by its FLOPs)."""
    halvings = math.ceil(math.log2(seconds / longest))
    return max(1, size >> max(halvings, 0))
