"""The review graph (LangGraph): plan -> map over chunks (parallel) or roll (in order) -> reduce.

State holds only small, JSON-shaped values (page plans, findings, usage), never page text or
images, so every checkpoint stays small: pages are re-read inside the chunk step. The checkpointer
is a SqliteSaver in the run folder. In map-reduce mode every chunk is one ``Send`` task of a single
superstep; LangGraph stores each finished task's writes at once, so a killed run resumes with only
the unfinished chunks. In rolling mode each chunk is a superstep; the runner pauses after each
(``Run.drive``) and keeps only the newest checkpoint, so the file does not grow with the chunks.
A chunk starts only before the run's deadline; past it the run stops, resumable.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agents.review.findings import Finding, SummaryAnswer, dedupe
from agents.review.mapper import ChunkContext, review_chunk
from agents.review.planner import ChunkPlan, PagePlan, TextTokenCounter, pack_chunks, plan_page
from agents.review.prompts import page_text_block, summary_messages
from agents.rules import CheckPage, CheckWord, Policy, run_checks
from agents.runs import Deadline
from model_runtime.errors import InvalidOutputError, ServerError
from model_runtime.payloads import Message
from tools.errors import CorruptPdfError, PageRangeError, PageTimeoutError
from tools.pdf_worker import PageWorker

NOTES_TOKENS = 160  # room kept in every rolling-mode request for the carried notes (<= 200 chars)
SUMMARY_MAX_TOKENS = 400


class ReviewState(TypedDict, total=False):
    pages: list[int]
    chunks: list[dict]
    plan_counts: dict[str, int]
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
    # --concurrency is enforced here, not with LangGraph's max_concurrency: that also sizes the
    # pool that saves each finished task's writes, which then queue behind the running chunks
    # and are lost on a kill (see agents.review.runner._run_document).
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    deadline: Deadline = field(default_factory=Deadline)


def _plan(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    """One streaming pass over the text layer: deterministic checks and the page plan, no pixels."""
    ctx = runtime.context
    client = ctx.chunk.client if ctx.chunk else None
    counter = TextTokenCounter(_tokenizer(client) if client else None)
    plans: list[PagePlan] = []
    failures: list[dict] = []

    def check_pages() -> Iterator[CheckPage]:
        with PageWorker(ctx.path, ctx.password, ctx.deadline_s) as worker:
            for page in state["pages"]:
                ctx.deadline.check()  # a huge document stops here too, --no-model included
                try:
                    text = worker.text(page)
                except (PageTimeoutError, CorruptPdfError, PageRangeError) as err:  # range: claimed, missing
                    failures.append({"page": page, "reason": str(err)})
                    continue
                if client is not None:
                    plans.append(plan_page(text, client.profile, counter, page_text_block))
                yield CheckPage(page=page, words=[CheckWord(text=w.text, bbox=w.bbox) for w in text.words])
                ctx.on_planned(1)

    checks = run_checks(check_pages(), [c for c in ctx.policy.checks])
    findings = [Finding(id=f.id, rule=f.rule, severity=f.severity, page=f.page, quote=f.quote, bbox=f.bbox,
                        rationale=f.rationale, source="check").model_dump(mode="json") for f in checks]
    chunks = pack_chunks(plans, ctx.capacity, client.profile) if client is not None else []
    counts = {m: sum(1 for p in plans if p.modality == m) for m in ("text", "image", "both")}
    if ctx.chunk:
        ctx.chunk.events.emit("planned", path=ctx.chunk.path, pages=len(state["pages"]), chunks=len(chunks), plan=counts,
                              capacity=ctx.capacity)
    return {"chunks": [c.model_dump(mode="json") for c in chunks], "plan_counts": counts, "check_findings": findings,
            "plan_failures": failures, "next_index": 0, "notes": ""}


def _tokenizer(client) -> Callable[[str], int]:
    """Exact tokens of a text block: a one-message prompt minus the empty prompt's template tokens."""
    base = client.count_prompt_tokens([Message.text("user", "")])
    return lambda text: client.count_prompt_tokens([Message.text("user", text)]) - base


def _fan_out(state: ReviewState, runtime: Runtime[ReviewContext]) -> Any:
    if not state.get("chunks"):
        return "reduce"
    if runtime.context.mode == "rolling":
        return "roll"
    done = {r["chunk"] for r in state.get("results", [])}
    return [Send("map_chunk", {"chunk": c}) for c in state["chunks"] if c["id"] not in done] or "reduce"


def _map_chunk(payload: dict, runtime: Runtime[ReviewContext]) -> dict:
    ctx = runtime.context
    chunk = ChunkPlan.model_validate(payload["chunk"])
    with ctx.slots:
        ctx.deadline.check()  # unfinished chunks stay pending in the checkpoint for --resume
        outcome = review_chunk(chunk, ctx.chunk)
    ctx.chunk.events.emit("chunk_done", chunk=chunk.id, pages=chunk.page_numbers, findings=len(outcome.findings))
    return {"results": [outcome.to_state()]}


def _roll(state: ReviewState, runtime: Runtime[ReviewContext]) -> dict:
    ctx = runtime.context
    index = state.get("next_index", 0)
    chunk = ChunkPlan.model_validate(state["chunks"][index])
    ctx.deadline.check()
    outcome = review_chunk(chunk, ctx.chunk, notes=state.get("notes") or "(none yet)")
    ctx.chunk.events.emit("chunk_done", chunk=chunk.id, pages=chunk.page_numbers, findings=len(outcome.findings))
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
        summary, requests = summarise(findings, ctx)
    elif ctx.chunk is not None:
        summary = "No findings."
    return {"summary": summary, "summary_requests": requests, "done": True,
            "final_findings": [f.model_dump(mode="json") for f in findings]}


def summarise(findings: list[Finding], ctx: ReviewContext) -> tuple[str | None, list[dict]]:
    chunk = ctx.chunk
    lines = [f"- p{f.page} [{f.severity}] {f.rule}: {f.quote[:120]}" for f in findings]
    requests: list[dict] = []
    partial = False
    room = ctx.capacity - 200
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
        outputs = []
        for group in groups:
            try:
                result = chunk.client.chat(summary_messages(chunk.system, group, chunk.path, partial), schema=SummaryAnswer,
                                           max_tokens=SUMMARY_MAX_TOKENS, estimate=False)
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


def build_graph(checkpointer: BaseCheckpointSaver):
    graph = StateGraph(ReviewState, context_schema=ReviewContext)
    graph.add_node("plan", _plan)
    graph.add_node("map_chunk", _map_chunk)
    graph.add_node("roll", _roll)
    graph.add_node("reduce", _reduce)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", _fan_out, ["map_chunk", "roll", "reduce"])
    graph.add_edge("map_chunk", "reduce")
    graph.add_conditional_edges("roll", _after_roll, ["roll", "reduce"])
    graph.add_edge("reduce", END)
    return graph.compile(checkpointer=checkpointer)

