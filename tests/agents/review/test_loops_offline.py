"""Review's loop logic offline, with the WordChat double: split on overflow, shrink, the deadline and resume.

Real PDFs (generated), the real planner, mapper and graph; only the model is a double whose
"server" rejects prompts over a context limit, as vLLM does with HTTP 400.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tilepilot.agents.review.runner import ReviewOptions, run_review
from tilepilot.agents.runs import EVENTS_NAME, RUN_FINISHED, DeadlineReached, read_events
from tests.agents.doubles import WordChat
from tests.gen.hostile_pdfs import unrenderable_page
from tests.gen.pdfs import mixed_corpus

PAGES = 8
BUDGET = 4000


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loops") / "doc.pdf"
    mixed_corpus(path, PAGES)  # dense, sparse, scanned and table pages, twice
    return path


def _review(pdf: Path, out: Path, chat: WordChat, **options) -> tuple[list[dict], list[int]]:
    report = run_review(ReviewOptions(paths=[str(pdf)], concurrency=1, **{"budget_tokens": BUDGET, **options}), out=out,
                        client_factory=lambda: chat, progress=None)
    return list(read_events(out / EVENTS_NAME)), report.documents[0].failed_pages


def _reviewed(events: list[dict]) -> Counter:
    return Counter(p for e in events if e["kind"] == "request" and e["chunk"] != "summary" for p in e["pages"])


def test_one_request_when_everything_fits(pdf: Path, tmp_path: Path) -> None:
    events, failed = _review(pdf, tmp_path / "run", WordChat())
    assert _reviewed(events) == Counter(range(1, PAGES + 1)) and failed == []
    assert not [e for e in events if e["kind"] in ("chunk_split", "budget_lowered")]


@pytest.mark.parametrize("limit, lowered", [(1500, False), (800, True)])
def test_server_overflow_splits_chunks_then_lowers_image_budgets(pdf: Path, tmp_path: Path, limit: int, lowered: bool) -> None:
    chat = WordChat(context_limit=limit)
    events, failed = _review(pdf, tmp_path / "run", chat)
    splits = [e for e in events if e["kind"] == "chunk_split"]
    assert splits and all(e["reason"].startswith("server: ") for e in splits)
    assert bool([e for e in events if e["kind"] == "budget_lowered"]) == lowered
    # Every page reviewed exactly once, in a request the server took; only rejected ones went over.
    assert _reviewed(events) == Counter(range(1, PAGES + 1)) and failed == []
    accepted = [e["prompt_tokens"] for e in events if e["kind"] == "request"]
    assert max(accepted) <= limit and any(tokens > limit for tokens, _ in chat.requests)


def test_a_small_budget_packs_small_chunks_and_never_sends_more(pdf: Path, tmp_path: Path) -> None:
    chat = WordChat()
    events, failed = _review(pdf, tmp_path / "run", chat, budget_tokens=1000)
    assert len(chat.requests) > 2 and all(tokens <= 1000 for tokens, _ in chat.requests)
    assert _reviewed(events) == Counter(range(1, PAGES + 1)) and failed == []


def test_a_page_that_fits_no_way_fails_by_number(pdf: Path, tmp_path: Path) -> None:
    events, failed = _review(pdf, tmp_path / "run", WordChat(context_limit=350))
    assert failed, "some page must be too big for 350 tokens"
    reasons = {e["page"]: e["reason"] for e in events if e["kind"] == "page_failed"}
    assert set(reasons) == set(failed) and all(f"page {p}" in reasons[p] for p in failed)
    assert set(_reviewed(events)) | set(failed) == set(range(1, PAGES + 1))


def test_a_page_that_cannot_be_drawn_fails_alone_and_its_chunk_mates_are_reviewed(tmp_path: Path) -> None:
    """Page 10 cannot be rendered; pages 1-9 share its chunk. The failed page is the error's page field,
    not the first page whose number the message happens to contain ("page 10" contains "1")."""
    pdf = unrenderable_page(tmp_path / "doc.pdf", pages=10, bad=10)
    events, failed = _review(pdf, tmp_path / "run", WordChat())
    assert failed == [10]
    reasons = {e["page"]: e["reason"] for e in events if e["kind"] == "page_failed"}
    assert list(reasons) == [10] and "page 10 of" in reasons[10] and "cannot be rendered" in reasons[10], reasons
    requests = [e["pages"] for e in events if e["kind"] == "request" and e["chunk"] != "summary"]
    assert requests == [list(range(1, 10))], requests  # one chunk: every sound page, in the one request

def test_the_deadline_stops_the_review_and_resume_sends_each_chunk_once(pdf: Path, tmp_path: Path) -> None:
    chat = WordChat()
    run = tmp_path / "run"
    with pytest.raises(DeadlineReached, match=f"--resume {run}"):
        # A millisecond: the plan (a page worker process) always takes longer, so no chunk starts.
        _review(pdf, run, chat, budget_tokens=1500, max_runtime_s=0.001)
    assert not (run / "findings.json").exists() and chat.requests == []
    report = run_review(ReviewOptions(paths=[]), resume=run, max_runtime_s=600, client_factory=lambda: chat, progress=None)
    assert report.documents[0].failed_pages == []
    events = list(read_events(run / EVENTS_NAME))
    assert _reviewed(events) == Counter(range(1, PAGES + 1))
    assert [e["status"] for e in events if e["kind"] == RUN_FINISHED] == ["deadline", "done"]


def test_rolling_mode_carries_notes_and_keeps_one_checkpoint(pdf: Path, tmp_path: Path) -> None:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    chat = WordChat()
    run = tmp_path / "run"
    events, failed = _review(pdf, run, chat, budget_tokens=1200, mode="rolling")
    requests = [e for e in events if e["kind"] == "request" and e["chunk"] != "summary"]
    assert len(requests) > 2 and _reviewed(events) == Counter(range(1, PAGES + 1)) and failed == []
    # Each chunk after the first reads the notes the one before wrote (the double writes "noted").
    assert all("noted" in str(messages[-1].parts) for _, messages in chat.requests[1:len(requests)])
    saver = SqliteSaver(sqlite3.connect(run / "checkpoint.sqlite", check_same_thread=False))
    assert len(list(saver.list({"configurable": {"thread_id": "doc0"}}))) == 1  # pruned between chunks and at the end
    saver.conn.close()


def test_the_map_step_keeps_at_most_concurrency_chunks_in_flight_on_a_fixed_pool(pdf: Path, tmp_path: Path) -> None:
    import threading
    import time

    state = {"now": 0, "most": 0}
    workers: set[int] = set()  # the threads that sent a chunk request
    lock = threading.Lock()

    def in_flight(messages) -> None:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            workers.add(threading.get_ident())
        time.sleep(0.3)  # hold the request open, so a pool larger than --concurrency would show
        with lock:
            state["now"] -= 1

    chat = WordChat(on_chat=in_flight)
    report = run_review(ReviewOptions(paths=[str(pdf)], concurrency=2, budget_tokens=900), out=tmp_path / "run",
                        client_factory=lambda: chat, progress=None)
    chunks = next(read_events(tmp_path / "run" / EVENTS_NAME, "planned"))["chunks"]
    assert chunks >= 6 and report.documents[0].failed_pages == []
    assert 1 <= state["most"] <= 2  # never more than --concurrency at once
    # the pool's two workers carry every chunk: not one thread per chunk
    assert 1 <= len(workers) <= 2 < chunks


def test_a_crash_mid_map_keeps_finished_chunks_and_resume_sends_none_twice(pdf: Path, tmp_path: Path) -> None:
    sent: list[list[int]] = []

    def crash_on_third(messages) -> None:
        pages = [int(p) for p in re.findall(r"=== page (\d+) \(", str(messages[-1].parts))]
        if pages:
            sent.append(pages)
            if len(sent) == 3:
                raise RuntimeError("killed")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        _review(pdf, run, WordChat(on_chat=crash_on_third), budget_tokens=900)
    finished = [e["chunk"] for e in read_events(run / EVENTS_NAME, "chunk_done")]
    assert len(finished) == 2 and len(sent) == 3
    resumed = WordChat()
    report = run_review(ReviewOptions(paths=[]), resume=run, client_factory=lambda: resumed, progress=None)
    again = {e["chunk"] for e in read_events(run / EVENTS_NAME, "request") if e["chunk"] != "summary"}
    chunk_requests = [e for e in read_events(run / EVENTS_NAME, "request") if e["chunk"] != "summary"]
    assert Counter(p for e in chunk_requests for p in e["pages"]) == Counter(range(1, PAGES + 1))  # each page once
    assert set(finished) <= again and report.documents[0].failed_pages == []
    assert len(report.documents[0].sent) == PAGES and all(s.modality for s in report.documents[0].sent)
