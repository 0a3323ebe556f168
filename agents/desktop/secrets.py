"""Text typed into a password field never enters the record, and every approval shows what will be sent.

The guard says when typed text goes (or may go, after a Tab) into a password-role widget
(:func:`tilepilot.agents.rules.guard.types_secret`). The decide node then keeps the real text only in
the run's live context (never checkpointed) and stores the step with every printable stretch of the text
replaced by :data:`MASK`; control characters stay, so the guard judges the masked text exactly as the
real one. The trajectory, events, audit log, replay page and exported training sets are all written
from that masked record.
"""

from __future__ import annotations

import json
from typing import Any

from tilepilot.tools.actions import Action, Hotkey, Key, Type
from tilepilot.tools.keys import UnknownKeyError, combo_name, is_control, text_runs

MASK = "••••••"  # fixed length: the record does not tell the secret's length either
_SHOWN_KEYS = {"enter": "⏎", "tab": "⇥", "backspace": "⌫", "escape": "⎋"}
MIN_MASKED_IN_PROSE = 3  # shorter stretches are too common to strike from the model's free text


def mask_text(text: str) -> str:
    """Every run of printable characters becomes :data:`MASK`; control characters (keys) stay as they are."""
    out: list[str] = []
    for char in text:
        if is_control(char):
            out.append(char)
        elif not out or out[-1] != MASK:
            out.append(MASK)
    return "".join(out)


def mask_record(fields: dict[str, Any], secret: str) -> dict[str, Any]:
    """The step's fields with the typed secret masked in the actions, the raw answer and the thought."""
    masked = mask_text(secret)
    out = dict(fields)
    for name in ("action", "screen_action"):
        if isinstance(out.get(name), Type):
            out[name] = out[name].model_copy(update={"text": masked})
    out["raw_output"] = _mask_raw(str(out.get("raw_output", "")), masked)
    out["thought"] = _strike(str(out.get("thought", "")), secret)
    return out


def _mask_raw(raw: str, masked: str) -> str:
    try:
        reply = json.loads(raw)
        reply["action"]["text"] = masked
        reply["thought"] = MASK if reply.get("thought") else ""
        return json.dumps(reply, ensure_ascii=False)
    except (ValueError, TypeError, KeyError):
        return f"[the model's answer is withheld: it typed into a password field ({MASK})]"


def _strike(prose: str, secret: str) -> str:
    for run in text_runs(secret):
        if len(run.text) >= MIN_MASKED_IN_PROSE:
            prose = prose.replace(run.text, MASK)
    return prose


def what_it_sends(action: Action) -> str:
    """The keys or the text an action will send, as a person approving it should read them ("" for none)."""
    if isinstance(action, (Hotkey, Key)):
        names = action.keys if isinstance(action, Hotkey) else [action.key]
        try:
            return f"keys {combo_name(names)}"
        except UnknownKeyError:
            return f"keys {'+'.join(names)} (not keys tilepilot presses)"
    if isinstance(action, Type):
        shown = "".join(run.text or _SHOWN_KEYS.get("+".join(run.keys), f"[{'+'.join(run.keys)}]")
                        for run in text_runs(action.text))
        return f"text {shown!r}"
    return ""  # a pointer action sends no keys; its point is part of the question already
