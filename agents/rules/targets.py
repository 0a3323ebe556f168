"""Where an action lands: the points it touches, the window under them, and where typed text goes.

The guard judges an action by its effect on the screen, so it needs the target of each part:

* a pointer action touches its points (a drag, the segments between them), in the window in front
  at each point;
* keys go to the focused window;
* typed text goes to the widget that has keyboard focus *when it is typed*: the one the
  accessibility tree reports as focused (after a click, a Tab or an app's autofocus), else the last
  clicked point where no tree is available. A control character in the text (Tab, Enter, Escape)
  may move focus, so text after it goes to a widget the guard cannot know before it is typed:
  that part's target is unknown (``None``), and the checks that need a target fail closed on it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tilepilot.agents.rules.schema import Region
from tilepilot.tools.actions import Action, Drag, Type
from tilepilot.tools.keys import Chord, text_runs

Point = tuple[int, int]
Box = tuple[float, float, float, float]
Segment = tuple[Point, Point]
POINTER_KINDS = frozenset({"click", "drag", "scroll"})
PASSWORD_ROLE = "password text"
# Roles a user acts on: one of these without an accessible name hides what it does from deny_text.
INTERACTIVE_ROLES = frozenset({
    "push button", "toggle button", "check box", "radio button", "menu item", "check menu item", "radio menu item",
    "link", "combo box", "entry", "text", PASSWORD_ROLE, "spin button", "slider", "page tab", "list item",
    "tree item", "icon", "button",
})
# Keys after which text may go elsewhere. In a multi-line widget Enter and Tab stay in it (new line, tab).
_FOCUS_MOVING = frozenset({"tab", "escape", "enter"})
_STAYS_IN_MULTILINE = frozenset({"tab", "enter"})


class ScreenBounds(BaseModel):
    model_config = ConfigDict(frozen=True)
    left: int = 0
    top: int = 0
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class ScreenText(BaseModel):
    """A text seen on screen and its box ``(x0, y0, x1, y1)`` in screen px.

    ``source`` says who reported it: the window manager (a window title; the box is the window),
    the accessibility tree (a widget: ``text`` is its accessible name, with its ``role`` and
    ``states``), or the caller. Patterns match the name and, for widgets, the role too, so
    ``/password/i`` finds a password field whatever its label says.
    """

    model_config = ConfigDict(frozen=True)
    text: str
    bbox: Box
    source: Literal["window", "accessibility", "given"] = "given"
    role: str | None = None
    states: tuple[str, ...] = ()
    window: str | None = None  # for a widget: the title of the top-level window it is in

    def describe(self) -> str:
        if self.source != "accessibility":
            return repr(self.text)
        return f"{self.role} {self.text!r}" if self.text else f"{self.role}"

    @property
    def is_password(self) -> bool:
        return self.role == PASSWORD_ROLE

    @property
    def is_unnamed_control(self) -> bool:
        return self.source == "accessibility" and not self.text.strip() and self.role in INTERACTIVE_ROLES


def innermost_widget(point: Point, texts: list[ScreenText]) -> ScreenText | None:
    # The tree knows no stacking: keep the widgets of the window in front at the point (window
    # texts come bottom to top), so a Tk window over a GTK one is not taken for the GTK form.
    front = window_at(point, texts)
    inside = [t for t in texts if t.source == "accessibility" and distance(point, t.bbox) == 0
              and (front is None or t.window == front)]
    # The smallest box wins; on a tie the later one, since the tree lists parents first.
    return min(reversed(inside), key=lambda t: (t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1]), default=None)


def window_at(point: Point, texts: list[ScreenText]) -> str | None:
    """The title of the top-level window in front at ``point`` (None where no window is known there)."""
    windows = [t for t in texts if t.source == "window" and distance(point, t.bbox) == 0]
    return windows[-1].text if windows else None


def knows_windows(texts: list[ScreenText]) -> bool:
    return any(t.source == "window" for t in texts)


def focused_widget(texts: list[ScreenText], window_title: str | None) -> ScreenText | None:
    """The widget with keyboard focus, from the accessibility tree; in the active window where it says."""
    focused = [t for t in texts if t.source == "accessibility" and "focused" in t.states and t.role != "frame"]
    in_active = [t for t in focused if window_title is not None and t.window == window_title]
    candidates = in_active or focused
    return candidates[-1] if candidates else None


class TypingTarget(BaseModel):
    """Where one part of typed text goes: a point and the widget there, or unknown (``point`` None)."""

    model_config = ConfigDict(frozen=True)
    point: Point | None
    widget: ScreenText | None = None
    text: str = ""  # the characters typed there (control characters excluded)
    after: str | None = None  # the key after which it is typed, when that key may have moved focus


def typing_targets(action: Type, texts: list[ScreenText], window_title: str | None,
                   focus_point: Point | None) -> list[TypingTarget]:
    """One target per stretch of text between keys that may move focus; the first is where focus is now."""
    widget = focused_widget(texts, window_title)
    point = center(widget.bbox) if widget is not None else focus_point
    if widget is None and point is not None:
        widget = innermost_widget(point, texts)
    multiline = widget is not None and "multi-line" in widget.states
    targets = [TypingTarget(point=point, widget=widget)]
    for run in text_runs(action.text):
        chord = run.chord
        if chord is None:
            last = targets[-1]
            targets[-1] = last.model_copy(update={"text": last.text + run.text})
        elif _may_move_focus(chord, multiline):
            # Focus may have moved: what follows goes to a widget the guard cannot know yet.
            if targets[-1].point is not None or targets[-1].text:
                targets.append(TypingTarget(point=None, after=str(chord)))
    return [t for t in targets if t.text] or targets[:1]


def _may_move_focus(chord: Chord, multiline: bool) -> bool:
    if chord.modifiers:  # Ctrl+letter from a C0 character: an application shortcut, anything may happen
        return True
    return chord.key in _FOCUS_MOVING and not (multiline and chord.key in _STAYS_IN_MULTILINE)


def touched_segments(action: Action, focus: Point | None) -> list[Segment] | None:
    """Line segments (a point is a zero-length segment) the action touches; None if unknown."""
    if isinstance(action, Drag):
        return list(zip(action.path, action.path[1:]))
    points = action.points()
    if points:
        return [(p, p) for p in points]
    if isinstance(action, Type):
        return None if focus is None else [(focus, focus)]
    return []


def center(box: Box) -> Point:
    return (int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2))


def resolve_region(region: Region, screen: ScreenBounds | None) -> Box | None:
    def length(value: int | str, extent: int | None) -> float | None:
        if isinstance(value, int):
            return float(value)
        return None if extent is None else float(value.rstrip("%")) / 100.0 * extent

    width, height = (screen.width, screen.height) if screen else (None, None)
    x, y, w, h = length(region.x, width), length(region.y, height), length(region.w, width), length(region.h, height)
    if x is None or y is None or w is None or h is None:
        return None
    left, top = (screen.left, screen.top) if screen else (0, 0)
    return (left + x, top + y, left + x + w, top + y + h)


def segment_hits_rect(a: Point, b: Point, rect: Box) -> bool:
    """Liang-Barsky clipping: does the segment a-b meet the closed rectangle?"""
    x0, y0, x1, y1 = rect
    dx, dy = b[0] - a[0], b[1] - a[1]
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, a[0] - x0), (dx, x1 - a[0]), (-dy, a[1] - y0), (dy, y1 - a[1])):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                lo = max(lo, t)
            else:
                hi = min(hi, t)
            if lo > hi:
                return False
    return True


def distance(point: Point, box: Box) -> float:
    x0, y0, x1, y1 = box
    dx = max(x0 - point[0], 0.0, point[0] - x1)
    dy = max(y0 - point[1], 0.0, point[1] - y1)
    return (dx * dx + dy * dy) ** 0.5
