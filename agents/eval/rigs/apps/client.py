"""Start an eval app on a display and ask it where its targets are (see :mod:`tilepilot.agents.eval.rigs.apps.base`)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tilepilot.agents.errors import RunError

READY_TIMEOUT_S = 30.0
GTK_CHECK = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"


@functools.cache
def gtk_python() -> str | None:
    """An interpreter with PyGObject and GTK 3 (this one, or Debian's python3-gi), or None."""
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            if Path(python).exists() and subprocess.run([python, "-c", GTK_CHECK], capture_output=True, timeout=30).returncode == 0:
                return python
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None
QUERY_TIMEOUT_S = 10.0


class Target(BaseModel):
    """A widget (or list row, menu entry) as the toolkit placed it, in screen pixels."""

    x: int
    y: int
    width: int
    height: int
    text: str = ""

    @property
    def center(self) -> tuple[float, float]:
        """The box centre in continuous screen coordinates (pixel i spans [i, i + 1))."""
        return self.x + self.width / 2, self.y + self.height / 2

    @property
    def center_pixel(self) -> tuple[int, int]:
        return self.x + (self.width - 1) // 2, self.y + (self.height - 1) // 2

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height

    def box(self) -> tuple[float, float, float, float]:
        return float(self.x), float(self.y), float(self.x + self.width), float(self.y + self.height)


class Layout(BaseModel):
    targets: dict[str, Target]
    state: dict[str, Any]  # the app's own state; each app documents its keys


class AppProcess:
    """One running app; use as a context manager. ``layout()`` asks the app, it never guesses."""

    def __init__(self, module: str, args: list[str], display: str, log_dir: Path, python: str = sys.executable) -> None:
        self.module, self.args, self.display, self.python = module, args, display, python
        self.stderr_path = log_dir / f"{module.rsplit('.', 1)[-1]}.stderr"
        self.proc: subprocess.Popen | None = None
        self.ready: Layout | None = None
        self._pending = b""

    def __enter__(self) -> "AppProcess":
        env = {**os.environ, "DISPLAY": self.display}
        program = ["-m", self.module]
        if self.python != sys.executable:  # another interpreter (the system one, for GTK) runs the file itself
            spec = importlib.util.find_spec(self.module)
            assert spec is not None and spec.origin is not None, self.module
            program = [spec.origin]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([self.python, *program, *self.args], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        try:
            self.ready = Layout.model_validate(self._read_line(READY_TIMEOUT_S))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def layout(self) -> Layout:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"layout\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise RunError(f"{self.module} exited before it could be asked for its layout") from None
        return Layout.model_validate(self._read_line(QUERY_TIMEOUT_S))

    def layout_when(self, ready: Callable[[Layout], bool], timeout_s: float = 3.0) -> Layout:
        """The first layout for which ``ready`` holds (a menu posting, a click arriving: a loaded machine lags),
        or the last one after ``timeout_s`` (the caller judges it). An app that has quit shows nothing."""
        deadline = time.monotonic() + timeout_s
        while True:
            layout = self.layout() if self.running else Layout(targets={}, state={})
            if ready(layout) or time.monotonic() > deadline or not self.running:
                return layout
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _read_line(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RunError(f"{self.module} on {self.display} did not answer: {tail[0]}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.flush()
            self.proc.wait(3)
        except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait(3)
