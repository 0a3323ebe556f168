"""`tilepilot review --no-model` (no server) and bad inputs, through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from tilepilot.agents.review.findings import FindingsFile
from tests.agents.review.conftest import CONTRACT_RULES, EXPECTED_CHECK_HITS
from tests.conftest import tilepilot
from tests.gen.pdfs import encrypted_pdf, not_a_pdf, truncated_pdf


def test_no_model_finds_every_planted_item_on_its_page(planted_300: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = tilepilot("review", str(planted_300), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out), "--json",
                     env={"TILEPILOT_BASE_URL": "http://127.0.0.1:9"})  # a dead server: --no-model must not touch it
    assert proc.returncode == 0, proc.stderr
    machine = json.loads(proc.stdout)
    doc = machine["documents"][0]
    assert doc["pages"] == 300 and doc["failed_pages"] == []
    hits = {(f["rule"], f["page"]) for f in doc["findings"]}
    assert hits == EXPECTED_CHECK_HITS  # required clauses (pages 41, 137) were found, so no finding for them
    for finding in doc["findings"]:
        assert finding["source"] == "check" and finding["bbox"] is not None
    assert machine["usage"] == {"requests": 0, "prompt_tokens": 0, "max_prompt_tokens": 0}
    written = json.loads((out / "findings.json").read_text())
    FindingsFile.model_validate(written)
    jsonschema.validate(written, FindingsFile.model_json_schema(by_alias=True))
    html = (out / "report.html").read_text()
    assert "jane.roe@example.com" in html and "data:image/jpeg;base64" in html
    assert "unlimited liability" in (out / "report.md").read_text()


@pytest.mark.parametrize("make, expected", [
    (lambda p: encrypted_pdf(p), "encrypted"),
    (lambda p: truncated_pdf(p), "truncated"),
    (lambda p: not_a_pdf(p), "not a PDF"),
])
def test_bad_inputs_one_line_error_and_no_report(tmp_path: Path, make, expected: str) -> None:
    bad = make(tmp_path / "bad.pdf")
    out = tmp_path / "run"
    proc = tilepilot("review", str(bad), "--no-model", "--out", str(out))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(bad) in lines[0], proc.stderr
    assert not out.exists()


def test_folder_input_and_password(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    encrypted_pdf(folder / "a.pdf", password="pw")
    encrypted_pdf(folder / "b.pdf", password="pw")
    proc = tilepilot("review", str(folder), "--no-model", "--password", "pw", "--out", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [Path(d["path"]).name for d in json.loads(proc.stdout)["documents"]] == ["a.pdf", "b.pdf"]


def test_shipped_example_contract(tmp_path: Path) -> None:
    import importlib.util

    repo = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("make_contract", repo / "examples" / "review" / "make_contract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pdf = module.main(tmp_path / "contract.pdf")
    proc = tilepilot("review", str(pdf), "--rules", str(repo / "examples" / "review" / "contract-rules.md"), "--no-model",
                     "--out", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    findings = json.loads(proc.stdout)["documents"][0]["findings"]
    hits = sorted((f["rule"], f["page"] or 0) for f in findings)
    assert hits == [("auto-renewal", 7), ("governing-law-clause", 0), ("no-personal-data", 3), ("no-personal-data", 3),
                    ("no-personal-data", 9), ("no-unlimited-liability", 5)]
    # The missing clause is document-level and worded for people; the check that decided it is kept in the details.
    missing = next(f for f in findings if f["rule"] == "governing-law-clause")
    assert missing["page"] is None and missing["quote"] == "No governing-law clause found"
    assert missing["fields"]["check"].startswith("no text matching /\\bgoverning\\s+law\\b|")


def test_max_runtime_stops_with_one_line_and_resume_finishes(planted_16: Path, tmp_path: Path) -> None:
    from tilepilot.agents.runs import read_events

    run = tmp_path / "run"
    proc = tilepilot("review", str(planted_16), "--rules", CONTRACT_RULES, "--no-model", "--max-runtime", "0.01",
                     "--out", str(run))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 6 and len(lines) == 1, proc.stderr
    assert "0.01 s time limit (--max-runtime)" in lines[0] and f"tilepilot review --resume {run}" in lines[0]
    assert not (run / "findings.json").exists()
    resumed = tilepilot("review", "--resume", str(run), "--max-runtime", "600", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert {(f["rule"], f["page"]) for f in json.loads(resumed.stdout)["documents"][0]["findings"]} >= {("no-personal-data", 2)}
    finished = [e for e in read_events(run / "events.jsonl", "run_finished")]
    assert [e["status"] for e in finished] == ["deadline", "done"]


def test_help_names_every_input_kind_it_takes() -> None:
    from tilepilot.tools.convert import SUPPORTED_SUFFIXES

    proc = tilepilot("review", "--help", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "PDFs" not in text.split("Options")[0], text  # not "Review PDFs" / "folders of PDFs" any more
    for words in ["Word, ODT, RTF, text, Markdown, scans", "(converted with LibreOffice)", "multi-page TIFF"]:
        assert words in text, (words, text)
    listed = re.search(r"Files or folders to review: (.*?)\. Not needed with --resume", text)
    assert listed, text
    assert {s for s in SUPPORTED_SUFFIXES if s != ".pdf"} <= set(re.findall(r"\.[a-z]+", listed[1]))
    assert listed[1].startswith("PDF;")
    overview = " ".join(tilepilot("--help", env={"COLUMNS": "400"}).stdout.split())
    assert "review Review documents (PDF, Word, ODT, RTF, text, Markdown, scans)" in overview, overview
