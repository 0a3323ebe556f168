"""``tilepilot eval legibility``: pages at 6-14 pt rendered at every image budget through the review
agent's rendering path; the reference answerer reads every named line, oracle:0.5 about half."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tilepilot.agents.eval.core import SuiteResult, SystemSpec, run_suite
from tilepilot.agents.eval.legibility import (
    INSTRUCTION,
    PAGE,
    SMALL_BUDGETS,
    SMALL_FONT_SIZES,
    LegibilityAnswerer,
    asked_labels,
    character_error_rate,
    smallest_legible_budgets,
    write_pages,
)
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.payloads import ImagePart, Message, TextPart, encode_messages
from tilepilot.model_runtime.profiles import GEMMA_4_12B
from tilepilot.tools.pdf import open_pdf
from tests.agents.eval.eval_cli import oracle_run_fixture


oracle_run = oracle_run_fixture("legibility")


def test_oracle_reads_every_line_at_every_font_size_and_budget(oracle_run):
    out, results = oracle_run
    metrics = results["oracle"]["metrics"]
    assert (metrics["cer"], metrics["accuracy"], metrics["legible_rate"]) == (0.0, 1.0, 1.0), metrics
    assert metrics["oracle_unidentified"] == 0
    breakdown = results["oracle"]["breakdown"]
    for font in SMALL_FONT_SIZES:
        for budget in SMALL_BUDGETS:
            assert breakdown[f"font={font}pt,budget={budget}"] == {"cer": 0.0, "accuracy": 1.0}
    table = json.loads((out / "legibility" / "oracle" / "legibility.json").read_text())
    assert table["smallest_legible_budget"] == {"oracle": {str(f): min(SMALL_BUDGETS) for f in SMALL_FONT_SIZES}}
    # The planner's word-height rule, beside the evidence: smaller print needs a larger budget.
    planned = [table["planner_budget"][str(f)] for f in SMALL_FONT_SIZES]
    assert planned == sorted(planned, reverse=True) and planned[0] > planned[-1]


def test_half_oracle_reads_about_half_and_its_misses_show_the_line(oracle_run):
    out, results = oracle_run
    metrics = results["oracle:0.5"]["metrics"]
    assert 0.3 <= metrics["accuracy"] <= 0.7, metrics
    assert metrics["cer"] == pytest.approx(1 - metrics["accuracy"])
    stored = {r["system"]: SuiteResult.model_validate(r) for r in json.loads((out / "results.json").read_text())}
    misses = stored["oracle:0.5"].misses
    assert misses and not stored["oracle"].misses
    for miss in misses:
        with Image.open(out / miss.image) as image:
            width, height = image.size
        x0, y0, x1, y1 = miss.expected_box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (miss.case, miss.expected_box, image.size)
    assert "<rect" in (out / "report.html").read_text()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    pdf = tmp_path_factory.mktemp("pages") / "pages.pdf"
    return pdf, write_pages(pdf, SMALL_FONT_SIZES)


def _request(image: Image.Image, budget: int, text: str) -> dict:
    message = Message(role="user", parts=[ImagePart(image=image, format="jpeg"), TextPart(text=text)])
    return {"messages": encode_messages([message], GEMMA_4_12B, budget).messages}


def test_answerer_knows_pages_by_their_pixels_and_nothing_else(pages):
    pdf, lines = pages
    answerer = LegibilityAnswerer(pdf, lines, SMALL_BUDGETS)
    grid = image_grid(round(PAGE[0]), round(PAGE[1]), 280)
    page = lines[1]
    label = asked_labels(page, 3)[1]
    with open_pdf(pdf) as doc:
        image = doc.render(page.page, grid.width, grid.height)
    reply = answerer(_request(image, 280, INSTRUCTION.format(label=label)))
    assert reply is not None and reply.key == f"{page.font_pt}pt@280/{label}"
    assert reply.right == {"text": page.lines[label]} and reply.wrong == {"text": ""}
    blank = Image.new("RGB", image.size, "white")
    assert answerer(_request(blank, 280, INSTRUCTION.format(label=label))) is None
    assert answerer(_request(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), 280, INSTRUCTION.format(label=label))) is None
    assert answerer(_request(image, 280, "Describe this page.")) is None  # no line named


def test_pages_are_deterministic_and_carry_their_lines(pages, tmp_path):
    pdf, lines = pages
    again = write_pages(tmp_path / "again.pdf", SMALL_FONT_SIZES)
    assert again == lines and (tmp_path / "again.pdf").read_bytes() == pdf.read_bytes()
    with open_pdf(pdf) as doc:
        for page in lines:
            text = doc.text(page.page)
            heights = {round((w.bbox[3] - w.bbox[1]) / page.font_pt, 2) for w in text.words}
            assert len(heights) == 1 and 1.0 <= heights.pop() <= 1.5  # one font size per page
            for label in asked_labels(page, 3):
                assert f"{label}: {page.lines[label]}" in text.text


def test_character_error_rate_is_per_line_and_clipped():
    assert character_error_rate("budget 4821 due", "budget 4821 due", "L3") == 0.0
    assert character_error_rate("budget 4821 due", "L3:  budget  4821 due ", "L3") == 0.0  # label repeated, spaces
    assert character_error_rate("budget 4821 due", "budget 4B21 due", "L3") == pytest.approx(1 / 15)
    assert character_error_rate("budget", "", "L3") == 1.0
    assert character_error_rate("ab", "a much longer and wrong answer", "L3") == 1.0


def test_smallest_legible_budget_per_font_size():
    table = {6: {70: 0.9, 280: 0.1, 560: 0.01, 1120: 0.0}, 10: {70: 0.02, 280: 0.0}, 8: {70: 0.5, 1120: 0.3}}
    assert smallest_legible_budgets(table) == {"6": 560, "8": None, "10": 70}


@pytest.mark.integration
def test_tiny_model_legibility_is_the_floor(vllm_server, tmp_path):
    system = SystemSpec(label="tiny", model="tiny", base_urls=[vllm_server.base_url])
    [result] = run_suite("legibility", [system], tmp_path, small=True)
    print("\n[eval legibility tiny small]", json.dumps(result.metrics))
    assert result.metrics["accuracy"] < 0.2 and result.metrics["legible_rate"] == 0.0, result.metrics
    table = json.loads((tmp_path / "legibility" / "tiny" / "legibility.json").read_text())
    # Noise reads no size legibly at any budget, so the planner gets no evidence from it.
    assert table["smallest_legible_budget"]["tiny"] == {str(f): None for f in SMALL_FONT_SIZES}
