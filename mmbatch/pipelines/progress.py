"""Progress a person can read: one line per step (``steps[1] embed``) with the rows it has
seen, the errors born in it and its rate; refreshed in place in a terminal, printed as plain
lines at most every 30 s otherwise. No Ray here: ``poll`` returns the step counters."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO

Stats = dict[str, dict[str, float]]


def step_lines(stats: Stats, elapsed: float) -> list[str]:
    lines = []
    for label, s in stats.items():
        rate = s.get("rows", 0) / elapsed if elapsed > 0 else 0.0
        lines.append(f"  {label}: {int(s.get('rows', 0)):,} rows, {int(s.get('errors', 0)):,} errors born here, "
                     f"{rate:,.1f} rows/s")
    return lines


class Progress:
    """A background thread that shows ``poll()`` every ``interval`` seconds while the
    ``with`` block runs (default: 1 s in a terminal, 30 s in a log)."""

    def __init__(self, poll: Callable[[], Stats], stream: IO[str] | None = None, interval: float | None = None) -> None:
        self.poll, self.stream = poll, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval if interval is not None else (1.0 if self.tty else 30.0)
        self.start = time.perf_counter()
        self.shown = 0  # lines drawn last time (terminal)
        self._stop = threading.Event()

    def show(self) -> None:
        try:
            stats = self.poll()
        except Exception:  # noqa: BLE001 - progress must never break a run
            return
        elapsed = time.perf_counter() - self.start
        lines = step_lines(stats, elapsed)
        if not lines:
            return
        if self.tty:
            up = f"\x1b[{self.shown}F" if self.shown else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.shown = len(lines)
        else:
            self.stream.write(f"progress after {elapsed:.0f} s\n" + "".join(f"{line}\n" for line in lines))
        self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.show()

    def __enter__(self) -> Progress:
        self._thread = threading.Thread(target=self._loop, name="mmbatch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
