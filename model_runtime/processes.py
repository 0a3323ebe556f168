"""The managed server's processes, read from ``/proc``: identity across PID reuse, process groups, memory.

A PID alone does not name a process: after one exits, the kernel hands its number to the next. The
pair (PID, start time) does, so the managed server's state file records both, and nothing is
signalled unless both still match. The server runs as its own process group (a supervising ``sh``
and the engine's processes), which is stopped whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on, or None for no such process. The command name
    before it is skipped: it may hold spaces and ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (field 22), or None for no such process."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None


def is_zombie(pid: int) -> bool:
    """Exited but not reaped, or gone."""
    fields = stat_fields(pid)
    return fields is None or fields[0] == "Z"


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields and fields[0] != "Z" and fields[2] == str(pgid):  # state, ppid, pgrp
                members.append(int(entry.name))
    return members


def terminate_group(pgid: int, grace_s: float = 20.0) -> None:
    """SIGTERM process group ``pgid``, wait until every member has exited, SIGKILL what remains.

    The whole group, not its leader alone: vLLM's engine core outlives an API server that exits
    first. Only for a group known to be ours: Linux gives no new process the id of a group that
    still has members, so while one lives, the id is no one else's.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)  # the leader, where it is this process's own child: reap it
        if not group_members(pgid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so ``except``/``finally`` blocks clean up."""


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` instead of ending the process
    at once (Python's default), which would skip every cleanup. Handlers can be set from the main
    thread only; elsewhere the caller owns the signals and the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def peak_rss_kb(pid: int) -> int:
    """VmHWM of a process and its children (the engine core runs in a child process)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_children(k)]
    return out
