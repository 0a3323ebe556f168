"""Secrets stay out of the record, approvals show what will be sent, and a run can always end."""

from __future__ import annotations

import json

from tilepilot.agents.desktop.secrets import MASK, mask_record, mask_text, what_it_sends
from tilepilot.agents.desktop.state import ConfirmRequest, DesktopOptions
from tilepilot.tools.actions import Click, Hotkey, Key, Type


def test_masking_keeps_the_keys_and_hides_every_character():
    assert mask_text("alice\tS3cret\n") == f"{MASK}\t{MASK}\n"
    assert mask_text("S3cret") == MASK and "S3cret" not in mask_text("S3cret")


def test_a_masked_step_keeps_nothing_of_the_secret():
    raw = json.dumps({"thought": "type the password S3cret", "action": {"kind": "type", "text": "S3cret\n"}})
    fields = {"action": Type(text="S3cret\n"), "screen_action": Type(text="S3cret\n"), "raw_output": raw,
              "thought": "type the password S3cret"}
    masked = mask_record(fields, "S3cret\n")
    assert "S3cret" not in json.dumps({k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in masked.items()})
    assert masked["screen_action"].text == f"{MASK}\n"  # Enter stays: the guard judges the masked text as the real one
    assert "S3cret" not in mask_record({**fields, "raw_output": "not json S3cret"}, "S3cret\n")["raw_output"]


def test_approval_shows_the_keys_or_text_it_will_send():
    assert what_it_sends(Hotkey(keys=["ctrlright", "W"])) == "keys ctrl+w"
    assert what_it_sends(Key(key="\n")) == "keys enter"
    assert what_it_sends(Type(text="go\n")) == "text 'go⏎'"
    assert what_it_sends(Type(text=mask_text("S3cret"))) == f"text '{MASK}'"
    request = ConfirmRequest(step=3, action=Hotkey(keys=["ctrlleft", "w"]), model_action=Hotkey(keys=["ctrlleft", "w"]),
                             reason="closing a tab can lose work", screenshot="s.png", sends="keys ctrl+w")
    assert request.describe() == "step 3: hotkey sends keys ctrl+w needs approval: closing a tab can lose work"
    click = ConfirmRequest(step=1, action=Click(x=5, y=6), model_action=Click(x=5, y=6), reason="r", screenshot="s.png",
                           sends=what_it_sends(Click(x=5, y=6)))
    assert click.describe().startswith("step 1: click (5, 6)")


def test_a_run_limited_to_some_actions_can_still_end():
    options = DesktopOptions(task="t", kinds=("type", "key", "hotkey"))
    assert options.kinds == ("type", "key", "hotkey", "done", "fail")
