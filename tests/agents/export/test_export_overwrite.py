"""``tilepilot export --to DIR [--force]`` never replaces a folder it did not write, nor a run it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tilepilot.agents.export.dataset import CARD_NAME, DATA_NAME, Example, ExportError, SourceSummary, write_dataset
from tilepilot.model_runtime.folders import MARKER_NAME
from tilepilot.model_runtime.payloads import Message
from tests.conftest import tilepilot
from tests.gen.pdfs import digital_pdf


@pytest.fixture(scope="module")
def review_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export-overwrite")
    run = base / "run"
    tilepilot("review", str(digital_pdf(base / "doc.pdf", 2)), "--no-model", "--out", str(run), check=True)
    return run


def _batch(text: str) -> list[tuple[list[Example], SourceSummary]]:
    example = Example(agent="review", source="run#chunk=0", messages=[Message.text("user", "q")], target=text)
    return [([example], SourceSummary(run="run", agent="review", examples=1))]


def test_force_never_replaces_a_folder_tilepilot_did_not_write(review_run: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my-data"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for extra, says in [([], "exists and is not empty; pick a new folder or pass --force"),
                        (["--force"], "holds files tilepilot did not write")]:
        proc = tilepilot("export", str(review_run), "--to", str(mine), *extra)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and says in lines[0], proc.stderr
    assert (mine / "notes.txt").read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["my-data"]


@pytest.mark.parametrize("inside", [False, True], ids=["the-run", "inside-the-run"])
def test_the_exported_run_is_never_the_output(review_run: Path, inside: bool) -> None:
    to = review_run / "dataset" if inside else review_run
    before = sorted(p.name for p in review_run.iterdir())
    proc = tilepilot("export", str(review_run), "--to", str(to), "--force")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and f"--to {to}: " in lines[0] and "the input" in lines[0], proc.stderr
    assert sorted(p.name for p in review_run.iterdir()) == before


def test_an_earlier_export_is_replaced_whole(tmp_path: Path) -> None:
    to = tmp_path / "set"
    write_dataset(_batch('{"a": 1}'), to, license="other")
    assert (to / MARKER_NAME).is_file() and (to / CARD_NAME).is_file()
    with pytest.raises(ExportError, match="pass --force"):
        write_dataset(_batch('{"a": 2}'), to, license="other")
    write_dataset(_batch('{"a": 2}'), to, license="other", force=True)
    record = json.loads((to / DATA_NAME).read_text())
    assert record["messages"][-1]["content"][0]["text"] == '{"a":2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
