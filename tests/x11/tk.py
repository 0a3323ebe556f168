"""Launch tests/apps/tk_app.py on a test X server and read its event log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from tests.x11.servers import XServer, terminate_process

TK_APP = Path(__file__).resolve().parents[1] / "apps" / "tk_app.py"

Event = dict[str, object]


class Rect(BaseModel):
    """A root-window (screen) rectangle reported by the app."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


class Patch(Rect):
    colour: str  # "#rrggbb"

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


class ReadyInfo(BaseModel):
    """The app's "ready" line: where everything ended up on screen."""

    window: Rect
    widgets: dict[str, Rect]  # ".ok", ".delete", ".entry", ".listbox", ".canvas", ".label", "."
    patches: dict[str, Patch]  # "red", "green", "blue", "yellow"
    list_items: list[str]
    label: str


@dataclass
class TkApp:
    process: subprocess.Popen
    log_path: Path
    ready: ReadyInfo | None = None

    def events(self) -> list[Event]:
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events() if e["event"] == kind]

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout_s: float = 5.0, after: int = 0
    ) -> Event:
        """Wait for the first event (from index ``after``) matching ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events()[after:]:
                if predicate(event):
                    return event
            if self.process.poll() is not None:
                raise RuntimeError(f"tk_app exited with {self.process.returncode}; log: {self.events()[-5:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching event within {timeout_s}s; last: {self.events()[-5:]}")
            time.sleep(0.03)

    def settle(self, quiet_s: float = 0.3, timeout_s: float = 5.0) -> list[Event]:
        """Wait until the log stops growing for ``quiet_s``; returns all events."""
        deadline = time.monotonic() + timeout_s
        count, last_change = len(self.events()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = len(self.events())
            if now != count:
                count, last_change = now, time.monotonic()
            elif time.monotonic() - last_change >= quiet_s:
                break
        return self.events()

    def widget(self, name: str) -> Rect:
        assert self.ready is not None
        return self.ready.widgets[name]

    def stop(self) -> None:
        terminate_process(self.process)


def launch_tk_app(
    server: XServer | str,
    log_path: Path,
    *,
    label: str = "Tk test app",
    geometry: str = "640x420+40+60",
    timeout_s: float = 15.0,
) -> TkApp:
    """Start the app on ``server`` (an XServer or display name) and wait for its ready line."""
    display = server.display if isinstance(server, XServer) else server
    env = {**os.environ, "DISPLAY": display}
    cmd = [sys.executable, str(TK_APP), "--log", str(log_path), "--label", label, "--geometry", geometry]
    stderr_path = log_path.with_suffix(".stderr")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    app = TkApp(process=proc, log_path=log_path)
    try:
        ready = app.wait_for(lambda e: e["event"] == "ready", timeout_s=timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        app.stop()
        raise RuntimeError(f"tk_app did not get ready: {exc}; stderr: {stderr_path.read_text()[-500:]}") from None
    app.ready = ReadyInfo.model_validate(ready)
    return app
