"""Planner: modality per page kind, exact image costs, chunk packing within capacity (no server)."""

from __future__ import annotations

from pathlib import Path

from tilepilot.agents.review.planner import PagePlan, TextTokenCounter, is_tabular, pack_chunks, page_cost, plan_page
from tilepilot.agents.review.prompts import page_text_block
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.profiles import tiny_profile
from tests.gen.pdfs import mixed_corpus
from tilepilot.tools.pdf import open_pdf

PROFILE = tiny_profile(Path("/nonexistent"))


def _plans(tmp_path: Path, pages: int = 8) -> tuple[list[str], list[PagePlan]]:
    kinds = mixed_corpus(tmp_path / "m.pdf", pages)
    counter = TextTokenCounter(None)  # chars/token estimate only
    with open_pdf(tmp_path / "m.pdf") as doc:
        return kinds, [plan_page(doc.text(p), PROFILE, counter, page_text_block) for p in range(1, pages + 1)]


def test_modality_follows_page_content(tmp_path: Path) -> None:
    kinds, plans = _plans(tmp_path)
    chosen = {kind: plan for kind, plan in zip(kinds, plans)}
    assert chosen["sparse"].modality == "text" and chosen["sparse"].image_budget is None
    assert chosen["scan"].modality == "image" and not chosen["scan"].has_text_layer
    # a table keeps its text layer (exact quotes) and adds the page image (which cell is which)
    assert chosen["table"].modality == "both" and chosen["table"].text_tokens > 0 and chosen["table"].image_budget
    # fidelity first: a dense 9 pt page goes as text although a legible image would cost fewer tokens
    dense = chosen["dense"]
    assert dense.modality == "text" and dense.reason == "text layer: exact quotes and boxes"
    assert image_grid(612, 792, 1120).prompt_tokens < dense.text_tokens


def test_table_detection(tmp_path: Path) -> None:
    kinds = mixed_corpus(tmp_path / "t.pdf", 4)
    with open_pdf(tmp_path / "t.pdf") as doc:
        flags = {kind: is_tabular(doc.text(i + 1)) for i, kind in enumerate(kinds)}
    assert flags == {"dense": False, "sparse": False, "scan": False, "table": True}


def test_chunks_fit_capacity_and_image_limit(tmp_path: Path) -> None:
    _, plans = _plans(tmp_path, 40)
    for capacity in (800, 2500, 9000):
        chunks = pack_chunks(plans, capacity, PROFILE)
        assert [p.page for c in chunks for p in c.pages] == list(range(1, 41))  # every page once, in order
        for chunk in chunks:
            assert sum(p.modality != "text" for p in chunk.pages) <= 8
            cost = sum(page_cost(p, chunk.image_budget, PROFILE) for p in chunk.pages)
            assert cost == chunk.est_tokens
            assert cost <= capacity or len(chunk.pages) == 1
    assert len(pack_chunks(plans, 800, PROFILE)) > len(pack_chunks(plans, 9000, PROFILE))


def test_counter_calibrates_on_exact_counts() -> None:
    calls: list[str] = []
    counter = TextTokenCounter(lambda text: calls.append(text) or len(text) // 4, calibration_pages=2)
    text = "word " * 100
    assert counter.count(text) == 125 and counter.count(text) == 125
    estimate = counter.count(text)  # now estimated from 4 chars/token, padded
    assert len(calls) == 2 and 125 <= estimate <= 140
