"""What a task runs in: a D-Bus session with the accessibility bus on one X display, the task's app,
and (``setup.serve``) a local HTTP server that serves the task's folder and records submissions.

Real GTK apps publish their widgets on the AT-SPI bus, which they start through the session bus; so
each X server gets its own ``dbus-launch`` session, and every app of that screen runs in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tilepilot.agents.errors import RunError
from tilepilot.agents.eval.tasks.schema import WidgetQuery
from tilepilot.tools.accessibility import AccessibilityTree, Widget, bus_address

POLL_S = 0.25


WM_START_S = 10.0


class DesktopSession:
    """A session bus and a window manager on ``display``; ``env`` is what apps started in it get.

    The window manager is what real apps expect: without one a GTK dialog is placed at its parent's
    corner, partly off screen (mousepad's Save As opened at y=-28, its Name field out of reach), and
    a new dialog does not get the keyboard focus. openbox places and focuses windows as desktops do.
    """

    def __init__(self, display: str) -> None:
        self.display = display
        base = {**os.environ, "DISPLAY": display}
        base.pop("AT_SPI_BUS_ADDRESS", None)
        try:
            out = subprocess.run(["dbus-launch", "--sh-syntax"], env=base, capture_output=True, text=True, timeout=20,
                                 check=True).stdout
        except (OSError, subprocess.SubprocessError) as err:
            raise RunError(f"desktop tasks: dbus-launch failed ({err}); apt-get install dbus-x11") from None
        values = dict(line.rstrip(";").split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("export"))
        self.daemon_pid = int(values["DBUS_SESSION_BUS_PID"])
        # NO_AT_BRIDGE=0 and GTK_A11Y=atspi: GTK publishes its tree even where a desktop turned it off.
        self.env = {**base, "DBUS_SESSION_BUS_ADDRESS": values["DBUS_SESSION_BUS_ADDRESS"].strip("'"),
                    "NO_AT_BRIDGE": "0", "GTK_A11Y": "atspi",
                    # Chromium publishes its tree only when told assistive technology is on.
                    "ACCESSIBILITY_ENABLED": "1"}
        self.wm = self._window_manager()

    def _window_manager(self) -> subprocess.Popen:
        try:
            proc = subprocess.Popen(["openbox", "--sm-disable"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self.close()
            raise RunError("desktop tasks: openbox is not installed; apt-get install openbox") from None
        deadline = time.monotonic() + WM_START_S
        while time.monotonic() < deadline and proc.poll() is None:
            out = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env, capture_output=True, text=True,
                                 timeout=10).stdout
            if "window id" in out:
                return proc
            time.sleep(0.05)
        proc.kill()
        self.close()
        raise RunError(f"desktop tasks: openbox did not start on {self.display}")

    def bus(self) -> str | None:
        """The accessibility bus address (on the root window once the first app started it)."""
        return bus_address(self.display)

    def close(self) -> None:
        wm = getattr(self, "wm", None)
        if wm is not None and wm.poll() is None:
            wm.terminate()
            wm.wait(5)
        try:
            os.kill(self.daemon_pid, 15)
        except ProcessLookupError:
            pass


def read_widgets(address: str | None, values: bool = False) -> list[Widget]:
    tree = AccessibilityTree(address) if address else None
    if tree is None:
        return []
    try:
        return tree.widgets(values=values)
    finally:
        tree.close()


def find_widget(widgets: list[Widget], query: WidgetQuery) -> Widget | None:
    """The query's widget: role and name exact, the ``index``-th match in tree order.

    Names compare with whitespace runs collapsed and ends stripped: GTK pads a menu item's name
    with the spaces that align its accelerator ('Save As...      ' in mousepad's File menu).
    """
    want = " ".join(query.name.split()) if query.name is not None else None
    matches = [w for w in widgets if w.role == query.role and (want is None or " ".join(w.name.split()) == want)]
    return matches[query.index] if query.index < len(matches) else None


def wait_for_widget(address_of, query: WidgetQuery, timeout_s: float, alive=lambda: True) -> Widget | None:
    """Poll the tree until ``query`` shows up (None after ``timeout_s`` or when ``alive()`` turns false)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        address = address_of()
        try:
            found = find_widget(read_widgets(address), query) if address else None
        except OSError:
            found = None  # the bus is still starting
        if found is not None:
            return found
        time.sleep(POLL_S)
    return None


class Receiver:
    """A local HTTP server: GET serves files from ``root``; any POST is recorded (path and fields)
    and answered with a short page, as a real form's endpoint would."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.received: list[tuple[str, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # the suite's output stays quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = (receiver.root / urlsplit(self.path).path.lstrip("/")).resolve()
                if not path.is_file() or receiver.root.resolve() not in path.parents:
                    self.send_error(404)
                    return
                self._send(path.read_bytes(), "text/html; charset=utf-8")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
                if "json" in (self.headers.get("Content-Type") or ""):
                    fields = {str(k): str(v) for k, v in json.loads(body or "{}").items()}
                else:
                    fields = dict(parse_qsl(body, keep_blank_values=True))
                receiver.received.append((urlsplit(self.path).path, fields))
                self._send(b"<html><body><h1>Thank you</h1></body></html>", "text/html")

            def _send(self, data: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
