"""One ``Run`` for every agent: its folder, options manifest, events, checkpoint, deadline, progress.

A run folder (default ``./runs/<agent>-<UTC timestamp>``, or ``--out DIR``) holds ``run.json``
(the agent and its options, so ``--resume RUN`` continues with exactly the same ones),
``checkpoint.sqlite`` (the LangGraph checkpoint), ``events.jsonl`` (one JSON object per line,
appended and flushed so a killed run keeps everything up to the kill) and the outputs. Outputs
are written atomically, so a reader -- or a run killed half-way -- never sees a half-written file.

Every agent's event log opens with ``run_started`` (or ``run_resumed``) and closes with
``run_finished`` and a status (:data:`FINISH_STATUSES`); what lies between is the agent's own.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from tilepilot.agents.atomic import write_atomic as write_atomic  # re-exported: the agents import it from here
from tilepilot.agents.errors import RunError

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.sqlite import SqliteSaver

    from tilepilot.model_runtime.chat_model import ChatModel

CHECKPOINT_NAME = "checkpoint.sqlite"
EVENTS_NAME = "events.jsonl"
MANIFEST_NAME = "run.json"
VERDICT_NAME = "eval.json"  # written by `tilepilot eval` into each run it scored (EvalVerdict)

RUN_STARTED, RUN_RESUMED, RUN_FINISHED = "run_started", "run_resumed", "run_finished"
FinishStatus = Literal["done", "fail", "max_steps", "denied", "stopped", "stuck", "deadline", "interrupted", "error"]
FINISH_STATUSES: tuple[str, ...] = FinishStatus.__args__  # type: ignore[attr-defined]

O = TypeVar("O", bound=BaseModel)


# -- files ---------------------------------------------------------------------------------------

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
    """Check that ``run`` is a run folder that can be resumed (it has a manifest, a log or a checkpoint)."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"--resume {run}: no such run folder; pass the folder a previous run printed")
    if not any((run / name).exists() for name in (MANIFEST_NAME, CHECKPOINT_NAME, EVENTS_NAME)):
        raise RunError(f"--resume {run}: not a run folder (no {MANIFEST_NAME}, {CHECKPOINT_NAME} or {EVENTS_NAME}); "
                       "pass the folder a previous run printed")
    return run


class EventLog:
    """Append-only JSON-lines log; each event is ``{"t": unix_time, "kind": ..., **fields}``.

    Each line goes out as one ``os.write`` on an ``O_APPEND`` descriptor, so writers in other
    threads or processes never interleave, and a kill leaves at most the last line missing.
    Values that JSON cannot encode are written with ``str()``. The run's events and the guard's
    audit log (:class:`tilepilot.agents.rules.AuditLog`) both write through this class.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, **fields}, default=str, ensure_ascii=False)
        with self._lock:
            if self._fd is None:
                raise RunError(f"{self.path}: event log already closed")
            os.write(self._fd, (line + "\n").encode("utf-8"))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

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


def read_model_file(path: Path, model_type: type[O]) -> O:
    """A JSON file of a run folder as ``model_type``; missing, not JSON or invalid: one line naming where."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such file; is this the folder of a finished run?")
    try:
        return model_type.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise RunError(f"{path}: {validation_problem(err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: unreadable ({err})") from None


def validation_problem(err: ValidationError) -> str:
    """The first problem of a validation error as one line: where in the file, and what is wrong."""
    first, count = err.errors()[0], len(err.errors())
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".") or "the file"
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" + (f" (and {count - 1} more problem(s))" if count > 1 else "")


# -- manifest ------------------------------------------------------------------------------------

class RunManifest(BaseModel):
    """``run.json``: which agent wrote the folder and with which options."""

    agent: str
    created: str
    options: dict[str, Any]


def read_options(agent: str, run: Path, options_type: type[O]) -> O:
    """The options a run folder was started with (for ``--resume``), as ``options_type``."""
    run = existing_run_dir(run)
    try:
        manifest = RunManifest.model_validate_json((run / MANIFEST_NAME).read_text(encoding="utf-8"))
        options = options_type.model_validate(manifest.options)
    except (OSError, UnicodeDecodeError, ValidationError):  # invalid JSON is a ValidationError too
        raise RunError(f"--resume {run}: {MANIFEST_NAME} is missing or unreadable; start a new run instead") from None
    if manifest.agent != agent:
        raise RunError(f"--resume {run}: that folder holds a {manifest.agent} run; resume it with `tilepilot {manifest.agent} --resume`")
    return options


class EvalVerdict(BaseModel):
    """``eval.json``: the eval harness's check of one run, from its labels, never from the model's claims.

    ``tilepilot export`` takes a desktop run only when this says ``success`` (where it exists).
    """

    suite: str
    case: str
    success: bool
    detail: str = ""


def write_verdict(run: Path, verdict: EvalVerdict) -> None:
    write_atomic(Path(run) / VERDICT_NAME, verdict.model_dump_json(indent=1))


def read_verdict(run: Path) -> EvalVerdict | None:
    path = Path(run) / VERDICT_NAME
    return read_model_file(path, EvalVerdict) if path.is_file() else None


# -- deadline ------------------------------------------------------------------------------------

class DeadlineReached(RunError):
    """The run's time limit passed; what was finished is checkpointed and ``--resume`` continues."""

    exit_code = 6


@dataclass
class Deadline:
    """The smaller of ``--max-runtime`` and the rules' ``limits.max_runtime_s``, from the run's start."""

    limit_s: float | None = None
    source: str = ""
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    resume_hint: str = ""
    # Set by a caller that stops the run early (an MCP client's cancel): the run then ends the way
    # a time limit ends it, checkpointed and resumable.
    cancel: threading.Event | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    @classmethod
    def of(cls, max_runtime_s: float | None, rules_limit_s: float | None,
           clock: Callable[[], float] = time.monotonic) -> "Deadline":
        limits = [(v, s) for v, s in ((max_runtime_s, "--max-runtime"), (rules_limit_s, "limits.max_runtime_s in the rules"))
                  if v is not None]
        if not limits:
            return cls(clock=clock)
        limit, source = min(limits, key=lambda item: item[0])
        return cls(float(limit), source, clock)

    def expired(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            return True
        return self.limit_s is not None and self.clock() - self.started >= self.limit_s

    def message(self) -> str:
        hint = f"; {self.resume_hint}" if self.resume_hint else ""
        if self.cancel is not None and self.cancel.is_set():
            return f"cancelled by the caller{hint}"
        return f"stopped at the {self.limit_s:g} s time limit ({self.source}){hint}"

    def check(self) -> None:
        """Raise :class:`DeadlineReached` once the limit has passed."""
        if self.expired():
            raise DeadlineReached(self.message())


# -- progress ------------------------------------------------------------------------------------

class ProgressSink(Protocol):
    """What the CLI renders (``tilepilot.agents.progress.ConsoleProgress``): a bar, or plain periodic lines."""

    def start(self, label: str, total: float | None, unit: str) -> None: ...

    def update(self, done: float) -> None: ...

    def close(self, ok: bool = True) -> None:
        """Take the display down; ``ok`` False (the run failed) adds no closing line to the error."""
        ...


class RunProgress:
    """The progress an agent reports: ``start`` once, then ``advance`` by amounts or ``update`` to a total."""

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self.done = 0.0
        self.total: float | None = None

    def start(self, label: str, total: float | None, unit: str) -> None:
        self.total = total
        if self._sink is not None:
            self._sink.start(label, total, unit)

    def advance(self, amount: float = 1) -> None:
        with self._lock:
            self.done += amount
            done = self.done
        if self._sink is not None:
            self._sink.update(done)

    def update(self, done: float) -> None:
        with self._lock:
            self.done = max(self.done, done)
            done = self.done
        if self._sink is not None:
            self._sink.update(done)

    def close(self, ok: bool = True) -> None:
        if self._sink is not None:
            self._sink.close(ok)


# -- the run -------------------------------------------------------------------------------------

@runtime_checkable
class ProbedModel(Protocol):
    """A model client that probed its server and reports what it learns later (the real ChatClient does;
    a scripted test double need not)."""

    capabilities: Any  # ServerCapabilities, or None before the probe
    on_event: Callable[..., None] | None


class Run:
    """One agent run in its folder. Use :meth:`open`, then ``with run:``; see the module docstring."""

    def __init__(self, agent: str, folder: Path, *, resumed: bool, deadline: Deadline, progress: ProgressSink | None) -> None:
        self.agent = agent
        self.dir = Path(folder)
        self.resumed = resumed
        self.deadline = deadline
        self.deadline.resume_hint = f"continue with `tilepilot {agent} --resume {self.dir}`"
        self.progress = RunProgress(progress)
        self.events = EventLog(self.dir / EVENTS_NAME)
        self.finished: str | None = None
        self._started = time.monotonic()
        self._saver: SqliteSaver | None = None
        self._clients: list[ProbedModel] = []

    @classmethod
    def open(cls, agent: str, options: BaseModel, *, out: Path | None = None, resume: Path | None = None,
             deadline: Deadline | None = None, progress: ProgressSink | None = None, client: ChatModel | None = None,
             **fields: Any) -> "Run":
        """Create a new run folder with its manifest (or reopen ``resume``) and log the start.

        Call it only after every input has been checked: a bad input must leave no folder behind.
        ``client`` is the model the run talks to (see :meth:`attach_client`).
        """
        if resume is not None:
            folder = existing_run_dir(resume)
        else:
            folder = new_run_dir(agent, out)
            manifest = RunManifest(agent=agent, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   options=options.model_dump(mode="json"))
            write_atomic(folder / MANIFEST_NAME, manifest.model_dump_json(indent=2))
        run = cls(agent, folder, resumed=resume is not None, deadline=deadline or Deadline(), progress=progress)
        run.emit(RUN_RESUMED if resume is not None else RUN_STARTED, agent=agent, options=options.model_dump(mode="json"),
                 max_runtime_s=run.deadline.limit_s, **fields)
        if client is not None:
            run.attach_client(client)
        return run

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.emit(kind, **fields)

    def attach_client(self, client: ChatModel) -> None:
        """Log the server probe of the model this run talks to (``server_probe``), and what the client learns
        later (token-count drift, capabilities, a smaller context) until the run closes. Once per client."""
        if not isinstance(client, ProbedModel) or any(c is client for c in self._clients):
            return  # a scripted double has no server to report on
        self._clients.append(client)
        caps = client.capabilities
        if caps is not None:
            self.emit("server_probe", exact=caps.exact, **caps.model_dump(mode="json"))
        client.on_event = self._client_event

    def _client_event(self, kind: str, **fields: Any) -> None:
        if self.finished is None:  # a client that outlives its run logs nowhere
            try:
                self.emit(kind, **fields)
            except RunError:  # the log closed without a finish (a killed run's cleanup)
                pass

    # -- checkpoint ---------------------------------------------------------------------------

    def checkpointer(self, allowed_types: Sequence[type] = ()) -> "SqliteSaver":
        """The run's SqliteSaver (one per run, closed with it).

        It reads only ``allowed_types`` (the agent's own state models) and LangGraph's bookkeeping
        types (:mod:`tilepilot.agents.safe_checkpoint`); a file that already exists (a resumed run) is
        read whole through that allowlist here, before any node runs; anything else stops the run with one line.
        """
        if self._saver is None:
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            from tilepilot.agents.safe_checkpoint import AllowlistSerializer, screen_checkpoint

            path = self.dir / CHECKPOINT_NAME
            serde = AllowlistSerializer(allowed_types, where=str(path))
            existed = path.exists()  # --resume, or a folder an API caller hands back: read it whole first
            conn = sqlite3.connect(path, check_same_thread=False)
            try:
                if existed:
                    screen_checkpoint(conn, serde)
            except BaseException:
                conn.close()
                raise
            self._saver = SqliteSaver(conn, serde=serde)
        return self._saver

    def thread(self, thread_id: str, **extra: Any) -> RunnableConfig:
        """The graph config of one thread, after repairing a prune that a kill interrupted."""
        from langchain_core.runnables import RunnableConfig

        from tilepilot.agents.checkpoints import recover_thread

        recover_thread(self.checkpointer(), thread_id)
        return RunnableConfig(configurable={"thread_id": thread_id}, **extra)

    def prune(self, thread_id: str) -> None:
        """Keep only the newest checkpoint of ``thread_id`` (call between supersteps, never during one)."""
        from tilepilot.agents.checkpoints import prune_thread

        prune_thread(self.checkpointer(), thread_id)

    def drive(self, app: Any, payload: Any, config: RunnableConfig, *, context: Any = None,
              pause_after: Iterable[str] = (), on_update: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Stream ``app`` until it ends or an ``interrupt()`` asks a question; returns the final snapshot.

        Every superstep is saved before the next starts (``durability="sync"``), so a kill loses at
        most the steps in flight. The graph pauses after the ``pause_after`` nodes, and at the end,
        where the checkpoint is pruned to its newest entry: a long loop keeps a small file.
        """
        thread_id = config.get("configurable", {})["thread_id"]
        pause = list(pause_after)
        while True:
            for update in app.stream(payload, config, context=context, durability="sync", stream_mode="updates",
                                     interrupt_after=pause or None):
                if on_update is not None and not any(key.startswith("__") for key in update):
                    on_update(update)
            snapshot = app.get_state(config)
            if snapshot.interrupts:
                return snapshot
            self.prune(thread_id)
            if not snapshot.next:
                return snapshot
            payload = None

    # -- end ----------------------------------------------------------------------------------

    def finish(self, status: FinishStatus, reason: str = "", **fields: Any) -> None:
        if self.finished is None:
            self.finished = status
            self.emit(RUN_FINISHED, status=status, reason=reason, seconds=round(time.monotonic() - self._started, 3), **fields)

    def close(self, ok: bool = True) -> None:
        for client in self._clients:
            if client.on_event == self._client_event:
                client.on_event = None
        self._clients.clear()
        self.progress.close(ok)
        if self._saver is not None:
            self._saver.conn.close()
            self._saver = None
        self.events.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and self.finished is None:
            if isinstance(exc, DeadlineReached):
                self.finish("deadline", str(exc))
            elif isinstance(exc, KeyboardInterrupt):
                self.finish("interrupted", "Ctrl-C")
            else:
                self.finish("error", " ".join(str(exc).split())[:300] or type(exc).__name__)
        self.close(ok=exc is None)
