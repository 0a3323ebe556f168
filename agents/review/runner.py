"""Run a review: check the inputs, run each document's graph with its checkpoint, write the outputs.

Every input is opened and its page range checked before the run folder exists, so a bad input
(not a PDF, corrupt, encrypted without a password) leaves nothing behind but its one-line error.
The options of a run are stored in its manifest (``tilepilot.agents.runs.Run``); ``--resume RUN`` reads them
back, so a resumed run plans the same chunks and finishes with the same findings.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Literal, Sequence

from pydantic import BaseModel
from rich.console import Console

from tilepilot.agents.backend import random_weights_note
from tilepilot.agents.errors import UsageError
from tilepilot.agents.progress import ConsoleProgress
from tilepilot.agents.review.findings import (DocumentResult, FailedInput, Finding, FindingsFile, ModelInfo, PageFailure, PageSent,
                                             UsageTotals)
from tilepilot.agents.review.decisions import carry_decisions, findings_lock
from tilepilot.agents.review.docmap import DocumentMap
from tilepilot.agents.review.graph import NOTES_TOKENS, ReviewContext, build_graph
from tilepilot.agents.review.inputs import ReviewInput, check_inputs, expand_inputs
from tilepilot.agents.review.ledger import ChunkLedger
from tilepilot.agents.review.legibility_table import LegibilityTable, load_table
from tilepilot.agents.review.mapper import ChunkContext, extra_output_fields
from tilepilot.agents.review.planner import PAGE_HEADER_TOKENS, Prefer, image_tokens
from tilepilot.agents.review.prompts import chunk_message, system_prompt
from tilepilot.agents.review.report_html import render_html
from tilepilot.agents.review.playbook import playbook, review_fields
from tilepilot.agents.review.report_md import render_markdown
from tilepilot.agents.review.sources import with_source
from tilepilot.agents.rules import Policy, build_policy
from tilepilot.agents.runs import Deadline, ProbedModel, ProgressSink, Run, read_options, write_atomic
from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.model_runtime.payloads import Message
from tilepilot.model_runtime.probe import requests_in_flight
from tilepilot.model_runtime.profiles import ModelProfile


class ReviewOptions(BaseModel):
    paths: list[str]
    rules: list[str] = []
    budget_tokens: int | None = None
    concurrency: int = 2
    mode: Literal["map-reduce", "rolling"] = "map-reduce"
    pages: str | None = None
    no_model: bool = False
    model: str = "tiny"
    max_runtime_s: float | None = None
    prefer: Prefer = "fidelity"
    legibility: str | None = None  # an eval legibility.json whose rows replace the shipped table's


class ReviewPrompt(BaseModel):
    """What every chunk request of a run shares, as logged in its run_started (and run_resumed) event."""

    system: str
    rule_ids: list[str]
    extra_fields: list[str]
    # The profile the model answered with (its answer-schema bounds and image geometry), so `tilepilot export`
    # rebuilds requests for any system, the eval's reference answerer included; None: an older run, or --no-model.
    profile: ModelProfile | None = None


def run_review(options: ReviewOptions, *, out: Path | None = None, resume: Path | None = None, password: str | None = None,
               client_factory: Callable[[], ChatModel] | None = None, console: Console | None = None,
               deadline_s: float | None = None, max_runtime_s: float | None = None,
               progress: ProgressSink | None | Literal["console"] = "console",
               cancel: threading.Event | None = None) -> FindingsFile:
    """Review ``options.paths`` in a new run folder (``out``), or continue the run in ``resume``.

    ``deadline_s`` bounds each page read/render (a spinning page fails alone); ``max_runtime_s``
    (or ``options.max_runtime_s``, with the rules' ``limits.max_runtime_s``) bounds the whole run:
    past it no new chunk starts and :class:`tilepilot.agents.runs.DeadlineReached` is raised, resumable.
    ``progress`` defaults to a bar on ``console`` when it is a terminal. Setting ``cancel`` stops
    the run as the time limit would (no new chunk starts; resumable).
    """
    console = console or Console(stderr=True)
    if resume is not None:
        options = read_options("review", resume, ReviewOptions)
    if max_runtime_s is not None:
        options = options.model_copy(update={"max_runtime_s": max_runtime_s})
    paths = expand_inputs(options.paths)
    first = str(paths[0])
    policy = build_policy("review", options.rules, target=first)
    docs, failed = check_inputs(paths, options.pages, password, policy.limit("max_pages"))
    for failure in failed:  # one line each; the other documents are still reviewed
        console.print(f"skipped {failure.reason}", markup=False, highlight=False, soft_wrap=True)
    legibility = load_table(Path(options.legibility) if options.legibility else None)
    client = None if options.no_model else (client_factory() if client_factory else None)
    if not options.no_model and client is None:
        raise UsageError("a model client is needed unless --no-model is given")
    try:
        system = system_prompt(policy, review_fields(policy, extra_output_fields([f.value for f in policy.output_fields])))
        budget = capacity = None
        if client is not None:
            budget, capacity = _budget(client, options, policy, system)
        if resume is None:
            options = options.model_copy(update={"paths": [str(p.resolve()) for p in paths]})
        sink = (ConsoleProgress(console) if console.is_terminal else None) if progress == "console" else progress
        deadline = Deadline.of(options.max_runtime_s, policy.limit("max_runtime_s"))
        deadline.cancel = cancel
        # The prompt is logged so `tilepilot export` rebuilds each request as sent, whatever the rule files say later.
        prompt = ReviewPrompt(system=system, rule_ids=[c.value.id for c in policy.checks],
                              extra_fields=review_fields(policy, extra_output_fields([f.value for f in policy.output_fields])),
                              profile=client.profile if client is not None else None)
        with Run.open("review", options, out=out, resume=resume, deadline=deadline, progress=sink, client=client,
                      budget_tokens=budget, capacity=capacity, prompt=prompt.model_dump(mode="json")) as run:
            if client is not None and budget is not None:  # _budget measured it for the client above
                options = options.model_copy(update={"concurrency": _in_flight(run, client, options.concurrency, budget)})
            results, usage = _review_documents(run, options, docs, policy, client, system, budget, capacity, password,
                                               deadline_s, legibility)
            report = _write_outputs(run, options, client, budget, results, usage, password, failed, playbook(policy))
            run.finish("done", pages=sum(len(d.pages) for d in docs), usage=usage.model_dump())
    finally:
        if client is not None:
            client.close()
    return report


def _review_documents(run: Run, options: ReviewOptions, docs: list[ReviewInput], policy: Policy,
                      client: ChatModel | None, system: str, budget: int | None, capacity: int | None,
                      password: str | None, deadline_s: float | None, legibility: LegibilityTable) -> tuple[list[DocumentResult], UsageTotals]:
    graph = build_graph(run.checkpointer())
    results: list[DocumentResult] = []
    usage = UsageTotals(budget_tokens=budget)
    run.progress.start("review", sum(len(d.pages) for d in docs), "pages")
    for index, doc in enumerate(docs):
        path, pages = doc.pdf, doc.pages
        chunk_ctx = None if client is None or budget is None else ChunkContext(  # budget: measured for every client
            client=client, path=str(path), password=password, system=system, budget_tokens=budget,
            rule_ids=[c.value.id for c in policy.checks], events=run.events, deadline_s=deadline_s,
            on_pages_done=run.progress.advance, extra_fields=review_fields(policy, extra_output_fields([f.value for f in policy.output_fields])))
        ctx = ReviewContext(chunk=chunk_ctx, policy=policy, path=str(path), password=password, mode=options.mode,
                            capacity=capacity or 0, deadline_s=deadline_s,
                            on_planned=run.progress.advance if client is None else (lambda n: None),
                            concurrency=max(1, options.concurrency), ledger=ChunkLedger(run.checkpointer(), f"doc{index}"),
                            deadline=run.deadline, prefer=options.prefer, legibility=legibility)
        state = _run_document(run, graph, f"doc{index}", ctx, pages)
        result = _document_result(str(path), doc.page_count, pages, state, usage)
        if doc.converted:
            result = with_source(result, doc.source)
        results.append(result)
    return results, usage


def _write_outputs(run: Run, options: ReviewOptions, client: ChatModel | None, budget: int | None,
                   results: list[DocumentResult], usage: UsageTotals, password: str | None,
                   failed: Sequence[FailedInput] = (), positions: dict | None = None) -> FindingsFile:
    model = None if client is None else ModelInfo(
        name=client.profile.name, served_name=client.profile.served_name, random_weights=client.profile.is_random_weights,
        note=random_weights_note(client.profile))
    with findings_lock(run.dir):  # a resumed run keeps the reviewer's decisions; a triage page may be writing them
        report = _findings_file(run, options, model, budget, carry_decisions(run.dir, results), usage, failed, positions)
        write_atomic(run.dir / "findings.json", report.model_dump_json(indent=2, by_alias=True))
    write_atomic(run.dir / "report.md", render_markdown(report))
    write_atomic(run.dir / "report.html", render_html(report, password))
    return report


def _findings_file(run: Run, options: ReviewOptions, model: ModelInfo | None, budget: int | None, results: list[DocumentResult],
                   usage: UsageTotals, failed: Sequence[FailedInput], positions: dict | None) -> FindingsFile:
    return FindingsFile(run=str(run.dir), created=datetime.now(timezone.utc).isoformat(timespec="seconds"), model=model,
                        mode="no-model" if options.no_model else options.mode, prefer=options.prefer, budget_tokens=budget,
                        documents=results, usage=usage, failed_documents=list(failed), playbook=positions or {})


def _budget(client: ChatModel, options: ReviewOptions, policy, system: str) -> tuple[int, int]:
    """The per-request budget and the room it leaves for pages (exact overhead from /tokenize)."""
    profile = client.profile
    budget = options.budget_tokens or profile.input_budget
    if budget > profile.input_budget:
        raise UsageError(f"--budget-tokens {budget} exceeds what {profile.name} accepts per request ({profile.input_budget} = "
                         f"max_model_len {profile.max_model_len} - output reserve {profile.output_reserve}); use at most that")
    rule_limit = policy.limit("max_prompt_tokens")
    if rule_limit is not None:
        budget = min(budget, int(rule_limit))
    skeleton = chunk_message([(99999, "text", None, None)], "x" if options.mode == "rolling" else None)
    overhead = client.count_prompt_tokens([Message.text("system", system), skeleton])
    capacity = budget - overhead - (NOTES_TOKENS if options.mode == "rolling" else 0)
    smallest = image_tokens(612, 792, profile.vision.budgets[0], profile) + PAGE_HEADER_TOKENS
    if capacity < smallest:
        raise UsageError(f"--budget-tokens {budget} leaves no room for a page: the fixed prompt (instructions and rules) takes "
                         f"{overhead} tokens; use at least {overhead + smallest + (NOTES_TOKENS if options.mode == 'rolling' else 0)}")
    return budget, capacity


def _in_flight(run: Run, client: ChatModel, wanted: int, budget: int) -> int:
    """``--concurrency``, lowered to the requests of ``budget`` tokens the server holds at once."""
    caps = client.capabilities if isinstance(client, ProbedModel) else None
    if caps is None:
        return wanted
    held = requests_in_flight(caps, budget)
    if held is not None and held < wanted:
        run.emit("concurrency_lowered", wanted=wanted, used=held, budget_tokens=budget,
                 server_slots=caps.server_slots, kv_concurrency=caps.kv_concurrency)
        return held
    return wanted


def _run_document(run: Run, graph, thread_id: str, ctx: ReviewContext, pages: list[int]) -> dict:
    config = run.thread(thread_id)
    snapshot = graph.get_state(config)
    if snapshot.values.get("done"):  # finished before a kill: nothing left to do for this document
        (ctx.on_planned if ctx.chunk is None else ctx.chunk.on_pages_done)(len(pages))
        return snapshot.values
    start = None if snapshot.values else {"pages": pages}
    if start is None and ctx.chunk is not None:
        finished = {r["chunk"] for r in snapshot.values.get("results", [])} | set(ctx.ledger.finished() if ctx.ledger else {})
        ctx.chunk.on_pages_done(sum(len(c["pages"]) for c in snapshot.values.get("chunks", []) if c["id"] in finished))
    # Rolling mode is one superstep per chunk: pause after each to keep only the newest checkpoint.
    values = run.drive(graph, start, config, context=ctx, pause_after=["roll"] if ctx.mode == "rolling" else []).values
    if ctx.ledger is not None and values.get("done"):
        ctx.ledger.clear()  # the final state holds every chunk's outcome now
    return values


def _document_result(path: str, page_count: int, pages: list[int], state: dict, usage: UsageTotals) -> DocumentResult:
    failures = [PageFailure(**f) for f in state.get("plan_failures", [])]
    requests = []
    dropped = 0
    for result in state.get("results", []):
        failures += [PageFailure(**f) for f in result["failures"]]
        requests += result["requests"]
        dropped += result["dropped"]
    requests += state.get("summary_requests", [])
    for request in requests:
        usage.requests += 1
        usage.prompt_tokens += request["prompt_tokens"]
        usage.completion_tokens += request["completion_tokens"]
        usage.max_prompt_tokens = max(usage.max_prompt_tokens, request["prompt_tokens"])
    failures = sorted({f.page: f for f in failures}.values(), key=lambda f: f.page)
    findings = [Finding.model_validate(f) for f in state.get("final_findings", [])]
    return DocumentResult(
        path=path, page_count=page_count, pages=len(pages), failed_pages=[f.page for f in failures], failures=failures,
        plan=state.get("plan_counts", {}), sent=_pages_sent(state, failures), document_map=DocumentMap.model_validate(state.get("document_map") or {}),
        unverified_model_findings=sum(1 for f in findings if f.source == "model" and f.verified == "unverified"),
        dropped_model_findings=dropped, summary=state.get("summary"), findings=findings,
    )


def _pages_sent(state: dict, failures: list[PageFailure]) -> list[PageSent]:
    """Per planned page: what it went to the model as (after any change the budget forced), and why."""
    sent = {s["page"]: s for result in state.get("results", []) for s in result.get("sent", [])}
    failed = {f.page: f.reason for f in failures}
    out = []
    for chunk in state.get("chunks", []):
        for plan in chunk["pages"]:
            page = plan["page"]
            if page in sent:
                reason = plan["reason"]
                if sent[page]["modality"] != plan["modality"] or (sent[page]["image_budget"] or None) != (
                        chunk["image_budget"] if plan["modality"] != "text" else None):
                    reason += f"; sent as {sent[page]['modality']}@{sent[page]['image_budget']} to fit the budget"
                out.append(PageSent(page=page, modality=sent[page]["modality"], image_budget=sent[page]["image_budget"], reason=reason))
            else:
                out.append(PageSent(page=page, modality=None, reason=f"not sent: {failed.get(page, 'the chunk did not finish')}"))
    return out
