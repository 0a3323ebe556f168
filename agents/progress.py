"""How the CLI shows a run's progress: a rich bar on a terminal, plain periodic lines otherwise.

Logs (CI, ``nohup``, a pipe) get one line every ``every_s`` seconds and a last line at the end,
so a long run shows it is alive without a carriage-return bar smeared over the file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY_S = 10.0


class ConsoleProgress:
    """A :class:`tilepilot.agents.runs.ProgressSink` that renders on ``console`` (stderr)."""

    def __init__(self, console: Console, *, every_s: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic,
                 terminal: bool | None = None) -> None:
        self.console = console
        self.every_s = every_s
        self.clock = clock
        self.terminal = console.is_terminal if terminal is None else terminal
        self._lock = threading.Lock()
        self._bar: tuple[Progress, TaskID] | None = None  # the terminal's bar and its one task
        self._label, self._unit, self._total = "", "", None
        self._started = self._last_line = 0.0
        self._done = 0.0
        self._shown: float | None = None

    def start(self, label: str, total: float | None, unit: str) -> None:
        with self._lock:
            self._label, self._unit, self._total = label, unit, total
            self._started = self._last_line = self.clock()
            if self.terminal:
                bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                               TextColumn("{task.completed:.0f}/{task.total:.0f} " + unit), TimeElapsedColumn(),
                               TimeRemainingColumn(), console=self.console, transient=True)
                bar.start()
                self._bar = bar, bar.add_task(label, total=total)

    def update(self, done: float) -> None:
        with self._lock:
            self._done = done
            if self._bar is not None:
                bar, task = self._bar
                bar.update(task, completed=done)
            elif self.clock() - self._last_line >= self.every_s:
                self._line()

    def relabel(self, label: str) -> None:
        """Change the label shown from now on (a running figure such as the training loss)."""
        with self._lock:
            self._label = label
            if self._bar is not None:
                bar, task = self._bar
                bar.update(task, description=label)

    def close(self, ok: bool = True) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar[0].stop()
                self._bar = None
            elif ok and self._label and self._shown != self._done:
                self._line()

    def _line(self) -> None:
        self._last_line = self.clock()
        self._shown = self._done
        elapsed = self._last_line - self._started
        of = f"/{self._total:.0f}" if self._total else ""
        share = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        self.console.print(f"{self._label}: {self._done:.0f}{of} {self._unit}{share} after {elapsed:.0f} s",
                           markup=False, highlight=False)
