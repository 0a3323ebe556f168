"""An accessibility-enabled desktop session for tests: a D-Bus session bus on an X server, with
the AT-SPI bus that GTK apps start through it, and helpers to launch GTK apps into it.

The GTK apps run with Debian's python3 and python3-gi (GTK does not install into a virtualenv);
the agent side reads the tree with tilepilot.tools.accessibility, over D-Bus, from the test's virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.requires import require_binary, skip_missing
from tests.x11.servers import XServer
from tilepilot.tools.accessibility import AccessibilityTree, Widget

SYSTEM_PYTHON = "/usr/bin/python3"
GTK_FORM = Path(__file__).resolve().parent.parent / "apps" / "gtk_form.py"


@dataclass
class A11ySession:
    server: XServer
    env: dict[str, str]
    daemon_pid: int
    apps: list[subprocess.Popen] = field(default_factory=list)

    def launch(self, *cmd: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
        proc = subprocess.Popen(list(cmd), env=self.env, stdout=stdout, stderr=subprocess.DEVNULL, start_new_session=True, text=True)
        self.apps.append(proc)
        return proc

    def wait_for_widgets(self, app: str, predicate, timeout_s: float = 20.0) -> list[Widget]:
        """Poll the tree until ``predicate(widgets of app)`` holds; return those widgets."""
        deadline = time.monotonic() + timeout_s
        widgets: list[Widget] = []
        while time.monotonic() < deadline:
            tree = AccessibilityTree.connect(self.server.display)
            if tree is not None:
                try:
                    widgets = [w for w in tree.widgets() if w.app == app]
                finally:
                    tree.close()
                if predicate(widgets):
                    return widgets
            time.sleep(0.3)
        raise TimeoutError(f"{app} never showed the expected widgets; saw {[w.describe() for w in widgets][:20]}")

    def close(self) -> None:
        for proc in self.apps:
            proc.kill()
            proc.wait(timeout=10)
        try:
            os.kill(self.daemon_pid, 15)
        except ProcessLookupError:
            pass
        # The bus launcher leaves its address on the root window: remove it, the bus is gone.
        subprocess.run(["xprop", "-root", "-remove", "AT_SPI_BUS"], env=self.server.env, capture_output=True, timeout=10)


def start_a11y_session(server: XServer) -> A11ySession:
    require_binary("dbus-launch", "dbus-x11")
    require_binary("xprop", "x11-utils")
    if not Path("/usr/libexec/at-spi-bus-launcher").exists():
        skip_missing("at-spi-bus-launcher", "apt-get install at-spi2-core libatk-adaptor")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gtk', '3.0')"], capture_output=True)
    if probe.returncode != 0:
        skip_missing("GTK 3 for Debian's python3", "apt-get install python3-gi gir1.2-gtk-3.0")
    out = subprocess.run(["dbus-launch", "--sh-syntax"], env=server.env, capture_output=True, text=True, timeout=20, check=True).stdout
    values = dict(line.rstrip(";").split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith("export"))
    address = values["DBUS_SESSION_BUS_ADDRESS"].strip("'")
    env = {**server.env, "DBUS_SESSION_BUS_ADDRESS": address, "NO_AT_BRIDGE": "0", "GTK_A11Y": "atspi"}
    env.pop("AT_SPI_BUS_ADDRESS", None)
    return A11ySession(server=server, env=env, daemon_pid=int(values["DBUS_SESSION_BUS_PID"]))


def launch_gtk_form(session: A11ySession, events: Path) -> dict[str, list[int]]:
    """Start tests/apps/gtk_form.py; returns its widgets' screen boxes [x, y, w, h] by name."""
    proc = session.launch(SYSTEM_PYTHON, str(GTK_FORM), str(events), stdout=subprocess.PIPE)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("gtk_form.py exited before it was ready")
    session.wait_for_widgets("gtk_form.py", lambda ws: any(w.role == "push button" for w in ws))
    return json.loads(line)["widgets"]
