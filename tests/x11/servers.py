"""Start and stop real X servers for tests: Xvfb (one screen) and Xorg+dummy (two monitors).

Both servers pick a free display number themselves (``-displayfd``), so parallel test runs
and other engineers' servers never collide. Use them as context managers::

    with start_xvfb(1280, 800) as x:      # openbox running, x.display == ":42"
        ...
    with start_xorg_dummy() as x:         # DUMMY0 1920x1080+0+0, DUMMY1 1280x1024+1920+0
        ...
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.eval.rigs.xserver import terminate_process


class Head(BaseModel):
    """One monitor of a multi-head X server, in screen pixels."""

    width: int
    height: int
    left: int
    top: int


DEFAULT_DUAL_HEADS = (
    Head(width=1920, height=1080, left=0, top=0),
    Head(width=1280, height=1024, left=1920, top=0),
)


class XServerError(RuntimeError):
    pass


@dataclass
class XServer:
    """A running X server (and optional window manager) owned by the test."""

    display: str
    process: subprocess.Popen
    log_path: Path
    workdir: Path
    extra: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes that should talk to this server."""
        return {**os.environ, "DISPLAY": self.display}

    def run(self, *args: str, check: bool = True, timeout: float = 10) -> str:
        """Run an X client (xrandr, xdotool, ...) against this server; returns stdout."""
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise XServerError(f"{' '.join(args)} failed on {self.display}: {proc.stderr.strip()}")
        return proc.stdout

    def stop(self) -> None:
        for proc in [*self.extra, self.process]:
            terminate_process(proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> XServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _launch_with_displayfd(cmd: list[str], log_path: Path, timeout_s: float) -> tuple[str, subprocess.Popen]:
    """Start an X server with -displayfd and return ':N' once it accepts connections."""
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*cmd, "-displayfd", str(write_fd)], pass_fds=(write_fd,), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    os.close(write_fd)
    # The server writes the number and the newline in two write() calls and dies of a
    # failed write if we close the pipe in between: read up to the newline.
    received = b""
    deadline = time.monotonic() + timeout_s
    try:
        while not received.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 64) if ready else b""
            if not chunk:
                break  # timeout or the server exited
            received += chunk
    finally:
        os.close(read_fd)
    number = received.decode().strip() if received.endswith(b"\n") else ""
    if not number:
        terminate_process(proc)
        tail = log_path.read_text(errors="replace")[-800:]
        raise XServerError(f"{cmd[0]} did not start within {timeout_s}s; log tail:\n{tail}")
    return f":{number}", proc


def start_openbox(server: XServer, timeout_s: float = 10.0) -> None:
    """Run openbox so windows get focus on click and honour their requested position."""
    proc = subprocess.Popen(
        ["openbox", "--sm-disable"], env=server.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    server.extra.append(proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = server.run("xprop", "-root", "_NET_SUPPORTING_WM_CHECK", check=False)
        if "window id" in out:
            return
        if proc.poll() is not None or server.process.poll() is not None:
            tail = server.log_path.read_text(errors="replace")[-800:]
            raise XServerError(
                f"openbox (exit {proc.returncode}) or the X server (exit "
                f"{server.process.returncode}) died on {server.display}; X log tail:\n{tail}"
            )
        time.sleep(0.05)
    raise XServerError(f"openbox did not come up on {server.display} within {timeout_s}s")


def start_xvfb(
    width: int = 1280, height: int = 800, depth: int = 24, *, window_manager: bool = True,
    timeout_s: float = 15.0,
) -> XServer:
    """Xvfb with one screen of the given size; openbox on top unless window_manager=False.

    Without a window manager focus follows the pointer, so keystrokes reach whatever window
    is under the mouse; the Tk test app calls focus_force() to cope with that too.
    """
    workdir = Path(tempfile.mkdtemp(prefix="tilepilot-xvfb-"))
    log_path = workdir / "xvfb.log"
    cmd = ["Xvfb", "-screen", "0", f"{width}x{height}x{depth}", "-nolisten", "tcp", "-noreset",
           "+extension", "RANDR"]
    display, proc = _launch_with_displayfd(cmd, log_path, timeout_s)
    server = XServer(display=display, process=proc, log_path=log_path, workdir=workdir)
    try:
        if window_manager:
            start_openbox(server)
    except BaseException:
        server.stop()
        raise
    return server


XORG_DUMMY_CONF = """\
Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam 256000
    Option "NumHeads" "{heads}"
EndSection
Section "Monitor"
    Identifier "monitor0"
    HorizSync 5.0 - 1000.0
    VertRefresh 5.0 - 200.0
EndSection
Section "Screen"
    Identifier "screen0"
    Device "dummy"
    Monitor "monitor0"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual {virtual_w} {virtual_h}
    EndSubSection
EndSection
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoAddGPU" "false"
    Option "DontVTSwitch" "true"
EndSection
"""


def xorg_available() -> bool:
    return shutil.which("Xorg") is not None and Path("/usr/lib/xorg/modules/drivers/dummy_drv.so").exists()


def start_xorg_dummy(heads: Sequence[Head] = DEFAULT_DUAL_HEADS, timeout_s: float = 20.0) -> XServer:
    """Xorg with the dummy driver and one output per head, laid out as given.

    Xvfb's Xinerama stacks every head at 0,0, so real side-by-side monitors need Xorg.
    Must run as root (Xorg refuses -config paths outside /etc otherwise).
    """
    workdir = Path(tempfile.mkdtemp(prefix="tilepilot-xorg-"))
    virtual_w = max(h.left + h.width for h in heads)
    virtual_h = max(h.top + h.height for h in heads)
    conf = workdir / "xorg.conf"
    conf.write_text(XORG_DUMMY_CONF.format(heads=len(heads), virtual_w=virtual_w, virtual_h=virtual_h))
    log_path = workdir / "xorg.log"
    cmd = ["Xorg", "-config", str(conf), "-logfile", str(log_path), "-noreset", "-nolisten", "tcp",
           "-novtswitch", "-sharevts", "+extension", "RANDR"]
    display, proc = _launch_with_displayfd(cmd, workdir / "xorg.stderr", timeout_s)
    server = XServer(display=display, process=proc, log_path=log_path, workdir=workdir)
    try:
        for i, head in enumerate(heads):
            output, mode = f"DUMMY{i}", f"{head.width}x{head.height}"
            server.run("xrandr", "--addmode", output, mode, check=False)  # may already exist
            server.run("xrandr", "--output", output, "--mode", mode, "--pos", f"{head.left}x{head.top}")
        server.run("xrandr", "--fb", f"{virtual_w}x{virtual_h}", check=False)
    except BaseException:
        server.stop()
        raise
    return server
