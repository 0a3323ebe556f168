"""``tilepilot eval review --dataset DIR``: users' own labelled documents, and their validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tilepilot.agents.eval.core import eval_cache_dir
from tilepilot.agents.eval.dataset import DatasetError, load_dataset
from tilepilot.agents.eval.rigs.review_data import suite_dir
from tests.conftest import tilepilot
from tests.gen.pdfs import digital_pdf, truncated_pdf


def _dataset(folder: Path, lines: list[str]) -> Path:
    folder.mkdir()
    digital_pdf(folder / "a.pdf", pages=3)
    (folder / "rules.md").write_text("---\napplies_to: [review]\n---\nReview it.\n")
    (folder / "labels.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def test_a_good_dataset_loads(tmp_path):
    data = load_dataset(_dataset(tmp_path / "d", ['{"document": "a.pdf", "rule": "model", "page": 2, "quote": "x"}',
                                                  '', '{"document": "a.pdf", "rule": "gdpr", "page": null, "quote": null}']))
    assert data.documents == {"a.pdf": 3}
    assert [(lb.rule, lb.page) for lb in data.labels] == [("model", 2), ("gdpr", None)]
    assert data.kind("a.pdf", 2) == "page" and data.kind("a.pdf", None) == "document"


def test_each_problem_is_one_line_with_file_and_line(tmp_path):
    folder = _dataset(tmp_path / "d", [
        '{"document": "a.pdf", "rule": "model", "page": 1, "quote": "ok"}',
        '{"document": "a.pdf", "rule": "model", "page": 0}',
        '{"document": "a.pdf", "rule": "model", "page": 1, "quote": "x", "colour": "red"}',
        'not json at all',
        '{"document": "missing.pdf", "rule": "model", "page": 1}',
        '{"document": "missing.pdf", "rule": "model", "page": 2}',
        '{"document": "a.pdf", "rule": "model", "page": 9}',
    ])
    truncated_pdf(folder / "broken.pdf")
    with pytest.raises(DatasetError) as caught:
        load_dataset(folder)
    lines = str(caught.value).splitlines()
    labels = str(folder / "labels.jsonl")
    assert any(line.startswith(f"{labels}:2: page:") for line in lines), lines
    assert any(line.startswith(f"{labels}:3: colour:") for line in lines), lines
    assert any(line.startswith(f"{labels}:4: not JSON") for line in lines), lines
    assert sum("unknown document 'missing.pdf'" in line for line in lines) == 1  # once, not per label
    assert any(line.startswith(f"{labels}:7: page 9 is beyond") for line in lines), lines
    assert sum("broken.pdf" in line for line in lines) == 1
    assert len(lines) == 6


def test_cli_reports_a_bad_dataset_in_lines_without_traceback_or_output(tmp_path):
    folder = _dataset(tmp_path / "d", ['{"document": "nope.pdf", "rule": "model", "page": 1}'])
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    proc = tilepilot("eval", "review", "--model", "oracle", "--dataset", str(folder), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("tilepilot: error: ") and len(lines) == 2, lines
    assert any("nope.pdf" in line and "labels.jsonl:1:" in line for line in lines)
    assert any("corrupt.pdf" in line for line in lines)
    assert not (tmp_path / "out").exists()


def test_a_users_dataset_is_scored_by_the_oracle(tmp_path):
    """Two generated contracts as a user's folder: no kinds.json, no boxes, only the documented format."""
    generated = suite_dir(eval_cache_dir(), small=True)
    folder = tmp_path / "mine"
    folder.mkdir()
    keep = ("contract-01.pdf", "contract-02.pdf")
    for name in (*keep, "rules.md"):
        shutil.copy(generated / name, folder / name)
    labels = [json.loads(line) for line in (generated / "labels.jsonl").read_text().splitlines()]
    (folder / "labels.jsonl").write_text("".join(
        json.dumps({k: lb[k] for k in ("document", "rule", "page", "quote")}) + "\n" for lb in labels if lb["document"] in keep))
    proc = tilepilot("eval", "review", "--model", "oracle", "--dataset", str(folder), "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)["results"][0]["metrics"]
    assert (metrics["precision"], metrics["recall"], metrics["oracle_unidentified"]) == (1.0, 1.0, 0.0)
    assert metrics["labels"] == sum(lb["document"] in keep for lb in labels)
