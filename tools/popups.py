"""Suggestion lists that typing opens (auto-complete popups), found before the next click.

Real apps show these lists in override-redirect X windows on top of everything: GTK's entry
completion (the file chooser's location field), Chromium's datalist and autofill lists. GTK's list
grabs the pointer, so while it shows, a click anywhere outside it only closes it: mousepad's Open
button, clicked while the location field still offered 'report.txt' and 'report.txt.orig', did
nothing (task ``mousepad-open-completion``). Chromium's list takes no grab: a click outside it
reaches its target and closes the list on the way.

:class:`TypingPopups` remembers which such windows showed when a run of typing began. Before the
next pointer action the executor asks :meth:`TypingPopups.left_open` for the ones opened since, still
showing, that the action does not land on (landing on one is choosing a suggestion), and, when the
pointer is grabbed (:meth:`TypingPopups.pointer_grabbed`), lets a first click close them. Escape is
no way to close them: with no suggestion selected, GTK closes the list *and* passes the key on, and
the file chooser then dropped its location field with the typed path. Any other action (a key, a
hotkey, the run's end) forgets the typing: the keyboard deals with the list itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tilepilot.tools.errors import DisplayUnavailableError
from tilepilot.tools.ui_unicode import xauthority_fallback

Box = tuple[int, int, int, int]  # left, top, width, height in screen pixels

MIN_SIDE = 8  # smaller override-redirect windows are helpers (Chromium keeps a 1x1 one off screen), not lists
CLOSE_TIMEOUT_S = 1.0
POLL_S = 0.05


class TypingPopups:
    """The override-redirect windows of one X display, compared before and after typing."""

    def __init__(self, display: str | None) -> None:
        self.display = display  # None: $DISPLAY, as python-xlib reads it
        self._conn: Any = None
        self._before: frozenset[int] | None = None  # windows showing when the current run of typing began

    def typing_starts(self) -> None:
        if self._before is None:  # several type actions in a row count from the first
            self._before = frozenset(self.showing())

    def forget(self) -> None:
        self._before = None

    def left_open(self, points: Sequence[tuple[int, int]]) -> dict[int, Box]:
        """Popups opened since typing began and still showing, unless a point lands on one of them.

        Forgets the typing: it is asked once, before the pointer action that follows it.
        """
        before, self._before = self._before, None
        if before is None:
            return {}
        opened = {wid: box for wid, box in self.showing().items() if wid not in before}
        if any(_inside(point, box) for point in points for box in opened.values()):
            return {}
        return opened

    def wait_closed(self, windows: dict[int, Box], timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Whether all ``windows`` stopped showing within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while windows.keys() & self.showing().keys():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def pointer_grabbed(self) -> bool:
        """Whether another client holds the pointer (a popup that takes the next click for itself).

        Asked by trying to grab it: X answers AlreadyGrabbed (or GrabFrozen) then; a grab that
        succeeds is released at once.
        """
        from Xlib import X

        conn = self._display()
        status = conn.screen().root.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
        if status == X.GrabSuccess:
            conn.ungrab_pointer(X.CurrentTime)
            conn.sync()
        return status in (X.AlreadyGrabbed, X.GrabFrozen)

    def showing(self) -> dict[int, Box]:
        """Mapped override-redirect top-level windows (popups, menus, tooltips) by window id."""
        from Xlib import X
        from Xlib.error import XError

        found: dict[int, Box] = {}
        for window in self._display().screen().root.query_tree().children:
            try:
                attrs = window.get_attributes()
                if not attrs.override_redirect or attrs.map_state != X.IsViewable:
                    continue
                geo = window.get_geometry()
            except XError:
                continue  # it went away while being read
            if geo.width >= MIN_SIDE and geo.height >= MIN_SIDE:
                found[window.id] = (geo.x, geo.y, geo.width, geo.height)
        return found

    def _display(self) -> Any:
        if self._conn is None:
            from Xlib import display as xdisplay  # python-xlib, installed with pyautogui on Linux

            try:
                with xauthority_fallback():
                    self._conn = xdisplay.Display(self.display)
            except Exception as exc:  # python-xlib raises several unrelated types for a bad display
                raise DisplayUnavailableError(
                    f"cannot list the windows of X display {self.display!r}: is the X server running? ({type(exc).__name__})"
                ) from None
        return self._conn


def _inside(point: tuple[int, int], box: Box) -> bool:
    x, y = point
    left, top, width, height = box
    return left <= x < left + width and top <= y < top + height
