"""No network at run time but the model endpoint: every agent path runs under a socket guard
that allows only loopback (and the configured endpoint) and records any other connect or DNS
lookup, so a hub lookup hidden in a dependency fails the test even if the dependency hides it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import REPO, tilepilot
from tests.requires import require_module

GUARD_DIR = Path(__file__).with_name("netguard")


def _guarded_env(tmp_path: Path, endpoint: str | None = None) -> tuple[dict, Path]:
    log = tmp_path / "netguard.jsonl"
    env = {
        "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(REPO)]),
        "TILEPILOT_NETGUARD_LOG": str(log),
        "TILEPILOT_NETGUARD_ALLOW": urlparse(endpoint).hostname if endpoint else "",
    }
    return env, log


def _violations(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_guard_catches_an_outside_connect(tmp_path):
    """The protection itself: without it this connect would be attempted."""
    env, log = _guarded_env(tmp_path)
    code = ("import socket\ntry:\n    socket.create_connection(('203.0.113.7', 443), timeout=1)\n"
            "except OSError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert "netguard: blocked" in out.stdout
    assert _violations(log) and "203.0.113.7" in _violations(log)[0]["target"]


@pytest.mark.integration
def test_every_agent_path_stays_offline(tmp_path, server_env, xvfb):
    env, log = _guarded_env(tmp_path, server_env["TILEPILOT_BASE_URL"])
    env.update(server_env)
    from tests.gen.audio import espeak_wav, require_tools

    require_tools()
    wav = espeak_wav("The meeting moves to Thursday at ten.", tmp_path / "memo.wav")
    contract = REPO / "examples" / "review" / "contract.pdf"
    runs = {
        "ask": ["ask", "What is on page 1?", "--pdf", str(contract), "--page", "1", "--audio", str(wav)],
        "review": ["review", str(contract), "--pages", "1-3", "--out", str(tmp_path / "review")],
        "review --no-model": ["review", str(contract), "--no-model", "--out", str(tmp_path / "checks")],
        "listen": ["listen", str(wav), "--task", "summarize", "--out", str(tmp_path / "listen")],
        "desktop": ["desktop", "Press OK", "--dry-run", "--max-steps", "2", "--out", str(tmp_path / "desk")],
        "rules": ["rules", "explain", "--agent", "review", str(contract)],
    }
    for name, args in runs.items():
        extra = {"DISPLAY": xvfb.display} if name == "desktop" else {}
        proc = tilepilot(*args, env={**env, **extra})
        assert proc.returncode in (0, 1), f"{name}: {proc.stderr[-1500:]}"  # desktop ends at max steps: 1
        assert not _violations(log), f"{name} tried the network: {_violations(log)[:2]}"


def test_asr_baseline_loads_its_weights_offline(tmp_path):
    require_module("faster_whisper", "asr")
    env, log = _guarded_env(tmp_path)
    code = ("import numpy as np\nfrom tilepilot.agents.listen.baseline import transcribe\n"
            "print(repr(transcribe(np.zeros(16000, dtype=np.float32))))\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert not _violations(log), _violations(log)[:2]
