"""The agents under server faults (real CPU vLLM server, some behind the fault proxy). A server killed
mid-review, then the review resumed: tests/model_runtime/test_llama_gguf.py, on llama-server."""

from __future__ import annotations

import json
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
