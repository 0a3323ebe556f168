"""Deterministic checks on a GENERATED PDF: planted clauses and PII on the right pages, with boxes,
and nothing at all on a clean control document."""

from __future__ import annotations

from pathlib import Path

import fitz  # PyMuPDF
import pytest

from tilepilot.agents.errors import RuleProblemsError
from tilepilot.agents.rules.checks import CheckPage, CheckWord, PageText, finding_id, run_checks
from tilepilot.agents.rules.merge import build_policy
from tilepilot.agents.rules.pii import find_pii, iban_valid, luhn_valid
from tilepilot.agents.rules.schema import Check
from tilepilot.tools.pdf import open_pdf

CONTRACT_RULES = Path(__file__).resolve().parents[3] / "rules" / "examples" / "contract.md"

FILLER = [
    "This Agreement is entered into on 2024-01-15 between the parties named in Section 1.2.3.",
    "The total price is $1,234,567.89, payable in 12 instalments; see clause 4.2 and Annex 3 (2023 edition).",
    "Invoice 2024-0042 lists 3,500 units at EUR 10.000,00 each, version 2.10.3, order no. 100-200-30000.",
    "Deliveries occur between 09:00 and 17:30 on 12/31/2024; reference 4111 1111 1111 1112 is a part number.",
]
# page (1-based) -> planted lines
PLANTED = {
    2: ["Each party shall indemnify the other against third-party claims.", "Questions: jane.roe@example.com or +44 20 7946 0958."],
    3: ["Payment to IBAN DE89 3704 0044 0532 0130 00 within 30 days.", "Card on file 4111 1111 1111 1111, SSN 123-45-6789."],
    4: ["This Agreement is governed by the laws of the State of New York.", "Supplier accepts unlimited liability for data loss."],
}


def _make_pdf(path: Path, pages: dict[int, list[str]], page_count: int) -> None:
    doc = fitz.open()
    for number in range(1, page_count + 1):
        page = doc.new_page(width=612, height=792)
        lines = FILLER + pages.get(number, [])
        for index, line in enumerate(lines):
            page.insert_text((50, 80 + index * 40), line, fontsize=9)
    doc.save(path)
    doc.close()


def _check_pages(path: Path) -> list[CheckPage]:
    """The conversion the review agent does: tilepilot.tools.pdf text layer -> CheckPage."""
    with open_pdf(path) as doc:
        return [
            CheckPage(page=number, words=[CheckWord(text=w.text, bbox=w.bbox) for w in doc.text(number).words])
            for number in range(1, doc.page_count + 1)
        ]


def _line_box(path: Path, page: int, needle: str) -> fitz.Rect:
    with open_pdf(path) as doc:
        hits = doc.search(page, needle)
    assert hits, needle
    return fitz.Rect(hits[0])


@pytest.fixture(scope="module")
def contract_checks():
    return build_policy("review", [str(CONTRACT_RULES)]).checks


def test_planted_clauses_and_pii_found_on_the_right_pages_with_boxes(tmp_path, contract_checks):
    pdf = tmp_path / "contract.pdf"
    _make_pdf(pdf, PLANTED, page_count=5)
    findings = run_checks(_check_pages(pdf), contract_checks)
    got = sorted((f.rule, f.page, f.detector, f.quote) for f in findings)
    assert got == sorted([
        ("no-personal-data", 2, "email", "jane.roe@example.com"),
        ("no-personal-data", 2, "phone", "+44 20 7946 0958"),
        ("no-personal-data", 3, "iban", "DE89 3704 0044 0532 0130 00"),
        ("no-personal-data", 3, "credit_card", "4111 1111 1111 1111"),
        ("no-personal-data", 3, "ssn", "123-45-6789"),
        ("no-unlimited-liability", 4, None, "unlimited liability"),
    ])
    for finding in findings:
        expected = _line_box(pdf, finding.page, finding.quote)
        x0, y0, x1, y1 = finding.bbox
        # the union box of the touched words covers the quote and stays on its line
        assert x0 <= expected.x0 + 1 and x1 >= expected.x1 - 1 and abs(y0 - expected.y0) < 3 and abs(y1 - expected.y1) < 3
        assert finding.source == "check" and finding.rule_file.endswith("contract.md")
        assert finding.id == finding_id(finding.rule, finding.page, finding.quote, finding.bbox)
    assert {f.severity for f in findings} == {"critical"}


def test_missing_required_clauses_give_document_level_findings(tmp_path, contract_checks):
    pdf = tmp_path / "no-clauses.pdf"
    _make_pdf(pdf, {2: ["Nothing to see here."]}, page_count=3)
    findings = run_checks(_check_pages(pdf), contract_checks)
    assert sorted((f.rule, f.page, f.bbox) for f in findings) == [("governing-law-clause", 1, None), ("indemnification-clause", 1, None)]
    assert all(f.severity == "high" and f.rationale for f in findings)


def test_clean_control_document_yields_no_findings(tmp_path, contract_checks):
    pdf = tmp_path / "clean.pdf"
    clean = {1: ["The Supplier shall indemnify the Customer.", "This Agreement is governed by the laws of England."]}
    _make_pdf(pdf, clean, page_count=4)
    assert run_checks(_check_pages(pdf), contract_checks) == []


def test_page_scope_limits_where_checks_look(tmp_path):
    pdf = tmp_path / "scoped.pdf"
    _make_pdf(pdf, {1: ["Confidential draft"], 3: ["Confidential draft"]}, page_count=3)
    checks = [
        Check(id="draft-late", description="no drafts after page 2", type="forbidden", pattern="/confidential draft/i", pages="2-"),
        Check(id="law-early", description="law on page 1-2", type="required", pattern="governed", pages="1-2", severity="low"),
    ]
    findings = run_checks(_check_pages(pdf), checks)
    assert [(f.rule, f.page) for f in findings] == [("law-early", 1), ("draft-late", 3)]


def test_matches_span_words_and_map_to_the_union_box():
    words = [CheckWord(text="governing", bbox=(10, 700, 60, 710)), CheckWord(text="law", bbox=(10, 712, 30, 722)), CheckWord(text="x", bbox=(40, 712, 45, 722))]
    text = PageText.of(CheckPage(page=1, words=words))
    assert text.text == "governing law x"
    assert text.bbox(0, len("governing law")) == (10, 700, 60, 722)
    assert text.bbox(10, 13) == (10, 712, 30, 722)


def test_finding_ids_are_stable_and_distinct():
    assert finding_id("r", 1, "q", (1, 2, 3, 4)) == finding_id("r", 1, "q", (1.0, 2.0, 3.0, 4.0))
    assert len({finding_id("r", 1, "q", None), finding_id("r", 2, "q", None), finding_id("s", 1, "q", None)}) == 3


PII_POSITIVE = [
    ("email", "write to a.b-c+tag@mail.example.co.uk today", "a.b-c+tag@mail.example.co.uk"),
    ("phone", "call (415) 555-2671 now", "(415) 555-2671"),
    ("phone", "call 415.555.2671 now", "415.555.2671"),
    ("phone", "Tel. 030 1234567", "030 1234567"),
    ("phone", "dial +1 415 555 2671", "+1 415 555 2671"),
    ("iban", "GB82 WEST 1234 5698 7654 32 is the account", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "compact DE89370400440532013000.", "DE89370400440532013000"),
    ("credit_card", "amex 3782 822463 10005 ok", "3782 822463 10005"),
    ("credit_card", "mc 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ("ssn", "ssn: 078-05-1120", "078-05-1120"),
]


@pytest.mark.parametrize("detector,text,quote", PII_POSITIVE)
def test_pii_detectors_find(detector, text, quote):
    assert [(m.detector, text[m.start : m.end]) for m in find_pii(text)] == [(detector, quote)]


PII_NEGATIVE = [
    "dated 2024-01-15 and 15.01.2024 and 01/15/2024",
    "price $1,234,567.89 or EUR 12.345.678,90",
    "see Section 12.3.4.5 and 1.2.3",
    "in the years 1999, 2000 and 2024",
    "order 1234567890 and 12345678901234",
    "card-like 4111 1111 1111 1112 fails Luhn",
    "GB82 WEST 1234 5698 7654 33 fails mod-97",
    "SSN-like 000-12-3456 and 666-12-3456 and 900-12-3456",
    "ISBN 978-3-16-148410-0 and version 10.0.19045",
    "phone-like ranges 100-200-3000 inside 9100-200-30001",
    "an e-mail-ish name@localhost and @handle",
]


@pytest.mark.parametrize("text", PII_NEGATIVE)
def test_pii_detectors_do_not_fire_on_look_alikes(text):
    assert find_pii(text) == []


def test_detector_subset_and_priority():
    text = "IBAN DE89 3704 0044 0532 0130 00, mail x@example.org"
    assert [m.detector for m in find_pii(text, ["email"])] == ["email"]
    assert find_pii(text, ["credit_card", "phone"]) == []  # IBAN digits are never re-reported


@pytest.mark.parametrize("digits,ok", [("4111111111111111", True), ("4111111111111112", False), ("79927398713", True)])
def test_luhn(digits, ok):
    assert luhn_valid(digits) is ok


@pytest.mark.parametrize("iban,ok", [("DE89370400440532013000", True), ("DE89370400440532013001", False), ("NL91ABNA0417164300", True)])
def test_iban_mod97(iban, ok):
    assert iban_valid(iban) is ok


def test_slow_check_pattern_times_out_with_file_and_line(write_rule):
    # Polynomial, not exponential: the load-time shape check accepts it, but it explodes on this page.
    rule = write_rule("---\nchecks:\n  - id: slow\n    description: d\n    type: forbidden\n    pattern: '(?:.*x){8}y'\n---\n")
    policy = build_policy("review", [str(rule)])
    page = CheckPage(page=7, words=[CheckWord(text="x" * 5000, bbox=(0, 0, 1, 1))])
    with pytest.raises(RuleProblemsError) as caught:
        run_checks([page], policy.checks)
    assert str(caught.value).startswith(f"{rule}:3: check 'slow'") and "timed out on page 7" in str(caught.value)
