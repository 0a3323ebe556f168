"""A run folder from elsewhere cannot run code on resume: checkpoints are read through tilepilot's allowlist.

Each attack is a real run's ``checkpoint.sqlite`` changed to name ``os.system("touch MARKER")``; LangGraph's
default reader would run it (checked first, so the attack is live), tilepilot must refuse in one line and
write nothing.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from tilepilot.agents.runs import CHECKPOINT_NAME
from tilepilot.agents.safe_checkpoint import AllowlistSerializer, CheckpointRefusedError
from tests.agents.review.conftest import CONTRACT_RULES
from tests.agents.tampering import json_constructor, retype_checkpoints, system_call, tamper_checkpoints, tamper_writes
from tests.conftest import tilepilot


@pytest.fixture(scope="module")
def stopped_review(planted_16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real review run stopped by its time limit: resumable, with a checkpoint on disk."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    proc = tilepilot("review", str(planted_16), "--rules", CONTRACT_RULES, "--no-model", "--max-runtime", "0.01",
                     "--out", str(run))
    assert proc.returncode == 6, proc.stderr
    with sqlite3.connect(run / CHECKPOINT_NAME) as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] > 0
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _newest_blob(run: Path) -> tuple[str, bytes]:
    with sqlite3.connect(run / CHECKPOINT_NAME) as conn:
        return conn.execute("SELECT type, checkpoint FROM checkpoints ORDER BY checkpoint_id DESC LIMIT 1").fetchone()


def test_the_attack_is_live_under_langgraphs_default_reader(stopped_review: Path, tmp_path: Path) -> None:
    run, marker = _copy(stopped_review, tmp_path / "run"), tmp_path / "pwned"
    assert tamper_checkpoints(run, marker) > 0
    JsonPlusSerializer().loads_typed(_newest_blob(run))
    assert marker.exists(), "the crafted blob must be what LangGraph's permissive reader executes"


@pytest.mark.parametrize("tamper", [tamper_checkpoints, tamper_writes], ids=["checkpoint", "pending-write"])
def test_review_resume_refuses_a_checkpoint_naming_a_callable(stopped_review: Path, tmp_path: Path, tamper) -> None:
    run, marker = _copy(stopped_review, tmp_path / "run"), tmp_path / "pwned"
    tamper(run, marker)
    before = (run / "events.jsonl").read_text()
    proc = tilepilot("review", "--resume", str(run), "--max-runtime", "600")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == CheckpointRefusedError.exit_code and len(lines) == 1, proc.stderr
    assert "os.system" in lines[0] and "refusing to resume" in lines[0] and str(run / CHECKPOINT_NAME) in lines[0]
    assert not marker.exists()
    assert not (run / "findings.json").exists()
    added = [json.loads(line)["kind"] for line in (run / "events.jsonl").read_text()[len(before):].splitlines()]
    assert "chunk" not in added and "page" not in added, added  # no step ran


def test_honest_review_resume_still_finishes(stopped_review: Path, tmp_path: Path) -> None:
    run = _copy(stopped_review, tmp_path / "run")
    proc = tilepilot("review", "--resume", str(run), "--max-runtime", "600", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {(f["rule"], f["page"]) for f in json.loads(proc.stdout)["documents"][0]["findings"]} >= {("no-personal-data", 2)}


@pytest.mark.parametrize("kind, make", [
    ("json", json_constructor),
    ("pickle", lambda marker: pickle.dumps(__import__("os").system)),
], ids=["json-constructor", "pickle"])
def test_other_blob_kinds_are_refused(stopped_review: Path, tmp_path: Path, kind: str, make) -> None:
    run, marker = _copy(stopped_review, tmp_path / "run"), tmp_path / "pwned"
    retype_checkpoints(run, kind, make(marker))
    proc = tilepilot("review", "--resume", str(run))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and f"holds a {kind!r} blob" in lines[0], proc.stderr
    assert not marker.exists()


def test_nested_and_method_names_are_refused_and_own_types_read(tmp_path: Path) -> None:
    import ormsgpack
    from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_POS_ARGS, EXT_METHOD_SINGLE_ARG

    from tilepilot.agents.review.findings import Finding

    marker = tmp_path / "pwned"
    serde = AllowlistSerializer([Finding], where="ckpt")
    # os.system hidden as the argument of an allowed constructor (a set), and as a method call.
    nested = ormsgpack.Ext(EXT_CONSTRUCTOR_POS_ARGS, ormsgpack.packb(("builtins", "set", [[system_call(marker)]])))
    method = ormsgpack.Ext(EXT_METHOD_SINGLE_ARG, ormsgpack.packb(("os", "path", f"touch {marker}", "system")))
    for value, named in [(nested, "os.system"), (method, "os.path.system"), ({"a": [1, system_call(marker)]}, "os.system")]:
        with pytest.raises(CheckpointRefusedError, match=named.replace(".", r"\.")):
            serde.loads_typed(("msgpack", ormsgpack.packb(value)))
    assert not marker.exists()
    with pytest.raises(CheckpointRefusedError, match="damaged"):
        serde.loads_typed(("msgpack", b"\xc1"))
    finding = Finding(id="f1", rule="r", severity="low", page=1, quote="q", rationale="why", source="check")
    honest = serde.dumps_typed({"f": finding, "when": __import__("datetime").datetime(2024, 1, 1), "s": {1, 2}})
    assert serde.loads_typed(honest)["f"] == finding
    # LangGraph's compile-time widening from the graph's schemas does not widen what a checkpoint may name.
    assert serde.with_msgpack_allowlist([("os", "system")]) is serde


def test_mcp_resume_goes_through_the_same_allowlist(stopped_review: Path, planted_16: Path, tmp_path: Path) -> None:
    from tests.agents.mcp.sessions import mcp_session

    run, marker = _copy(stopped_review, tmp_path / "run"), tmp_path / "pwned"
    tamper_checkpoints(run, marker)

    async def call():
        # The run and the documents it names lie inside the server's root: the allowlist, not the roots, refuses it.
        async with mcp_session("stdio", tmp_path / "runs", roots=[tmp_path, planted_16.parent, Path(CONTRACT_RULES).resolve().parent]) as session:
            return await session.call_tool("review_documents", {"resume": str(run)})

    result = asyncio.run(call())
    text = " ".join(getattr(c, "text", "") for c in result.content)
    assert result.is_error and "os.system" in text and "refusing to resume" in text, text
    assert not marker.exists()
