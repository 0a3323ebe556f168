"""``tilepilot export`` of review runs: a real review on the tiny vLLM server, a reviewer's verdicts, the set read back.

The random-weight model answers its chunks with no findings, so the reviewer here has model
findings to judge only because the test writes them into the run's ``findings.json`` as a model
that found them would have (exact words of the page, with their box, on a page of a recorded
request). Everything the export rebuilds -- pages, images, document map, system prompt -- and the
token counts it is checked against come from the real run and the real server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tilepilot.agents.export.cli import collect
from tilepilot.agents.export.dataset import load_dataset, write_dataset
from tilepilot.agents.review.findings import Finding, model_finding_id
from tilepilot.agents.runs import EVENTS_NAME, read_events, write_atomic
from tilepilot.model_runtime.payloads import ImagePart
from tests.agents.review.conftest import CONTRACT_RULES
from tests.conftest import tilepilot
from tests.gen.pdfs import mixed_corpus
from tilepilot.tools.pdf import open_pdf

pytestmark = pytest.mark.integration

ACCEPTED, CORRECTED, REJECTED, ALSO_ACCEPTED = 2, 4, 5, 6  # pages: dense, table (text + image), dense, sparse
CORRECTION = {"severity": "critical", "rationale": "The reviewer's reason.", "fields": {"suggestion": "Reword it."}}


def _page_finding(pdf: Path, page: int, words: slice) -> Finding:
    """A model finding on exact words of ``page``, with their box, as the review agent records one."""
    with open_pdf(pdf) as doc:
        chosen = doc.text(page).words[words]
    quote = " ".join(w.text for w in chosen)
    box = (min(w.bbox[0] for w in chosen), min(w.bbox[1] for w in chosen), max(w.bbox[2] for w in chosen),
           max(w.bbox[3] for w in chosen))
    return Finding(id=model_finding_id("model", page, quote), rule="model", severity="low", page=page, quote=quote,
                   bbox=box, rationale=f"a problem on page {page}", source="model", verified="exact")


@pytest.fixture(scope="module")
def reviewed(vllm_server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Finding]]:
    """A finished review run of a 6-page PDF (chunks of text pages and of image pages), plus the model
    findings the reviewer judges, by role."""
    folder = tmp_path_factory.mktemp("export-review")
    pdf = folder / "contract.pdf"
    # a heading and a defined term: every chunk prompt carries the document map
    mixed_corpus(pdf, 6, plant={1: ["1. Definitions", '"Confidential Information" means all data the Customer discloses.'],
                                2: ["Contact jane.roe@example.com for notices."], 5: ["5. Liability"]})
    run = folder / "run"
    tilepilot("review", str(pdf), "--rules", CONTRACT_RULES, "--budget-tokens", "2600", "--out", str(run), "--json",
              env={"TILEPILOT_BASE_URL": vllm_server.base_url}, check=True)
    findings = {
        "accepted": _page_finding(pdf, ACCEPTED, slice(0, 4)),
        "corrected": _page_finding(pdf, CORRECTED, slice(0, 3)),
        "rejected": _page_finding(pdf, REJECTED, slice(0, 4)),
        "also_accepted": _page_finding(pdf, ALSO_ACCEPTED, slice(2, 5)),
        "document": Finding(id=model_finding_id("model", None, "\x1f1\x1f2"), rule="model", severity="medium", page=None,
                            pages=[1, 2], quote="", rationale="No data protection clause.", source="model",
                            verified="unverified"),
    }
    data = json.loads((run / "findings.json").read_text())
    data["documents"][0]["findings"] += [f.model_dump(mode="json") for f in findings.values()]
    write_atomic(run / "findings.json", json.dumps(data, indent=2))
    return run, findings


def _decided(reviewed: tuple[Path, dict[str, Finding]], tmp_path: Path) -> tuple[Path, dict[str, Finding]]:
    """A copy of the run with the reviewer's verdicts: three through the CLI, one correction by hand."""
    source, findings = reviewed
    run = tmp_path / "run"
    shutil.copytree(source, run)
    ids = [findings[k].id for k in ("accepted", "also_accepted", "document")]
    accepted = tilepilot("review", "--accept", str(run), *(a for i in ids for a in ("--id", i)), check=True)
    assert accepted.stdout.strip() == f"{run / 'findings.json'}: 3 finding(s) accepted"
    tilepilot("review", "--reject", str(run), "--id", findings["rejected"].id, check=True)
    data = json.loads((run / "findings.json").read_text())
    for finding in data["documents"][0]["findings"]:
        if finding["id"] == findings["corrected"].id:
            finding.update(decision="corrected", correction=CORRECTION)
    write_atomic(run / "findings.json", json.dumps(data, indent=2))
    return run, findings


def test_export_round_trip_counts_the_recorded_tokens_and_teaches_only_the_verdicts(reviewed, chat_client, tmp_path: Path) -> None:
    run, findings = _decided(reviewed, tmp_path)
    summary = write_dataset(collect([run]), tmp_path / "set", license="other")
    requests = [e for e in read_events(run / EVENTS_NAME, "request") if e["chunk"] != "summary"]
    taught_pages = {ACCEPTED, CORRECTED, ALSO_ACCEPTED}
    expected = {tuple(r["pages"]) for r in requests if taught_pages & set(r["pages"]) or {1, 2} <= set(r["pages"])}
    assert summary.examples == len(expected) >= 2 and summary.by_agent == {"review": len(expected)}
    assert next(read_events(run / EVENTS_NAME, "planned"))["document_map_tokens"] > 0

    loaded = list(load_dataset(tmp_path / "set"))
    answers: dict[int | None, dict] = {}
    for example in loaded:
        assert chat_client.count_prompt_tokens(example.messages, image_budget=example.meta["image_budget"]) == \
            example.meta["prompt_tokens"]
        for answer in json.loads(example.target)["findings"]:
            answers[answer["page"] if not isinstance(answer["page"], list) else None] = answer
    # the chunk that holds the table page went with its image, at the request's budget
    assert any(isinstance(p, ImagePart) for e in loaded for m in e.messages for p in m.parts)
    assert answers[ACCEPTED]["quote"] == findings["accepted"].quote and answers[ACCEPTED]["severity"] == "low"
    assert answers[ALSO_ACCEPTED]["quote"] == findings["also_accepted"].quote
    corrected = answers[CORRECTED]
    assert (corrected["quote"], corrected["severity"], corrected["rationale"], corrected["suggestion"]) == (
        findings["corrected"].quote, "critical", "The reviewer's reason.", "Reword it.")
    assert len(corrected["box"]) == 4  # its page went as an image too: the box in that image's pixels
    assert REJECTED not in answers and findings["rejected"].quote not in "".join(e.target for e in loaded)
    if any({1, 2} <= set(r["pages"]) for r in requests):
        assert answers[None]["page"] == [1, 2] and answers[None]["rationale"] == "No data protection clause."
    card = (tmp_path / "set" / "README.md").read_text()
    assert f"| `{run}` | review | {len(expected)} |" in card and "1 rejected" in card


def test_accept_an_unknown_id_writes_nothing(reviewed, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reviewed[0], run)
    before = (run / "findings.json").read_bytes()
    proc = tilepilot("review", "--accept", str(run), "--id", reviewed[1]["accepted"].id, "--id", "0123456789abcdef")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no finding with id 0123456789abcdef" in proc.stderr
    assert (run / "findings.json").read_bytes() == before
    both = tilepilot("review", "--accept", str(run), "--reject", str(run), "--id", reviewed[1]["accepted"].id)
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and (run / "findings.json").read_bytes() == before


def _corrupt_text(data: dict, findings: dict[str, Finding]) -> str:
    return '{"schema": "tilepilot.review/2", "documents": ['


def _bad_decision(data: dict, findings: dict[str, Finding]) -> str:
    data["documents"][0]["findings"][-1]["decision"] = "maybe"
    return json.dumps(data)


def _correction_of_an_unknown_key(data: dict, findings: dict[str, Finding]) -> str:
    target = next(f for f in data["documents"][0]["findings"] if f["id"] == findings["corrected"].id)
    target.update(decision="corrected", correction={"quote": "other words", "colour": "red"})
    return json.dumps(data)


def _correction_of_an_unknown_output_field(data: dict, findings: dict[str, Finding]) -> str:
    target = next(f for f in data["documents"][0]["findings"] if f["id"] == findings["corrected"].id)
    target.update(decision="corrected", correction={"fields": {"colour": "red"}})
    return json.dumps(data)


def _nothing_decided(data: dict, findings: dict[str, Finding]) -> str:
    return json.dumps(data)


@pytest.mark.parametrize("damage, message", [
    (_corrupt_text, "findings.json: not valid JSON"),
    (_bad_decision, "].decision: Input should be 'accepted', 'rejected' or 'corrected'"),
    (_correction_of_an_unknown_key, "correction.colour: unknown field"),
    (_correction_of_an_unknown_output_field, "the correction names unknown field(s) colour (the rules' output fields: suggestion)"),
    (_nothing_decided, "nothing to export"),
])
def test_bad_findings_are_one_line_errors_and_write_nothing(reviewed, tmp_path: Path, damage, message: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(reviewed[0], run)
    data = json.loads((run / "findings.json").read_text())
    (run / "findings.json").write_text(damage(data, reviewed[1]))
    to = tmp_path / "set"
    proc = tilepilot("export", str(run), "--to", str(to))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not to.exists() and not list(tmp_path.glob(".set.*"))
