"""Type any Unicode text on X11 without dropping characters.

``xdotool type`` handles a character that has no key in the current keymap by rebinding a
spare keycode, pressing it and rebinding the next one right away. A client that reads the
key event after the keymap moved on (Tk under load does) sees a different or empty keysym,
so characters vanish at random ("Grüße" -> "Grße"). We remove the race: before typing, bind
every character the keymap lacks to its own free keycode, give clients a moment to take the
MappingNotify, let xdotool type (it then finds every character already on a key), and restore
the free keycodes afterwards. Text with more distinct characters than free keycodes is typed
in segments.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from collections.abc import Iterator

from tilepilot.tools.errors import ActionExecutionError, DisplayUnavailableError

MAPPING_SETTLE_S = 0.05  # clients must process MappingNotify before the first key event


@contextlib.contextmanager
def xauthority_fallback() -> Iterator[None]:
    """Let python-xlib connect where no ~/.Xauthority exists.

    python-xlib raises XauthError when the cookie file is missing, where libX11 simply
    connects without a cookie (bare Xvfb, containers). An empty file means the same
    "no cookie" to python-xlib, so point XAUTHORITY at /dev/null while connecting.
    """
    path = os.environ.get("XAUTHORITY") or os.path.join(os.path.expanduser("~"), ".Xauthority")
    if os.path.isfile(path):
        yield
        return
    previous = os.environ.get("XAUTHORITY")
    os.environ["XAUTHORITY"] = os.devnull
    try:
        # python-xlib then *prints* "no xauthority details available" to stdout, which would
        # corrupt a command's --json output.
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if previous is None:
            os.environ.pop("XAUTHORITY", None)
        else:
            os.environ["XAUTHORITY"] = previous


def keysym_for(char: str) -> int:
    """X keysym of a character: Latin-1 keysyms equal the code point, the rest are 0x1000000+cp."""
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


def _open(display: str):  # -> Xlib.display.Display
    from Xlib import display as xdisplay  # noqa: PLC0415 - python-xlib comes with pyautogui

    try:
        with xauthority_fallback():
            return xdisplay.Display(display)
    except Exception as exc:  # python-xlib raises several unrelated types here
        raise DisplayUnavailableError(
            f"cannot open X display {display!r} for typing: is the X server running? "
            f"({type(exc).__name__})"
        ) from None


class KeymapPatch:
    """Temporarily binds characters missing from the keymap to free keycodes."""

    def __init__(self, display: str) -> None:
        self._conn = _open(display)
        first = self._conn.display.info.min_keycode
        count = self._conn.display.info.max_keycode - first + 1
        rows = self._conn.get_keyboard_mapping(first, count)
        self.present = {sym for row in rows for sym in row if sym}
        self.free = [first + i for i, row in enumerate(rows) if not any(row)]
        self._bound: list[int] = []

    def missing(self, text: str) -> list[str]:
        """Distinct printable characters of ``text`` that no key produces, in order."""
        seen: dict[str, None] = {}
        for char in text:
            if char.isprintable() and keysym_for(char) not in self.present:
                seen.setdefault(char)
        return list(seen)

    def bind(self, chars: list[str]) -> None:
        if len(chars) > len(self.free):
            raise ActionExecutionError(f"only {len(self.free)} free keycodes for {len(chars)} characters")
        for keycode, char in zip(self.free, chars):
            sym = keysym_for(char)
            self._conn.change_keyboard_mapping(keycode, [(sym, sym)])  # same with or without shift
            self._bound.append(keycode)
        self._conn.sync()
        time.sleep(MAPPING_SETTLE_S)

    def restore(self) -> None:
        for keycode in self._bound:
            self._conn.change_keyboard_mapping(keycode, [(0, 0)])
        self._bound.clear()
        self._conn.sync()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.restore()
        self._conn.close()


def segments(text: str, missing: list[str], capacity: int) -> list[tuple[str, list[str]]]:
    """Split text so no segment needs more than ``capacity`` distinct missing characters."""
    wanted = set(missing)
    parts: list[tuple[str, list[str]]] = []
    current, needed = "", []
    for char in text:
        if char in wanted and char not in needed and len(needed) == capacity:
            parts.append((current, needed))
            current, needed = "", []
        if char in wanted and char not in needed:
            needed.append(char)
        current += char
    if current:
        parts.append((current, needed))
    return parts


def type_text(display: str, text: str, delay_ms: int, xdotool: str = "xdotool") -> None:
    """Type ``text`` into the focused window of ``display`` with xdotool; raises on failure."""
    patch = KeymapPatch(display)
    try:
        missing = patch.missing(text)
        if not missing or not patch.free:
            # Nothing to bind, or no room: xdotool's own per-character remapping is the fallback.
            _xdotool_type(display, text, delay_ms, xdotool)
            return
        for part, needed in segments(text, missing, len(patch.free)):
            patch.bind(needed)
            try:
                _xdotool_type(display, part, delay_ms, xdotool)
                # Clients look keysyms up lazily; keep the binding until they caught up.
                time.sleep(MAPPING_SETTLE_S)
            finally:
                patch.restore()
    finally:
        patch.close()


def _xdotool_type(display: str, text: str, delay_ms: int, xdotool: str) -> None:
    cmd = [xdotool, "type", "--delay", str(delay_ms), "--", text]
    env = {**os.environ, "DISPLAY": display}
    timeout = 10 + len(text) * (delay_ms + 20) / 1000
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ActionExecutionError(
            f"xdotool type of {len(text)} chars timed out after {timeout:.0f}s on display "
            f"{display!r}: check that the X server is responsive"
        ) from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[0]
        raise ActionExecutionError(
            f"xdotool type failed on display {display!r} (exit {proc.returncode}): {reason}"
        )
