"""The review graph (LangGraph): plan -> map over chunks (parallel) or roll (in order) -> reduce.

State holds only small, JSON-shaped values (page plans, the document map, findings, usage), never
page text or images, so every checkpoint stays small: pages are re-read inside the chunk step.
The checkpointer is a SqliteSaver in the run folder.

In map-reduce mode the chunks run in one node on a bounded pool of ``--concurrency`` workers, so
memory and threads stay flat however long the document is (one thread per chunk let every thread
keep its own malloc arena of page images: the process grew with the page count). Each finished
chunk is committed to the run's :class:`~tilepilot.agents.review.ledger.ChunkLedger` at once, so a killed
run resumes with only the unfinished chunks and sends no finished one again. In rolling mode each
chunk is a superstep; the runner pauses after each (``Run.drive``) and keeps only the newest
checkpoint, so the file does not grow with the chunks. A chunk starts only before the run's
deadline; past it the run stops, resumable.
"""

from __future__ import annotations

import operator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from tilepilot.agents.errors import RunError
from tilepilot.agents.review.docmap import DocumentMap, MapBuilder
from tilepilot.agents.review.findings import Finding, SummaryAnswer, dedupe
from tilepilot.agents.review.playbook import check_finding
from tilepilot.agents.review.ledger import ChunkLedger
from tilepilot.agents.review.legibility_table import LegibilityTable
from tilepilot.agents.review.mapper import ChunkContext, ChunkOutcome, review_chunk
from tilepilot.agents.review.planner import ChunkPlan, PagePlan, Prefer, TextTokenCounter, pack_chunks, plan_page
from tilepilot.agents.review.prompts import DOCUMENT_MAP_TITLE, page_text_block, summary_messages
from tilepilot.agents.rules import CheckPage, CheckWord, Policy, run_checks
from tilepilot.agents.runs import Deadline, DeadlineReached
from tilepilot.model_runtime.errors import InvalidOutputError, ServerError
from tilepilot.model_runtime.payloads import Message
from tilepilot.tools.errors import CorruptPdfError, PageRangeError, PageTimeoutError
from tilepilot.tools.pdf_worker import PageWorker

NOTES_TOKENS = 160  # room kept in every rolling-mode request for the carried notes (<= 200 chars)
SUMMARY_MAX_TOKENS = 400
MAP_SHARE = 0.25  # the document map may take at most this share of a request's room for pages
MAP_TOKEN_SLACK = 8  # tokens where the map's text meets the prompt around it may merge differently


class ReviewState(TypedDict, total=False):
    pages: list[int]
    chunks: list[dict]
    plan_counts: dict[str, int]
    document_map: dict
    document_map_text: str
    check_findings: list[dict]
    plan_failures: list[dict]
    results: Annotated[list[dict], operator.add]
    notes: str
    next_index: int
    summary: str | None
    summary_requests: list[dict]
    final_findings: list[dict]
    done: bool


@dataclass
class ReviewContext:
    """Runtime context of one document's graph run: not checkpointed."""

    chunk: ChunkContext | None  # None with --no-model
    policy: Policy
    path: str
    password: str | None
    mode: str
    capacity: int  # tokens of page content one request may hold
    deadline_s: float | None = None
    on_planned: Callable[[int], None] = lambda n: None
    concurrency: int = 2  # workers of the map step's pool: chunks in flight at once
    ledger: ChunkLedger | None = None  # where finished chunks are committed (map-reduce mode)
    deadline: Deadline = field(default_factory=Deadline)
    prefer: Prefer = "fidelity"
    legibility: LegibilityTable | None = None


def _plan(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    """One streaming pass over the text layer: deterministic checks and the page plan, no pixels."""
    ctx = runtime.context
    pages = state.get("pages")
    if pages is None:  # the runner starts every document's graph with its pages
        raise RunError(f"{ctx.path}: the run's checkpoint has no page list for this document; start the run again")
    client = ctx.chunk.client if ctx.chunk else None
    tokenize = _tokenizer(client) if client else None
    counter = TextTokenCounter(tokenize)
    plans: list[PagePlan] = []
    document_map = MapBuilder()
    failures: list[dict] = []

    def check_pages() -> Iterator[CheckPage]:
        with PageWorker(ctx.path, ctx.password, ctx.deadline_s) as worker:
            for page in pages:
                ctx.deadline.check()  # a huge document stops here too, --no-model included
                try:
                    text = worker.text(page)
                except (PageTimeoutError, CorruptPdfError, PageRangeError) as err:  # range: claimed, missing
                    failures.append({"page": page, "reason": str(err)})
                    continue
                if client is not None:
                    plans.append(plan_page(text, client.profile, counter, page_text_block, ctx.prefer, ctx.legibility))
                document_map.add(text)
                yield CheckPage(page=page, words=[CheckWord(text=w.text, bbox=w.bbox) for w in text.words])
                ctx.on_planned(1)

    checks = run_checks(check_pages(), [c for c in ctx.policy.checks])
    findings = [check_finding(f, ctx.policy).model_dump(mode="json") for f in checks]
    map_text, map_tokens = "", 0
    if tokenize is not None:
        # Counted exactly and taken off the room the pages are packed into.
        map_text = document_map_text(document_map.map, ctx.capacity)
        map_tokens = tokenize(f"{DOCUMENT_MAP_TITLE}\n{map_text}\n") + MAP_TOKEN_SLACK if map_text else 0
    chunks = pack_chunks(plans, ctx.capacity - map_tokens, client.profile) if client is not None else []
    counts = {m: sum(1 for p in plans if p.modality == m) for m in ("text", "image", "both")}
    if ctx.chunk:
        ctx.chunk.events.emit("planned", path=ctx.chunk.path, pages=len(pages), chunks=len(chunks), plan=counts,
                              capacity=ctx.capacity, document_map_tokens=map_tokens)
    return {"chunks": [c.model_dump(mode="json") for c in chunks], "plan_counts": counts, "check_findings": findings,
            "plan_failures": failures, "next_index": 0, "notes": "", "document_map": document_map.map.model_dump(),
            "document_map_text": map_text}


def document_map_text(document_map: DocumentMap, capacity: int) -> str:
    """The map as every chunk prompt of a document carries it: at most MAP_SHARE of the room
    (>= 2 characters per token), so it stays within the budget by construction."""
    return document_map.render(max_chars=int(capacity * MAP_SHARE) * 2)


def _tokenizer(client) -> Callable[[str], int]:
    """Exact tokens of a text block: a one-message prompt minus the empty prompt's template tokens."""
    base = client.count_prompt_tokens([Message.text("user", "")])
    return lambda text: client.count_prompt_tokens([Message.text("user", text)]) - base


def _fan_out(state: ReviewState, runtime: Runtime[ReviewContext]) -> str:
    if not state.get("chunks"):
        return "reduce"
    return "roll" if runtime.context.mode == "rolling" else "map_chunks"


def _chunk_context(state: ReviewState, ctx: ReviewContext) -> ChunkContext:
    """The document's chunk context with this document's map (checkpointed, so a resume sends the same prompts).

    The ChunkContext belongs to this one document's graph run, so setting its map here is safe.
    """
    assert ctx.chunk is not None
    ctx.chunk.document_map = state.get("document_map_text", "")
    return ctx.chunk


def _map_chunks(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    """Every chunk not yet in the ledger, at most ``concurrency`` at once; each committed as it finishes.

    Chunks start in page order and only before the deadline; past it no new chunk starts, the
    running ones finish (and are saved), then the run stops, resumable.
    """
    ctx = runtime.context
    chunk_ctx = _chunk_context(state, ctx)
    assert ctx.ledger is not None
    finished = ctx.ledger.finished()
    chunks = state.get("chunks", [])
    waiting = [ChunkPlan.model_validate(c) for c in chunks if c["id"] not in finished]
    running: set[Future] = set()
    stopped: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, ctx.concurrency), thread_name_prefix="review-chunk") as pool:
        while waiting or running:
            while waiting and len(running) < ctx.concurrency and stopped is None:
                if ctx.deadline.expired():  # unfinished chunks stay out of the ledger, pending for --resume
                    stopped = DeadlineReached(ctx.deadline.message())
                    break
                running.add(pool.submit(_run_chunk, waiting.pop(0), chunk_ctx, ctx.ledger))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None and stopped is None:
                    stopped = future.exception()
    if stopped is not None:
        raise stopped
    outcomes = ctx.ledger.finished()
    return {"results": [outcomes[c["id"]] for c in chunks]}


def _run_chunk(chunk: ChunkPlan, chunk_ctx: ChunkContext, ledger: ChunkLedger) -> None:
    outcome: ChunkOutcome = review_chunk(chunk, chunk_ctx)
    ledger.record(outcome.to_state())
    chunk_ctx.events.emit("chunk_done", chunk=chunk.id, pages=chunk.page_numbers, findings=len(outcome.findings))


def _roll(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    ctx = runtime.context
    index = state.get("next_index", 0)
    chunk = ChunkPlan.model_validate(state.get("chunks", [])[index])
    ctx.deadline.check()
    chunk_ctx = _chunk_context(state, ctx)
    outcome = review_chunk(chunk, chunk_ctx, notes=state.get("notes") or "(none yet)")
    chunk_ctx.events.emit("chunk_done", chunk=chunk.id, pages=chunk.page_numbers, findings=len(outcome.findings))
    return {"results": [outcome.to_state()], "notes": outcome.notes[:200], "next_index": index + 1}


def _after_roll(state: ReviewState) -> str:
    return "roll" if state.get("next_index", 0) < len(state.get("chunks", [])) else "reduce"


def _reduce(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    """Merge and dedupe every finding; summarise with the model (hierarchically if it must)."""
    findings = dedupe(Finding.model_validate(f) for f in
                      [*state.get("check_findings", []), *(f for r in state.get("results", []) for f in r["findings"])])
    ctx = runtime.context
    summary, requests = None, []
    if ctx.chunk is not None and findings:
        summary, requests = summarise(findings, ctx.chunk, ctx.capacity)
    elif ctx.chunk is not None:
        summary = "No findings."
    return {"summary": summary, "summary_requests": requests, "done": True,
            "final_findings": [f.model_dump(mode="json") for f in findings]}


def summarise(findings: list[Finding], chunk: ChunkContext, capacity: int) -> tuple[str | None, list[dict]]:
    # The rationale, not only the quote: it carries what the chunk knew (a defined term, a missing clause).
    lines = [f"- {_where(f)} [{f.severity}] {f.rule}: \"{f.quote[:120]}\" ({f.verified}): {f.rationale[:240]}" for f in findings]
    requests: list[dict] = []
    partial = False
    room = capacity - 200
    while True:
        groups, current, size = [], [], 0
        for line in lines:
            cost = len(line) // 2 + 2  # generous: never fewer than 2 chars per token
            if current and size + cost > room:
                groups.append(current)
                current, size = [], 0
            current.append(line)
            size += cost
        groups.append(current)
        if partial and len(groups) == len(lines):
            # Each partial summary fills the room alone, so no level would ever merge two: a model
            # that writes long summaries looped here for ever. Cut them to share one request.
            share = 2 * (room // len(lines)) - 8  # characters; at most len // 2 + 2 tokens each
            if share < 40:
                return "\n".join(line[2:] for line in lines), requests
            lines = [line[:share] for line in lines]
            continue
        outputs = []
        for group in groups:
            try:
                result = chunk.client.chat(summary_messages(chunk.system, group, chunk.path, partial), schema=SummaryAnswer,
                                           max_tokens=SUMMARY_MAX_TOKENS, estimate=False)
                if result.parsed is None:  # chat() with a schema returns the parsed answer or raises
                    raise InvalidOutputError("the summary request came back without a parsed answer")
            except (ServerError, InvalidOutputError) as err:
                chunk.events.emit("summary_failed", reason=str(err))
                return None, requests
            request = {"chunk": "summary", "prompt_tokens": result.usage.prompt_tokens,
                       "completion_tokens": result.usage.completion_tokens, "budget": chunk.budget_tokens}
            chunk.events.emit("request", **request)
            requests.append(request)
            outputs.append(result.parsed.summary)
        if len(outputs) == 1:
            return outputs[0], requests
        chunk.events.emit("summary_level", groups=len(groups))
        lines, partial = [f"- {s}" for s in outputs], True


def _where(finding: Finding) -> str:
    if finding.page is not None:
        return f"p{finding.page}"
    return "pages " + ",".join(map(str, finding.pages)) if finding.pages else "document"


def build_graph(checkpointer: BaseCheckpointSaver):
    graph = StateGraph(ReviewState, context_schema=ReviewContext)
    graph.add_node("plan", _plan)
    graph.add_node("map_chunks", _map_chunks)
    graph.add_node("roll", _roll)
    graph.add_node("reduce", _reduce)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _fan_out, ["map_chunks", "roll", "reduce"])
    graph.add_edge("map_chunks", "reduce")
    graph.add_conditional_edges("roll", _after_roll, ["roll", "reduce"])
    graph.add_edge("reduce", END)
    return graph.compile(checkpointer=checkpointer)

