"""Hostile documents through the review agent: limits hold, spinning pages are abandoned at their
deadline while the rest is reviewed, and a server-side context overflow is adapted to."""

from __future__ import annotations

import json

import pytest

from tilepilot.agents.runs import read_events
from tests.conftest import tilepilot
from tests.faults.proxy import FaultProxy
from tests.gen.hostile_pdfs import claims_million_pages, huge_page
from tests.gen.pdfs import mixed_corpus, spinning_pdf


def test_a_claimed_million_pages_hits_the_limit_with_a_clear_message(tmp_path):
    pdf = claims_million_pages(tmp_path / "claims.pdf")
    proc = tilepilot("review", str(pdf), "--no-model", "--out", str(tmp_path / "run"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1
    assert "1000000 pages" in lines[0] and "max_pages" in lines[0] and "--pages" in lines[0]
    assert not (tmp_path / "run").exists()
    # with --pages the limit holds and the pages that do not exist are reported, not fatal
    proc = tilepilot("review", str(pdf), "--no-model", "--pages", "1-3", "--out", str(tmp_path / "part"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["documents"][0]["failed_pages"] == [2, 3]


@pytest.mark.integration
def test_spinning_page_is_abandoned_and_the_rest_reviewed(tmp_path, server_env):
    """The spinning page has no text layer, so it is planned as an image; rendering it spins in
    MuPDF's C code until the page worker is killed at the deadline."""
    pdf = spinning_pdf(tmp_path / "spin.pdf")
    proc = tilepilot("review", str(pdf), "--out", str(tmp_path / "run"), "--json",
                     env={**server_env, "TILEPILOT_PAGE_DEADLINE_S": "1"})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["documents"][0]
    assert doc["failed_pages"] == [2]
    saved = json.loads((tmp_path / "run" / "findings.json").read_text())["documents"][0]
    assert saved["failures"][0]["page"] == 2 and "longer than" in saved["failures"][0]["reason"]


@pytest.mark.integration
def test_huge_page_is_reviewed_within_budget(tmp_path, server_env):
    pdf = huge_page(tmp_path / "huge.pdf")
    out = tmp_path / "run"
    proc = tilepilot("review", str(pdf), "--budget-tokens", "3000", "--out", str(out), "--json", env=server_env)
    assert proc.returncode == 0, proc.stderr
    requests = list(read_events(out / "events.jsonl", "request"))
    assert requests and all(r["prompt_tokens"] <= 3000 for r in requests)


@pytest.mark.integration
def test_server_context_overflow_splits_the_chunk_and_retries(tmp_path, vllm_server):
    pdf = tmp_path / "doc.pdf"
    mixed_corpus(pdf, 6)
    with FaultProxy(vllm_server.base_url) as proxy:
        proxy.queue.append("overflow")
        out = tmp_path / "run"
        proc = tilepilot("review", str(pdf), "--base-url", proxy.url, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["documents"][0]["failed_pages"] == []
    splits = list(read_events(out / "events.jsonl", "chunk_split"))
    assert splits and "server" in splits[0]["reason"]  # logged, then retried in halves
