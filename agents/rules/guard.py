"""The policy guard: decide Allow, Deny or Confirm for one action *before* anything executes.

:func:`guard` is pure and deterministic. It only reads the action's kind, coordinates and keys,
the caller-supplied context (screen bounds, on-screen texts with boxes, window title, focus point)
and the merged :class:`~tilepilot.agents.rules.merge.Policy`. Nothing the model or a page *says* can unlock
anything: the text of a type action, ``done.result`` or an on-screen "ignore the rules" are never
read as instructions. Texts only ever make the guard stricter (a denied label, a password field).

It judges what reaches the screen, not how the model spelled it: keys are matched as the key events
they produce (:mod:`tilepilot.tools.keys`, the executor's own table), control characters inside typed
text are the key presses they are, typed text goes where keyboard focus is (the accessibility tree),
and a pointer action is in the window under its point.

Order: terminal actions pass; then limits, tool deny/allow, unknown keys, denied action kinds, windows,
denied regions, denied labels (any Deny wins), then password fields, unnamed widgets and confirmations,
then the default Allow. When the guard cannot tell (unknown window, unknown focus, % region without
screen bounds) it fails closed. Every decision names the rule file and key that decided it.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field

from tilepilot.agents.rules.merge import Policy, Provenance, Sourced
from tilepilot.agents.rules.patterns import PatternTimeout, matches
from tilepilot.agents.rules.schema import ActionRule, split_combo
from tilepilot.agents.rules.targets import (
    POINTER_KINDS, Box, Point, ScreenBounds, ScreenText, Segment, TypingTarget, center, distance, focused_widget,
    innermost_widget, knows_windows, resolve_region, segment_hits_rect, touched_segments, typing_targets, window_at,
)
from tilepilot.tools.actions import Action, Drag, Hotkey, Key, Type
from tilepilot.tools.keys import MODIFIERS, Chord, UnknownKeyError, combo_name, find, hotkey_events, key_events, text_events

INPUT_KINDS = frozenset({"click", "move", "drag", "scroll", "type", "hotkey", "key"})
KEY_KINDS = frozenset({"hotkey", "key"})


class GuardContext(BaseModel):
    model_config = ConfigDict(frozen=True)
    agent: str
    screen: ScreenBounds | None = None
    screen_texts: list[ScreenText] = []
    window_title: str | None = None
    # The last clicked point: where typing goes when the accessibility tree reports no focused widget.
    focus_point: Point | None = None
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
    def by(cls, source: Provenance | None, reason: str) -> Self:
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
    for check_action in (_check_keys, _check_denied_kinds, _check_windows, _check_regions, _check_accessibility,
                         _check_labels, _check_password, _check_unnamed, _check_confirm):
        if (found := check_action(action, context, policy)) is not None:
            decision = found
            break
    point = _first_target(action, context)
    if point is None:
        return decision
    widget = innermost_widget(point, context.screen_texts)
    if widget is None:
        return decision.model_copy(update={"widget": "unknown (no accessibility information)"})
    return decision.model_copy(update={"widget": widget.describe(), "widget_box": widget.bbox})


def key_chords(action: Action) -> list[Chord]:
    """The key presses an action produces: its keys, or the control characters in its text."""
    if isinstance(action, Hotkey):
        return hotkey_events(action.keys)
    if isinstance(action, Key):
        return key_events(action.key)
    if isinstance(action, Type):
        return text_events(action.text)
    return []


def targets_of(action: Type, context: GuardContext) -> list[TypingTarget]:
    return typing_targets(action, context.screen_texts, context.window_title, context.focus_point)


def types_secret(action: Action, context: GuardContext) -> bool:
    """Whether typed text goes (or may go, after a Tab) into a password field: the record masks it."""
    if not isinstance(action, Type):
        return False
    return any(_password_reason(t, context) is not None for t in targets_of(action, context))


def _first_target(action: Action, context: GuardContext) -> Point | None:
    if isinstance(action, Type):
        return targets_of(action, context)[0].point
    if action.kind in KEY_KINDS:
        widget = focused_widget(context.screen_texts, context.window_title)
        return center(widget.bbox) if widget is not None else context.focus_point
    points = action.points()
    return points[0] if points else None


def _segments(action: Action, context: GuardContext) -> list[Segment] | None:
    """The segments an action touches; for typed text, the target of every part (None if any is unknown)."""
    if isinstance(action, Type):
        points = [t.point for t in targets_of(action, context)]
        return None if any(p is None for p in points) else [(p, p) for p in points if p is not None]
    return touched_segments(action, context.focus_point)


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


def _check_keys(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    try:
        key_chords(action)
    except UnknownKeyError as err:  # the executor would refuse it too: never judged, never pressed
        return Deny(reason=str(err))
    return None


def _check_denied_kinds(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    return _first_matching_rule(policy.deny_actions, action, context, Deny, "is denied by")


def _windows_of(action: Action, context: GuardContext) -> list[tuple[str | None, str]]:
    """(title, where) of each window the action acts in: under each point for the pointer, else the focused one."""
    points = action.points()
    if points and knows_windows(context.screen_texts):
        return [(window_at(p, context.screen_texts), f"under {p}") for p in points]
    return [(context.window_title, "active")]


def _check_windows(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if action.kind not in INPUT_KINDS:
        return None
    windows = _windows_of(action, context)
    for allowed in policy.allowed_windows:
        for title, where in windows:
            if title is None:
                return Deny.by(allowed.source, f"the {where} window's title is unknown, so it cannot be checked against the allowed windows")
            if not any(_safe_match(p, title, on_timeout=False) for p in allowed.value):
                return Deny.by(allowed.source, f"window {title!r} ({where}) is not one of the allowed windows: "
                                               "switch to an allowed window or stop")
    for title, _ in windows:
        if title is None:
            continue
        for pattern in policy.deny_text:
            if _safe_match(pattern.value, title):
                return Deny.by(pattern.source, f"window {title!r} matches a denied text {pattern.value!r}: do not act in it")
    return None


def _check_regions(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if not policy.deny_regions or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _segments(action, context)
    for region in policy.deny_regions:
        if segments is None:
            return Deny.by(region.source, f"{_unknown_target(action, context)}: click the intended field first, "
                                          "and type text that follows a Tab in its own action")
        rect = resolve_region(region.value, context.screen)
        if rect is None:
            return Deny.by(region.source, "a denied region is given in % but the screen bounds are unknown")
        if any(segment_hits_rect(a, b, rect) for a, b in segments):
            name = f" {region.value.name!r}" if region.value.name else ""
            return Deny.by(region.source, f"{_describe(action)} touches the forbidden screen region{name} {_fmt_rect(rect)}: choose another target")
    return None


def _unknown_target(action: Action, context: GuardContext) -> str:
    if isinstance(action, Type):
        later = next((t.after for t in targets_of(action, context) if t.point is None and t.after), None)
        if later is not None:
            return f"typing target unknown (text after {later} goes to a widget not known before it is typed)"
    return "typing target unknown (no focus point)"


def _check_accessibility(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    required = policy.require_accessibility
    if required is None or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _segments(action, context)
    points = [p for segment in segments or [] for p in segment]
    if segments is None or any(innermost_widget(p, context.screen_texts) is None for p in points):
        where = "where typing goes (no focus known)" if segments is None else "at its point"
        return Deny.by(required.source, f"{_describe(action)}: no accessibility information {where}, and the rules "
                                        "require it: deny_text and near_label cannot see inside this window")
    return None


def _check_labels(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if not policy.deny_text or action.kind not in POINTER_KINDS | {"type"}:
        return None
    segments = _segments(action, context)
    if segments is None:
        return None  # typing with no focus: regions fail closed above; labels are click targets
    for pattern in policy.deny_text:
        for seen in context.screen_texts:
            if _safe_match(pattern.value, seen.text) and any(segment_hits_rect(a, b, seen.bbox) for a, b in segments):
                return Deny.by(pattern.source, f"{_describe(action)} hits the on-screen {seen.describe()}, which is denied by {pattern.value!r}")
    return None


def _password_reason(target: TypingTarget, context: GuardContext) -> str | None:
    if not target.text:
        return None
    if target.widget is not None and target.point is not None and target.widget.is_password:
        return f"typing into the password field {target.widget.describe()} needs approval (the text is masked in the record)"
    if target.point is None:
        window = context.window_title
        fields = [t for t in context.screen_texts if t.is_password and (window is None or t.window in (None, window))]
        if fields:
            return (f"text after {target.after or 'an unknown focus'} may land in the password field {fields[0].describe()}, "
                    "which needs approval (the text is masked in the record)")
    return None


def _check_password(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    if not isinstance(action, Type):
        return None
    for target in targets_of(action, context):
        if (reason := _password_reason(target, context)) is not None:
            return Confirm(reason=reason)
    return None


def _check_unnamed(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    """With deny_text set, a control without an accessible name hides what it does: ask, do not pass."""
    if not policy.deny_text or action.kind not in POINTER_KINDS | {"type"}:
        return None
    if isinstance(action, Type):
        widgets = [t.widget for t in targets_of(action, context) if t.point is not None]
    else:
        widgets = [innermost_widget(p, context.screen_texts) for p in action.points()]
    for widget in widgets:
        if widget is not None and widget.is_unnamed_control:
            source = policy.deny_text[0].source
            return Confirm.by(source, f"{_describe(action)} acts on a {widget.role} without an accessible name, "
                                      "so the denied texts cannot be checked on it: approve to go on")
    return None


def _check_confirm(action: Action, context: GuardContext, policy: Policy) -> Decision | None:
    return _first_matching_rule(policy.confirm, action, context, Confirm, "needs human approval per")


def _first_matching_rule(rules: list[Sourced[ActionRule]], action: Action, context: GuardContext,
                         verdict: type[Deny] | type[Confirm], verb: str) -> Decision | None:
    for rule in rules:
        if _rule_matches(rule.value, action, context):
            return verdict.by(rule.source, rule.value.reason or f"{_describe(action)} {verb} {rule.value.action!r}")
    return None


def _rule_matches(rule: ActionRule, action: Action, context: GuardContext) -> bool:
    kind_glob, _, arg_glob = rule.action.partition(":")
    kind_glob = kind_glob.strip().lower()
    chords = key_chords(action)
    if any(fnmatch.fnmatchcase(k, kind_glob) for k in KEY_KINDS) and chords:
        # A keystroke is the same whichever action carries it: a hotkey, a key, or a control character typed.
        if arg_glob and not any(chord_matches(arg_glob, c) for c in chords):
            return False
    elif not fnmatch.fnmatchcase(action.kind, kind_glob):
        return False
    elif arg_glob:
        arg = _argument(action)
        if arg is None or not fnmatch.fnmatchcase(arg, arg_glob):
            return False
    # Conditions only narrow a rule. When the guard cannot evaluate one (unknown title or focus,
    # a pattern that times out) the rule still applies: a confirmation too many beats one missed.
    if rule.window is not None and context.window_title is not None:
        if not _safe_match(rule.window, context.window_title):
            return False
    if rule.near_label is not None:
        points = _label_points(action, context)
        if points is not None and not any(_near_label(rule.near_label, rule.near_px, p, context) for p in points):
            return False
    return True


def _label_points(action: Action, context: GuardContext) -> list[Point] | None:
    """The points whose labels a near_label condition looks at; None where a target is unknown."""
    if isinstance(action, Type):
        points = [t.point for t in targets_of(action, context)]
        return None if any(p is None for p in points) else [p for p in points if p is not None]
    if action.kind in KEY_KINDS:
        point = _first_target(action, context)
        return None if point is None else [point]
    return [p for segment in touched_segments(action, context.focus_point) or [] for p in segment]


def chord_matches(pattern: str, chord: Chord) -> bool:
    """A rule's combination matches a key press when its key matches and its modifiers are all held.

    Extra modifiers do not escape a rule: a deny on Enter holds for Ctrl+Enter, one on Ctrl+W for Ctrl+Shift+W.
    """
    *modifiers, key = [_canonical_part(p) for p in split_combo(pattern)]
    held = chord.modifiers | ({chord.key} if chord.key in MODIFIERS else set())
    if key in MODIFIERS:  # a rule on modifiers alone: one was pressed and all of them are held
        return chord.key in MODIFIERS and {key, *modifiers} <= held
    return set(modifiers) <= held and chord.key not in modifiers and fnmatch.fnmatchcase(chord.key, key)


def _canonical_part(part: str) -> str:
    """A key name in a rule, in the executor's canonical spelling; a glob ("*", "f?") stays as written."""
    key = find(part)
    return key.name if key is not None else part.lower()


def _near_label(label: str, near_px: int, point: Point, context: GuardContext) -> bool:
    # A named widget from the accessibility tree is exact: its own name (a field's name is its
    # label) or role decides. Elsewhere only texts' boxes are known, so nearness decides.
    widget = innermost_widget(point, context.screen_texts)
    if widget is not None and widget.text:
        return _text_or_role_matches(label, widget)
    return any(distance(point, t.bbox) <= near_px for t in context.screen_texts if _text_or_role_matches(label, t))


def _text_or_role_matches(pattern: str, seen: ScreenText) -> bool:
    return _safe_match(pattern, seen.text) or (seen.role is not None and _safe_match(pattern, seen.role))


def _argument(action: Action) -> str | None:
    if isinstance(action, (Hotkey, Key)):
        try:
            return combo_name(action.keys if isinstance(action, Hotkey) else [action.key])
        except UnknownKeyError:
            return "+".join(action.keys if isinstance(action, Hotkey) else [action.key])
    if isinstance(action, Type):
        return action.text
    return getattr(action, "button", None)


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


__all__ = ["Allow", "Confirm", "Decision", "Deny", "GuardContext", "ScreenBounds", "ScreenText", "ToolCall", "chord_matches",
           "guard", "key_chords", "types_secret"]
