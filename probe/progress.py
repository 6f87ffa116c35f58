"""Progress on stderr that also reaches logs: a tqdm bar on a terminal, one line every few seconds otherwise.

tqdm draws nothing useful when stderr is not a terminal (a log file, a cluster job, CI, a pipe), so a long command
would print nothing for minutes. :func:`progress_bar` gives a bar with ``update(n)`` and ``close()`` either way:
on a terminal, tqdm; elsewhere, :class:`LineProgress`, which prints ``<desc>: 12/40 runs (30%), 25 s`` at most every
``every`` seconds and once at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: seconds between two progress lines when stderr is not a terminal.
LINE_EVERY = 5.0


class NoProgress:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """``<desc>: done/total unit (percent), elapsed`` on ``stream`` at most every ``every`` seconds, and at close."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, every: float = LINE_EVERY,
                 stream: TextIO | None = None, clock=time.monotonic):
        self.total, self.desc, self.unit, self.n, self.every = int(total), desc, unit, int(initial), float(every)
        self._stream = stream
        self._clock = clock
        self._started = self._last = clock()
        self._closed = False

    def _line(self) -> str:
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total > 0 else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{share}, {self._clock() - self._started:.0f} s"

    def _print(self) -> None:
        print(self._line(), file=self._stream or sys.stderr, flush=True)
        self._last = self._clock()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self._clock() - self._last >= self.every:
            self._print()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()


def progress_bar(total: int, desc: str, unit: str, *, enabled: bool = True, initial: int = 0,
                 leave: bool = True, every: float = LINE_EVERY) -> Any:
    """A progress bar on stderr: tqdm on a terminal, :class:`LineProgress` elsewhere, :class:`NoProgress` when not
    ``enabled``."""
    if not enabled:
        return NoProgress()
    if not sys.stderr.isatty():
        return LineProgress(total, desc, unit, initial=initial, every=every)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave, file=sys.stderr)
