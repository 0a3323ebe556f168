"""The managed server's lifecycle against real processes: ``serve stop`` after PID reuse, an interrupted ``serve start``.

Attacks: a state file whose PID now belongs to an unrelated process (one whose command line even
mentions vllm, as a ``tail -f vllm.log`` would) must not get that process killed; and a ``serve
start`` stopped by Ctrl-C or SIGTERM while vLLM loads must not leave a server nobody can stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilepilot.model_runtime.processes import group_members, start_ticks
from tilepilot.model_runtime.server import ServerState, free_port
from tests.conftest import REPO, tilepilot


def _unrelated_process() -> subprocess.Popen:
    """A process leading its own group, whose command line says vllm; returned once it has exec'd."""
    proc = subprocess.Popen(["bash", "-c", "exec -a vllm-serve-notes sleep 300"], start_new_session=True)
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"vllm-serve-notes"):
        assert proc.poll() is None
        time.sleep(0.01)
    return proc


def test_stop_never_kills_a_process_that_took_over_the_pid(tmp_path: Path) -> None:
    env = {"TILEPILOT_STATE_DIR": str(tmp_path)}
    other = _unrelated_process()
    try:
        ticks = start_ticks(other.pid)
        assert ticks is not None
        # What a server that has since exited left behind, its PID now the unrelated process's.
        state = ServerState(profile="tiny", pid=other.pid, host="127.0.0.1", port=9, model="tiny", served_name="tiny",
                            log=str(tmp_path / "tiny.log"), started_at=time.time() - 60, command=["vllm", "serve"],
                            exit_status_file=str(tmp_path / "tiny.exit"), start_ticks=ticks - 1)
        (tmp_path / "tiny.json").write_text(state.model_dump_json())
        stopped = tilepilot("serve", "stop", "--model", "tiny", env=env)
        assert stopped.returncode == 0 and stopped.stdout.strip() == "not running", stopped.stdout + stopped.stderr
        assert other.poll() is None, "serve stop killed an unrelated process"
        assert not (tmp_path / "tiny.json").exists()  # the stale file is cleaned up
    finally:
        other.kill()
        other.wait()


def _server_group(port: int, cli: subprocess.Popen) -> int:
    """The process group of the server a ``serve start --port PORT`` launched: its supervising sh leads it."""
    needle = f"--port\0{port}\0".encode()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert cli.poll() is None, cli.communicate()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes() and os.getpgid(int(entry.name)) == int(entry.name):
                    return int(entry.name)
            except (OSError, ProcessLookupError):
                continue
        time.sleep(0.1)
    raise AssertionError("the server never started")


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_start_leaves_no_server(tiny_checkpoint: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C or SIGTERM: the start stops its server. SIGKILL (nothing runs): ``serve stop`` finds it."""
    env = {"TILEPILOT_STATE_DIR": str(tmp_path)}
    port = free_port(0)
    cli = subprocess.Popen([sys.executable, "-m", "tilepilot", "serve", "start", "--model", "tiny", "--port", str(port)],
                           env={**os.environ, **env}, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    group = _server_group(port, cli)
    try:
        time.sleep(2)  # vLLM is importing: it needs a minute or more before it serves
        assert group_members(group), "the server is not running"
        cli.send_signal(sig)
        out, err = cli.communicate(timeout=120)
        assert "serving tiny at" not in out, "the server became ready before the signal: the test proves nothing"
        assert cli.returncode != 0
        assert "Traceback" not in err, err
        if sig == signal.SIGKILL:
            assert group_members(group), "the server died with the command that started it"
            stopped = tilepilot("serve", "stop", "--model", "tiny", env=env)
            assert stopped.stdout.strip() == f"stopped pid {group}", stopped.stdout + stopped.stderr
        assert group_members(group) == [], f"{sig.name} left the server running: {group_members(group)}"
        assert not (tmp_path / "tiny.json").exists()
    finally:
        if group_members(group):
            os.killpg(group, signal.SIGKILL)
        if cli.poll() is None:
            cli.kill()
