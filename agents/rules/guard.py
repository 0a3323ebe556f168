"""The policy guard: decide Allow, Deny or Confirm for one action *before* anything executes.

:func:`guard` is pure and deterministic. It only reads the action's kind, coordinates and keys,
the caller-supplied context (screen bounds, on-screen texts with boxes, window title, focus point)
and the merged :class:`~tilepilot.agents.rules.merge.Policy`. Nothing the model or a page *says* can unlock
anything: the text of a type action, ``done.result`` or an on-screen "ignore the rules" are never
read as instructions. Texts only ever make the guard stricter (a denied label, a password field).

Order: terminal actions pass; then limits, tool deny/allow, denied action kinds, windows, denied
regions, denied labels (any Deny wins), then confirmations, then the default Allow. When the guard
cannot tell (unknown window title, unknown focus, % region without screen bounds) it fails closed.
Every decision names the rule file and key that decided it.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from tilepilot.agents.rules.merge import Policy, Provenance, Sourced
from tilepilot.agents.rules.patterns import PatternTimeout, matches
from tilepilot.agents.rules.schema import ActionRule, Region
from tilepilot.tools.actions import Action, Drag, Hotkey, Key, Type

Point = tuple[int, int]
Box = tuple[float, float, float, float]
POINTER_KINDS = frozenset({"click", "drag", "scroll"})
INPUT_KINDS = frozenset({"click", "move", "drag", "scroll", "type", "hotkey", "key"})
_KEY_ALIASES = {
    "control": "ctrl", "ctl": "ctrl", "option": "alt", "opt": "alt", "cmd": "super", "command": "super",
    "win": "super", "windows": "super", "meta": "super", "esc": "escape", "return": "enter", "del": "delete",
    "pgup": "pageup", "pgdn": "pagedown", "ins": "insert", "bksp": "backspace",
}
_MODIFIER_ORDER = ("ctrl", "alt", "shift", "super")


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


class GuardContext(BaseModel):
    model_config = ConfigDict(frozen=True)
    agent: str
    screen: ScreenBounds | None = None
    screen_texts: list[ScreenText] = []
    window_title: str | None = None
    focus_point: Point | None = None  # where typing goes: the last click
    step: int = Field(0, ge=0)


class ToolCall(BaseModel):
    """A tool-level call such as ``pdf.render`` or ``report.add`` (ui actions become ``ui.<kind>``)."""

    model_config = ConfigDict(frozen=True)
    name: str
    args: dict[str, Any] = {}


class _Decision(BaseModel):
    model_config = ConfigDict(frozen=True)
    reason: str
    # The widget under the action's point, from the accessibility tree; "unknown (no
    # accessibility information)" where none exists; None for actions without a point.
    widget: str | None = None
    widget_box: Box | None = None  # that widget's box in screen px
    rule_file: str | None = None  # None only for the default allow
    rule_key: str | None = None
    rule_line: int | None = None

    @classmethod
    def by(cls, source: Provenance | None, reason: str) -> "_Decision":
        if source is None:
            return cls(reason=reason)
        return cls(reason=f"{reason} [rule {source}]", rule_file=source.file, rule_key=source.key, rule_line=source.line)


class Allow(_Decision):
    verdict: Literal["allow"] = "allow"


class Deny(_Decision):
    verdict: Literal["deny"] = "deny"


class Confirm(_Decision):
    verdict: Literal["confirm"] = "confirm"


Decision = Union[Allow, Deny, Confirm]


def guard(action: Action | ToolCall, context: GuardContext, policy: Policy) -> Decision:
    if isinstance(action, ToolCall):
        return _check_tool(action.name, context, policy) or Allow(reason="allowed: no rule restricts this tool (default allow)")
    if action.kind in ("done", "fail"):
        return Allow(reason="terminal actions always pass")
    if (decision := _check_tool(f"ui.{action.kind}", context, policy)) is not None:
        return decision
    decision = Allow(reason="allowed: no rule restricts this action (default allow)")
    for check_action in (_check_denied_kinds, _check_windows, _check_regions, _check_accessibility, _check_labels, _check_confirm):
        if (found := check_action(action, context, policy)) is not None:
            decision = found
            break
    segments = _touched_segments(action, context, focus_for_keys=True)
    if not segments:
        return decision
    widget = _innermost_widget(segments[0][0], context.screen_texts)
    if widget is None:
        return decision.model_copy(update={"widget": "unknown (no accessibility information)"})
    return decision.model_copy(update={"widget": widget.describe(), "widget_box": widget.bbox})


def _innermost_widget(point: Point, texts: list[ScreenText]) -> ScreenText | None:
    # The tree knows no stacking: keep the widgets of the window in front at the point (window
    # texts come bottom to top), so a Tk window over a GTK one is not taken for the GTK form.
    windows = [t for t in texts if t.source == "window" and _distance(point, t.bbox) == 0]
    front = windows[-1].text if windows else None
    inside = [t for t in texts if t.source == "accessibility" and _distance(point, t.bbox) == 0
              and (front is None or t.window == front)]
    # The smallest box wins; on a tie the later one, since the tree lists parents first.
    return min(reversed(inside), key=lambda t: (t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1]), default=None)


def _check_tool(tool: str, context: GuardContext, policy: Policy) -> Decision | None:
    max_steps = policy.limits.get("max_steps")
    if max_steps is not None and context.step >= max_steps.value:
        return Deny.by(max_steps.source, f"step limit reached ({max_steps.value} steps): finish with done or fail")
    for deny in policy.tools_deny:
        if fnmatch.fnmatchcase(tool, deny.value):
            return Deny.by(deny.source, f"tool {tool} is denied by pattern {deny.value!r}")
    for allow in policy.tools_allow:
        if not any(fnmatch.fnmatchcase(tool, glob) for glob in allow.value):
            return Deny.by(allow.source, f"tool {tool} is not in the allowed tools ({', '.join(allow.value)})")
    return None


def _check_denied_kinds(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    return _first_matching_rule(policy.deny_actions, action, context, Deny, "is denied by")


def _check_windows(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if action.kind not in INPUT_KINDS:
        return None
    title = context.window_title
    for allowed in policy.allowed_windows:
        if title is None:
            return Deny.by(allowed.source, "the active window's title is unknown, so it cannot be checked against the allowed windows")
        if not any(_safe_match(p, title, on_timeout=False) for p in allowed.value):
            return Deny.by(allowed.source, f"window {title!r} is not one of the allowed windows: switch to an allowed window or stop")
    if title is not None:
        for pattern in policy.deny_text:
            if _safe_match(pattern.value, title):
                return Deny.by(pattern.source, f"window {title!r} matches a denied text {pattern.value!r}: do not act in it")
    return None


def _check_regions(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if not policy.deny_regions or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _touched_segments(action, context)
    for region in policy.deny_regions:
        if segments is None:
            return Deny.by(region.source, "typing target unknown (no focus point): click the intended field first")
        rect = _resolve(region.value, context.screen)
        if rect is None:
            return Deny.by(region.source, "a denied region is given in % but the screen bounds are unknown")
        if any(_segment_hits_rect(a, b, rect) for a, b in segments):
            name = f" {region.value.name!r}" if region.value.name else ""
            return Deny.by(region.source, f"{_describe(action)} touches the forbidden screen region{name} {_fmt_rect(rect)}: choose another target")
    return None


def _check_accessibility(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    required = policy.require_accessibility
    if required is None or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _touched_segments(action, context)
    points = [p for segment in segments or [] for p in segment]
    if segments is None or any(_innermost_widget(p, context.screen_texts) is None for p in points):
        where = "where typing goes (no focus known)" if segments is None else "at its point"
        return Deny.by(required.source, f"{_describe(action)}: no accessibility information {where}, and the rules "
                                        "require it: deny_text and near_label cannot see inside this window")
    return None


def _check_labels(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if not policy.deny_text or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _touched_segments(action, context)
    if segments is None:
        return None  # typing with no focus: regions fail closed above; labels are click targets
    for pattern in policy.deny_text:
        for seen in context.screen_texts:
            if _safe_match(pattern.value, seen.text) and any(_segment_hits_rect(a, b, seen.bbox) for a, b in segments):
                return Deny.by(pattern.source, f"{_describe(action)} hits the on-screen {seen.describe()}, which is denied by {pattern.value!r}")
    return None


def _check_confirm(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    return _first_matching_rule(policy.confirm, action, context, Confirm, "needs human approval per")


def _first_matching_rule(rules: list[Sourced[ActionRule]], action: Action, context: GuardContext, verdict: type[_Decision], verb: str) -> Decision | None:
    for rule in rules:
        if _rule_matches(rule.value, action, context):
            return verdict.by(rule.source, rule.value.reason or f"{_describe(action)} {verb} {rule.value.action!r}")
    return None


def _rule_matches(rule: ActionRule, action: Action, context: GuardContext) -> bool:
    kind_glob, _, arg_glob = rule.action.partition(":")
    kind_glob = kind_glob.strip().lower()
    kinds = {action.kind}
    if action.kind in ("hotkey", "key"):
        kinds = {"hotkey", "key"}  # a combo is the same keystroke whichever kind carries it
    if not any(fnmatch.fnmatchcase(k, kind_glob) for k in kinds):
        return False
    if arg_glob:
        arg = _argument(action)
        wanted = normalize_combo(arg_glob) if action.kind in ("hotkey", "key") else arg_glob
        if arg is None or not fnmatch.fnmatchcase(arg, wanted):
            return False
    # Conditions only narrow a rule. When the guard cannot evaluate one (unknown title or focus,
    # a pattern that times out) the rule still applies: a confirmation too many beats one missed.
    if rule.window is not None and context.window_title is not None:
        if not _safe_match(rule.window, context.window_title):
            return False
    if rule.near_label is not None:
        segments = _touched_segments(action, context, focus_for_keys=True)
        if segments is not None and not any(_near_label(rule, p, context) for segment in segments for p in segment):
            return False
    return True


def _near_label(rule: ActionRule, point: Point, context: GuardContext) -> bool:
    # A named widget from the accessibility tree is exact: its own name (a field's name is its
    # label) or role decides. Elsewhere only texts' boxes are known, so nearness decides.
    widget = _innermost_widget(point, context.screen_texts)
    if widget is not None and widget.text:
        return _text_or_role_matches(rule.near_label, widget)
    return any(_distance(point, t.bbox) <= rule.near_px for t in context.screen_texts if _text_or_role_matches(rule.near_label, t))


def _text_or_role_matches(pattern: str, seen: ScreenText) -> bool:
    return _safe_match(pattern, seen.text) or (seen.role is not None and _safe_match(pattern, seen.role))


def normalize_combo(combo: str | Iterable[str]) -> str:
    """``["Control", "W"]`` or ``"w+ctrl"`` -> ``"ctrl+w"``: lower-case, aliases resolved, modifiers first."""
    parts = combo.split("+") if isinstance(combo, str) else list(combo)
    keys = [_KEY_ALIASES.get(p.strip().lower(), p.strip().lower()) for p in parts if p.strip()]
    mods = [m for m in _MODIFIER_ORDER if m in keys]
    return "+".join(mods + [k for k in keys if k not in _MODIFIER_ORDER])


def _argument(action: Action) -> str | None:
    if isinstance(action, Hotkey):
        return normalize_combo(action.keys)
    if isinstance(action, Key):
        return normalize_combo(action.key)
    if isinstance(action, Type):
        return action.text
    return getattr(action, "button", None)


def _touched_segments(action: Action, context: GuardContext, focus_for_keys: bool = False) -> list[tuple[Point, Point]] | None:
    """Line segments (a point is a zero-length segment) the action touches; None if unknown."""
    if isinstance(action, Drag):
        return list(zip(action.path, action.path[1:]))
    points = action.points()
    if points:
        return [(p, p) for p in points]
    if isinstance(action, Type) or (focus_for_keys and action.kind in ("hotkey", "key")):
        return None if context.focus_point is None else [(context.focus_point, context.focus_point)]
    return []


def _resolve(region: Region, screen: ScreenBounds | None) -> Box | None:
    def length(value: int | str, extent: int | None) -> float | None:
        if isinstance(value, int):
            return float(value)
        return None if extent is None else float(value.rstrip("%")) / 100.0 * extent

    width, height = (screen.width, screen.height) if screen else (None, None)
    x, y, w, h = length(region.x, width), length(region.y, height), length(region.w, width), length(region.h, height)
    if None in (x, y, w, h):
        return None
    left, top = (screen.left, screen.top) if screen else (0, 0)
    return (left + x, top + y, left + x + w, top + y + h)


def _segment_hits_rect(a: Point, b: Point, rect: Box) -> bool:
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


def _distance(point: Point, box: Box) -> float:
    x0, y0, x1, y1 = box
    dx = max(x0 - point[0], 0.0, point[0] - x1)
    dy = max(y0 - point[1], 0.0, point[1] - y1)
    return (dx * dx + dy * dy) ** 0.5


def _safe_match(pattern: str, text: str, on_timeout: bool = True) -> bool:
    """A pattern too slow to evaluate must not loosen anything: a deny counts as hit, an allow as missed."""
    try:
        return matches(pattern, text)
    except PatternTimeout:
        return on_timeout


def _describe(action: Action) -> str:
    if isinstance(action, Drag):
        return f"drag from {action.path[0]} to {action.path[-1]}"
    if isinstance(action, Type):
        return "typing"
    if isinstance(action, (Hotkey, Key)):
        return f"{action.kind} {_argument(action)}"
    points = action.points()
    return f"{action.kind} at {points[0]}" if points else action.kind


def _fmt_rect(rect: Box) -> str:
    x0, y0, x1, y1 = rect
    return f"(x={x0:g}, y={y0:g}, w={x1 - x0:g}, h={y1 - y0:g})"


__all__ = ["Allow", "Confirm", "Decision", "Deny", "GuardContext", "ScreenBounds", "ScreenText", "ToolCall", "guard", "normalize_combo"]
