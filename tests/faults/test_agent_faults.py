"""The agents under server faults (real CPU vLLM server, some behind the fault proxy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilepilot.agents.runs import read_events
from tilepilot.model_runtime.server import free_port
from tests.conftest import REPO, tilepilot
from tests.faults.proxy import FaultProxy
from tests.gen.pdfs import mixed_corpus

pytestmark = pytest.mark.integration
RULES = str(REPO / "rules" / "examples" / "contract.md")


@pytest.fixture(scope="module")
def doc16(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "doc16.pdf"
    mixed_corpus(path, 16, plant={2: ["Contact jane.roe@example.com for notices."]})
    return path


def _chunk_requests(run: Path) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl", "request") if e["chunk"] != "summary"]


@pytest.mark.slow
def test_server_killed_mid_review_then_resumed(doc16, tmp_path, vllm_server):
    """SIGKILL the real server during a review; the review stops with one line; on a running server,
    --resume finishes with the same findings as an uninterrupted run, none lost or duplicated."""
    env = {"TILEPILOT_STATE_DIR": str(tmp_path / "state")}
    port = free_port(0)
    url = f"http://127.0.0.1:{port}"
    tilepilot("serve", "start", "--port", str(port), env=env, check=True)
    args = [str(doc16), "--rules", RULES, "--budget-tokens", "2600", "--concurrency", "1", "--base-url", url]
    run = tmp_path / "run"
    # The pid is read before the review starts: a `serve status` child after the second chunk
    # took long enough on a loaded machine for the last chunks to finish before the kill.
    state = json.loads(tilepilot("serve", "status", "--json", env=env).stdout)
    try:
        review = subprocess.Popen([sys.executable, "-m", "tilepilot", "review", *args, "--out", str(run), "--json"],
                                  cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(read_events(run / "events.jsonl", "chunk_done"))) < 2:
            assert review.poll() is None, review.stderr.read()[-2000:]
            time.sleep(0.05)
        os.killpg(state["pid"], signal.SIGKILL)  # a crash, not a clean stop
        _, err = review.communicate(timeout=120)
        assert review.returncode != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and url in lines[0], err
        assert not (run / "findings.json").exists()
        before = {r["chunk"] for r in _chunk_requests(run)}

        # Resumed on another server of the same model (the session's): a resume may change the server, and
        # a second start of this one would cost the suite a minute.
        resumed = tilepilot("review", "--resume", str(run), "--base-url", vllm_server.base_url, "--json", env=env)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        tilepilot("serve", "stop", env=env)
    requests = _chunk_requests(run)
    chunks = [r["chunk"] for r in requests]
    assert len(chunks) == len(set(chunks)), "a chunk was sent twice"
    assert before <= set(chunks)
    fresh = tilepilot("review", *args[:-2], "--out", str(tmp_path / "fresh"), "--json",
                      env={"TILEPILOT_BASE_URL": vllm_server.base_url})
    assert fresh.returncode == 0, fresh.stderr
    got = json.loads(resumed.stdout)["documents"][0]
    want = json.loads(fresh.stdout)["documents"][0]
    assert got["failed_pages"] == want["failed_pages"] == []
    # Rule checks must match exactly; the random-weight model's findings can differ with the
    # server's prefix-cache state (see tests/agents/review/test_review_model.py).
    checks = lambda doc: sorted(f["id"] for f in doc["findings"] if f["source"] == "check")  # noqa: E731
    assert checks(got) == checks(want) and checks(got)


@pytest.mark.parametrize("fault, reason", [("500", "HTTP 500"), ("bad_json", "did not match")])
def test_persistent_fault_reports_failed_pages(doc16, tmp_path, vllm_server, fault, reason):
    with FaultProxy(vllm_server.base_url) as proxy:
        proxy.always = fault
        out = tmp_path / "run"
        proc = tilepilot("review", str(doc16), "--rules", RULES, "--pages", "1-4", "--base-url", proxy.url,
                         "--out", str(out), "--json")
    assert proc.returncode != 0 or json.loads(proc.stdout)["documents"][0]["failed_pages"]
    doc = json.loads((out / "findings.json").read_text())["documents"][0]
    assert doc["failed_pages"] == [1, 2, 3, 4]  # reported, never silently skipped
    assert all(reason in f["reason"] for f in doc["failures"])
    assert any(f["source"] == "check" for f in doc["findings"])  # the deterministic checks still ran


def test_transient_faults_are_retried_and_slow_answers_are_waited_for(doc16, tmp_path, vllm_server):
    with FaultProxy(vllm_server.base_url) as proxy:
        proxy.queue.extend(["500", "close"])
        proxy.delay_s = 0.3
        out = tmp_path / "run"
        proc = tilepilot("review", str(doc16), "--rules", RULES, "--pages", "1-4", "--base-url", proxy.url,
                         "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["documents"][0]
    assert doc["failed_pages"] == []
    requests = _chunk_requests(out)
    assert requests and all(r["latency_s"] >= 0.3 for r in requests)


def test_server_down_at_start_is_one_line_naming_the_url(doc16, tmp_path):
    url = f"http://127.0.0.1:{free_port(0)}"
    for args in (["review", str(doc16), "--out", str(tmp_path / "r")], ["listen", str(REPO / "README.md")],
                 ["ask", "hi"]):
        proc = tilepilot(*args, "--base-url", url)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        if args[0] != "listen":  # listen rejects a non-audio file before contacting the server
            assert url in lines[0] and "tilepilot serve start" in lines[0]
    assert not (tmp_path / "r").exists()
