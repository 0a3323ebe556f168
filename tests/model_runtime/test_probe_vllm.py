"""The probe against real vLLM CPU servers (tiny model): the session's, and one started with a smaller
``--max-model-len`` than the profile's and without ``--served-model-name`` (as a plain ``vllm serve``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilepilot.agents.runs import read_events
from tilepilot.model_runtime import server
from tilepilot.model_runtime.processes import terminate_group
from tilepilot.model_runtime.profiles import tiny_profile
from tests.conftest import REPO, tilepilot
from tests.gen.pdfs import digital_pdf
from tests.serving import wait_for_models

pytestmark = pytest.mark.integration

SMALL_LEN = 4096


def test_probe_of_the_vllm_cpu_server(vllm_server) -> None:
    proc = tilepilot("serve", "status", "--base-url", vllm_server.base_url, "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)
    assert (caps["served_id"], caps["served_id_source"]) == ("tiny", "profile name")
    assert (caps["counting"], caps["exact"], caps["margin"]) == ("vllm", True, 0.0)
    assert caps["images"] == "honoured"  # the probe image's tokens matched the per-request budget
    assert caps["structured_output"] == "json_schema"
    assert caps["server_max_model_len"] == vllm_server.profile.max_model_len == caps["max_model_len"]
    # vLLM's KV pool, as full-context requests (its /metrics); requests of the default budget fit more.
    assert caps["server_slots"] is None and caps["kv_concurrency"] > 1
    agents = caps["agents"]
    assert agents["requests_in_flight"] == int(caps["kv_concurrency"] * caps["max_model_len"] / agents["budget_tokens"])
    table = tilepilot("serve", "status", "--base-url", vllm_server.base_url)
    assert f"at most {agents['requests_in_flight']} request(s)" in table.stdout, table.stdout
    assert "exact (vLLM /tokenize)" in table.stdout and "per-request budgets honoured" in table.stdout, table.stdout


@pytest.fixture(scope="module")
def small_vllm(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second vLLM CPU server (about 80 s to start): --max-model-len below the profile's, no served name."""
    profile = tiny_profile(tiny_checkpoint).model_copy(update={"max_model_len": SMALL_LEN})
    port = server.free_port(0)
    cmd = server.serve_command(profile, "127.0.0.1", port)
    at = cmd.index("--served-model-name")
    del cmd[at:at + 2]
    log = tmp_path_factory.mktemp("small-vllm") / "vllm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=server.serving_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        seconds = wait_for_models(proc, url, log, "vLLM", limit_s=600, poll_s=1)
        print(f"\n[vllm] second server (--max-model-len {SMALL_LEN}) ready in {seconds:.1f} s")
        yield url
    finally:
        terminate_group(proc.pid)


def test_a_smaller_server_context_wins_and_no_request_overflows(small_vllm: str, tmp_path: Path) -> None:
    profile = tiny_profile()
    assert profile.max_model_len > SMALL_LEN
    pdf = digital_pdf(tmp_path / "long.pdf", pages=8)
    out = tmp_path / "run"
    proc = tilepilot("review", str(pdf), "--rules", str(REPO / "rules" / "examples" / "contract.md"), "--concurrency", "1",
                     "--out", str(out), "--json", env={"TILEPILOT_BASE_URL": small_vllm})
    assert proc.returncode == 0, proc.stderr
    events = out / "events.jsonl"
    probe = next(read_events(events, "server_probe"))
    assert probe["served_id"] == profile.model and probe["served_id_source"] == "same model"
    assert (probe["max_model_len"], probe["max_model_len_source"]) == (SMALL_LEN, "server")
    started = next(read_events(events, "run_started"))
    assert started["budget_tokens"] <= SMALL_LEN - 1024
    requests = [e for e in read_events(events, "request") if e["chunk"] != "summary"]
    assert len(requests) >= 2, "8 pages do not fit one request of the server's context"
    assert all(r["prompt_tokens"] + 1024 <= SMALL_LEN for r in requests), requests
    overflowed = [e for e in read_events(events) if "server:" in str(e.get("reason", "")) or e["kind"] == "max_model_len_learned"]
    assert overflowed == [], overflowed
    print(f"\n[vllm] {len(requests)} requests, largest prompt {max(r['prompt_tokens'] for r in requests)} tokens")
