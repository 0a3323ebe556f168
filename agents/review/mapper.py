"""The map step: review one chunk of pages with one request, within the budget, or say which page failed.

Pages are read and rendered here, lazily, in a page worker with a per-page deadline: only this
chunk's images exist, at exactly the grid size of the chunk's image budget. The prompt is counted
exactly before it is sent (text through /tokenize, images by the grid math); if it is over the
budget, or the server still answers 400 (context overflow), the chunk is split in halves, and a
single page gets a lower image budget, until it fits. A page that cannot fit, cannot be read or
whose request keeps failing is returned as a failure with its reason, never dropped silently.

Every model finding is kept: its quote is checked against the page's text layer
(:mod:`tilepilot.agents.review.quotes`: exact, approximate or unverified) and unverified ones are flagged,
not dropped. Only a finding that cites a page the chunk did not show is dropped, counted and logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Optional, Protocol, cast

from PIL import Image
from pydantic import BaseModel, Field, create_model

from tilepilot.agents.review.playbook import FLAG_FIELD, Flag
from tilepilot.agents.review.findings import BUILTIN_FIELDS, Finding, LenientJson, ModelFinding, Severity, model_finding_id
from tilepilot.agents.review.planner import ChunkPlan, PagePlan, chunk_id, image_tokens
from tilepilot.agents.review.prompts import chunk_message
from tilepilot.agents.review.quotes import PageIndex, QuoteMatch, match_quote
from tilepilot.agents.runs import EventLog
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.chat_model import ChatModel
from tilepilot.model_runtime.errors import ContextOverflowError, InvalidOutputError, ServerError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart
from tilepilot.model_runtime.profiles import ModelProfile, VisionSpec, tiny_profile
from tilepilot.tools.errors import CorruptPdfError, PageRangeError, PageTimeoutError
from tilepilot.tools.pdf import PageText
from tilepilot.tools.pdf_worker import PageWorker



@dataclass
class ChunkContext:
    """What every chunk step needs; lives outside the checkpoint (clients, logs, secrets)."""

    client: ChatModel
    path: str
    password: str | None
    system: str
    budget_tokens: int
    rule_ids: list[str]
    events: EventLog
    extra_fields: list[str] = field(default_factory=list)  # output.fields beyond the built-in ones (suggestion, ...)
    document_map: str = ""  # the document's headings and defined terms, in every chunk's prompt
    deadline_s: float | None = None
    on_pages_done: Callable[[int], None] = lambda n: None


class _ChunkAnswer(Protocol):
    """What every answer_schema() model has: its findings (each a model of the chunk's own Finding schema)."""

    findings: list[BaseModel]


@dataclass
class ChunkOutcome:
    chunk: str
    findings: list[Finding] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    dropped: int = 0
    notes: str = ""
    sent: list[dict] = field(default_factory=list)  # {"page", "modality", "image_budget", "change"} per page sent

    def to_state(self) -> dict:
        return {
            "chunk": self.chunk,
            "findings": [f.model_dump(mode="json") for f in self.findings],
            "failures": [{"page": p, "reason": r} for p, r in self.failures],
            "requests": self.requests,
            "dropped": self.dropped,
            "notes": self.notes,
            "sent": self.sent,
        }


def answer_schema(pages: list[int], rule_ids: list[str], with_notes: bool, profile: ModelProfile | None = None,
                  extra_fields: list[str] | None = None) -> type[BaseModel]:
    """The chunk's answer model: pages and rule ids are enums, so the model can only cite what it was shown.

    ``page`` may be null (a document-level finding: a missing clause) or a list of the chunk's
    pages (a problem that spans them). The bounds come from the model profile (default: the tiny
    profile's tight ones); ``extra_fields`` (the rules' ``output.fields``, e.g. ``suggestion``)
    are required strings of every finding, bounded like the rationale.
    """
    bounds = profile or tiny_profile()
    page_type: Any = Literal[tuple(pages)]  # type: ignore[valid-type]
    rule_type: Any = Literal[tuple(dict.fromkeys([*rule_ids, "model"]))]  # type: ignore[valid-type]
    spanning = Annotated[list[page_type], Field(min_length=2, max_length=max(2, len(pages)))]  # type: ignore[valid-type]
    extras: dict[str, Any] = {name: (Flag, ...) if name == FLAG_FIELD else (str, Field(max_length=bounds.max_rationale_chars))
                              for name in extra_fields or []}
    item = create_model(
        "Finding",
        rule=(rule_type, ...),
        severity=(Severity, ...),
        page=(page_type | spanning | None, ...),  # type: ignore[valid-type]
        quote=(str, Field(max_length=bounds.max_quote_chars)),
        rationale=(str, Field(max_length=bounds.max_rationale_chars)),
        **extras,
        box=(Optional[Annotated[list[float], Field(min_length=4, max_length=4)]],
             Field(None, description="for a page shown as an image: [x0, y0, x1, y1] of the quote in that image's pixels")),
        __base__=LenientJson,
    )
    fields: dict = {"findings": (list[item], Field(max_length=bounds.max_findings_per_chunk))}  # type: ignore[valid-type]
    if with_notes:
        fields["notes"] = (str, Field(max_length=200))
    return create_model("ChunkAnswer", __base__=LenientJson, **fields)


def extra_output_fields(output_fields: list[str]) -> list[str]:
    """The rules' ``output.fields`` that a finding does not already have (``suggestion``, ...)."""
    return [f for f in output_fields if f not in BUILTIN_FIELDS]


def review_chunk(chunk: ChunkPlan, ctx: ChunkContext, notes: str | None = None) -> ChunkOutcome:
    outcome = ChunkOutcome(chunk=chunk.id)
    with PageWorker(ctx.path, ctx.password, ctx.deadline_s) as worker:
        texts: dict[int, PageText] = {}
        readable: list[PagePlan] = []
        for page in chunk.pages:
            try:
                texts[page.page] = worker.text(page.page)
                readable.append(page)
            except (PageTimeoutError, CorruptPdfError, PageRangeError) as err:  # range: claimed, missing
                _fail(outcome, ctx, page.page, str(err))
        if readable:
            _review_pages(readable, chunk.image_budget, worker, texts, ctx, notes, outcome)
    ctx.on_pages_done(len(chunk.pages))
    return outcome


def _review_pages(pages: list[PagePlan], budget: int | None, worker: PageWorker, texts: dict[int, PageText],
                  ctx: ChunkContext, notes: str | None, outcome: ChunkOutcome) -> None:
    counted = _count(pages, budget, texts, ctx, notes)
    if counted > ctx.budget_tokens:
        _shrink(pages, budget, worker, texts, ctx, notes, outcome, f"{counted} tokens > budget {ctx.budget_tokens}")
        return
    try:
        images = {p.page: _render(worker, p, budget, ctx) for p in pages if p.modality != "text"}
    except (PageTimeoutError, CorruptPdfError, PageRangeError) as err:  # range: claimed, missing
        # The error names its page; one about no page of this chunk (the document stopped opening)
        # fails the chunk's pages one at a time.
        bad = err.page if err.page in {p.page for p in pages} else pages[0].page
        _fail(outcome, ctx, bad, str(err))
        rest = [p for p in pages if p.page != bad]
        if rest:
            _review_pages(rest, budget, worker, texts, ctx, notes, outcome)
        return
    message = chunk_message([(p.page, p.modality, texts[p.page].text if p.modality != "image" else None, images.get(p.page))
                             for p in pages], notes, ctx.document_map)
    sizes = {page: image.size for page, image in images.items()}  # pixels the model saw, for its boxes
    del images  # the message holds the only references; dropped with it after the request
    schema = answer_schema([p.page for p in pages], ctx.rule_ids, with_notes=notes is not None, profile=ctx.client.profile,
                           extra_fields=ctx.extra_fields)
    try:
        # The whole output reserve: a fixed smaller cap would cut a long, correct answer mid-JSON.
        result = ctx.client.chat([Message.text("system", ctx.system), message], schema=schema, max_tokens=ctx.client.profile.output_reserve,
                                 image_budget=budget, estimate=False)
        if result.parsed is None:  # chat() with a schema returns the parsed answer or raises
            raise InvalidOutputError("the chunk request came back without a parsed answer")
    except ContextOverflowError as err:
        _shrink(pages, budget, worker, texts, ctx, notes, outcome, f"server: {err}")
        return
    except (ServerError, InvalidOutputError) as err:
        for page in pages:
            _fail(outcome, ctx, page.page, f"the model request failed: {err}")
        return
    request = {"chunk": chunk_id(pages), "pages": [p.page for p in pages], "image_budget": budget, "counted": counted,
               "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
               "budget": ctx.budget_tokens, "attempts": result.attempts, "latency_s": round(result.latency_s, 3)}
    ctx.events.emit("request", path=ctx.path, **request)  # the path: which document (export rebuilds the request)
    outcome.requests.append(request)
    outcome.sent += [{"page": p.page, "modality": p.modality, "image_budget": budget if p.modality != "text" else None}
                     for p in pages]
    answer = cast(_ChunkAnswer, result.parsed)  # built at run time by answer_schema()
    if notes is not None:
        outcome.notes = getattr(answer, "notes", "") or ""
    indexes: dict[int, PageIndex] = {}  # built once per page, only for pages a finding cites
    for raw in answer.findings:
        extras = {name: str(getattr(raw, name, "") or "") for name in ctx.extra_fields}
        _accept(ModelFinding(**raw.model_dump()), {p.page for p in pages}, texts, ctx, outcome, sizes, extras, indexes)


def _count(pages: list[PagePlan], budget: int | None, texts: dict[int, PageText], ctx: ChunkContext, notes: str | None) -> int:
    """Exact prompt tokens without rendering: each image is one placeholder token in /tokenize, plus its grid cost."""
    placeholder = ctx.client.profile.image_placeholder
    message = chunk_message([(p.page, p.modality, texts[p.page].text if p.modality != "image" else None, None) for p in pages], notes,
                            ctx.document_map)
    parts, extra = [], 0
    for part in message.parts:
        parts.append(part)
        header = re.match(r"=== page (\d+) \((image|image and text layer)\) ===", part.text) if isinstance(part, TextPart) else None
        if header:
            page = next(p for p in pages if p.page == int(header.group(1)))
            parts.append(TextPart(text=placeholder))
            extra += image_tokens(page.width_pt, page.height_pt, budget or 280, ctx.client.profile) - 1
    counted = ctx.client.count_prompt_tokens([Message.text("system", ctx.system), Message(role="user", parts=parts)], budget)
    return counted + extra


def _shrink(pages: list[PagePlan], budget: int | None, worker: PageWorker, texts: dict[int, PageText], ctx: ChunkContext,
            notes: str | None, outcome: ChunkOutcome, why: str) -> None:
    """Split the chunk in halves; a single page drops to the next lower image budget; else it fails."""
    if len(pages) > 1:
        half = len(pages) // 2
        ctx.events.emit("chunk_split", chunk=chunk_id(pages), reason=why, parts=[chunk_id(pages[:half]), chunk_id(pages[half:])])
        for part in (pages[:half], pages[half:]):
            _review_pages(part, _budget_of(part, budget), worker, texts, ctx, notes, outcome)
        return
    page = pages[0]
    budgets = ctx.client.profile.vision.budgets
    if page.modality == "text" and texts[page.page].char_count:
        # A text page too long for the budget may still fit as a (bounded) image.
        lower: PagePlan | None = page.model_copy(update={"modality": "image", "image_budget": budgets[-1], "text_tokens": 0})
        new_budget: int | None = budgets[-1]
    elif page.modality == "both":
        lower, new_budget = page.model_copy(update={"modality": "image", "text_tokens": 0}), budget
    elif budget is not None and budget > budgets[0]:
        new_budget = budgets[budgets.index(budget) - 1] if budget in budgets else budgets[0]
        lower = page.model_copy(update={"image_budget": new_budget})
    else:
        lower = None
    if lower is None or notes:
        if notes:  # rolling mode: drop the notes before giving up on the page
            ctx.events.emit("budget_lowered", page=page.page, reason=why, change="notes dropped")
            _review_pages(pages, budget, worker, texts, ctx, None, outcome)
            return
        _fail(outcome, ctx, page.page, f"page {page.page} does not fit the request budget ({why}); raise --budget-tokens")
        return
    change = f"{page.modality}@{budget} -> {lower.modality}@{new_budget}"
    ctx.events.emit("budget_lowered", page=page.page, reason=why, change=change)
    lower = lower.model_copy(update={"reason": f"{page.reason}; lowered to fit the budget: {change}"})
    _review_pages([lower], new_budget, worker, texts, ctx, notes, outcome)


def _budget_of(pages: list[PagePlan], fallback: int | None) -> int | None:
    budgets = [p.image_budget for p in pages if p.modality != "text" and p.image_budget]
    return min(max(budgets), fallback) if budgets and fallback else (max(budgets) if budgets else None)


def _render(worker: PageWorker, page: PagePlan, budget: int | None, ctx: ChunkContext):
    return render_page(worker, page.page, page.width_pt, page.height_pt, budget, ctx.client.profile.vision)


def render_page(worker: PageWorker, page: int, width_pt: float, height_pt: float, budget: int | None,
                vision: VisionSpec) -> Image.Image:
    """The page image a chunk request carries: rendered at exactly the grid of its image budget."""
    grid = image_grid(max(1, round(width_pt)), max(1, round(height_pt)), budget or 280, vision)
    return worker.render(page, grid.width, grid.height)


def _fail(outcome: ChunkOutcome, ctx: ChunkContext, page: int, reason: str) -> None:
    outcome.failures.append((page, reason))
    ctx.events.emit("page_failed", page=page, reason=reason)


def image_box_to_points(box: list[float] | None, size: tuple[int, int] | None, text: PageText) -> tuple[float, float, float, float] | None:
    """A box the model drew in the page image it was shown (pixels) as PDF points on the displayed page."""
    if not box or size is None:
        return None
    sx, sy = text.width / size[0], text.height / size[1]
    x0, x1 = sorted((min(max(box[0] * sx, 0.0), text.width), min(max(box[2] * sx, 0.0), text.width)))
    y0, y1 = sorted((min(max(box[1] * sy, 0.0), text.height), min(max(box[3] * sy, 0.0), text.height)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _accept(raw: ModelFinding, pages: set[int], texts: dict[int, PageText], ctx: ChunkContext, outcome: ChunkOutcome,
            sizes: dict[int, tuple[int, int]] | None = None, extras: dict[str, str] | None = None,
            indexes: dict[int, PageIndex] | None = None) -> None:
    rule = raw.rule if raw.rule in ctx.rule_ids else "model"
    fields = {k: v for k, v in (extras or {}).items() if v}
    if raw.page is None or isinstance(raw.page, list):  # document-level: a missing clause, or a problem across pages
        spans = sorted(set(raw.page or []))
        outcome.findings.append(Finding(id=model_finding_id(rule, None, raw.quote + "".join(f"\x1f{p}" for p in spans)), rule=rule,
                                        severity=raw.severity, page=None, pages=spans, quote=raw.quote, bbox=None,
                                        rationale=raw.rationale, fields=fields, source="model", verified="unverified"))
        return
    if raw.page not in pages:  # a server without the answer schema's page enum let it through
        outcome.dropped += 1
        ctx.events.emit("model_finding_dropped", page=raw.page, quote=raw.quote[:80], reason="page not in the chunk")
        return
    text = texts[raw.page]
    if text.char_count >= 20:  # the text layer gives exact boxes, also for an approximate quote
        if indexes is None:
            indexes = {}
        if raw.page not in indexes:
            indexes[raw.page] = PageIndex.of(text.words)
        found = match_quote(indexes[raw.page], raw.quote)
    else:  # a scan: only the model's own box in the image it saw
        found = QuoteMatch("unverified", image_box_to_points(raw.box, (sizes or {}).get(raw.page), text), 0.0)
    if found.verified == "unverified":
        ctx.events.emit("model_finding_unverified", page=raw.page, quote=raw.quote[:80], score=round(found.score, 1),
                        reason="quote not found on the page's text layer" if text.char_count >= 20 else "page has no text layer")
    outcome.findings.append(Finding(
        id=model_finding_id(rule, raw.page, raw.quote), rule=rule, severity=raw.severity, page=raw.page, quote=raw.quote,
        bbox=found.bbox, rationale=raw.rationale, fields=fields, source="model", verified=found.verified,
    ))
