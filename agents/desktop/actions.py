"""What the model must answer (a JSON schema) and the one image -> screen mapping of its action.

The model answers ``{"thought": ..., "action": <tilepilot.tools.actions.Action>}`` in its coordinate frame
(:class:`tilepilot.agents.desktop.frame.ModelFrame`: screenshot pixels or 0..1000 normalised). The schema sent to the server is the shared ``Action`` schema, made
strict for the grammar: every field required (so ``kind`` is always present), strings and lists
bounded (a random-weight model would otherwise write until ``max_tokens``), coordinates bounded to
the image, and only the offered action kinds. Parsing still goes through the full ``Action``
union, and :func:`to_screen` re-checks the bounds: a point outside the image (from a server
without grammar support, or a test double) is an invalid action that goes back to the model. It
is never clamped.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel, Field

from tilepilot.agents.desktop.frame import ModelFrame
from tilepilot.tools.actions import Action, Drag, Hotkey, Key, Wait
from tilepilot.tools.keys import KEYS, UnknownKeyError, hotkey_keys

TEXT_LIMIT = 200  # characters of typed text, done/fail reasons
# The schema offers each key by its canonical name only (tilepilot.tools.keys): constrained decoding then
# never produces a name the executor would refuse, and a model sees one spelling per key.
KEY_NAMES = sorted({key.name for key in KEYS.values()})
DRAG_POINTS = 8
SCROLL_LIMIT = 20
WAIT_LIMIT_MS = 5_000


class ModelReply(BaseModel):
    """The model's answer for one step."""

    thought: str = Field("", max_length=160, description="one short sentence: what you see and why this action")
    action: Action


@functools.lru_cache(maxsize=32)
def _strict_schema(x_max: int, y_max: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    schema = copy.deepcopy(ModelReply.model_json_schema())
    defs: dict[str, Any] = schema["$defs"]
    offered = {name for name, d in defs.items() if d.get("properties", {}).get("kind", {}).get("const") in kinds}
    union = schema["properties"]["action"]
    union["oneOf"] = [ref for ref in union["oneOf"] if ref["$ref"].rsplit("/", 1)[-1] in offered]
    union["discriminator"]["mapping"] = {
        k: ref for k, ref in union["discriminator"]["mapping"].items() if ref.rsplit("/", 1)[-1] in offered
    }
    for name in [n for n in defs if n not in offered]:
        del defs[name]
    for d in defs.values():
        _tighten_fields(d["properties"], x_max, y_max)
        d["required"] = list(d["properties"])
    schema["required"] = ["thought", "action"]
    return schema


def _tighten_fields(props: dict[str, Any], x_max: int, y_max: int) -> None:
    def coord(axis_max: int) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": axis_max}

    for name, prop in props.items():
        prop.pop("default", None)
        if name == "x":
            props[name] = coord(x_max)
        elif name == "y":
            props[name] = coord(y_max)
        elif name == "path":
            prop["maxItems"] = DRAG_POINTS
            prop["items"]["prefixItems"] = [coord(x_max), coord(y_max)]
        elif name in ("dx", "dy"):
            props[name] = {"type": "integer", "minimum": -SCROLL_LIMIT, "maximum": SCROLL_LIMIT}
        elif name == "ms":
            prop["maximum"] = WAIT_LIMIT_MS
        elif name in ("text", "result", "reason"):
            prop["maxLength"] = TEXT_LIMIT
        elif name == "key":
            props[name] = {"type": "string", "enum": KEY_NAMES}
        elif name == "keys":
            prop["items"] = {"type": "string", "enum": KEY_NAMES}


def reply_schema(frame: ModelFrame, kinds: tuple[str, ...]) -> type[ModelReply]:
    """A ``ModelReply`` class whose JSON schema is strict for this frame and these kinds.

    ``ChatClient.chat`` sends ``schema.model_json_schema()`` and parses with
    ``schema.model_validate_json``; only the former is narrowed.
    """
    strict = _strict_schema(frame.x_max, frame.y_max, tuple(sorted(kinds)))

    class StrictModelReply(ModelReply):
        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
            return copy.deepcopy(strict)

    StrictModelReply.__name__ = "ModelReply"
    return StrictModelReply


def check_model_action(action: Action, frame: ModelFrame, kinds: tuple[str, ...]) -> str | None:
    """Why ``action`` (model coordinates) cannot be used, or None when it can."""
    if action.kind not in kinds:
        return f"{action.kind} is not one of the offered actions ({', '.join(kinds)})"
    for x, y in action.points():
        if not frame.contains(x, y):
            return f"point ({x}, {y}) lies outside the screenshot; use 0 <= x <= {frame.x_max} and 0 <= y <= {frame.y_max}"
    if isinstance(action, Drag) and len(action.path) > DRAG_POINTS:
        return f"a drag path may have at most {DRAG_POINTS} points"
    if isinstance(action, Wait) and action.ms > WAIT_LIMIT_MS:
        return f"wait at most {WAIT_LIMIT_MS} ms per step"
    if isinstance(action, (Hotkey, Key)):
        try:  # the executor's own table: a name outside it is never pressed, so the model must say it again
            hotkey_keys(action.keys if isinstance(action, Hotkey) else [action.key])
        except UnknownKeyError as err:
            return str(err)
    return None


def to_screen(action: Action, frame: ModelFrame) -> Action:
    """A model action on the screen (``ModelFrame.action_to_screen``, the one mapping).

    Callers check the action with :func:`check_model_action` first; this function never clamps.
    """
    return frame.action_to_screen(action)
