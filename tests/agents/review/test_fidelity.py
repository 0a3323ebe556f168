"""Fidelity first, tolerant quote checks, output fields and language, the document map, dedupe (no server).

Real PDFs (generated with PyMuPDF), the real planner, mapper, graph and reports; the model is a
scripted ChatModel double that answers chosen findings for the pages it is shown, so what the
pipeline does with a perfect (or a sloppy) model's answer is checked exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pymupdf
import pytest

from tilepilot.agents.review.findings import Finding, FindingsFile, dedupe
from tilepilot.agents.review.legibility_table import LegibilityTable, load_table
from tilepilot.agents.review.mapper import answer_schema
from tilepilot.agents.review.planner import TextTokenCounter, plan_page
from tilepilot.agents.review.prompts import page_text_block
from tilepilot.agents.review.quotes import PageIndex, match_quote
from tilepilot.agents.review.runner import ReviewOptions, run_review
from tilepilot.agents.runs import EVENTS_NAME, read_events
from tilepilot.model_runtime.client import ChatResult, Usage
from tilepilot.model_runtime.payloads import Message, TextPart
from tilepilot.model_runtime.profiles import GEMMA_4_12B, tiny_profile
from tests.agents.doubles import WordChat
from tests.gen.pdfs import mixed_corpus
from tilepilot.tools.pdf import open_pdf

FILLER = ("The parties shall cooperate in good faith and keep records of the services for the term of this agreement. "
          "Each invoice states the services, the period and the amount due in euros within thirty days. ")


@dataclass
class ScriptedChat(WordChat):
    """Answers a chunk request with ``answer(pages shown, messages)``; anything else as WordChat does."""

    answer: Callable[[list[int], list[Message]], list[dict]] = lambda pages, messages: []
    schemas: list[dict] = field(default_factory=list)

    def chat(self, messages: list[Message], *, schema=None, max_tokens: int = 512, image_budget: int | None = None, **_):
        if schema is None or "findings" not in schema.model_fields:
            return super().chat(messages, schema=schema, max_tokens=max_tokens, image_budget=image_budget)
        tokens = self.count_prompt_tokens(messages, image_budget)
        with self._lock:
            self.requests.append((tokens, messages))
            self.schemas.append(schema.model_json_schema())
        pages = [int(p) for p in re.findall(r"=== page (\d+) \(", _text(messages[-1]))]
        text = json.dumps({"findings": self.answer(pages, messages)})
        result = ChatResult(text=text, usage=Usage(prompt_tokens=tokens, completion_tokens=len(text.split())),
                            estimated_prompt_tokens=tokens, latency_s=0.0, base_url="double")
        result.parsed = schema.model_validate_json(text)
        return result


def _text(message: Message) -> str:
    return "".join(p.text for p in message.parts if isinstance(p, TextPart))


def _finding(page: int | list[int] | None, quote: str, rule: str = "model", **extra: str) -> dict:
    return {"rule": rule, "severity": "high", "page": page, "quote": quote, "rationale": "planted", "box": None, **extra}


def _write_pdf(path: Path, pages: list[str], fontsize: float = 11) -> Path:
    doc = pymupdf.open()
    for body in pages:
        page = doc.new_page(width=612, height=792)
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), body, fontsize=fontsize, fontname="helv")
    doc.save(path)
    doc.close()
    return path


def _review(pdf: Path, out: Path, chat: WordChat, rules: list[str] | None = None, **options) -> FindingsFile:
    return run_review(ReviewOptions(paths=[str(pdf)], rules=rules or [], concurrency=2, **options), out=out,
                      client_factory=lambda: chat, progress=None)


# -- fidelity-first planning ----------------------------------------------------------------------


def test_born_digital_page_goes_as_text_and_as_an_image_only_under_prefer_tokens_at_a_legible_budget(tmp_path: Path) -> None:
    kinds = mixed_corpus(tmp_path / "m.pdf", 1)
    assert kinds == ["dense"]  # 55 lines of 9 pt: an image at 1120 costs fewer tokens than its text
    with open_pdf(tmp_path / "m.pdf") as doc:
        text = doc.text(1)

    def plan(profile, prefer, table=None):
        return plan_page(text, profile, TextTokenCounter(None), page_text_block, prefer, table)

    assert plan(GEMMA_4_12B, "fidelity").modality == "text"
    shipped = load_table()
    assert shipped.budget_for("gemma-4-12b", 9.0) == 1120
    cheap = plan(GEMMA_4_12B, "tokens", shipped)
    assert (cheap.modality, cheap.image_budget) == ("image", 1120) and "reads 9.0 pt" in cheap.reason
    # the tiny model reads nothing (measured), so even --prefer tokens keeps the text
    tiny = plan(tiny_profile(Path("/nonexistent")), "tokens", shipped)
    assert tiny.modality == "text" and "no budget known" in tiny.reason
    # a budget that reads 9 pt only at a size costing more than the text: text
    costly = LegibilityTable(smallest_legible_budget={"gemma-4-12b": {"6": None, "8": 1120, "9": None}})
    assert plan(GEMMA_4_12B, "tokens", costly).modality == "text"  # 9 pt: no budget (the 8 pt row is not used upward)
    small_only = LegibilityTable(smallest_legible_budget={"gemma-4-12b": {"10": 280}})
    assert plan(GEMMA_4_12B, "tokens", small_only).modality == "text"  # 9 pt is below every measured size


def test_findings_json_says_per_page_what_was_sent_and_why(tmp_path: Path) -> None:
    pdf = tmp_path / "m.pdf"
    kinds = mixed_corpus(pdf, 4)
    default = _review(pdf, tmp_path / "fidelity", ScriptedChat(profile=GEMMA_4_12B), budget_tokens=8000)
    sent = {s.page: s for s in default.documents[0].sent}
    assert [sent[p].modality for p in range(1, 5)] == ["text", "text", "image", "both"], kinds
    assert sent[1].reason.startswith("text layer") and sent[3].reason.startswith("scanned")
    assert "table" in sent[4].reason
    # --legibility: a measurement (the eval's legibility.json as is) that reads 9 pt at 280
    measured = tmp_path / "legibility.json"
    measured.write_text(json.dumps({"system": "gemma", "smallest_legible_budget": {"gemma-4-12b": {"9": 280, "12": 140}}}))
    cheap = _review(pdf, tmp_path / "tokens", ScriptedChat(profile=GEMMA_4_12B), budget_tokens=8000, prefer="tokens",
                    legibility=str(measured), pages="1-2")  # no scan or table in the chunk: its budget is the page's
    dense, sparse = cheap.documents[0].sent[:2]
    assert (dense.modality, dense.image_budget) == ("image", 280) and dense.reason.startswith("--prefer tokens")
    assert sparse.modality == "text" and ">= text" in sparse.reason  # 3 short lines: cheaper as text
    stored = json.loads((tmp_path / "tokens" / "findings.json").read_text())
    assert stored["prefer"] == "tokens" and stored["documents"][0]["sent"][0]["modality"] == "image"


@pytest.mark.parametrize("content", [b'{"smallest_legible_budget": {"tiny": {"9": "big"}}}', b"{not json", b"\xff\xfe"])
def test_a_legibility_file_that_is_not_a_table_is_one_line(tmp_path: Path, content: bytes) -> None:
    from tilepilot.agents.errors import UsageError

    bad = tmp_path / "legibility.json"
    bad.write_bytes(content)
    with pytest.raises(UsageError, match=r"--legibility .*not a legibility table") as caught:
        load_table(bad)
    assert "\n" not in str(caught.value)


# -- quote checks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quoted_page(tmp_path_factory: pytest.TempPathFactory) -> PageIndex:
    pdf = tmp_path_factory.mktemp("quotes") / "q.pdf"
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    lines = ['"Confidential Information" means all information disclosed by the Customer.',
             "The Supplier may end the agreement by written termi-",
             "nation notice to the Customer at any time.",
             "The \ufb01nal invoice is due within thirty days of delivery."]
    page.insert_text((72, 100), "\n".join(lines), fontsize=11, fontname="helv")
    doc.save(pdf)
    doc.close()
    with open_pdf(pdf) as opened:
        return PageIndex.of(opened.text(1).words)


@pytest.mark.parametrize("quote", [
    "\u201cConfidential Information\u201d means all information",  # curly quotes
    "end the agreement by written termination notice",  # a word hyphenated across a line break
    "The final invoice is due",  # the page stores the fi ligature
    "The Supplier may end the agreement \u2026 at any time",  # an ellipsis for skipped words
    "The Supplier may  end the\nagreement by written termination notice to the Customr",  # whitespace and a typo
])
def test_what_real_models_write_verifies_as_approximate_with_a_box(quoted_page: PageIndex, quote: str) -> None:
    found = match_quote(quoted_page, quote)
    assert found.verified == "approximate", (quote, found)
    assert found.bbox is not None and found.bbox[0] >= 71


def test_exact_and_invented_quotes(quoted_page: PageIndex) -> None:
    assert match_quote(quoted_page, "due within thirty DAYS").verified == "exact"
    assert match_quote(quoted_page, "The Customer waives every claim against the Supplier forever").verified == "unverified"


def test_unverified_findings_are_kept_flagged_and_listed_apart(tmp_path: Path) -> None:
    pdf = _write_pdf(tmp_path / "c.pdf", ["The Supplier may terminate this Agreement at any time without cause. " + FILLER])
    chat = ScriptedChat(answer=lambda pages, messages: [
        _finding(1, "The Supplier may terminate this Agreement at any time without cause"),
        _finding(1, "Each invoice states the services \u2026 in euros"),
        _finding(1, "The Customer waives every claim against the Supplier forever"),
    ])
    report = _review(pdf, tmp_path / "run", chat)
    doc = report.documents[0]
    verdicts = sorted(f.verified for f in doc.findings if f.source == "model")
    assert verdicts == ["approximate", "exact", "unverified"]
    assert doc.unverified_model_findings == 1 and doc.dropped_model_findings == 0
    invented = next(f for f in doc.findings if f.verified == "unverified")
    assert invented.bbox is None and invented.page == 1
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "### Unverified findings" in markdown and "waives every claim" in markdown.split("### Unverified findings")[1]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "data-verified='unverified'" in html and "id=unverified" in html
    assert [e["quote"] for e in read_events(tmp_path / "run" / EVENTS_NAME, "model_finding_unverified")] == [invented.quote]


# -- output fields and language ----------------------------------------------------------------


def test_output_fields_shape_the_schema_and_findings_and_the_language_reaches_the_prompt(tmp_path: Path) -> None:
    rules = tmp_path / "rules.md"
    rules.write_text("---\napplies_to: [review]\noutput:\n  fields: [rule, quote, suggestion]\n  language: de\n---\n"
                     "Review the contract.\n")
    pdf = _write_pdf(tmp_path / "c.pdf", ["The Supplier may terminate this Agreement at any time without cause. " + FILLER])
    chat = ScriptedChat(answer=lambda pages, messages: [
        _finding(1, "may terminate this Agreement at any time", suggestion="Beide Parteien duerfen mit 30 Tagen Frist kuendigen.")])
    report = _review(pdf, tmp_path / "run", chat, rules=[str(rules)])
    item = chat.schemas[0]["$defs"]["Finding"]
    assert "suggestion" in item["properties"] and "suggestion" in item["required"]
    system = _text(chat.requests[0][1][0])
    assert "suggestion:" in system and "German (de)" in system
    stored = json.loads((tmp_path / "run" / "findings.json").read_text())
    model = [f for f in stored["documents"][0]["findings"] if f["source"] == "model"]
    assert model[0]["fields"] == {"suggestion": "Beide Parteien duerfen mit 30 Tagen Frist kuendigen."}
    assert "suggestion" in (tmp_path / "run" / "report.md").read_text()
    assert report.documents[0].findings[0].fields["suggestion"].startswith("Beide")
    # the profile bounds every string of the answer; without output.fields there is no suggestion
    plain = answer_schema([1, 2], ["r"], with_notes=False, profile=GEMMA_4_12B).model_json_schema()["$defs"]["Finding"]
    assert "suggestion" not in plain["properties"] and plain["properties"]["rationale"]["maxLength"] == 600


# -- cross-page context ---------------------------------------------------------------------------


def test_every_chunk_sees_the_document_map_within_the_budget(tmp_path: Path) -> None:
    pages = ["1. Definitions\n\"Confidential Information\" means all information disclosed by the Customer, including "
             "personal data of its employees. " + FILLER * 3]
    pages += [f"{n}. Clause {n}\n" + FILLER * 8 for n in range(2, 12)]
    pages += ["12. Subcontractors\nThe Supplier may share Confidential Information with its subcontractors. " + FILLER]
    pdf = _write_pdf(tmp_path / "long.pdf", pages)
    budget = 1500
    chat = ScriptedChat(answer=lambda shown, messages: [_finding(12, "may share Confidential Information with its subcontractors")]
                        if 12 in shown else [])
    report = _review(pdf, tmp_path / "run", chat, budget_tokens=budget)
    chunk_requests = [m for _, m in chat.requests if "=== page" in _text(m[-1])]
    assert len(chunk_requests) >= 3  # the definition and the late clause are reviewed apart
    for messages in chunk_requests:
        assert '"Confidential Information" [1]' in _text(messages[-1]) and "12. Subcontractors [12]" in _text(messages[-1])
    assert max(tokens for tokens, _ in chat.requests) <= budget
    events = list(read_events(tmp_path / "run" / EVENTS_NAME))
    assert next(e for e in events if e["kind"] == "planned")["document_map_tokens"] > 0
    assert ("Confidential Information", 1) in [(t.text, t.page) for t in report.documents[0].document_map.terms]
    assert [(f.page, f.verified) for f in report.documents[0].findings if f.source == "model"] == [(12, "exact")]


def test_document_level_findings_merge_across_chunks_and_get_their_own_section(tmp_path: Path) -> None:
    pdf = _write_pdf(tmp_path / "long.pdf", [f"{n}. Clause {n}\n" + FILLER * 8 for n in range(1, 9)])
    chat = ScriptedChat(answer=lambda shown, messages: [
        {**_finding(None, ""), "rationale": "The contract has no data protection clause."},
        {**_finding(shown[:2] if len(shown) > 1 else None, ""), "rationale": f"Clauses {shown[0]} and later contradict."},
    ])
    report = _review(pdf, tmp_path / "run", chat, budget_tokens=1500)
    document_level = [f for f in report.documents[0].findings if f.page is None]
    assert len([r for r in chat.requests if "=== page" in _text(r[1][-1])]) >= 2
    missing = [f for f in document_level if "data protection" in f.rationale]
    assert len(missing) == 1  # one per chunk was answered; merged into one
    spanning = [f for f in document_level if f.pages]
    assert spanning and all(len(f.pages) >= 2 for f in spanning)
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "### Document-level findings" in markdown and "pages 1, 2" in markdown


def test_dedupe_by_overlapping_spans_on_the_same_page_and_rule() -> None:
    def f(id_, rule, page, quote, bbox, source="model", verified="exact", **fields):
        return Finding(id=id_, rule=rule, severity="high", page=page, quote=quote, bbox=bbox, rationale="r" * len(id_),
                       source=source, verified=verified, fields=fields)

    check = f("c", "pii-email", 1, "jane@example.com", (100, 100, 200, 112), source="check")
    longer = f("m1", "pii-email", 1, "Contact jane@example.com now", (60, 100, 260, 112), suggestion="remove it")
    other_rule = f("m2", "model", 1, "Contact jane@example.com now", (60, 100, 260, 112))
    elsewhere = f("m3", "pii-email", 1, "bob@example.com", (100, 300, 200, 312))
    approx = f("m4", "model", 1, "Contact jane\u2026now", (62, 100, 255, 112), verified="approximate")
    kept = dedupe([longer, other_rule, check, elsewhere, approx])
    assert sorted(k.id for k in kept) == ["c", "m2", "m3"]
    merged = next(k for k in kept if k.id == "c")
    assert merged.source == "check" and merged.fields == {"suggestion": "remove it"}  # the repeat's suggestion is kept
