"""Word, text and image inputs: converted to PDF (LibreOffice, PyMuPDF), reviewed, findings tied to the file given."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pymupdf
import pytest

from tilepilot import review as review_api  # the typed API; `tilepilot` here is the CLI
from tilepilot.agents.review.sources import paragraph_of
from tilepilot.agents.review.quotes import normalise
from tilepilot.tools.convert import to_pdf
from tests.agents.review.conftest import CONTRACT_RULES
from tests.conftest import tilepilot
from tests.gen.office import (
    LIABILITY_SENTENCE, PII_SENTENCE, PLANTED_EMAIL, contract_docx, encrypted_docx, encrypted_odt, scanned_tiff,
)
from tests.gen.pdfs import mixed_corpus
from tests.requires import require_binary

require_binary("soffice", "libreoffice-writer-nogui")


def _page_of(pdf: Path, words: str) -> int:
    with pymupdf.open(pdf) as doc:
        hits = [n + 1 for n, page in enumerate(doc) if page.search_for(words)]
    assert len(hits) == 1, hits
    return hits[0]


def test_docx_findings_cite_page_and_paragraph(tmp_path: Path) -> None:
    docx = contract_docx(tmp_path / "contract.docx", pii_at=45, liability_at=20)
    out = tmp_path / "run"
    proc = tilepilot("review", str(docx), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out),
                     env={"TILEPILOT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "findings.json").read_text())
    doc = report["documents"][0]
    assert doc["source"] == str(docx) and Path(doc["path"]).parent == tmp_path / "cache" / "converted"
    assert doc["page_count"] >= 3  # the planted items are pages apart
    by_rule = {f["rule"]: f for f in doc["findings"]}
    pii, liability = by_rule["no-personal-data"], by_rule["no-unlimited-liability"]
    assert pii["quote"] == PLANTED_EMAIL and pii["page"] == _page_of(Path(doc["path"]), PLANTED_EMAIL)
    assert liability["page"] == _page_of(Path(doc["path"]), "unlimited liability") != pii["page"]
    assert pii["bbox"] is not None and liability["bbox"] is not None
    from docx import Document

    paragraphs = Document(str(docx)).paragraphs
    assert PLANTED_EMAIL in paragraphs[pii["paragraph"]].text and pii["paragraph"] == 46  # title + 45 clauses before it
    assert paragraphs[liability["paragraph"]].text == LIABILITY_SENTENCE
    assert by_rule["governing-law-clause"]["bbox"] is None  # the missing clause: no paragraph to point at
    assert "paragraph" not in by_rule["governing-law-clause"]
    assert "contract.docx" in (out / "report.md").read_text()


def test_summary_json_and_api_name_the_docx_given_not_its_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docx = contract_docx(tmp_path / "contract[v2].docx", clauses=12, pii_at=3, liability_at=8)  # [..]: no markup
    cache = tmp_path / "cache"
    env = {"TILEPILOT_CACHE": str(cache), "COLUMNS": "60"}  # narrower than the line: it must still be one line
    proc = tilepilot("review", str(docx), "--rules", CONTRACT_RULES, "--no-model", "--out", str(tmp_path / "human"), env=env)
    assert proc.returncode == 0, proc.stderr
    summary = [line for line in proc.stderr.splitlines() if " findings" in line]
    assert len(summary) == 1 and re.fullmatch(re.escape(str(docx)) + r": \d+ pages?, [1-9]\d* findings", summary[0]), proc.stderr
    assert "converted" not in proc.stderr and ".pdf" not in proc.stderr, proc.stderr  # no cache path anywhere

    proc = tilepilot("review", str(docx), "--rules", CONTRACT_RULES, "--no-model", "--out", str(tmp_path / "cli"), "--json",
                     env=env)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    [doc] = cli["documents"]
    assert doc["source"] == str(docx) and Path(doc["path"]).parent == cache / "converted" and doc["path"].endswith(".pdf")
    assert {f["rule"] for f in doc["findings"]} >= {"no-personal-data", "no-unlimited-liability"}

    monkeypatch.setenv("TILEPILOT_CACHE", str(cache))
    result = review_api(docx, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "api")
    assert result.documents[0].source == str(docx) and result.documents[0].path == doc["path"]
    api = json.loads(result.to_json())
    assert {k: v for k, v in api.items() if k != "run"} == {k: v for k, v in cli.items() if k != "run"}


def test_pdf_input_source_is_the_pdf_itself(tmp_path: Path) -> None:
    given = tmp_path / "given.pdf"
    mixed_corpus(given, 2, plant={1: [PII_SENTENCE]})
    result = review_api(given, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "run")
    assert [(d.source, d.path) for d in result.documents] == [(str(given), str(given))]
    assert [f.rule for f in result.findings if f.page == 1] == ["no-personal-data"]


def test_encrypted_docx_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    plain = contract_docx(tmp_path / "plain.docx", clauses=5)
    locked = encrypted_docx(plain, tmp_path / "locked.docx", password="secret")
    data = locked.read_bytes()
    assert data.startswith(b"\xd0\xcf\x11\xe0") and b"PK\x03\x04" not in data[:4096]  # an OLE container, not a zip
    import msoffcrypto

    decrypted = io.BytesIO()
    office = msoffcrypto.OfficeFile(io.BytesIO(data))
    office.load_key(password="secret")
    office.decrypt(decrypted)
    assert decrypted.getvalue() == plain.read_bytes()  # really the document, encrypted

    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = tilepilot("review", str(locked), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out),
                     env={"TILEPILOT_CACHE": str(cache), "COLUMNS": "60"})
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(locked) in lines[0] and "password-protected" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not list(cache.rglob("*.pdf"))  # no run folder, no half-made conversion


def test_conversion_is_cached_by_content(tmp_path: Path) -> None:
    first = contract_docx(tmp_path / "a.docx")
    copy = tmp_path / "b.docx"
    copy.write_bytes(first.read_bytes())
    pdf = to_pdf(first, tmp_path / "cache")
    stamp = pdf.stat().st_mtime_ns
    assert to_pdf(copy, tmp_path / "cache") == pdf and pdf.stat().st_mtime_ns == stamp  # same bytes: not converted again
    contract_docx(copy, clauses=10)
    assert to_pdf(copy, tmp_path / "cache") != pdf


def test_text_markdown_and_scans(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text(f"Contact {PLANTED_EMAIL} today.\n")
    (folder / "memo.md").write_text(f"# Memo\n\nThe Supplier accepts *unlimited liability*.\n\n- write to {PLANTED_EMAIL}\n")
    scanned_tiff(folder / "scan.tiff", pages=3)
    out = tmp_path / "run"
    proc = tilepilot("review", str(folder), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out),
                     env={"TILEPILOT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    docs = {Path(d["source"]).name: d for d in json.loads((out / "findings.json").read_text())["documents"]}
    assert docs["scan.tiff"]["page_count"] == 3 and not [f for f in docs["scan.tiff"]["findings"] if f["bbox"]]
    assert {(f["rule"], f["quote"].lower()) for f in docs["memo.md"]["findings"] if f["bbox"]} == {
        ("no-unlimited-liability", "unlimited liability"), ("no-personal-data", PLANTED_EMAIL)}
    assert [f["quote"] for f in docs["notes.txt"]["findings"] if f["bbox"]] == [PLANTED_EMAIL]


def test_bad_inputs_one_line_each_and_the_rest_reviewed(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    good = contract_docx(folder / "good.docx")
    encrypted_odt(good, folder / "locked.odt")
    (folder / "corrupt.docx").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (folder / "empty.tiff").write_bytes(b"")
    (folder / "data.xyz").write_text("x")
    out = tmp_path / "run"
    proc = tilepilot("review", str(folder), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out),
                     env={"TILEPILOT_CACHE": str(tmp_path / "cache"), "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 4, proc.stderr  # one line each, however narrow the terminal
    for name, words in [("corrupt.docx", "not a valid .docx"), ("locked.odt", "password-protected"),
                        ("empty.tiff", "empty (0 bytes)"), ("data.xyz", "unsupported format")]:
        assert any(name in line and words in line for line in skipped), (name, skipped)
    report = json.loads((out / "findings.json").read_text())
    assert [Path(d["source"]).name for d in report["documents"]] == ["good.docx"]
    assert sorted(Path(f["path"]).name for f in report["failed_documents"]) == ["corrupt.docx", "data.xyz", "empty.tiff", "locked.odt"]


def test_libreoffice_missing_is_one_line(tmp_path: Path) -> None:
    docx = contract_docx(tmp_path / "contract.docx")
    bare = tmp_path / "bin"
    bare.mkdir()
    proc = tilepilot("review", str(docx), "--no-model", "--out", str(tmp_path / "run"),
                     env={"PATH": str(bare), "TILEPILOT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "LibreOffice" in lines[0] and "libreoffice-writer-nogui" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_paragraph_of_across_line_breaks_and_paragraphs() -> None:
    texts = [normalise(t) for t in ["Title", "The Supplier shall indemnify the Customer.", "Fees are due monthly."]]
    assert paragraph_of(texts, "shall indem-\nnify the Customer") == 1
    assert paragraph_of(texts, "the Customer. Fees are due") == 1  # runs into the next paragraph: its first
    assert paragraph_of(texts, "nothing like this at all here") is None
