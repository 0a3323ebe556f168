"""Word out and spreadsheets (`tilepilot review export`), and playbook rules (positions, flags, missing clauses)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pymupdf
import pytest

from tilepilot.agents.review.findings import FindingsFile
from tests.conftest import tilepilot
from tests.gen.office import LIABILITY_SENTENCE, PLANTED_EMAIL, contract_docx
from tests.requires import require_binary

require_binary("soffice", "libreoffice-writer-nogui")

STANDARD_LIABILITY = "liability capped at the fees paid in the preceding 12 months"
PLAYBOOK = f"""---
applies_to: [review]
checks:
  - id: governing-law-clause
    description: "The contract must state its governing law."
    severity: high
    type: required
    pattern: '/\\bgoverning\\s+law\\b|\\bgoverned\\s+by\\s+the\\s+laws?\\b/i'
    positions:
      standard: "This Agreement is governed by the laws of England and Wales."
      fallback: ["the laws of Scotland", "the laws of Ireland"]
      escalate: "any US state law"
  - id: no-unlimited-liability
    description: "Unlimited liability must not be accepted."
    severity: critical
    type: forbidden
    pattern: '/\\bunlimited\\s+liability\\b/i'
    positions:
      standard: "{STANDARD_LIABILITY}"
      fallback: "liability capped at twice the annual fees"
      escalate: "uncapped liability of any kind"
  - id: no-personal-data
    description: "Personal data must not appear in the contract."
    severity: critical
    type: pii
    detectors: [email]
---
Review this contract for the Customer.
"""


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A .docx with a planted PII item, unlimited liability and no governing-law clause, reviewed (checks only)."""
    base = tmp_path_factory.mktemp("word")
    docx = contract_docx(base / "contract.docx", pii_at=45, liability_at=20)
    rules = base / "playbook.md"
    rules.write_text(PLAYBOOK)
    run = base / "run"
    proc = tilepilot("review", str(docx), "--rules", str(rules), "--no-model", "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    return docx, rules, run


def _findings(run: Path) -> dict[str, dict]:
    return {f["rule"]: f for f in json.loads((run / "findings.json").read_text())["documents"][0]["findings"]}


def test_playbook_flags_and_missing_clause_worded_for_people(reviewed) -> None:
    _, _, run = reviewed
    found = _findings(run)
    missing = found["governing-law-clause"]
    assert missing["page"] is None and missing["quote"] == "No governing-law clause found"
    assert "governing" in missing["fields"]["check"] and "no text matching" in missing["fields"]["check"]
    assert missing["fields"]["flag"] == "red" and found["no-unlimited-liability"]["fields"]["flag"] == "red"
    assert "flag" not in found["no-personal-data"]["fields"]  # not a playbook rule
    report = FindingsFile.model_validate_json((run / "findings.json").read_text())
    assert report.playbook["no-unlimited-liability"].standard == STANDARD_LIABILITY
    assert report.playbook["governing-law-clause"].fallback == ["the laws of Scotland", "the laws of Ireland"]


def test_docx_out_comments_on_the_quoted_words_and_a_tracked_change(reviewed, tmp_path: Path) -> None:
    from docx import Document

    docx, _, run = reviewed
    found = _findings(run)
    rejected = tilepilot("review", "--reject", str(run), "--id", found["no-personal-data"]["id"])
    assert rejected.returncode == 0, rejected.stderr
    tilepilot("review", "--accept", str(run), "--id", found["no-unlimited-liability"]["id"], check=True)
    out = tmp_path / "reviewed.docx"
    proc = tilepilot("review", "export", str(run), "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    comments = {c.text.split("]")[0].lstrip("["): c.text for c in Document(str(out)).comments}
    liability = found["no-unlimited-liability"]
    assert liability["id"] in comments and found["no-personal-data"]["id"] not in comments  # rejected: left out
    assert "critical" in comments[liability["id"]] and "flag red" in comments[liability["id"]]
    assert "Quote check: exact" in comments[liability["id"]] and "accepted by the reviewer" in comments[liability["id"]]
    summary = next(text for text in comments.values() if text.startswith("tilepilot: 1 finding"))
    assert "No governing-law clause found" in summary and "document-level" in summary
    xml = zipfile.ZipFile(out).read("word/document.xml").decode()
    # The comment covers exactly the quoted words, now a tracked deletion followed by the playbook's wording.
    start = xml.index('<w:commentRangeStart w:id="0"/>')
    anchored = xml[start:xml.index('<w:commentRangeEnd w:id="0"/>')]
    assert "<w:delText>unlimited liability</w:delText>" in anchored and f">{STANDARD_LIABILITY}</w:t>" in anchored
    assert anchored.index("<w:del ") < anchored.index("<w:ins ") and 'w:author="tilepilot"' in anchored
    original = Document(str(docx)).paragraphs[liability["paragraph"]].text
    assert original == LIABILITY_SENTENCE  # the reviewer's own file is untouched

    # LibreOffice opens it (no repair) and prints each comment on the page of its quote.
    back = _soffice_pdf(out, tmp_path)
    with pymupdf.open(back) as pdf:
        notes = [(page.number + 1, annot.info["content"]) for page in pdf for annot in page.annots()]
        quote_page = {n + 1 for n, page in enumerate(pdf) if page.search_for("for any loss arising from the services")}
    assert len(notes) == 2, notes
    assert [p for p, text in notes if liability["id"] in text] == sorted(quote_page)
    assert [p for p, text in notes if text.startswith("tilepilot: 1 finding")] == [1]


def _soffice_pdf(docx: Path, work: Path) -> Path:
    proc = subprocess.run(["soffice", f"-env:UserInstallation={(work / 'lo-profile').as_uri()}", "--headless", "--norestore",
                           "--convert-to", 'pdf:writer_pdf_Export:{"ExportNotes":{"type":"boolean","value":"true"}}',
                           "--outdir", str(work / "back"), str(docx)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return work / "back" / f"{docx.stem}.pdf"


def test_xlsx_and_csv_one_row_per_finding_and_agree(reviewed, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    _, _, run = reviewed
    for suffix in ("xlsx", "csv"):
        tilepilot("review", "export", str(run), "--to", str(tmp_path / f"f.{suffix}"), check=True)
    rows_csv = list(csv.reader(io.StringIO((tmp_path / "f.csv").read_text())))
    sheet = load_workbook(tmp_path / "f.xlsx").active
    rows_xlsx = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    assert rows_csv == rows_xlsx
    header, body = rows_csv[0], rows_csv[1:]
    report = FindingsFile.model_validate_json((run / "findings.json").read_text())
    assert sorted(r[header.index("id")] for r in body) == sorted(f.id for f in report.documents[0].findings)
    decisions = {r[header.index("id")]: r[header.index("decision")] for r in body}
    assert decisions == {f.id: f.decision or "" for f in report.documents[0].findings}
    by_rule = {r[header.index("rule")]: r for r in body}
    assert by_rule["no-personal-data"][header.index("quote")] == PLANTED_EMAIL
    assert by_rule["governing-law-clause"][header.index("flag")] == "red"


def test_control_characters_from_the_model_do_not_break_word_or_xlsx(reviewed, tmp_path: Path) -> None:
    """A random-weight model's rationale once held a NUL: XML cannot, and the whole export failed."""
    from docx import Document
    from openpyxl import load_workbook

    _, _, source_run = reviewed
    run = tmp_path / "run"
    run.mkdir()
    findings = json.loads((source_run / "findings.json").read_text())
    liability = next(f for f in findings["documents"][0]["findings"] if f["rule"] == "no-unlimited-liability")
    liability["rationale"] = "bell\x07 and nul\x00 inside"
    (run / "findings.json").write_text(json.dumps(findings))
    for suffix in ("docx", "xlsx"):
        proc = tilepilot("review", "export", str(run), "--to", str(tmp_path / f"out.{suffix}"))
        assert proc.returncode == 0, proc.stderr
    comments = [c.text for c in Document(str(tmp_path / "out.docx")).comments]
    assert any("bell\ufffd and nul\ufffd inside" in text for text in comments), comments
    cells = [v for row in load_workbook(tmp_path / "out.xlsx").active.iter_rows(values_only=True) for v in row]
    assert "bell\ufffd and nul\ufffd inside" in cells


def test_export_mistakes_are_one_line(reviewed, tmp_path: Path) -> None:
    _, _, run = reviewed
    for args, words in [(["--to", str(tmp_path / "x.pdf")], "give a .docx, .xlsx or .csv"),
                        (["--to", str(tmp_path / "no" / "x.csv")], "does not exist")]:
        proc = tilepilot("review", "export", str(run), *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and words in lines[0], proc.stderr


def test_bad_position_is_one_line_at_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text(PLAYBOOK.replace('      fallback: "liability capped', '      fallbak: "liability capped'))
    proc = tilepilot("rules", "check", str(bad))
    problems = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.startswith(str(bad))]
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "fallbak" in text)
    assert proc.returncode != 0 and problems == [f"{bad}:{line}: unknown key 'checks[1].positions.fallbak'; did you mean "
                                                 "'fallback'? (allowed here: standard, fallback, escalate)"]
    empty = tmp_path / "empty.md"
    empty.write_text(PLAYBOOK.replace(f'standard: "{STANDARD_LIABILITY}"', 'standard: "  "'))
    proc = tilepilot("rules", "check", str(empty))
    assert proc.returncode != 0 and f"{empty}:" in proc.stdout + proc.stderr and "empty" in proc.stdout + proc.stderr


def test_positions_reach_the_prompt_and_the_answer_schema(tmp_path: Path) -> None:
    from tilepilot.agents.review.mapper import answer_schema
    from tilepilot.agents.review.playbook import review_fields
    from tilepilot.agents.review.prompts import system_prompt
    from tilepilot.agents.rules import build_policy

    rules = tmp_path / "playbook.md"
    rules.write_text(PLAYBOOK)
    policy = build_policy("review", [str(rules)])
    fields = review_fields(policy, [])
    prompt = system_prompt(policy, fields)
    assert fields == ["flag"]
    for words in [f"no-unlimited-liability: standard: {STANDARD_LIABILITY}", "fallback (acceptable): the laws of Scotland",
                  "escalate to a senior reviewer when: uncapped liability of any kind", "flag: green if the clause meets"]:
        assert words in prompt
    schema = answer_schema([1, 2], ["no-unlimited-liability"], False, extra_fields=fields).model_json_schema()
    item = schema["$defs"]["Finding"]
    assert item["properties"]["flag"]["enum"] == ["red", "amber", "green"] and "flag" in item["required"]


@pytest.mark.integration
def test_playbook_docx_on_the_real_server(tmp_path: Path, server_env: dict) -> None:
    """The tiny model on the real vLLM server gets the positions and answers with a flag on every finding."""
    docx = contract_docx(tmp_path / "contract.docx", clauses=24, pii_at=20, liability_at=3)
    rules = tmp_path / "playbook.md"
    rules.write_text(PLAYBOOK)
    run = tmp_path / "run"
    proc = tilepilot("review", str(docx), "--rules", str(rules), "--out", str(run), "--json", env=server_env)
    assert proc.returncode == 0, proc.stderr
    from tilepilot.agents.runs import read_events

    started = next(iter(read_events(run / "events.jsonl", "run_started")))
    assert f"standard: {STANDARD_LIABILITY}" in started["prompt"]["system"] and started["prompt"]["extra_fields"] == ["flag"]
    report = FindingsFile.model_validate_json((run / "findings.json").read_text())
    model = [f for f in report.documents[0].findings if f.source == "model"]
    assert all(f.flag in ("red", "amber", "green") for f in model)  # the answer schema makes it an enum
    pii = next(f for f in report.documents[0].findings if f.rule == "no-personal-data" and f.source == "check")
    assert pii.paragraph == 21 and report.documents[0].source == str(docx)
    out = tmp_path / "reviewed.docx"
    tilepilot("review", "export", str(run), "--to", str(out), check=True)
    from docx import Document

    comments = "\n".join(c.text for c in Document(str(out)).comments)
    exported = [f for f in report.documents[0].findings]
    assert all(f.id in comments for f in exported)  # each finding anchored, or listed in the summary comment
