"""Progress as a callback: the one path by which a run's progress reaches whoever displays it.

Every run reports through its :class:`tilepilot.agents.runs.RunProgress`; the API turns that into
:class:`ProgressEvent` values for a plain callable. The CLI's callback draws a bar or periodic lines
(:func:`console_progress`), the MCP server's sends progress notifications, a script can log them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Optional

from pydantic import BaseModel


class ProgressEvent(BaseModel):
    """``start`` once, ``update`` as work gets done, ``end`` when the run stops (``ok`` False: it failed)."""

    kind: Literal["start", "update", "end"]
    label: str
    done: float = 0.0
    total: Optional[float] = None
    unit: str = ""
    ok: bool = True


ProgressCallback = Callable[[ProgressEvent], None]


class CallbackSink:
    """A :class:`tilepilot.agents.runs.ProgressSink` that hands each change to ``callback``."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.label, self.total, self.unit, self.done = "", None, "", 0.0

    def start(self, label: str, total: float | None, unit: str) -> None:
        self.label, self.total, self.unit, self.done = label, total, unit, 0.0
        self.callback(ProgressEvent(kind="start", label=label, total=total, unit=unit))

    def update(self, done: float) -> None:
        self.done = done
        self.callback(ProgressEvent(kind="update", label=self.label, done=done, total=self.total, unit=self.unit))

    def close(self, ok: bool = True) -> None:
        self.callback(ProgressEvent(kind="end", label=self.label, done=self.done, total=self.total, unit=self.unit, ok=ok))


def sink_for(callback: ProgressCallback | None) -> CallbackSink | None:
    return None if callback is None else CallbackSink(callback)


def console_progress(console) -> ProgressCallback:
    """The CLI's display: a rich bar on a terminal, plain periodic lines in a log (``ConsoleProgress``)."""
    from tilepilot.agents.progress import ConsoleProgress

    display = ConsoleProgress(console)

    def show(event: ProgressEvent) -> None:
        if event.kind == "start":
            display.start(event.label, event.total, event.unit)
        elif event.kind == "update":
            display.update(event.done)
        else:
            display.close(event.ok)

    return show
