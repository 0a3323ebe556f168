"""Per-page modality and image budget, and packing pages into chunks that fit one request.

Fidelity first: a page's text layer gives exact quotes and exact boxes, so a page that has a good
one is always sent as text; pixels are added where the text layer misses something. The planner
reads only the text layer (words, boxes, coverage), never pixels:

==============================  ==============================================================
page                            representation (``--prefer fidelity``, the default)
==============================  ==============================================================
no text layer, mostly image     ``image`` at :data:`SCAN_BUDGET` (a scan: only eyes can read it)
no text layer, no image         ``image`` at :data:`SCAN_BUDGET` (vector drawing, outlined text)
poor text layer                 ``image`` at :data:`SCAN_BUDGET` (unreadable glyphs: the text
                                layer would mislead, and no quote could be checked on it)
tabular (aligned columns)       ``both``: the text layer (exact quotes) plus the page at its
                                legible budget (which cell is which)
text + images or drawings       ``both``: the text layer plus the page at :data:`FIGURE_BUDGET`
good text layer                 ``text``
==============================  ==============================================================

With ``--prefer tokens`` a good-text page goes as an image instead, but only when the legibility
table (:mod:`tilepilot.agents.review.legibility_table`, the evidence of ``tilepilot eval legibility``)
names a budget that reads the page's font size for this model profile, and that image costs
fewer exact tokens than the text. Each plan says why in ``reason`` (``findings.json`` shows it).

Image costs come from :func:`tilepilot.model_runtime.budget.image_grid` (exact). Text costs come from a
:class:`TextTokenCounter` calibrated on the server's /tokenize; every chunk's full prompt is
counted exactly again before it is sent, so an estimate can never break the budget.
"""

from __future__ import annotations

import math
import statistics
from typing import Callable, Iterable, Literal, Sequence, TypedDict

from pydantic import BaseModel

from tilepilot.agents.review.legibility_table import LegibilityTable, font_pt_of_word_height, load_table
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.profiles import ModelProfile
from tilepilot.tools.pdf import PageText

Modality = Literal["text", "image", "both"]
Prefer = Literal["fidelity", "tokens"]
MIN_LEGIBLE_PX = 16.0  # word-box height in pixels (~11.5 px glyphs) the model should read reliably
SCAN_BUDGET = 560
FIGURE_BUDGET = 280
ESTIMATE_MARGIN = 1.10  # text estimates are padded; the exact per-chunk count has the last word
_TABLE_GAP_PT = 18.0  # a gap this wide between words on one baseline separates table cells
_TABLE_MIN_ROWS = 4
FIGURE_MIN_COVERAGE = 0.15  # images or drawings under this share of the page are decoration (a logo, a rule)
POOR_TEXT_SHARE = 0.2  # a text layer with this share of unreadable words is poor (broken font encoding)


class PagePlan(BaseModel):
    page: int
    modality: Modality
    image_budget: int | None  # soft-token budget when an image is sent
    text_tokens: int  # estimated tokens of the page's text block (0 for image only)
    width_pt: float
    height_pt: float
    has_text_layer: bool
    reason: str


class _PageFacts(TypedDict):
    """The fields of a PagePlan that the page itself fixes, whatever it is sent as."""

    page: int
    width_pt: float
    height_pt: float
    has_text_layer: bool


class ChunkPlan(BaseModel):
    id: str  # stable: first-last page, e.g. "p0001-0008"
    pages: list[PagePlan]
    image_budget: int | None  # one per request: vLLM applies max_soft_tokens to every image in it
    est_tokens: int

    @property
    def page_numbers(self) -> list[int]:
        return [p.page for p in self.pages]


class TextTokenCounter:
    """Text tokens of a page block: exact for the first pages, then a calibrated chars/token estimate."""

    def __init__(self, tokenize: Callable[[str], int] | None, calibration_pages: int = 3):
        self._tokenize = tokenize
        self._left = calibration_pages
        self._chars = 0
        self._tokens = 0

    def count(self, text: str) -> int:
        if not text.strip():
            return 0
        if self._tokenize is not None and self._left > 0 and len(text) >= 200:
            tokens = self._tokenize(text)
            self._left -= 1
            self._chars += len(text)
            self._tokens += tokens
            return tokens
        chars_per_token = self._chars / self._tokens if self._tokens else 3.0
        return math.ceil(len(text) / chars_per_token * ESTIMATE_MARGIN)


def image_tokens(width_pt: float, height_pt: float, budget: int, profile: ModelProfile) -> int:
    return image_grid(max(1, round(width_pt)), max(1, round(height_pt)), budget, profile.vision).prompt_tokens


def median_word_height(text: PageText) -> float | None:
    heights = [w.bbox[3] - w.bbox[1] for w in text.words if w.bbox[3] > w.bbox[1]]
    return statistics.median(heights) if heights else None


def legible_budget(text: PageText, profile: ModelProfile) -> int | None:
    """The smallest image budget at which the page's median word box is :data:`MIN_LEGIBLE_PX` tall."""
    word_pt = median_word_height(text)
    if word_pt is None:
        return None
    for budget in profile.vision.budgets:
        grid = image_grid(max(1, round(text.width)), max(1, round(text.height)), budget, profile.vision)
        if word_pt * grid.height / text.height >= MIN_LEGIBLE_PX:
            return budget
    return None


def _unreadable(word: str) -> bool:
    """Glyphs without a Unicode meaning: the replacement character, private-use code points, controls."""
    return any(ch == "\ufffd" or "\ue000" <= ch <= "\uf8ff" or (ord(ch) < 32 and ch not in "\t\n\r") for ch in word)


def poor_text_layer(text: PageText) -> str | None:
    """Why the page's text layer cannot be trusted, or None when it can."""
    if not text.words:
        return None
    bad = sum(1 for w in text.words if _unreadable(w.text))
    if bad / len(text.words) >= POOR_TEXT_SHARE:
        return f"poor text layer: {bad} of {len(text.words)} words unreadable"
    return None


def is_tabular(text: PageText) -> bool:
    """At least a few baselines that hold several words separated by wide gaps (cells of a table)."""
    rows: dict[int, list[tuple[float, float]]] = {}
    for word in text.words:
        rows.setdefault(round(word.bbox[3] / 2), []).append((word.bbox[0], word.bbox[2]))
    tabular = 0
    for spans in rows.values():
        spans.sort()
        gaps = sum(1 for (_, end), (start, _) in zip(spans, spans[1:]) if start - end >= _TABLE_GAP_PT)
        tabular += gaps >= 2
    return tabular >= _TABLE_MIN_ROWS


def plan_page(text: PageText, profile: ModelProfile, counter: TextTokenCounter, page_block: Callable[[PageText], str],
              prefer: Prefer = "fidelity", legibility: LegibilityTable | None = None) -> PagePlan:
    has_text = text.char_count >= 20
    base = _PageFacts(page=text.page, width_pt=text.width, height_pt=text.height, has_text_layer=has_text)
    if not has_text and text.image_coverage >= 0.3:
        return PagePlan(**base, modality="image", image_budget=SCAN_BUDGET, text_tokens=0, reason="scanned: no text layer")
    if not has_text:
        # No text and no picture is a blank page, or one drawn in vector paths (a chart, text
        # converted to outlines): only the rendered page shows which, and it costs few tokens.
        return PagePlan(**base, modality="image", image_budget=SCAN_BUDGET, text_tokens=0,
                        reason="no text layer: vector drawing or blank")
    poor = poor_text_layer(text)
    if poor:
        return PagePlan(**base, modality="image", image_budget=SCAN_BUDGET, text_tokens=0, reason=poor)
    tokens = counter.count(page_block(text))
    if is_tabular(text):
        legible = legible_budget(text, profile) or profile.vision.budgets[-1]
        return PagePlan(**base, modality="both", image_budget=legible, text_tokens=tokens,
                        reason=f"table: text layer for exact quotes + image@{legible} for the cells")
    if max(text.image_coverage, text.drawing_coverage) >= FIGURE_MIN_COVERAGE:
        what = "images" if text.image_coverage >= text.drawing_coverage else "drawings"
        return PagePlan(**base, modality="both", image_budget=FIGURE_BUDGET, text_tokens=tokens,
                        reason=f"text with {what}: text layer + image@{FIGURE_BUDGET}")
    if prefer == "tokens":
        cheaper = _cheaper_legible_image(text, profile, tokens, legibility or load_table())
        if isinstance(cheaper, PagePlan):
            return cheaper
        return PagePlan(**base, modality="text", image_budget=None, text_tokens=tokens, reason=f"text layer ({cheaper})")
    return PagePlan(**base, modality="text", image_budget=None, text_tokens=tokens, reason="text layer: exact quotes and boxes")


def _cheaper_legible_image(text: PageText, profile: ModelProfile, tokens: int, table: LegibilityTable) -> PagePlan | str:
    """``--prefer tokens``: the page as an image at a budget the table says reads its print, if cheaper; else why not."""
    height = median_word_height(text)
    font_pt = font_pt_of_word_height(height) if height else 0.0
    budget = table.budget_for(profile.name, font_pt)
    if budget is None:
        return f"--prefer tokens: no budget known to read {font_pt:.1f} pt for {profile.name}"
    as_image = image_tokens(text.width, text.height, budget, profile)
    if as_image >= tokens:
        return f"--prefer tokens: image@{budget} {as_image} >= text {tokens} tokens"
    return PagePlan(page=text.page, width_pt=text.width, height_pt=text.height, has_text_layer=True, modality="image",
                    image_budget=budget, text_tokens=0,
                    reason=f"--prefer tokens: image@{budget} reads {font_pt:.1f} pt ({as_image} < text {tokens} tokens)")


def page_cost(page: PagePlan, chunk_budget: int | None, profile: ModelProfile) -> int:
    """Prompt tokens this page adds to a request whose images all use ``chunk_budget``."""
    cost = page.text_tokens
    if page.modality != "text" and chunk_budget is not None:
        cost += image_tokens(page.width_pt, page.height_pt, chunk_budget, profile)
    return cost + PAGE_HEADER_TOKENS


PAGE_HEADER_TOKENS = 16  # "[page N: image]" header line; counted exactly later with the chunk


def chunk_id(pages: Sequence[PagePlan]) -> str:
    return f"p{pages[0].page:04d}-{pages[-1].page:04d}"


def pack_chunks(pages: Iterable[PagePlan], capacity: int, profile: ModelProfile, max_pages: int = 40) -> list[ChunkPlan]:
    """Greedy, in page order: add pages while the chunk's cost (at its highest image budget) fits.

    A page that alone exceeds ``capacity`` still gets its own chunk; the map step shrinks it
    (lower image budget) or reports it failed, naming the page.
    """
    max_images = profile.limit_mm_per_prompt.get("image", 8)
    chunks: list[ChunkPlan] = []
    current: list[PagePlan] = []

    def cost_of(group: list[PagePlan]) -> tuple[int, int | None]:
        budgets = [p.image_budget for p in group if p.modality != "text" and p.image_budget]
        budget = max(budgets) if budgets else None
        return sum(page_cost(p, budget, profile) for p in group), budget

    def close() -> None:
        if current:
            tokens, budget = cost_of(current)
            chunks.append(ChunkPlan(id=chunk_id(current), pages=list(current), image_budget=budget, est_tokens=tokens))
            current.clear()

    for page in pages:
        candidate = current + [page]
        images = sum(1 for p in candidate if p.modality != "text")
        if current and (cost_of(candidate)[0] > capacity or images > max_images or len(candidate) > max_pages):
            close()
        current.append(page)
    close()
    return chunks
