"""Keep a LangGraph thread to its newest checkpoint, with the checkpointer's public API only.

LangGraph saves a checkpoint per superstep and keeps them all; a loop of N steps whose state grows
with N (desktop steps, rolling review notes, listen clips) would store O(N^2) bytes. SqliteSaver
does not implement ``BaseCheckpointSaver.prune``, so :func:`prune_thread` does "keep latest" with
the public calls every saver has (``get_tuple``, ``put``, ``put_writes``, ``delete_thread``):

1. copy the newest checkpoint and its pending writes to a backup thread ``<id>~``;
2. delete the thread and copy the newest checkpoint back as its only one;
3. delete the backup.

A kill between any two calls leaves either the untouched thread or a complete backup;
:func:`recover_thread`, called before a thread is used, puts things right. Pruning must run
between supersteps (``Run.drive`` pauses for it), never while tasks may still write.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

BACKUP_SUFFIX = "~"


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def _copy(latest: CheckpointTuple, saver: BaseCheckpointSaver, thread_id: str) -> None:
    """Store ``latest`` as the only (parentless) checkpoint of ``thread_id``, with its pending writes."""
    stored = saver.put(_config(thread_id), latest.checkpoint, latest.metadata, latest.checkpoint["channel_versions"])
    by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for task_id, channel, value in latest.pending_writes or []:
        by_task[task_id].append((channel, value))
    for task_id, writes in by_task.items():
        saver.put_writes(stored, writes, task_id)


def prune_thread(saver: BaseCheckpointSaver, thread_id: str) -> bool:
    """Keep only the newest checkpoint of ``thread_id``; True when something was dropped."""
    latest = saver.get_tuple(_config(thread_id))
    if latest is None or latest.parent_config is None:
        return False
    backup = thread_id + BACKUP_SUFFIX
    saver.delete_thread(backup)  # a stale, partial one from an earlier kill
    _copy(latest, saver, backup)
    saver.delete_thread(thread_id)
    _copy(latest, saver, thread_id)
    saver.delete_thread(backup)
    return True


def recover_thread(saver: BaseCheckpointSaver, thread_id: str) -> None:
    """Finish or undo a prune that a kill interrupted (a no-op when there is no backup)."""
    backup = saver.get_tuple(_config(thread_id + BACKUP_SUFFIX))
    if backup is None:
        return
    main = saver.get_tuple(_config(thread_id))
    # The thread is whole if it still has its history (the kill came before step 2) or if its
    # single checkpoint already got every pending write back (the kill came before step 3).
    whole = main is not None and (
        main.parent_config is not None
        or (main.checkpoint["id"] == backup.checkpoint["id"]
            and len(main.pending_writes or []) >= len(backup.pending_writes or [])))
    if not whole:
        saver.delete_thread(thread_id)
        _copy(backup, saver, thread_id)
    saver.delete_thread(thread_id + BACKUP_SUFFIX)
