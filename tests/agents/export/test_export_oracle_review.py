"""Runs from every system eval scores export: the reference answerer's kept review run becomes training examples."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import tilepilot
from tests.requires import require_binary

require_binary("soffice", "libreoffice-writer-nogui")  # the review suite holds Word documents


def test_export_of_an_oracle_review_run(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    tilepilot("eval", "review", "--small", "-m", "oracle", "--keep-runs", "--out", str(out), check=True)
    run = out / "review" / "oracle" / "run"
    report = json.loads((run / "findings.json").read_text())
    model = [f["id"] for d in report["documents"] for f in d["findings"] if f["source"] == "model"]
    word = [d for d in report["documents"] if (d.get("source") or "").endswith(".docx")]
    assert model and word  # the oracle answered, on the Word document too
    ids = [arg for i in model for arg in ("--id", i)]
    tilepilot("review", "--accept", str(run), *ids, check=True)
    proc = tilepilot("export", str(run), "--to", str(tmp_path / "set"))
    assert proc.returncode == 0, proc.stderr  # was: unknown model 'oracle'
    examples = [json.loads(line) for line in (tmp_path / "set" / "train.jsonl").read_text().splitlines()]
    assert examples
    answers = [json.loads(e["messages"][-1]["content"][0]["text"]) for e in examples]
    exported = {f["quote"] for a in answers for f in a["findings"]}
    assert "may share Confidential Information with its subcontractors without notice" in exported
