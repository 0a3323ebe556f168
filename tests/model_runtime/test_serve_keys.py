"""``serve start --api-key`` on both engines: the server requires the key, and the key is on no command line.

Each engine's server is started through the real CLI with a key, in its own state folder. The key
must reach vLLM and llama-server through their environment (``VLLM_API_KEY``, ``LLAMA_API_KEY``):
every local user can read a command line (``ps``, ``/proc/<pid>/cmdline``). The health check, the
probes, ``ask`` and an agent send it (``TILEPILOT_API_KEY``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tilepilot.model_runtime.processes import group_members
from tilepilot.model_runtime.server import free_port
from tests.conftest import REPO, tilepilot
from tests.gen.pdfs import digital_pdf
from tests.requires import require_llama_build

pytestmark = pytest.mark.integration


@dataclass
class Keyed:
    engine: str
    url: str
    key: str
    state_dir: Path

    def env(self, key: str | None = None) -> dict[str, str]:
        """The CLI's environment: this server's state folder, and ``key`` as TILEPILOT_API_KEY ("" for none)."""
        return {"TILEPILOT_STATE_DIR": str(self.state_dir), "TILEPILOT_API_KEY": self.key if key is None else key}


@pytest.fixture(scope="module", params=["vllm", "llama.cpp"])
def keyed(request: pytest.FixtureRequest, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    engine = request.param
    if engine == "llama.cpp":
        require_llama_build()
    port = free_port(0)
    server = Keyed(engine, f"http://127.0.0.1:{port}", "tp-" + secrets.token_hex(16),
                   tmp_path_factory.mktemp(f"keyed-{engine}"))
    env = {"TILEPILOT_STATE_DIR": str(server.state_dir), "TILEPILOT_API_KEY": ""}
    try:
        started = tilepilot("serve", "start", "--engine", engine, "--model", "tiny", "--port", str(port),
                            "--api-key", server.key, env=env, timeout=900)
        assert started.returncode == 0, started.stderr[-2000:]
        yield server
    finally:
        stopped = tilepilot("serve", "stop", "--engine", engine, env=env)
        assert stopped.returncode == 0, stopped.stderr


def _state_name(server: Keyed) -> str:
    return "tiny.json" if server.engine == "vllm" else "tiny@llama.cpp.json"


def _state(server: Keyed) -> dict:
    return json.loads((server.state_dir / _state_name(server)).read_text())


def _chat(server: Keyed, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "tiny", "max_tokens": 1, "temperature": 0.0, "messages": [{"role": "user", "content": "Hi"}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code


def test_a_request_without_the_key_is_refused(keyed: Keyed) -> None:
    assert _chat(keyed, None) == 401
    assert _chat(keyed, "tp-wrong") == 401
    assert _chat(keyed, keyed.key) == 200


def test_the_key_is_on_no_command_line_and_in_no_file(keyed: Keyed) -> None:
    state = _state(keyed)
    members = group_members(state["pid"])  # the supervising sh, the server and its children
    assert len(members) >= 2, members
    for pid in members:
        assert keyed.key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), f"the key is on pid {pid}'s command line"
    for path in keyed.state_dir.iterdir():  # the state file, the log, the lock
        assert keyed.key not in path.read_text(errors="replace"), f"the key is in {path.name}"
    assert state["requires_api_key"] is True and "--api-key" not in state["command"]


def test_status_ask_and_an_agent_with_the_key(keyed: Keyed, tmp_path: Path) -> None:
    engine = ["--engine", keyed.engine]
    status = tilepilot("serve", "status", *engine, "--json", env=keyed.env())
    assert status.returncode == 0 and json.loads(status.stdout)["healthy"] is True, status.stdout + status.stderr
    # The managed server (no --base-url), and the same server named by URL.
    for where in ([], ["--base-url", keyed.url]):
        asked = tilepilot("ask", "Name a colour.", "--json", "--max-tokens", "4", *where, env=keyed.env())
        assert asked.returncode == 0, asked.stderr
        out = json.loads(asked.stdout)
        assert out["exact"] is True and out["usage"]["prompt_tokens"] == out["estimated_prompt_tokens"]
    pdf = digital_pdf(tmp_path / "contract.pdf", pages=1)
    review = tilepilot("review", str(pdf), "--rules", str(REPO / "rules" / "examples" / "contract.md"),
                       "--concurrency", "1", "--out", str(tmp_path / "run"), "--json", env=keyed.env())
    assert review.returncode == 0, review.stderr
    assert json.loads((tmp_path / "run" / "findings.json").read_text())["documents"][0]["pages"] == 1


@pytest.mark.parametrize("key", ["", "tp-wrong"])
def test_without_the_right_key_it_is_one_line(keyed: Keyed, key: str) -> None:
    for where in ([], ["--base-url", keyed.url]):
        asked = tilepilot("ask", "Name a colour.", "--max-tokens", "4", *where, env=keyed.env(key))
        lines = asked.stderr.strip().splitlines()
        assert asked.returncode == 4 and len(lines) == 1 and "API key" in lines[0], asked.stderr
    # and no second server was started for it (one that would take the wrong key)
    assert [p.name for p in keyed.state_dir.glob("*.json")] == [_state_name(keyed)]
    if not key:
        status = tilepilot("serve", "status", "--engine", keyed.engine, env=keyed.env(key))
        assert status.returncode == 1 and "requires an API key" in status.stdout, status.stdout
