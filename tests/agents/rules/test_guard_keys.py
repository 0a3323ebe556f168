"""The guard judges key events, not spellings: every spelling the executor accepts, generated from its own table.

For each combination a rule denies or confirms, every way to spell it that the executor would press
(left/right modifiers, aliases, case, order, the control characters of typed text) gets the same verdict.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tilepilot.agents.rules.guard import GuardContext, guard
from tilepilot.agents.rules.loader import load_rule_file
from tilepilot.agents.rules.merge import merge_files
from tilepilot.tools.actions import Hotkey, Key, Type
from tilepilot.tools.keys import KEYS, MODIFIERS, hotkey_events, text_events

RULES = """---
actions:
  deny:
    - action: "hotkey:ctrl+w"
    - action: "hotkey:alt+f4"
    - action: "key:enter"
    - action: "key:tab"
  confirm:
    - action: "hotkey:ctrl+q"
    - action: "key:escape"
    - action: "hotkey:ctrl+shift+t"
---
"""
DENIED = [("ctrl", "w"), ("alt", "f4"), ("enter",), ("tab",)]
CONFIRMED = [("ctrl", "q"), ("escape",), ("ctrl", "shift", "t")]


def spellings(canonical: str) -> list[str]:
    """Every name in the executor's table that presses this key, in the case variants it accepts."""
    names = [name for name, key in KEYS.items() if key.name == canonical]
    return sorted({variant for name in names for variant in ({name} if len(name) == 1 else {name, name.upper(), name.title()})})


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "keys.md"
    path.write_text(RULES)
    return merge_files("desktop", [load_rule_file(path)])


def spelled(combo: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    """A combination spelt any way the executor accepts, in any order, maybe with extra modifiers held."""
    extra = st.lists(st.sampled_from([m for m in MODIFIERS if m not in combo]), max_size=2, unique=True).flatmap(
        lambda mods: st.tuples(*[st.sampled_from(spellings(m)) for m in mods]))
    named = st.tuples(*[st.sampled_from(spellings(k)) for k in combo])
    return st.tuples(named, extra).flatmap(lambda drawn: st.permutations([*drawn[0], *drawn[1]]))


CONTEXT = GuardContext(agent="desktop", window_title="Notes", focus_point=(10, 10))
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_every_table_spelling_is_generated():
    assert {"ctrl", "ctrlleft", "ctrlright", "control", "CTRLLEFT"} <= set(spellings("ctrl"))
    assert {"\n", "\r", "enter", "return", "RETURN"} <= set(spellings("enter"))
    assert {"\t", "tab"} <= set(spellings("tab"))


@pytest.mark.parametrize("combo", DENIED, ids="+".join)
@given(data=st.data())
@SETTINGS
def test_every_spelling_of_a_denied_combination_is_denied(policy, combo, data):
    keys = data.draw(spelled(combo))
    decision = guard(Hotkey(keys=keys), CONTEXT, policy)
    assert decision.verdict == "deny", (keys, decision.reason)
    if len(combo) == 1 and len(keys) == 1:
        assert guard(Key(key=keys[0]), CONTEXT, policy).verdict == "deny", keys


@pytest.mark.parametrize("combo", CONFIRMED, ids="+".join)
@given(data=st.data())
@SETTINGS
def test_every_spelling_of_a_confirmed_combination_asks(policy, combo, data):
    keys = data.draw(spelled(combo))
    assert guard(Hotkey(keys=keys), CONTEXT, policy).verdict in ("confirm", "deny"), keys


# Control characters and the key presses they are; the rules above cover Enter, Tab, Escape and Ctrl+W/Q.
CONTROL_CHARS = {"\n": "deny", "\r": "deny", "\r\n": "deny", "\t": "deny", "\x17": "deny", "\x1b": "confirm",
                 "\x11": "confirm"}
PRINTABLE = st.text(alphabet=string.ascii_letters + string.digits + " .,-", max_size=12)


@pytest.mark.parametrize("char,verdict", CONTROL_CHARS.items(), ids=[repr(c) for c in CONTROL_CHARS])
@given(before=PRINTABLE, after=PRINTABLE)
@SETTINGS
def test_control_characters_inside_typed_text_are_judged_as_keys(policy, char, verdict, before, after):
    decision = guard(Type(text=before + char + after), CONTEXT, policy)
    assert decision.verdict == verdict or (verdict == "confirm" and decision.verdict == "deny"), decision.reason


@given(text=PRINTABLE)
@SETTINGS
def test_text_without_control_characters_is_not_keys(policy, text):
    assert guard(Type(text=text), CONTEXT, policy).verdict == "allow"


def test_every_control_character_is_a_key_press():
    for code in list(range(0x20)) + [0x7F]:
        events = text_events("a" + chr(code) + "b")
        assert len(events) == 1, repr(chr(code))
    assert [str(e) for e in text_events("x\ny\tz\x1b\x08\x7f\x01")] == ["enter", "tab", "escape", "backspace", "delete", "ctrl+a"]


def test_modifiers_are_held_in_canonical_order_whatever_the_spelling():
    assert [str(e) for e in hotkey_events(["F4", "altright"])] == ["alt", "alt+f4"]
    assert [str(e) for e in hotkey_events(["ctrlleft", "ctrlright", "W"])] == ["ctrl", "ctrl+w"]
    assert [str(e) for e in hotkey_events(["ctrl", "!"])] == ["ctrl", "ctrl+shift+!"]


def test_allowed_keys_stay_allowed(policy):
    for keys in (["ctrl", "s"], ["alt", "f5"], ["space"], ["w"], ["f4"], ["shift", "q"]):
        assert guard(Hotkey(keys=keys), CONTEXT, policy).verdict == "allow", keys
    assert guard(Type(text="hello world"), CONTEXT, policy).verdict == "allow"


def test_a_name_outside_the_table_is_denied_never_pressed(policy):
    for name in ("fn", "volumeup", "browserback", "ctrl+w", "definitely-not-a-key", "\x80"):
        decision = guard(Key(key=name), CONTEXT, policy)
        assert decision.verdict == "deny" and "unknown key name" in decision.reason, name
