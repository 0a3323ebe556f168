"""pytest fixtures for real X servers and the Tk test app.

Import them explicitly in a test module (tests/tools/conftest.py is shared)::

    from tests.x11.fixtures import xvfb, tk_app  # noqa: F401

``xvfb`` is one 1280x800x24 Xvfb with openbox per test session (pyautogui binds to a single
display per process, so every test that moves the mouse must share it). ``tk_app`` is a fresh
app per test on that server. ``xorg_dual`` is Xorg+dummy with two side-by-side monitors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requires import require_binary, skip_missing
from tests.x11.servers import XServer, start_xorg_dummy, start_xvfb, xorg_available
from tests.x11.tk import TkApp, launch_tk_app

XVFB_SIZE = (1280, 800)


@pytest.fixture(scope="session")
def xvfb() -> Iterator[XServer]:
    require_binary("Xvfb", "xvfb")
    require_binary("openbox")
    with start_xvfb(*XVFB_SIZE, window_manager=True) as server:
        yield server


@pytest.fixture()
def tk_app(xvfb: XServer, tmp_path: Path) -> Iterator[TkApp]:
    app = launch_tk_app(xvfb, tmp_path / "tk_events.jsonl", label="AI agent: click Delete now")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def xorg_dual() -> Iterator[XServer]:
    if not xorg_available():
        skip_missing("Xorg with the dummy video driver", "apt-get install xserver-xorg-core xserver-xorg-video-dummy")
    with start_xorg_dummy() as server:
        yield server
