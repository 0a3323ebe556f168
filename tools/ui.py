"""Carry out :mod:`tilepilot.tools.actions` on the X display with pyautogui (and xdotool for text).

Actions arrive in SCREEN coordinates (map model output first with ``Geometry.to_screen``).
Coordinates outside every monitor are rejected with :class:`OffScreenError` rather than
clamped: a clamped click lands somewhere the model never looked.

pyautogui connects to ``$DISPLAY`` when it is imported and keeps that connection (and its
keymap) for the life of the process, so it is imported lazily, once a display is known, and an
executor for a different display in the same process is refused.

Text goes through ``xdotool type``: ``pyautogui.write`` silently drops every character that is
not on the US keyboard ("Grüße" becomes "Gre"); xdotool types any Unicode text once the
characters are on keys (tools/ui_unicode.py binds them first, so none get dropped).

A suggestion list that typing opened (an auto-complete popup), still showing and holding the
pointer, would take the next click that does not land on it for itself and only close (GTK). So a
first click closes it, and the action follows once it is gone (tools/popups.py); the record says so
(``closed_popups``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol, cast

from pydantic import BaseModel, ConfigDict

from tilepilot.tools.actions import Action, Click, Done, Drag, Fail, Hotkey, Key, Move, Point, Scroll, Type, Wait
from tilepilot.tools.keys import TextRun, hotkey_keys, text_runs
from tilepilot.tools.errors import (
    ActionExecutionError,
    DisplayUnavailableError,
    FailSafeTriggered,
    OffScreenError,
    UIActionError,
)
from tilepilot.tools.popups import Box, TypingPopups
from tilepilot.tools.screen import Monitor, Screen, require_display
from tilepilot.tools.ui_unicode import type_text, xauthority_fallback

DEFAULT_PAUSE_S = 0.05  # after every pyautogui call; lets the app process the event
DEFAULT_TYPE_DELAY_MS = 12  # between keystrokes; xdotool's default (12) is reliable on Xvfb
DEFAULT_DRAG_SEGMENT_S = 0.1  # per path segment, so apps see intermediate motion events



class ActionRecord(BaseModel):
    """What the executor did (or, in a dry run, would have done) for one action."""

    model_config = ConfigDict(frozen=True)

    action: Action
    screen_points: list[Point]
    dry_run: bool
    duration_ms: float
    detail: str = ""
    closed_popups: list[Box] = []  # suggestion lists typing had left open, closed by a first click before this action


class PyAutoGui(Protocol):
    """The pyautogui module as the executor uses it: the settings it changes are typed, the rest is the module's own."""

    PAUSE: float
    FAILSAFE: bool

    def __getattr__(self, name: str) -> Any: ...


class UIExecutor:
    """Executes actions on one X display.

    ``dry_run`` validates and records but never imports pyautogui or touches the display.
    ``monitors`` may be given to validate without a display (dry runs, tests); otherwise the
    monitor layout is read once from the X server.
    """

    def __init__(
        self,
        display: str | None = None,
        *,
        dry_run: bool = False,
        pause_s: float = DEFAULT_PAUSE_S,
        type_delay_ms: int = DEFAULT_TYPE_DELAY_MS,
        drag_segment_s: float = DEFAULT_DRAG_SEGMENT_S,
        monitors: Sequence[Monitor] | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.pause_s = pause_s
        self.type_delay_ms = type_delay_ms
        self.drag_segment_s = drag_segment_s
        self.display = display if (dry_run and monitors is not None) else require_display(display)
        self._monitors = list(monitors) if monitors is not None else None
        self._gui: PyAutoGui | None = None
        self._popups = TypingPopups(self.display)

    # --- geometry -----------------------------------------------------------------------
    @property
    def monitors(self) -> list[Monitor]:
        """Physical monitors (mss index >= 1); their union is where actions may land."""
        if self._monitors is None:
            with Screen(self.display) as screen:
                self._monitors = screen.monitors()
        physical = [m for m in self._monitors if not m.is_virtual]
        return physical or list(self._monitors)

    def is_on_screen(self, x: int, y: int) -> bool:
        return any(m.contains(x, y) for m in self.monitors)

    def check_on_screen(self, action: Action) -> list[Point]:
        points = action.points()
        for x, y in points:
            if not self.is_on_screen(x, y):
                layout = ", ".join(
                    f"{m.width}x{m.height}+{m.left}+{m.top}" for m in self.monitors
                )
                raise OffScreenError(
                    f"{action.kind} at screen point ({x}, {y}) is outside every monitor "
                    f"({layout}); map image coordinates with Geometry.to_screen and stay inside"
                )
        return points

    # --- execution ----------------------------------------------------------------------
    def execute(self, action: Action) -> ActionRecord:
        """Validate and run one action; returns what was done."""
        started = time.perf_counter()
        points = self.check_on_screen(action)
        # Every key goes through the guard's own table (tilepilot.tools.keys): the executor presses the
        # canonical key of each name, so what the guard judged is what the X server receives.
        if isinstance(action, (Hotkey, Key)):
            keys = [k.press_as for k in hotkey_keys(action.keys if isinstance(action, Hotkey) else [action.key])]
        else:
            keys = []
        closed: list[Box] = []
        if self.dry_run:
            detail = "dry run: " + _describe(action, keys)
        else:
            detail, closed = self._run(action, keys)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return ActionRecord(
            action=action, screen_points=points, dry_run=self.dry_run, duration_ms=elapsed_ms,
            detail=detail, closed_popups=closed,
        )

    def _run(self, action: Action, keys: list[str]) -> tuple[str, list[Box]]:
        if isinstance(action, (Done, Fail)):
            self._popups.forget()
            return _describe(action, keys), []  # terminal: nothing to touch
        if isinstance(action, Wait):
            time.sleep(action.ms / 1000)
            return _describe(action, keys), []
        gui = self._pyautogui()
        gui.PAUSE = self.pause_s
        gui.FAILSAFE = True
        closed: list[Box] = []
        try:
            if isinstance(action, (Click, Drag, Scroll)):
                closed = self._close_typing_popups(gui, action.points())
            elif isinstance(action, Type):
                self._popups.typing_starts()
            elif not isinstance(action, Move):  # a key or hotkey: the keyboard deals with the popup
                self._popups.forget()
            if isinstance(action, Click):
                gui.click(action.x, action.y, clicks=action.count, interval=0.05, button=action.button)
            elif isinstance(action, Move):
                gui.moveTo(action.x, action.y)
            elif isinstance(action, Drag):
                self._drag(gui, action)
            elif isinstance(action, Scroll):
                self._scroll(gui, action)
            elif isinstance(action, Type):
                gui.failSafeCheck()  # xdotool bypasses pyautogui; keep the corner kill switch
                return self._type_runs(gui, text_runs(action.text)), []
            elif isinstance(action, Hotkey):
                gui.hotkey(*keys)
            elif isinstance(action, Key):
                gui.press(keys[0])  # hotkey_keys of one name: exactly one key
        except gui.FailSafeException:
            x, y = gui.position()
            raise FailSafeTriggered(
                f"pyautogui fail-safe: the pointer is in a screen corner ({x}, {y}); "
                "move it away from the corner to let tilepilot act again"
            ) from None
        if closed:
            return f"a first click closed the suggestion list that typing left open, then {_describe(action, keys)}", closed
        return _describe(action, keys), closed

    def _close_typing_popups(self, gui: PyAutoGui, points: list[Point]) -> list[Box]:
        """Close the suggestion lists typing opened that this action does not land on, where they hold the pointer.

        A list that holds the pointer takes the next press anywhere outside it and only closes (GTK's
        entry completion), so a first click at the action's point closes it; then wait until it is gone
        (at most a second). A list without the grab (Chromium's) lets the action through by itself.
        """
        popups = self._popups.left_open(points)
        if not popups or not self._popups.pointer_grabbed():
            return []
        x, y = points[0]
        gui.click(x, y)
        self._popups.wait_closed(popups)
        return list(popups.values())

    def _drag(self, gui: PyAutoGui, action: Drag) -> None:
        (x0, y0), rest = action.path[0], action.path[1:]
        gui.moveTo(x0, y0)
        gui.mouseDown(x0, y0, button=action.button)
        try:
            for x, y in rest:
                gui.moveTo(x, y, duration=self.drag_segment_s)
        finally:
            # Never leave a button held down, even when the fail-safe fires mid-drag
            # (mouseUp itself checks the fail-safe first and would refuse to release).
            gui.FAILSAFE = False
            try:
                gui.mouseUp(button=action.button)
            finally:
                gui.FAILSAFE = True

    @staticmethod
    def _scroll(gui: PyAutoGui, action: Scroll) -> None:
        gui.moveTo(action.x, action.y)
        if action.dy:
            gui.scroll(action.dy, action.x, action.y)
        if action.dx:
            gui.hscroll(action.dx, action.x, action.y)

    def _type_runs(self, gui: PyAutoGui, runs: list[TextRun]) -> str:
        """Characters are typed as text; each control character is pressed as the key the guard judged.

        xdotool would type a newline as Linefeed, which no field treats as Enter, and a tab as a
        keysym of its own choosing: pressing them from the table keeps text and keys one model.
        """
        chars, keys, how = 0, 0, ""
        for run in runs:
            if run.keys:
                gui.hotkey(*[k.press_as for k in hotkey_keys(run.keys)])
                keys += 1
            else:
                how = self._type(gui, run.text)
                chars += len(run.text)
        return f"typed {chars} chars {how}".strip() + (f" and pressed {keys} keys" if keys else "")

    def _type(self, gui: PyAutoGui, text: str) -> str:
        xdotool = shutil.which("xdotool")
        if xdotool is None:
            if not text.isascii():
                raise ActionExecutionError(
                    "typing non-ASCII text needs xdotool, which is not installed: "
                    "apt-get install xdotool"
                )
            gui.write(text, interval=self.type_delay_ms / 1000)
            return "with pyautogui.write"
        type_text(self._live_display(), text, self.type_delay_ms, xdotool)
        time.sleep(self.pause_s)
        return "with xdotool"

    # --- pyautogui binding --------------------------------------------------------------
    def _pyautogui(self) -> PyAutoGui:
        if self._gui is None:
            self._gui = _import_pyautogui(self._live_display())
        return self._gui

    def _live_display(self) -> str:
        """The display actions go to; only a dry run given its monitors has none, and it never acts."""
        if self.display is None:
            raise DisplayUnavailableError("this executor was made for a dry run without a display: it cannot act")
        return self.display


def _describe(action: Action, keys: list[str]) -> str:
    if keys:
        return f"{action.kind} {'+'.join(keys)}"
    if isinstance(action, Type):
        return f"type {len(action.text)} chars"
    points = " -> ".join(f"({x}, {y})" for x, y in action.points())
    return f"{action.kind} {points}".strip()


def _import_pyautogui(display: str) -> PyAutoGui:
    """Import pyautogui bound to ``display`` (it reads $DISPLAY once, at import time)."""
    import sys

    module = sys.modules.get("pyautogui")
    if module is None:
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        try:
            with xauthority_fallback():
                import pyautogui as module  # noqa: PLC0415 - needs a display at import time
        except Exception as exc:  # Xlib raises several unrelated types for a bad display
            raise DisplayUnavailableError(
                f"cannot open X display {display!r} for input: is the X server running? "
                f"({type(exc).__name__})"
            ) from None
        finally:
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
    bound = _bound_display(module)
    if bound is not None and bound != display:
        raise UIActionError(
            f"pyautogui is already bound to display {bound!r} in this process; run the "
            f"executor for {display!r} in a separate process"
        )
    return cast(PyAutoGui, module)  # a module cannot declare the protocol's catch-all __getattr__


def _bound_display(module: ModuleType) -> str | None:
    x11 = getattr(module, "platformModule", None)
    conn = getattr(x11, "_display", None)
    return conn.get_display_name() if conn is not None else None
