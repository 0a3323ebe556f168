"""Waiting for a server a test started itself (a second vLLM, llama.cpp) to answer /v1/models."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


def wait_for_models(proc: subprocess.Popen, url: str, log: Path, name: str, limit_s: float, poll_s: float = 0.5) -> float:
    """Block until ``url``/v1/models answers 200; returns the seconds it took. Fails with the log's
    tail if the process exits or ``limit_s`` passes."""
    started = time.monotonic()
    while True:
        assert proc.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        assert time.monotonic() - started < limit_s, f"{name} not ready in {limit_s:.0f} s: {log.read_text()[-2000:]}"
        time.sleep(poll_s)
