"""Fixtures for the review agent tests: generated PDFs with planted clauses and PII on known pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gen.pdfs import mixed_corpus

# page -> planted lines; pages cycle dense, sparse, scan, table (scan plants are inside the picture)
PLANTED_TEXT = {
    2: ["Contact jane.roe@example.com for notices."],
    5: ["The Supplier accepts unlimited liability for delays."],
    10: ["Call 212-555-0187 for support."],
    41: ["Each party shall indemnify the other against third-party claims."],
    137: ["This agreement is governed by the laws of Ontario."],
    298: ["Remit to IBAN DE89 3704 0044 0532 0130 00 within 30 days."],
}
# what the contract rule checks must report, as (rule, page)
EXPECTED_CHECK_HITS = {
    ("no-personal-data", 2), ("no-unlimited-liability", 5), ("no-personal-data", 10), ("no-personal-data", 298),
}
CONTRACT_RULES = str(Path(__file__).resolve().parents[3] / "rules" / "examples" / "contract.md")


@pytest.fixture(scope="session")
def planted_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("review") / "contract-300.pdf"
    mixed_corpus(path, 300, plant=PLANTED_TEXT)
    return path


@pytest.fixture(scope="session")
def planted_16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("review") / "contract-16.pdf"
    mixed_corpus(path, 16, plant={2: PLANTED_TEXT[2], 5: PLANTED_TEXT[5], 10: PLANTED_TEXT[10]})
    return path
