"""The ``legibility`` suite: at which font size and image budget can the model still read a page?

One US-letter page per font size (6-14 pt), each full of numbered lines ("L7: ...") of words and
numbers, written with PyMuPDF. Every page is rendered the way the review agent renders it (in a
:class:`tilepilot.tools.pdf_worker.PageWorker`, straight to the exact grid of the image budget, sent as a
JPEG :class:`ImagePart` with that budget) at every budget, and the model is asked to transcribe
one named line into a JSON answer. Scored by character error rate against the line's text.

The table this suite writes (``legibility.json``: per profile, the smallest budget whose CER is at
most :data:`LEGIBLE_CER` for each font size) is the evidence the review planner needs to choose
between sending a page as text or as an image.

The reference answerer recognises the page from the request's image alone (a small grey-level
fingerprint of the decoded JPEG, compared with the pages rendered at that grid size) and the line
from the question's label.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jiwer
import numpy as np
import pymupdf
from PIL import Image
from pydantic import BaseModel, Field

from tilepilot.agents.eval.core import BBox, EvalContext, Miss, SuiteResult
from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.agents.review.planner import legible_budget
from tilepilot.agents.review.prompts import page_header
from tilepilot.agents.runs import write_atomic
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.errors import InvalidOutputError
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, ModelProfile
from tilepilot.tools.pdf import open_pdf
from tilepilot.tools.pdf_worker import PageWorker

NAME = "legibility"

FONT_SIZES: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12, 14)
SMALL_FONT_SIZES: tuple[int, ...] = (6, 9, 12)
SMALL_BUDGETS: tuple[int, ...] = (70, 280, 1120)
LINES_ASKED, SMALL_LINES_ASKED = 3, 3  # lines asked per page and budget
LEGIBLE_CER = 0.02  # a budget "reads" a font size when its CER is at most this
PAGE = (612.0, 792.0)  # US letter, points
MARGIN = 54.0
MAX_LINE_CHARS = 64
ANSWER_MAX_TOKENS = 160  # a line of <= 64 characters in a one-field JSON object, with room to spare
WORKERS = 4
FINGERPRINT = (24, 32)  # (w, h) grey-level thumbnail the answerer compares
MATCH_MAX_DISTANCE = 1.5  # mean grey difference (0-255): JPEG adds < 0.6, the next font size > 2

INSTRUCTION = ("Transcribe the line of this page that starts with '{label}:'. Copy its text after the label "
               "exactly as printed, character for character. Answer with JSON only.")
_LABEL = re.compile(r"starts with '(L\d+):'")
_WORDS = ("account agreement amount annex balance budget clause contract customer delivery invoice liability "
          "notice obligation party payment period quarter renewal report schedule section service supplier "
          "term total warranty written consent figure review").split()


class LineReading(BaseModel):
    """The answer the model is asked for."""

    text: str = Field(max_length=2 * MAX_LINE_CHARS)


class PageLines(BaseModel):
    """One generated page: its font size and every numbered line, with the line's box in points."""

    page: int
    font_pt: int
    lines: dict[str, str]  # "L7" -> text after the label
    boxes: dict[str, tuple[float, float, float, float]]


class Case(BaseModel):
    font_pt: int
    budget: int
    label: str

    @property
    def key(self) -> str:
        return f"{self.font_pt}pt@{self.budget}/{self.label}"


# -- data ---------------------------------------------------------------------------------------


def _line_text(rng: random.Random) -> str:
    """Words and numbers, so that no line can be guessed from its neighbours or from a dictionary."""
    parts: list[str] = []
    while True:
        r = rng.random()
        token = (rng.choice(_WORDS) if r < 0.6 else str(rng.randint(10, 99999)) if r < 0.85
                 else f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}")
        if len(" ".join(parts + [token])) > MAX_LINE_CHARS:
            return " ".join(parts)
        parts.append(token)


def write_pages(path: Path, font_sizes: tuple[int, ...], seed: int = 11) -> list[PageLines]:
    """One page per font size, lines ``L1:`` ... to the bottom margin; the same arguments give the same PDF."""
    rng = random.Random(seed)
    doc = pymupdf.open()
    pages: list[PageLines] = []
    for number, size in enumerate(font_sizes, start=1):
        page = doc.new_page(width=PAGE[0], height=PAGE[1])
        lines: dict[str, str] = {}
        boxes: dict[str, tuple[float, float, float, float]] = {}
        baseline, step = MARGIN + size, size * 1.5
        while baseline <= PAGE[1] - MARGIN:
            label = f"L{len(lines) + 1}"
            text = _line_text(rng)
            full = f"{label}: {text}"
            page.insert_text((MARGIN, baseline), full, fontsize=size, fontname="helv")
            width = pymupdf.get_text_length(full, fontname="helv", fontsize=size)
            lines[label], boxes[label] = text, (MARGIN, baseline - size, MARGIN + width, baseline + 0.3 * size)
            baseline += step
        pages.append(PageLines(page=number, font_pt=size, lines=lines, boxes=boxes))
    doc.set_metadata({"title": "tilepilot legibility pages", "creationDate": "D:20240101000000Z",
                      "modDate": "D:20240101000000Z"})
    buf = io.BytesIO()
    doc.save(buf, deflate=True, no_new_id=True)
    doc.close()
    write_atomic(path, buf.getvalue())
    return pages


def asked_labels(page: PageLines, count: int) -> list[str]:
    """``count`` lines spread from the top to the bottom of the page."""
    labels = list(page.lines)
    return [labels[round(i * (len(labels) - 1) / max(count - 1, 1))] for i in range(count)]


# -- the reference answerer ----------------------------------------------------------------------


def fingerprint(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize(FINGERPRINT, Image.Resampling.BOX), dtype=np.float32)


class LegibilityAnswerer:
    """Answers from the labels: which page (by pixels) and which line (by the question's label)."""

    def __init__(self, pdf: Path, pages: list[PageLines], budgets: tuple[int, ...]) -> None:
        self.pages = {p.page: p for p in pages}
        self.known: dict[tuple[int, int], list[tuple[int, int, np.ndarray]]] = {}  # size -> (page, budget, print)
        with open_pdf(pdf) as doc:
            for page in pages:
                for budget in budgets:
                    grid = image_grid(round(PAGE[0]), round(PAGE[1]), budget)
                    image = doc.render(page.page, grid.width, grid.height)
                    self.known.setdefault(image.size, []).append((page.page, budget, fingerprint(image)))

    def identify(self, image: Image.Image) -> tuple[int, int] | None:
        """(page, budget) of a request image, or None when no known page is close enough."""
        candidates = self.known.get(image.size, [])
        if not candidates:
            return None
        probe = fingerprint(image)
        distances = [float(np.abs(probe - fp).mean()) for _, _, fp in candidates]
        best = int(np.argmin(distances))
        return candidates[best][:2] if distances[best] <= MATCH_MAX_DISTANCE else None

    def __call__(self, body: dict) -> OracleReply | None:
        images = [_decode_image(part["image_url"]["url"]) for part in _parts(body) if part.get("type") == "image_url"]
        label = next((m.group(1) for part in _parts(body) if part.get("type") == "text"
                      for m in [_LABEL.search(part.get("text", ""))] if m), None)
        if len(images) != 1 or label is None:
            return None
        found = self.identify(images[0])
        if found is None or label not in self.pages[found[0]].lines:
            return None
        page = self.pages[found[0]]
        key = Case(font_pt=page.font_pt, budget=found[1], label=label).key
        # Wrong: what a model that cannot read the print plausibly answers.
        return OracleReply(key=key, right={"text": page.lines[label]}, wrong={"text": ""})


def _parts(body: dict) -> list[dict]:
    return [part for msg in body.get("messages", []) if isinstance(msg.get("content"), list) for part in msg["content"]]


def _decode_image(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


# -- scoring -------------------------------------------------------------------------------------


def character_error_rate(reference: str, hypothesis: str, label: str) -> float:
    """CER of one line, clipped to [0, 1]; whitespace runs count as one space, a repeated label is ignored."""
    hyp = " ".join(hypothesis.split())
    hyp = re.sub(rf"^{label}:\s*", "", hyp)
    ref = " ".join(reference.split())
    if not hyp:
        return 1.0
    return min(1.0, float(jiwer.cer(ref, hyp)))


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def smallest_legible_budgets(cer: dict[int, dict[int, float]]) -> dict[str, int | None]:
    """Per font size, the smallest budget whose CER is at most :data:`LEGIBLE_CER` (None: none is)."""
    return {str(font): next((b for b in sorted(by_budget) if by_budget[b] <= LEGIBLE_CER), None)
            for font, by_budget in sorted(cer.items())}


def planner_budgets(pdf: Path, pages: list[PageLines], profile: ModelProfile) -> dict[str, int | None]:
    """What the review planner picks today for each page (its word-height rule), to set beside the evidence."""
    with open_pdf(pdf) as doc:
        return {str(p.font_pt): legible_budget(doc.text(p.page), profile) for p in pages}


# -- the suite -----------------------------------------------------------------------------------


def _ask(client: ChatClient, worker_pool: list[PageWorker], page: PageLines, case: Case, slot: int) -> str:
    grid = image_grid(round(PAGE[0]), round(PAGE[1]), case.budget, client.profile.vision)
    image = worker_pool[slot % len(worker_pool)].render(page.page, grid.width, grid.height)
    message = Message(role="user", parts=[TextPart(text=page_header(page.page, "image") + "\n"),
                                          ImagePart(image=image, format="jpeg"),
                                          TextPart(text=INSTRUCTION.format(label=case.label))])
    result = client.chat([message], schema=LineReading, max_tokens=ANSWER_MAX_TOKENS, image_budget=case.budget,
                         estimate=False)
    if result.parsed is None:  # chat() with a schema returns only a parsed answer: this would be its bug
        raise InvalidOutputError("the model's answer came back without its parsed LineReading")
    return result.parsed.text


def _miss_image(ctx: EvalContext, pdf: Path, page: PageLines, case: Case) -> tuple[str, BBox]:
    """Save the page as the model saw it (once per page and budget); the asked line's box in its pixels."""
    grid = image_grid(round(PAGE[0]), round(PAGE[1]), case.budget)
    target = ctx.out_dir / "images" / f"p{page.font_pt}pt-{case.budget}.jpg"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_pdf(pdf) as doc:
            buf = io.BytesIO()
            doc.render(page.page, grid.width, grid.height).save(buf, format="JPEG", quality=90)
        write_atomic(target, buf.getvalue())
    sx, sy = grid.width / PAGE[0], grid.height / PAGE[1]
    x0, y0, x1, y1 = page.boxes[case.label]
    return ctx.relative(target), (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def run(ctx: EvalContext) -> SuiteResult:
    started = time.monotonic()
    fonts, budgets = (SMALL_FONT_SIZES, SMALL_BUDGETS) if ctx.small else (FONT_SIZES, IMAGE_BUDGETS)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    pdf = ctx.out_dir / "legibility-pages.pdf"
    pages = write_pages(pdf, fonts)
    by_font = {p.font_pt: p for p in pages}
    per_page = SMALL_LINES_ASKED if ctx.small else LINES_ASKED
    cases = [Case(font_pt=p.font_pt, budget=b, label=label) for b in budgets for p in pages
             for label in asked_labels(p, per_page)]
    client = ctx.connect(LegibilityAnswerer(pdf, pages, budgets))
    workers = [PageWorker(pdf) for _ in range(WORKERS)]  # a worker serves one request at a time
    try:
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="legibility") as pool:
            answers = list(pool.map(lambda ic: _ask(client, workers, by_font[ic[1].font_pt], ic[1], ic[0]),
                                    enumerate(cases)))
    finally:
        client.close()
        for worker in workers:
            worker.close()
    scores = [character_error_rate(by_font[c.font_pt].lines[c.label], a, c.label) for c, a in zip(cases, answers)]
    table: dict[int, dict[int, list[float]]] = {}
    for case, cer in zip(cases, scores):
        table.setdefault(case.font_pt, {}).setdefault(case.budget, []).append(cer)
    cer_table = {f: {b: _mean(v) for b, v in row.items()} for f, row in table.items()}
    breakdown: dict[str, dict[str, float]] = {}
    for font, row in cer_table.items():
        for budget, value in row.items():
            breakdown[f"font={font}pt,budget={budget}"] = {"cer": value, "accuracy": round(1 - value, 4)}
    for font in fonts:
        value = _mean([s for c, s in zip(cases, scores) if c.font_pt == font])
        breakdown[f"font={font}pt"] = {"cer": value, "accuracy": round(1 - value, 4)}
    for budget in budgets:
        value = _mean([s for c, s in zip(cases, scores) if c.budget == budget])
        breakdown[f"budget={budget}"] = {"cer": value, "accuracy": round(1 - value, 4)}
    misses = []
    for case, answer, cer in zip(cases, answers, scores):
        if cer > LEGIBLE_CER:
            page = by_font[case.font_pt]
            image, box = _miss_image(ctx, pdf, page, case)
            misses.append(Miss(case=case.key, image=image, expected_box=box,
                               detail=f"cer {cer:.2f}: expected {page.lines[case.label]!r}, got {answer[:80]!r}"))
    legible = smallest_legible_budgets(cer_table)
    planned = planner_budgets(pdf, pages, client.profile)
    for font in fonts:
        breakdown[f"font={font}pt"]["planner_budget"] = float(planned[str(font)] or 0)
    write_atomic(ctx.out_dir / "legibility.json", json.dumps({
        "system": ctx.system.label, "profile": client.profile.name, "max_cer": LEGIBLE_CER,
        "smallest_legible_budget": {client.profile.name: legible},
        "planner_budget": planned,
        "cer": {str(f): {str(b): v for b, v in sorted(row.items())} for f, row in sorted(cer_table.items())},
    }, indent=2) + "\n")
    cer = _mean(scores)
    metrics = {"cer": cer, "accuracy": round(1 - cer, 4),
               "legible_rate": _mean([1.0 if s <= LEGIBLE_CER else 0.0 for s in scores])}
    return SuiteResult(suite=NAME, system=ctx.system.label, metrics=metrics, breakdown=breakdown, misses=misses,
                       seconds=round(time.monotonic() - started, 2))
