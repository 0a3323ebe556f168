"""The accessibility tree (AT-SPI on Linux): which widget is where, its role, name and states.

Apps built on GTK, Qt and other toolkits publish their widgets on the accessibility bus, a D-Bus
bus of its own. This module speaks that protocol directly with jeepney (pure Python, no GObject
in the process), so it runs in any virtualenv:

* the bus address comes from ``AT_SPI_BUS_ADDRESS``, else the X root window's ``AT_SPI_BUS``
  property (set by at-spi-bus-launcher), else ``org.a11y.Bus.GetAddress`` on the session bus;
* the registry lists the applications; each lists its windows; a window's widgets are walked
  depth-first, visiting only what is showing, with a node limit so a huge tree cannot stall a step.

Apps without accessibility support (Tk, bare X clients) are simply absent: callers compare the
windows found here with the X windows on screen to say where nothing is known.
"""

from __future__ import annotations

import os
import subprocess

from pydantic import BaseModel, ConfigDict

_REGISTRY = ("org.a11y.atspi.Registry", "/org/a11y/atspi/accessible/root")
_ACCESSIBLE = "org.a11y.atspi.Accessible"
_COMPONENT = "org.a11y.atspi.Component"
_SCREEN_COORDS = 0
# AtspiStateType bit numbers (at-spi2-core atspi-constants.h) of the states the guard can use.
STATE_BITS = {
    "checked": 4, "editable": 7, "enabled": 8, "focused": 12, "modal": 16, "multi-line": 17, "pressed": 20,
    "selected": 23, "sensitive": 24, "showing": 25, "visible": 30,
}
_LABELLED_BY = 2  # AtspiRelationType
MAX_NODES = 2000
_CALL_TIMEOUT_S = 2.0


class Widget(BaseModel):
    """One accessible object on screen; ``bbox`` is (x0, y0, x1, y1) in screen pixels, inclusive."""

    model_config = ConfigDict(frozen=True)
    app: str
    window: str  # the name of the top-level window it is in
    role: str
    name: str
    states: tuple[str, ...] = ()
    bbox: tuple[int, int, int, int]
    depth: int = 0  # 0 = a top-level window
    value: str | None = None  # its text or current value, when read (``widgets(values=True)``)

    def describe(self) -> str:
        return f"{self.role} {self.name!r}" if self.name else self.role


def bus_address(display: str | None = None) -> str | None:
    """The accessibility bus of this desktop session, or None when none runs."""
    if os.environ.get("AT_SPI_BUS_ADDRESS"):
        return os.environ["AT_SPI_BUS_ADDRESS"]
    try:
        out = subprocess.run(["xprop", "-root", "AT_SPI_BUS"], capture_output=True, text=True, timeout=5,
                             env={**os.environ, **({"DISPLAY": display} if display else {})}).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    if '"' in out:
        return out.split('"')[1]
    return _address_from_session_bus()


def _address_from_session_bus() -> str | None:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    try:
        with open_dbus_connection("SESSION") as conn:
            msg = new_method_call(DBusAddress("/org/a11y/bus", "org.a11y.Bus", "org.a11y.Bus"), "GetAddress")
            return conn.send_and_get_reply(msg, timeout=_CALL_TIMEOUT_S).body[0] or None
    except Exception:  # no session bus, or no at-spi service on it: no accessibility
        return None


class AccessibilityTree:
    """A connection to the accessibility bus, reused for every read."""

    def __init__(self, address: str) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self._conn = open_dbus_connection(address)

    @classmethod
    def connect(cls, display: str | None = None) -> AccessibilityTree | None:
        """The session's tree, or None when no accessibility bus runs (or a stale address is left)."""
        address = bus_address(display)
        if not address:
            return None
        try:
            return cls(address)
        except Exception:  # jeepney raises OSError or its own authentication errors
            return None

    def close(self) -> None:
        self._conn.close()

    def widgets(self, max_nodes: int = MAX_NODES, values: bool = False) -> list[Widget]:
        """Every showing widget with a size, windows first in each app, parents before children.

        ``values``: also read each widget's text (Text interface) or current value (Value interface).
        """
        found: list[Widget] = []
        for app_ref in self._children(_REGISTRY):
            try:
                app_name = self._name(app_ref)
                for window_ref in self._children(app_ref):
                    self._walk(window_ref, app_name, self._name(window_ref), 0, found, max_nodes, values)
            except _Vanished:
                continue  # the app quit while being read
        return found

    def _walk(self, ref: tuple[str, str], app: str, window: str, depth: int, found: list[Widget], max_nodes: int,
              values: bool = False) -> None:
        if len(found) >= max_nodes:
            return
        try:
            states = self._states(ref)
            if "showing" not in states:
                return
            x, y, w, h = self._call(ref, _COMPONENT, "GetExtents", "u", (_SCREEN_COORDS,))[0]
            if w > 0 and h > 0:
                found.append(Widget(app=app, window=window, role=self._call(ref, _ACCESSIBLE, "GetRoleName")[0], name=self._label(ref),
                                    states=states, bbox=(x, y, x + w - 1, y + h - 1), depth=depth,
                                    value=self._value(ref) if values else None))
            for child in self._children(ref):
                self._walk(child, app, window, depth + 1, found, max_nodes, values)
        except _Vanished:
            return

    def _children(self, ref: tuple[str, str]) -> list[tuple[str, str]]:
        return [tuple(c) for c in self._call(ref, _ACCESSIBLE, "GetChildren")[0]]

    def _name(self, ref: tuple[str, str]) -> str:
        return self._call(ref, "org.freedesktop.DBus.Properties", "Get", "ss", (_ACCESSIBLE, "Name"))[0][1]

    def _label(self, ref: tuple[str, str]) -> str:
        """The accessible name, or else the names of the labels that label it (a form's fields)."""
        name = self._name(ref)
        if name:
            return name
        labels = [target for kind, targets in self._call(ref, _ACCESSIBLE, "GetRelationSet")[0] if kind == _LABELLED_BY
                  for target in targets]
        return " ".join(filter(None, (self._name(tuple(label)) for label in labels)))

    def _value(self, ref: tuple[str, str]) -> str | None:
        """The widget's text, else its current value, else None (it has neither interface)."""
        interfaces = self._call(ref, _ACCESSIBLE, "GetInterfaces")[0]
        if "org.a11y.atspi.Text" in interfaces:
            return self._call(ref, "org.a11y.atspi.Text", "GetText", "ii", (0, -1))[0]
        if "org.a11y.atspi.Value" in interfaces:
            value = self._call(ref, "org.freedesktop.DBus.Properties", "Get", "ss", ("org.a11y.atspi.Value", "CurrentValue"))[0][1]
            return f"{value:g}"
        return None

    def _states(self, ref: tuple[str, str]) -> tuple[str, ...]:
        low, high = self._call(ref, _ACCESSIBLE, "GetState")[0]
        bits = low | (high << 32)
        return tuple(name for name, bit in STATE_BITS.items() if bits >> bit & 1)

    def _call(self, ref: tuple[str, str], interface: str, method: str, signature: str | None = None, body: tuple = ()):
        from jeepney import DBusAddress, DBusErrorResponse, MessageType, new_method_call

        bus_name, path = ref
        msg = new_method_call(DBusAddress(path, bus_name, interface), method, signature, body)
        try:
            reply = self._conn.send_and_get_reply(msg, timeout=_CALL_TIMEOUT_S)
        except (TimeoutError, DBusErrorResponse):
            raise _Vanished from None
        if reply.header.message_type == MessageType.error:
            raise _Vanished
        return reply.body


class _Vanished(Exception):
    """An object or app went away (or stopped answering) while the tree was read."""
