"""The one progress helper for long work: a bar on a terminal, plain periodic lines elsewhere.

``track`` wraps an iterable (``for x in track(items, desc="validate", unit="img")``) or is used
as a context manager with manual counting (``with track(total=n, desc="align") as p: p.update(k)``).
Output goes to stderr, so stdout stays clean for piping.

- stderr is a terminal: a tqdm bar with rate and ETA.
- otherwise (CI, log files, pipes, dvc): one plain line every ``FACEFOUNDRY_PROGRESS_EVERY``
  seconds (default 30) and a final line when the work ends (work shorter than that prints nothing), e.g.
  ``[12:01:02] validate render: 1200/5000 img (24%), 310.2 img/s, ETA 0:00:12``.
- ``FACEFOUNDRY_PROGRESS=bar|lines|off`` forces a mode.

Log lines written with :func:`write_line` do not tear an open bar.

Progress only observes: it never changes what is iterated, in what order, or any result.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

MODES = ("bar", "lines", "off")
DEFAULT_EVERY = 30.0
_screen = {"bars": 0}  # tqdm bars on screen: log lines must go through tqdm.write then


def progress_mode() -> str:
    """``FACEFOUNDRY_PROGRESS`` when set to a known mode, else ``bar`` on a terminal and ``lines`` otherwise."""
    forced = os.environ.get("FACEFOUNDRY_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        tty = False
    return "bar" if tty else "lines"


def line_interval() -> float:
    """Seconds between plain progress lines (``FACEFOUNDRY_PROGRESS_EVERY``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("FACEFOUNDRY_PROGRESS_EVERY", DEFAULT_EVERY)))
    except ValueError:
        return DEFAULT_EVERY


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress(Generic[T]):
    """Progress of one piece of work; make it with :func:`track`."""

    def __init__(
        self,
        iterable: Iterable[T] | None,
        total: int | None,
        desc: str,
        unit: str,
        initial: int,
        leave: bool,
        disable: bool,
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.initial = initial
        self.mode = "off" if disable else progress_mode()
        self.every = line_interval()
        self._postfix = ""
        self._closed = False
        self._t0 = self._last = time.perf_counter()
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr, dynamic_ncols=True
            )
            _screen["bars"] += 1

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("track() was given no iterable; use update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except BaseException:  # an error, or the loop left early: no "done" line
            self._finish(done=False)
            raise
        self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._finish(done=exc_type is None)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.perf_counter()
            if now - self._last >= self.every and not (self.total and self.n >= self.total):  # the end: final line
                self._last = now
                self._line(now, final=False)

    def set_postfix(self, **values: object) -> None:
        """Extra ``key=value`` fields shown after the counts (e.g. a running loss)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """End the bar, or write the final line; later calls do nothing."""
        self._finish(done=True)

    def _finish(self, done: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            _screen["bars"] -= 1
        elif self.mode == "lines" and done:
            now = time.perf_counter()
            if now - self._t0 >= self.every:  # work shorter than one interval ends silently
                self._line(now, final=True)

    def _line(self, now: float, final: bool) -> None:
        elapsed = now - self._t0
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
            if self.total
            else f"{self.n} {self.unit}"
        ]
        parts.append(f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s/{self.unit}")
        if final:
            parts.append(f"done in {_hms(elapsed)}")
        elif self.total:
            parts.append(f"ETA {_hms(max(0, self.total - self.n) / rate)}" if rate > 0 else "ETA ?")
        if self._postfix:
            parts.append(self._postfix)
        head = f"{self.desc}: " if self.desc else ""
        write_line(f"[{time.strftime('%H:%M:%S')}] {head}" + ", ".join(parts))


def write_line(line: str) -> None:
    """Print one line to stderr, above any open progress bar rather than through it."""
    if _screen["bars"] > 0:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


@overload
def track(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    disable: bool = False,
) -> Progress[T]: ...


@overload
def track(
    iterable: None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    disable: bool = False,
) -> Progress[Any]: ...


def track(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = False,
    disable: bool = False,
) -> Progress[T]:
    """Progress of long work: iterate over it, or use it as a context manager and call ``update(n)``.

    ``total`` defaults to ``len(iterable)``; ``initial`` counts work already done (a resumed run);
    ``leave`` keeps a finished bar on screen; ``disable`` shows nothing (e.g. on non-zero ranks).
    """
    return Progress(iterable, total, desc, unit, initial, leave, disable)
