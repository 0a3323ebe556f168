"""Real X servers and the Tk test app for tests (see servers.py, tk.py, fixtures.py)."""

from tests.x11.servers import XServer, start_xorg_dummy, start_xvfb, xorg_available
from tests.x11.tk import ReadyInfo, TkApp, launch_tk_app

__all__ = [
    "ReadyInfo", "TkApp", "XServer", "launch_tk_app", "start_xorg_dummy", "start_xvfb",
    "xorg_available",
]
