"""Change a real run's ``checkpoint.sqlite`` the way a run folder from elsewhere could: a blob that names a callable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import ormsgpack
from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_SINGLE_ARG

from tilepilot.agents.runs import CHECKPOINT_NAME


def system_call(marker: Path) -> ormsgpack.Ext:
    """A msgpack value that LangGraph's default reader turns into ``os.system("touch MARKER")``."""
    return ormsgpack.Ext(EXT_CONSTRUCTOR_SINGLE_ARG, ormsgpack.packb(("os", "system", f"touch {marker}")))


def _raw(blob: bytes) -> object:
    # Keep every extension value as it is, so the rest of the checkpoint is written back unchanged.
    return ormsgpack.unpackb(blob, ext_hook=lambda code, data: ormsgpack.Ext(code, data), option=ormsgpack.OPT_NON_STR_KEYS)


def tamper_checkpoints(run: Path, marker: Path) -> int:
    """Put the call into the channel values of every stored checkpoint; returns how many were changed."""
    with sqlite3.connect(run / CHECKPOINT_NAME) as conn:
        rows = conn.execute("SELECT rowid, checkpoint FROM checkpoints WHERE type = 'msgpack'").fetchall()
        for rowid, blob in rows:
            checkpoint = _raw(blob)
            checkpoint["channel_values"]["notes"] = system_call(marker)
            conn.execute("UPDATE checkpoints SET checkpoint = ? WHERE rowid = ?",
                         (ormsgpack.packb(checkpoint, option=ormsgpack.OPT_NON_STR_KEYS), rowid))
    return len(rows)


def tamper_writes(run: Path, marker: Path) -> int:
    """Add the call as a pending write of the newest checkpoint (what a resume applies before going on)."""
    with sqlite3.connect(run / CHECKPOINT_NAME) as conn:
        newest = conn.execute("SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
                              "ORDER BY checkpoint_id DESC LIMIT 1").fetchone()
        conn.execute("INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, value) "
                     "VALUES (?, ?, ?, 'tampered', 0, 'notes', 'msgpack', ?)",
                     (*newest, ormsgpack.packb(system_call(marker))))
    return 1


def retype_checkpoints(run: Path, kind: str, blob: bytes) -> None:
    """Replace every checkpoint by a blob of another kind (``json`` constructor envelopes, ``pickle``)."""
    with sqlite3.connect(run / CHECKPOINT_NAME) as conn:
        conn.execute("UPDATE checkpoints SET type = ?, checkpoint = ?", (kind, blob))


def json_constructor(marker: Path) -> bytes:
    """A LangChain ``lc: 2`` constructor envelope naming ``os.system`` (LangGraph's ``json`` blob kind)."""
    return json.dumps({"lc": 2, "type": "constructor", "id": ["os", "system"], "args": [f"touch {marker}"]}).encode()
