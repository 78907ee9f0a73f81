"""A progress display on stderr with the standard library only.

On a terminal: one line redrawn in place (at most ten times a second). Otherwise (CI logs, pipes):
a plain line every ``interval`` seconds and one at the end, so a log shows that the run advances
without a line per session.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

__all__ = ["ProgressBar"]

_REDRAW = 0.1


class ProgressBar:
    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = 2.0,
        label: str = "sessions",
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.interval = interval
        self.label = label
        self._lock = threading.Lock()
        self._last = 0.0
        self._closed = False
        self._previous = ""
        self._state = (0, "")

    def _text(self, done: int, detail: str) -> str:
        return f"{self.label} {done}/{self.total}" + (f"  {detail}" if detail else "")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not stop the run

    def update(self, done: int, detail: str = "") -> None:
        with self._lock:
            if self._closed:
                return
            self._state = (done, detail)
            now = time.monotonic()
            if self.tty:
                if now - self._last < _REDRAW and done < self.total:
                    return
                self._last = now
                self._draw(done, detail)
            elif now - self._last >= self.interval:
                self._last = now
                self._line(self._text(done, detail))

    def start(self) -> None:
        """Begin: the first plain line comes one interval later, so a short run prints only its last."""
        with self._lock:
            self._last = time.monotonic()
            if self.tty:
                self._draw(0, "")

    def _line(self, text: str) -> None:
        if text != self._previous:
            self._previous = text
            self._write(text + "\n")

    def _draw(self, done: int, detail: str) -> None:
        width = max(shutil.get_terminal_size((80, 20)).columns - 1, 20)
        text = self._text(done, detail)
        bar_width = max(min(30, width - len(text) - 3), 0)
        filled = round(bar_width * min(done, self.total) / self.total)
        bar = f"[{'#' * filled}{'.' * (bar_width - filled)}] " if bar_width >= 5 else ""
        self._write("\r\x1b[K" + (bar + text)[:width])

    def finish(self, done: int | None = None, detail: str | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            last_done, last_detail = self._state
            done = last_done if done is None else done
            detail = last_detail if detail is None else detail
            if self.tty:
                self._draw(done, detail)
                self._write("\n")
            else:
                self._line(self._text(done, detail))
