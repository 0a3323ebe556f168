"""Start a real ``tilepilot`` command and SIGKILL it once its event log shows enough progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tilepilot.agents.runs import EVENTS_NAME, read_events
from tests.conftest import REPO


def kill_when(args: list[str], run: Path, kind: str, count: int, env: dict[str, str], timeout_s: float = 300,
              new_session: bool = False) -> int:
    """Run ``tilepilot ARGS`` (which writes ``run``) and SIGKILL it after ``count`` events of ``kind``; returns its pid.

    ``new_session``: the command leads its own process group (the pid), so what it started can be found after the kill.
    """
    proc = subprocess.Popen([sys.executable, "-m", "tilepilot", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=new_session)
    deadline = time.monotonic() + timeout_s
    try:
        while len(list(read_events(run / EVENTS_NAME, kind))) < count:
            assert proc.poll() is None, f"ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"no {count} {kind} events within {timeout_s} s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid
