"""Training examples from a review run: each chunk request with findings a reviewer accepted or corrected.

The reviewer's verdicts live in ``findings.json`` (``decision`` / ``correction`` per finding, see
:mod:`tilepilot.agents.review.findings`; ``tilepilot review --accept RUN --id ID`` writes them). A chunk
request teaches when at least one *model* finding it produced was accepted or corrected; its target
is the answer JSON in the schema the model answered in (:func:`tilepilot.agents.review.mapper.answer_schema`)
holding only those findings, corrections applied. Rejected and undecided findings are dropped, and
so are the deterministic checks' findings (the model was never asked for those answers).

The request is rebuilt with the agent's own functions from what the run recorded: the PDF (its
path in each ``request`` event), the pages and image budget of that request (the event), each
page's modality as sent (``findings.json`` ``sent``), the document map as the prompt carried it
(``findings.json`` map, cut to the ``planned`` event's capacity), and the system prompt logged in
the ``run_started`` / ``run_resumed`` event that preceded the request. ``prompt_tokens`` is the
server's count of that request (the ``request`` event).

Rolling-mode runs are left out: their carried notes are not recorded, so their requests cannot be
rebuilt exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from tilepilot.agents.errors import RunError
from tilepilot.agents.export.dataset import Example, ExportError, SourceSummary
from tilepilot.agents.review.decisions import load_findings
from tilepilot.agents.review.findings import DocumentResult, Finding
from tilepilot.agents.review.graph import document_map_text
from tilepilot.agents.review.mapper import answer_schema, render_page
from tilepilot.agents.review.prompts import chunk_message
from tilepilot.agents.review.runner import ReviewOptions, ReviewPrompt
from tilepilot.agents.runs import EVENTS_NAME, MANIFEST_NAME, RUN_RESUMED, RUN_STARTED, RunManifest, read_events, read_model_file, validation_problem
from tilepilot.model_runtime.payloads import Message
from tilepilot.model_runtime.profiles import ModelProfile, get_profile
from tilepilot.tools.errors import ToolError
from tilepilot.tools.pdf import PageText
from tilepilot.tools.pdf_worker import PageWorker

TAUGHT = ("accepted", "corrected")
O = TypeVar("O", bound=BaseModel)


class ChunkRequest(BaseModel):
    """One chunk request of the run as its events recorded it."""

    path: str
    chunk: str
    pages: list[int]
    image_budget: int | None
    prompt_tokens: int
    prompt: ReviewPrompt
    capacity: int  # of the document's plan: the document map was cut to it


def review_examples(run: Path) -> tuple[list[Example], SourceSummary]:
    run = Path(run)
    try:
        report = load_findings(run)
        options = run_options(run, ReviewOptions)
    except RunError as err:
        raise ExportError(str(err)) from None

    def summary(examples: int, note: str) -> SourceSummary:
        return SourceSummary(run=str(run), agent="review", examples=examples, note=note)

    if report.mode != "map-reduce":
        why = "reviewed with --no-model" if report.mode == "no-model" else "rolling mode (its carried notes are not recorded)"
        return [], summary(0, f"left out: {why}")
    taught = [f for doc in report.documents for f in doc.findings if f.source == "model" and f.decision in TAUGHT]
    if not taught:
        return [], summary(0, "no accepted or corrected model finding")
    requests = chunk_requests(run)
    logged = next((r.prompt.profile for r in requests.values() if r.prompt.profile is not None), None)
    profile = logged or get_profile(options.model)  # runs before the profile was logged: their --model
    examples: list[Example] = []
    left_out = 0
    for index, doc in enumerate(report.documents):
        mine = [r for r in requests.values() if r.path == doc.path]
        chosen = [f for f in doc.findings if f.source == "model" and f.decision in TAUGHT]
        placed = 0
        for request in mine:
            findings = [f for f in chosen if _from_request(f, request, len(mine))]
            placed += len(findings)
            if findings:
                examples.append(_example(run, index, doc, request, findings, profile))
        left_out += len(chosen) - placed
    rejected = sum(1 for doc in report.documents for f in doc.findings if f.decision == "rejected")
    note = f"{len(taught)} accepted/corrected, {rejected} rejected finding(s)"
    if left_out:
        note += f"; {left_out} finding(s) left out: no one recorded request showed them (a document-level finding over several chunks)"
    return examples, summary(len(examples), note)


def run_options(run: Path, options_type: type[O]) -> O:
    """The options a run was started with (its ``run.json``); a damaged manifest is a one-line error."""
    manifest = read_model_file(run / MANIFEST_NAME, RunManifest)
    try:
        return options_type.model_validate(manifest.options)
    except ValidationError as err:
        raise RunError(f"{run / MANIFEST_NAME}: options.{validation_problem(err)}") from None


def chunk_requests(run: Path) -> dict[tuple[str, tuple[int, ...]], ChunkRequest]:
    """The run's chunk requests by (document, pages); a chunk sent again after a resume keeps its last request."""
    prompt: ReviewPrompt | None = None
    capacity: dict[str, int] = {}
    found: dict[tuple[str, tuple[int, ...]], ChunkRequest] = {}
    for event in read_events(run / EVENTS_NAME):
        kind = event.get("kind")
        if kind in (RUN_STARTED, RUN_RESUMED):
            prompt = ReviewPrompt.model_validate(event["prompt"]) if "prompt" in event else None
        elif kind == "planned":
            capacity[event["path"]] = event["capacity"]
        elif kind == "request" and event.get("chunk") != "summary":
            if prompt is None or "path" not in event:
                raise ExportError(f"{run}: recorded by a tilepilot that did not log each request's prompt and document; "
                                  "its requests cannot be rebuilt exactly (review the PDFs again)")
            request = ChunkRequest(path=event["path"], chunk=event["chunk"], pages=event["pages"],
                                   image_budget=event["image_budget"], prompt_tokens=event["prompt_tokens"], prompt=prompt,
                                   capacity=capacity.get(event["path"], 0))
            found[(request.path, tuple(request.pages))] = request
    return found


def _from_request(finding: Finding, request: ChunkRequest, requests: int) -> bool:
    """Whether ``finding`` came from ``request``: its page was in it; a document-level one, all its pages
    (or, citing none, the document had only this request)."""
    if finding.page is not None:
        return finding.page in request.pages
    if finding.pages:
        return set(finding.pages) <= set(request.pages)
    return requests == 1


def _example(run: Path, index: int, doc: DocumentResult, request: ChunkRequest, findings: list[Finding],
             profile: ModelProfile) -> Example:
    if not Path(doc.path).is_file():
        raise ExportError(f"{run}: the reviewed PDF {doc.path} is gone; its pages cannot be rebuilt")
    sent = {s.page: s.modality for s in doc.sent}
    pages = []
    texts: dict[int, PageText] = {}
    sizes: dict[int, tuple[int, int]] = {}
    try:
        with PageWorker(doc.path, None) as worker:
            for page in request.pages:
                modality = sent.get(page)
                if modality is None:
                    raise ExportError(f"{run}: findings.json does not say how page {page} of {doc.path} was sent; "
                                      "the run folder is damaged")
                text = texts[page] = worker.text(page)
                image = None
                if modality != "text":
                    image = render_page(worker, page, text.width, text.height, request.image_budget, profile.vision)
                    sizes[page] = image.size
                pages.append((page, modality, text.text if modality != "image" else None, image))
    except ToolError as err:
        raise ExportError(f"{doc.path}: {err}") from None
    message = chunk_message(pages, None, document_map_text(doc.document_map, request.capacity))
    return Example(agent="review", source=f"{run}#doc={index}&chunk={request.chunk}",
                   messages=[Message.text("system", request.prompt.system), message],
                   target=_target(run, request, findings, texts, sizes, profile), image_budget=request.image_budget,
                   prompt_tokens=request.prompt_tokens)


def _target(run: Path, request: ChunkRequest, findings: list[Finding], texts: dict[int, PageText],
            sizes: dict[int, tuple[int, int]], profile: ModelProfile) -> str:
    """The answer JSON the model should have given: the findings, corrections applied, in its answer schema."""
    extra = request.prompt.extra_fields
    answers = []
    for original in findings:
        finding = original.corrected()
        unknown = sorted(set(finding.fields) - set(extra))
        if unknown:
            raise ExportError(f"{run}/findings.json: finding {finding.id}: the correction names unknown field(s) "
                              f"{', '.join(unknown)} (the rules' output fields: {', '.join(extra) or 'none'})")
        answer: dict = {"rule": finding.rule, "severity": finding.severity,
                        "page": finding.page if finding.page is not None else (finding.pages if len(finding.pages) >= 2 else None),
                        "quote": finding.quote, "rationale": finding.rationale}
        answer.update({name: finding.fields.get(name, "") for name in extra})
        box = _box_in_image(finding, texts, sizes)
        if box is not None:
            answer["box"] = box
        answers.append(answer)
    schema = answer_schema(request.pages, request.prompt.rule_ids, with_notes=False, profile=profile, extra_fields=extra)
    target = json.dumps({"findings": answers}, ensure_ascii=False, separators=(",", ":"))
    try:
        schema.model_validate_json(target)
    except ValidationError as err:
        raise ExportError(f"{run}/findings.json: chunk {request.chunk}: the accepted/corrected findings do not fit the "
                          f"answer schema the model answered in: {validation_problem(err)}") from None
    return target


def _box_in_image(finding: Finding, texts: dict[int, PageText], sizes: dict[int, tuple[int, int]]) -> list[float] | None:
    """The finding's box in the pixels of the page image the model was shown (the inverse of
    :func:`tilepilot.agents.review.mapper.image_box_to_points`); None for a page that went as text only."""
    if finding.page is None or finding.bbox is None or finding.page not in sizes:
        return None
    text, (width, height) = texts[finding.page], sizes[finding.page]
    sx, sy = width / text.width, height / text.height
    x0, y0, x1, y1 = finding.bbox
    return [round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1)]

