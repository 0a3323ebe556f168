"""Finished chunks of a map step, saved one by one as they finish, in the run's checkpoint database.

The map step runs its chunks on a bounded pool of ``--concurrency`` workers inside one graph node
(see :mod:`tilepilot.agents.review.graph`), so LangGraph saves nothing until the whole step ends. This
ledger is what a SIGKILL cannot take: each chunk's outcome is committed (SQLite, same file as the
checkpoint: ``checkpoint.sqlite``) the moment the chunk finishes, and a resumed map step reads it
back and sends only the chunks it lacks. A chunk is recorded once (its id is the key).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite import SqliteSaver

_TABLE = "review_chunks"


class ChunkLedger:
    def __init__(self, saver: "SqliteSaver", thread: str):
        self._saver = saver
        self.thread = thread
        with saver.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (thread TEXT NOT NULL, chunk TEXT NOT NULL, "
                        "outcome TEXT NOT NULL, PRIMARY KEY (thread, chunk))")

    def finished(self) -> dict[str, dict]:
        """Chunk id -> its outcome (``ChunkOutcome.to_state()``), for every chunk of this thread saved so far."""
        with self._saver.cursor(transaction=False) as cur:
            rows = cur.execute(f"SELECT chunk, outcome FROM {_TABLE} WHERE thread = ?", (self.thread,)).fetchall()
        return {chunk: json.loads(outcome) for chunk, outcome in rows}

    def record(self, outcome: dict) -> None:
        """Commit one finished chunk's outcome (the saver's lock serialises the pool's workers)."""
        with self._saver.cursor() as cur:
            cur.execute(f"INSERT OR IGNORE INTO {_TABLE} (thread, chunk, outcome) VALUES (?, ?, ?)",
                        (self.thread, outcome["chunk"], json.dumps(outcome)))

    def clear(self) -> None:
        """Forget this thread's chunks once the graph has stored them in its final state."""
        with self._saver.cursor() as cur:
            cur.execute(f"DELETE FROM {_TABLE} WHERE thread = ?", (self.thread,))
