"""One key model for the guard and the executor: what reaches the X server, whatever the spelling.

The model may spell one keystroke many ways (``ctrl``, ``ctrlleft``, ``Control``; ``enter``,
``return``, ``"\\n"``). pyautogui presses each of its names as an X keysym, and the app sees only the
keysym and the modifiers held. So a rule must be judged on the keysyms, not on the name, and the
executor must press exactly what the guard judged. This module is that single table:

* :data:`KEYS` maps every name the executor accepts to a :class:`Key`: its canonical name (the
  spelling rules are matched on; left and right modifiers collapse into one), the X keysym the
  executor presses for it, and whether pyautogui adds Shift (``"!"`` is Shift+1 on X).
* :func:`hotkey_events` and :func:`key_events` give the key events a hotkey or key action produces,
  one :class:`Chord` per key press, with the modifiers held at that moment.
* :func:`text_events` splits typed text into runs of characters and the key presses its control
  characters produce (newline is Enter, tab is Tab, C0 ``\\x01``..``\\x1a`` are Ctrl+A..Ctrl+Z, as a
  terminal reads them), so a rule on Enter holds inside typed text too.

A name outside :data:`KEYS` is refused (:class:`UnknownKeyError`), never pressed: pyautogui silently
ignores names it cannot map on X11 (``fn``, ``volumeup``, ``command``), and a keystroke the guard
cannot name is one it cannot judge.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from tilepilot.tools.errors import ActionExecutionError

MODIFIERS = ("ctrl", "alt", "shift", "super")  # canonical order in a chord's name


class UnknownKeyError(ActionExecutionError):
    """A key name (or a character in typed text) that the executor does not press."""


@dataclass(frozen=True)
class Key:
    """One physical key as the executor presses it."""

    name: str  # canonical: what rules match ("ctrl", "enter", "f4", "w", "!")
    keysym: str  # the X keysym pressed (Control_L for every spelling of ctrl)
    press_as: str  # the pyautogui name that presses exactly this keysym on X11
    shift: bool = False  # pyautogui holds Shift around it (shifted symbols)

    @property
    def is_modifier(self) -> bool:
        return self.name in MODIFIERS


@dataclass(frozen=True, order=True)
class Chord:
    """One key press and the modifiers held while it goes down: the event an app acts on."""

    modifiers: frozenset[str]
    key: str  # canonical name of the key pressed

    def __str__(self) -> str:
        if self.key in MODIFIERS:  # a modifier pressed on its own or with others held
            return "+".join(m for m in MODIFIERS if m in self.modifiers | {self.key})
        return "+".join([*(m for m in MODIFIERS if m in self.modifiers), self.key])


def _key(name: str, keysym: str, press_as: str | None = None, shift: bool = False) -> Key:
    return Key(name=name, keysym=keysym, press_as=press_as or name, shift=shift)


def _build_table() -> dict[str, Key]:
    canonical = [
        _key("ctrl", "Control_L"), _key("alt", "Alt_L"), _key("shift", "Shift_L"), _key("super", "Super_L", "win"),
        _key("enter", "Return"), _key("tab", "Tab"), _key("backspace", "BackSpace"), _key("escape", "Escape"),
        _key("delete", "Delete"), _key("insert", "Insert"), _key("space", "space"), _key("home", "Home"),
        _key("end", "End"), _key("pageup", "Page_Up"), _key("pagedown", "Page_Down"), _key("left", "Left"),
        _key("right", "Right"), _key("up", "Up"), _key("down", "Down"), _key("capslock", "Caps_Lock"),
        _key("numlock", "Num_Lock"), _key("scrolllock", "Scroll_Lock"), _key("pause", "Pause"),
        _key("printscreen", "Print"), _key("apps", "Menu"), _key("help", "Help"),
        _key("multiply", "KP_Multiply"), _key("add", "KP_Add"), _key("subtract", "KP_Subtract"),
        _key("decimal", "KP_Decimal"), _key("divide", "KP_Divide"),
        # Only keys a standard X keymap has: pyautogui would "press" keycode 0 for Select, Execute,
        # KP_Separator or F13..F24, which sends nothing, so they are not keys tilepilot presses.
        *(_key(f"f{n}", f"F{n}") for n in range(1, 13)),
        *(_key(f"num{n}", f"KP_{n}") for n in range(10)),
        *(_key(c, c) for c in string.ascii_lowercase + string.digits),
        *(_key(c, sym, shift=c in _SHIFTED) for c, sym in _SYMBOLS.items()),
    ]
    table = {k.name: k for k in canonical}
    for alias, name in _ALIASES.items():
        table[alias] = table[name]
    for upper in string.ascii_uppercase:  # a key names a key, not a letter's case: "W" is the w key
        table[upper] = table[upper.lower()]
    return table


# US layout symbols and their X keysyms (pyautogui's own table for X11).
_SYMBOLS = {
    "!": "exclam", '"': "quotedbl", "#": "numbersign", "$": "dollar", "%": "percent", "&": "ampersand",
    "'": "apostrophe", "(": "parenleft", ")": "parenright", "*": "asterisk", "+": "plus", ",": "comma",
    "-": "minus", ".": "period", "/": "slash", ":": "colon", ";": "semicolon", "<": "less", "=": "equal",
    ">": "greater", "?": "question", "@": "at", "[": "bracketleft", "\\": "backslash", "]": "bracketright",
    "^": "asciicircum", "_": "underscore", "`": "grave", "{": "braceleft", "|": "bar", "}": "braceright",
    "~": "asciitilde",
}
_SHIFTED = set('~!@#$%^&*()_+{}|:"<>?')  # pyautogui.isShiftCharacter for these symbols

# Every other spelling the executor accepts: pyautogui's own second names, its left/right forms
# (collapsed), the control characters it maps, and the names models and other toolkits use.
_ALIASES = {
    "ctrlleft": "ctrl", "ctrlright": "ctrl", "control": "ctrl", "ctl": "ctrl", "control_l": "ctrl", "control_r": "ctrl",
    "altleft": "alt", "altright": "alt", "option": "alt", "optionleft": "alt", "optionright": "alt", "opt": "alt",
    "alt_l": "alt", "alt_r": "alt",
    "shiftleft": "shift", "shiftright": "shift", "shift_l": "shift", "shift_r": "shift",
    "win": "super", "winleft": "super", "winright": "super", "windows": "super", "meta": "super", "cmd": "super",
    "command": "super", "super_l": "super", "super_r": "super",
    "return": "enter", "\n": "enter", "\r": "enter", "\t": "tab", "\b": "backspace", "\x1b": "escape",
    "\x7f": "delete", "esc": "escape", "del": "delete", "ins": "insert", "bksp": "backspace", " ": "space",
    "pgup": "pageup", "pgdn": "pagedown", "page_up": "pageup", "page_down": "pagedown",
    "print": "printscreen", "prtsc": "printscreen", "prtscr": "printscreen", "prntscrn": "printscreen",
    "menu": "apps",
}

KEYS: dict[str, Key] = _build_table()


def find(name: str) -> Key | None:
    """The key a name presses, or None for a name outside the table.

    A single character is itself (" " is space, "W" the w key); a longer name is case-insensitive.
    """
    return KEYS.get(name) if len(name) == 1 else KEYS.get(name.strip().lower())


def lookup(name: str) -> Key:
    """The key a name presses; raises :class:`UnknownKeyError` for a name outside the table."""
    key = find(name)
    if key is None:
        raise UnknownKeyError(
            f"unknown key name {name!r}: use a key name such as ctrl, alt, shift, enter, tab, escape, f5 or a single character"
        )
    return key


def hotkey_keys(names: Sequence[str]) -> list[Key]:
    """The keys of a combination in the order the executor presses them: modifiers first, each key once.

    ``["F4", "Alt"]`` is Alt+F4, as the model meant it, and ``["ctrlleft", "ctrlright", "w"]`` is Ctrl+W.
    """
    keys = list(dict.fromkeys(lookup(n) for n in names))
    modifiers = sorted((k for k in keys if k.is_modifier), key=lambda k: MODIFIERS.index(k.name))
    return modifiers + [k for k in keys if not k.is_modifier]


def hotkey_events(names: Sequence[str]) -> list[Chord]:
    """The key presses of a combination, held down in :func:`hotkey_keys` order (pyautogui.hotkey)."""
    held: set[str] = set()
    events = []
    for key in hotkey_keys(names):
        modifiers = frozenset(held | ({"shift"} if key.shift else set()))
        events.append(Chord(modifiers=modifiers - {key.name}, key=key.name))
        if key.is_modifier:
            held.add(key.name)
    return events


def key_events(name: str) -> list[Chord]:
    return hotkey_events([name])


# C0 control characters a terminal reads as Ctrl+letter (^A .. ^Z and the four after); the named ones
# (newline, tab, backspace, escape) are in the table above and win.
_C0_CHORDS = {chr(code): ("ctrl", letter) for code, letter in enumerate("@" + string.ascii_lowercase + "[\\]^_")}
_C0_CHORDS["\x00"] = ("ctrl", "space")


@dataclass(frozen=True)
class TextRun:
    """A part of typed text: printable characters to type, or one key press from a control character."""

    text: str = ""
    keys: tuple[str, ...] = ()  # canonical names to press together (a hotkey), for a control character

    @property
    def chord(self) -> Chord | None:
        return hotkey_events(self.keys)[-1] if self.keys else None


def is_control(char: str) -> bool:
    return ord(char) < 0x20 or ord(char) == 0x7F


def text_runs(text: str) -> list[TextRun]:
    """Split typed text into character runs and the key presses of its control characters.

    ``"\\r\\n"`` is one Enter, as an editor reads a Windows line end.
    """
    runs: list[TextRun] = []
    chars: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if not is_control(char):
            chars.append(char)
            i += 1
            continue
        if chars:
            runs.append(TextRun(text="".join(chars)))
            chars = []
        if char == "\r" and text[i + 1:i + 2] == "\n":
            i += 1
        named = KEYS.get(char)
        runs.append(TextRun(keys=(named.name,) if named else _C0_CHORDS[char]))
        i += 1
    if chars:
        runs.append(TextRun(text="".join(chars)))
    return runs


def text_events(text: str) -> list[Chord]:
    """The key presses typed text produces through its control characters (characters are text, not keys)."""
    return [run.chord for run in text_runs(text) if run.chord is not None]


def combo_name(names: Sequence[str]) -> str:
    """``["Control", "W"]`` -> ``"ctrl+w"``: the canonical spelling of a combination (modifiers first)."""
    return "+".join(k.name for k in hotkey_keys(names))


__all__ = ["Chord", "KEYS", "Key", "MODIFIERS", "TextRun", "UnknownKeyError", "combo_name", "find", "hotkey_events", "hotkey_keys",
           "is_control", "key_events", "lookup", "text_events", "text_runs"]
