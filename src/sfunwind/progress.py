"""A small progress bar for work that takes more than a second (stderr, TTY only)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """``with Progress("unwinding", total) as p: ... p.advance()``.

    Draws nothing until one second has passed, nothing when stderr is not a terminal (or
    ``SFUNWIND_NO_PROGRESS`` is set), and redraws at most ten times a second.
    """

    def __init__(self, label: str, total: int | None = None, *, enabled: bool | None = None):
        self.label = label
        self.total = total
        self.done = 0
        self._start = time.monotonic()
        self._last = 0.0
        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("SFUNWIND_NO_PROGRESS")
        self.enabled = enabled
        self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn:
            self._draw(final=True)
            sys.stderr.write("\n")
            sys.stderr.flush()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start >= 1.0 and now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self, final: bool = False) -> None:
        self._drawn = True
        elapsed = time.monotonic() - self._start
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {elapsed:5.1f}s"
        else:
            text = f"\r{self.label} {self.done} {elapsed:5.1f}s"
        sys.stderr.write(text)
        sys.stderr.flush()


def track(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Iterate *items* with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total) as p:
        for item in items:
            yield item
            p.advance()
