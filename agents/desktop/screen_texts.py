"""What the guard knows about the screen's texts: window titles and the widgets inside windows.

The model is encoder-free and there is no OCR in the loop, so the texts the guard matches its
``deny_text`` and ``near_label`` patterns against come from two providers, merged with
:class:`CombinedTexts`:

* :class:`X11WindowTitles`: the active window's title and the title and frame of every top-level
  window, bottom to top (EWMH ``_NET_CLIENT_LIST_STACKING``), read with python-xlib;
* :class:`AccessibilityTexts`: every showing widget of every app on the accessibility bus
  (AT-SPI), with its name, role, states and box. Apps without accessibility support (Tk, bare X)
  are absent from it, and the guard reports their points as "no accessibility information".
"""

from __future__ import annotations

from typing import Protocol, Sequence

from pydantic import BaseModel

from tilepilot.agents.rules import ScreenText
from tilepilot.tools.accessibility import AccessibilityTree
from tilepilot.tools.errors import DisplayUnavailableError
from tilepilot.tools.ui_unicode import xauthority_fallback


class ScreenInfo(BaseModel):
    window_title: str | None = None  # the active window's title; None when unknown
    texts: list[ScreenText] = []


class ScreenTextProvider(Protocol):
    def read(self) -> ScreenInfo: ...


class StaticTexts:
    """Fixed texts (and optionally a title): for tests and for callers that know their layout."""

    def __init__(self, texts: Sequence[ScreenText] = (), window_title: str | None = None) -> None:
        self.info = ScreenInfo(window_title=window_title, texts=list(texts))

    def read(self) -> ScreenInfo:
        return self.info


class CombinedTexts:
    """All providers' texts; the first known window title wins."""

    def __init__(self, *providers: ScreenTextProvider) -> None:
        self.providers = providers

    def read(self) -> ScreenInfo:
        infos = [p.read() for p in self.providers]
        title = next((i.window_title for i in infos if i.window_title is not None), None)
        return ScreenInfo(window_title=title, texts=[t for i in infos for t in i.texts])

    def close(self) -> None:
        for provider in self.providers:
            close = getattr(provider, "close", None)
            if close is not None:
                close()


class X11WindowTitles:
    """Window titles and frames from the X server (EWMH), one connection reused for every read."""

    def __init__(self, display: str | None) -> None:  # None: $DISPLAY, as python-xlib reads it
        from Xlib import display as xdisplay  # python-xlib, installed with pyautogui on Linux

        try:
            with xauthority_fallback():
                self._display = xdisplay.Display(display)
        except Exception as exc:  # python-xlib raises several unrelated types for a bad display
            raise DisplayUnavailableError(
                f"cannot read window titles from X display {display!r}: is the X server running? ({type(exc).__name__})"
            ) from None
        self._root = self._display.screen().root
        atom = self._display.intern_atom
        self._active = atom("_NET_ACTIVE_WINDOW")
        # Bottom to top, so the guard can tell which window is in front at a point.
        self._clients = atom("_NET_CLIENT_LIST_STACKING")
        self._unstacked_clients = atom("_NET_CLIENT_LIST")
        self._net_name = atom("_NET_WM_NAME")
        self._utf8 = atom("UTF8_STRING")

    def close(self) -> None:
        self._display.close()

    def read(self) -> ScreenInfo:
        from Xlib import X
        from Xlib.error import XError

        texts: list[ScreenText] = []
        for wid in self._window_ids(self._clients) or self._window_ids(self._unstacked_clients):
            try:
                window = self._display.create_resource_object("window", wid)
                title = self._title(window)
                if not title:
                    continue
                geo = window.get_geometry()
                pos = window.translate_coords(self._root, 0, 0)
                # translate_coords gives the root origin in the window's frame: negate it.
                x0, y0 = -pos.x, -pos.y
                texts.append(ScreenText(text=title, bbox=(x0, y0, x0 + geo.width - 1, y0 + geo.height - 1), source="window"))
            except XError:
                continue  # the window closed between listing and reading: skip it
        active = self._window_ids(self._active)
        title = None
        if active and active[0] != X.NONE:
            try:
                title = self._title(self._display.create_resource_object("window", active[0]))
            except XError:
                title = None
        return ScreenInfo(window_title=title, texts=texts)

    def _window_ids(self, atom: int) -> list[int]:
        from Xlib import X

        prop = self._root.get_full_property(atom, X.AnyPropertyType)
        return [int(v) for v in prop.value] if prop is not None else []

    def _title(self, window) -> str | None:
        from Xlib import X, Xatom

        prop = window.get_full_property(self._net_name, self._utf8)
        if prop is not None and prop.value:
            value = prop.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        name = window.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
        if name is not None and name.value:
            value = name.value
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
        return None


class AccessibilityTexts:
    """Widgets from the accessibility tree; reads nothing when the session has no accessibility bus."""

    def __init__(self, display: str | None = None) -> None:
        self._tree = AccessibilityTree.connect(display)

    @property
    def available(self) -> bool:
        return self._tree is not None

    def close(self) -> None:
        if self._tree is not None:
            self._tree.close()

    def read(self) -> ScreenInfo:
        if self._tree is None:
            return ScreenInfo()
        return ScreenInfo(texts=[ScreenText(text=w.name, bbox=w.bbox, source="accessibility", role=w.role, states=w.states,
                                                    window=w.window)
                                 for w in self._tree.widgets()])


def desktop_texts(display: str | None) -> CombinedTexts:
    """The providers the desktop agent uses: window titles plus the accessibility tree."""
    return CombinedTexts(X11WindowTitles(display), AccessibilityTexts(display))
