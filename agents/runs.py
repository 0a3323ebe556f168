"""Run folders shared by every agent: where a run lives, how its files are written, its event log.

A run folder (default ``./runs/<agent>-<UTC timestamp>``, or ``--out DIR``) holds
``checkpoint.sqlite`` (the LangGraph checkpoint), ``events.jsonl`` (one JSON object per line,
appended and flushed so a killed run keeps everything up to the kill) and the outputs. Outputs are
written atomically, so a reader -- or a run killed half-way -- never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from agents.errors import RunError

CHECKPOINT_NAME = "checkpoint.sqlite"
EVENTS_NAME = "events.jsonl"


def new_run_dir(agent: str, out: Path | None = None) -> Path:
    """Create and return a fresh run folder.

    With ``out`` the folder is ``out`` itself (created if missing; an existing non-empty folder is
    refused so two runs never mix their files). Without it, ``./runs/<agent>-<UTC timestamp>``,
    with a numeric suffix if two runs start within the same second.
    """
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out}: exists and is not a folder; pick another path")
        if out.is_dir() and any(out.iterdir()):
            raise RunError(f"--out {out}: folder is not empty; pick a new folder or use --resume {out}")
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{agent}-{stamp}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def existing_run_dir(run: Path) -> Path:
    """Check that ``run`` is a run folder that can be resumed (it has an event log or a checkpoint)."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"--resume {run}: no such run folder; pass the folder a previous run printed")
    if not (run / CHECKPOINT_NAME).exists() and not (run / EVENTS_NAME).exists():
        raise RunError(f"--resume {run}: not a run folder (no {CHECKPOINT_NAME} or {EVENTS_NAME}); pass the folder a previous run printed")
    return run


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The temporary file lives in the same folder (``os.replace`` is only atomic within one file
    system) and is fsynced before the rename, so a crash never leaves a truncated output.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class EventLog:
    """Append-only JSON-lines log; each event is ``{"t": unix_time, "kind": ..., **fields}``.

    Thread-safe (agents emit from worker threads); every line is flushed at once so an external
    reader or a resumed run sees what happened before a kill. Values that JSON cannot encode are
    written with ``str()``.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._handle = open(self.path, "a", encoding="utf-8")

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, **fields}, default=str, ensure_ascii=False)
        with self._lock:
            self._handle.write(line + "\n")
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.close()

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the events of a log (optionally only one kind); a torn last line from a kill is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or event.get("kind") == kind:
                yield event
