"""``tilepilot.review``, ``tilepilot.desktop``, ``tilepilot.listen``: the agents as Python calls.

The CLI commands are thin shells over these: they parse options into the request models
(:mod:`tilepilot.api_types`), call the operation with a progress callback that draws on the
terminal, and print the result (``--json``: ``result.to_json()``). The MCP server calls the same
functions from a worker thread.

Every operation:

- raises the one exception hierarchy (:mod:`tilepilot.agents.errors`) for user mistakes, before
  any run folder exists where the mistake is in the inputs;
- reports progress only through ``progress`` (a :data:`ProgressCallback`), never on its own;
- stops early, checkpointed and resumable (``resume=RUN``), when ``cancel`` (a ``threading.Event``)
  is set, the way a time limit stops it;
- hands every path it will use, its resumed run's own included, to ``check_paths`` (a :data:`PathCheck`;
  the MCP server's roots) before reading any of them, and sends ``api_key`` (default: env
  ``TILEPILOT_API_KEY``) to the model server.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tilepilot.api_types import (
    ClipText, DesktopRequest, DesktopResult, DesktopStep, DocumentFindings, ListenRequest, ListenResult, ReviewRequest,
    ReviewResult, ReviewUsage, ServeStatus, TranscriptResult,
)
from tilepilot.progress import ProgressCallback, sink_for

Paths = Sequence[str | Path]
R = TypeVar("R", bound=BaseModel)
PathCheck = Callable[[str, Sequence[str | None]], None]
"""``check(argument, values)``: raises a user error for a path the caller may not use."""
RUN_FOLDERS = ("out", "resume")


def _request(request_type: type[R], /, **fields: Any) -> R:
    """The request, or one line naming the bad option (a user mistake, not a traceback)."""
    from tilepilot.agents.errors import UsageError
    from tilepilot.agents.runs import validation_problem

    try:
        return request_type(**fields)
    except ValidationError as err:
        raise UsageError(f"{request_type.__name__}: {validation_problem(err)}") from None


def _strings(values: str | Path | Sequence[str | Path] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, (str, Path)):
        return [str(values)]
    return [str(v) for v in values]


def _connect(model: str, base_url: list[str], quiet: bool, api_key: str | None = None):
    from tilepilot.agents.backend import connect

    return connect(model, base_url or None, api_key=api_key, quiet=quiet)


def _confine(check: PathCheck | None, given: Any, arguments: tuple[str, ...]) -> None:
    """The paths ``given`` (a request, or a resumed run's options) holds in ``arguments``, through ``check``."""
    if check is None:
        return
    for argument in arguments:
        value = getattr(given, argument)
        check(argument, list(value) if isinstance(value, (list, tuple)) else [value])


def _check_resume(request: Any, inputs: list[str], what: str, argument: str) -> Path | None:
    from tilepilot.agents.cli_model import check_resume

    resume = Path(request.resume) if request.resume else None
    check_resume(resume, inputs, what, argument, Path(request.out) if request.out else None)
    return resume


# -- review --------------------------------------------------------------------------------------

def review(paths: str | Path | Paths = (), *, rules: str | Path | Paths = (), model: str = "tiny",
           base_url: str | Sequence[str] | None = None, no_model: bool = False, out: str | Path | None = None,
           resume: str | Path | None = None, progress: ProgressCallback | None = None,
           cancel: threading.Event | None = None, quiet: bool = True, **options: Any) -> ReviewResult:
    """Review documents against the rules: deterministic checks, plus the model unless ``no_model``.

    ``paths`` are files or folders: PDFs, and Word/ODF/RTF (through LibreOffice), text, Markdown and
    images (scans), which are converted to PDF first; each result document names both (``source``, ``path``).

    ``options`` are the other fields of :class:`ReviewRequest` (pages, mode, budget_tokens, concurrency,
    prefer, legibility, password, max_runtime_s). ``quiet`` False lets a managed local server say
    on stderr that it is starting.
    """
    request = _request(ReviewRequest, paths=_strings(paths), rules=_strings(rules), model=model, base_url=_strings(base_url),
                            no_model=no_model, out=str(out) if out else None, resume=str(resume) if resume else None,
                            **options)
    return run_review_request(request, progress=progress, cancel=cancel, quiet=quiet)


def run_review_request(request: ReviewRequest, *, progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None, quiet: bool = True,
                       check_paths: PathCheck | None = None, api_key: str | None = None) -> ReviewResult:
    from tilepilot.agents.review.runner import ReviewOptions, run_review
    from tilepilot.agents.runs import read_options

    _confine(check_paths, request, RUN_FOLDERS)  # before the resumed run's own options are read
    resume = _check_resume(request, request.paths, "one or more files or folders to review", "PATH arguments")
    if resume is not None:  # the run's own options, model included; only the server and the time limit may change
        options = read_options("review", resume, ReviewOptions)
    else:
        options = ReviewOptions(paths=request.paths, rules=request.rules, budget_tokens=request.budget_tokens,
                                concurrency=request.concurrency, mode=request.mode, pages=request.pages,
                                no_model=request.no_model, model=request.model, max_runtime_s=request.max_runtime_s,
                                prefer=request.prefer,
                                legibility=str(Path(request.legibility).resolve()) if request.legibility else None)
    _confine(check_paths, options if resume else request, ("paths", "rules", "legibility", "model"))
    report = run_review(options, out=Path(request.out) if request.out else None, resume=resume,
                        password=request.password, client_factory=lambda: _connect(options.model, request.base_url, quiet, api_key),
                        max_runtime_s=request.max_runtime_s, progress=sink_for(progress), cancel=cancel)
    return ReviewResult(
        run=report.run,
        documents=[DocumentFindings(source=d.source or d.path, path=d.path, pages=d.pages, failed_pages=d.failed_pages,
                                    findings=d.findings)
                   for d in report.documents],
        usage=ReviewUsage(requests=report.usage.requests, prompt_tokens=report.usage.prompt_tokens,
                          max_prompt_tokens=report.usage.max_prompt_tokens),
        note=report.model.note if report.model else None)


# -- desktop -------------------------------------------------------------------------------------

Approver = Callable[[Any], bool]  # gets a tilepilot.agents.desktop.state.ConfirmRequest; True executes the action


def desktop(task: str | None = None, *, rules: str | Path | Paths = (), model: str = "tiny",
            base_url: str | Sequence[str] | None = None, out: str | Path | None = None,
            resume: str | Path | None = None, approve: Approver | None = None,
            on_step: Callable[[Any], None] | None = None, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None, quiet: bool = True, **options: Any) -> DesktopResult:
    """Operate the desktop (``$DISPLAY``) by screenshot until ``task`` is done, guarded by the rules.

    ``approve`` answers the rules' confirmations; without it every confirmation is refused and the
    run stops ``denied``. ``on_step`` gets each recorded ``StepRecord``. ``options`` are the other
    fields of :class:`DesktopRequest` (max_steps, dry_run, monitor, budget, history, actions, max_runtime_s).
    """
    request = _request(DesktopRequest, task=task, rules=_strings(rules), model=model, base_url=_strings(base_url),
                             out=str(out) if out else None, resume=str(resume) if resume else None, **options)
    return run_desktop_request(request, approve=approve, on_step=on_step, progress=progress, cancel=cancel, quiet=quiet)


def run_desktop_request(request: DesktopRequest, *, approve: Approver | None = None,
                        on_step: Callable[[Any], None] | None = None, progress: ProgressCallback | None = None,
                        cancel: threading.Event | None = None, quiet: bool = True,
                        check_paths: PathCheck | None = None, api_key: str | None = None) -> DesktopResult:
    from tilepilot.agents.backend import random_weights_note
    from tilepilot.agents.desktop.runner import desktop_deadline, run_desktop
    from tilepilot.agents.desktop.state import ALL_KINDS, DesktopOptions
    from tilepilot.agents.errors import UsageError
    from tilepilot.agents.rules import build_policy
    from tilepilot.agents.runs import Run, read_options
    from tilepilot.tools.extras import check as check_extra
    from tilepilot.tools.screen import require_display

    check_extra("desktop", "tilepilot desktop")  # one line naming the extra, before a server or screen is looked for
    _confine(check_paths, request, RUN_FOLDERS)
    resume = _check_resume(request, [request.task] if request.task else [], "the TASK", "TASK argument")
    if resume is not None:  # the run's own task and options; only the server, the time limit and approve may change
        options = read_options("desktop", resume, DesktopOptions)
        if request.max_runtime_s is not None:
            options = options.model_copy(update={"max_runtime_s": request.max_runtime_s})
    elif request.task is None:  # check_resume refused a run with neither a task nor --resume
        raise UsageError("pass the TASK (or --resume RUN)")
    else:
        kinds = tuple(k.strip().lower() for k in request.actions if k.strip()) or ALL_KINDS
        unknown = [k for k in kinds if k not in ALL_KINDS]
        if unknown:
            raise UsageError(f"actions: unknown kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_KINDS)}")
        runtime: dict[str, Any] = {"max_runtime_s": request.max_runtime_s} if request.max_runtime_s is not None else {}
        options = DesktopOptions(
            task=request.task, rules=tuple(request.rules), model=request.model, max_steps=request.max_steps,
            budget=request.budget, monitor=request.monitor, dry_run=request.dry_run, history_images=request.history,
            kinds=kinds, **runtime)
    _confine(check_paths, options if resume else request, ("rules", "model"))
    display = require_display()
    policy = build_policy("desktop", list(options.rules))
    deadline = desktop_deadline(options, policy)
    deadline.cancel = cancel
    # python-xlib prints connection warnings on stdout; keep stdout for the caller's own output.
    with _connect(options.model, request.base_url, quiet, api_key) as client, contextlib.redirect_stdout(sys.stderr):
        with Run.open("desktop", options, out=Path(request.out) if request.out else None, resume=resume,
                      deadline=deadline, progress=sink_for(progress)) as run:
            result = run_desktop(options, client, policy, run, display=display, approve=approve, on_step=on_step)
        note = random_weights_note(client.profile)
    summary = result.summary()
    return DesktopResult(run=result.run, status=result.status, stop_reason=result.stop_reason,
                         steps=[DesktopStep(**step) for step in summary["steps"]], note=note)


# -- listen --------------------------------------------------------------------------------------

def listen(files: str | Path | Paths = (), *, task: str | None = None, question: str | None = None,
           rules: str | Path | Paths = (), model: str = "tiny", base_url: str | Sequence[str] | None = None,
           out: str | Path | None = None, resume: str | Path | None = None,
           progress: ProgressCallback | None = None, on_input: Callable[[TranscriptResult], None] | None = None,
           cancel: threading.Event | None = None, quiet: bool = True, **options: Any) -> ListenResult:
    """Transcribe, summarize (``task="summarize"``) or answer ``question`` about audio files, any length.

    ``on_input`` gets each input's result as soon as it is written. ``options``: workers, max_runtime_s.
    """
    request = _request(ListenRequest, files=_strings(files), task=task, question=question, rules=_strings(rules), model=model,
                            base_url=_strings(base_url), out=str(out) if out else None,
                            resume=str(resume) if resume else None, **options)
    return run_listen_request(request, progress=progress, on_input=on_input, cancel=cancel, quiet=quiet)


def run_listen_request(request: ListenRequest, *, progress: ProgressCallback | None = None,
                       on_input: Callable[[TranscriptResult], None] | None = None,
                       cancel: threading.Event | None = None, quiet: bool = True,
                       check_paths: PathCheck | None = None, api_key: str | None = None) -> ListenResult:
    from tilepilot.agents.backend import random_weights_note
    from tilepilot.agents.errors import UsageError
    from tilepilot.agents.listen.agent import ListenAgent
    from tilepilot.agents.listen.outputs import ListenOptions, output_folders, write_outputs
    from tilepilot.agents.rules import build_policy
    from tilepilot.agents.runs import Deadline, Run, read_options
    from tilepilot.tools.audio import SAMPLE_RATE, probe
    from tilepilot.tools.extras import check as check_extra

    check_extra("audio", "tilepilot listen")  # one line naming the extra, before any file is read
    _confine(check_paths, request, RUN_FOLDERS)
    resume = _check_resume(request, request.files, "one or more audio files", "AUDIO arguments")
    if resume is not None:  # the run's own inputs and options; only the server and the time limit may change
        options = read_options("listen", resume, ListenOptions)
        if request.max_runtime_s is not None:
            options = options.model_copy(update={"max_runtime_s": request.max_runtime_s})
    else:
        task = request.task or ("ask" if request.question else "transcribe")
        if task == "ask" and not (request.question and request.question.strip()):
            raise UsageError("--task ask needs --question TEXT")
        if task != "ask" and request.question:
            raise UsageError(f"--question only goes with --task ask, not --task {task}")
        options = ListenOptions(files=[str(Path(f).resolve()) for f in request.files], task=task,
                                question=request.question, rules=request.rules, workers=request.workers,
                                model=request.model, max_runtime_s=request.max_runtime_s)
    _confine(check_paths, options if resume else request, ("files", "rules", "model"))
    # Check every input, the rules and the server first: a bad file or a down server is reported
    # before a run folder exists. (probe decodes formats whose header has no frame count, e.g. m4a.)
    infos = [probe(Path(path)) for path in options.files]
    policy = build_policy("listen", options.rules, target=options.files[0])
    deadline = Deadline.of(options.max_runtime_s, policy.limit("max_runtime_s"))
    deadline.cancel = cancel
    results: list[TranscriptResult] = []
    with _connect(options.model, request.base_url, quiet, api_key) as client, \
            Run.open("listen", options, out=Path(request.out) if request.out else None, resume=resume, deadline=deadline,
                     progress=sink_for(progress), client=client, model=client.profile.served_name,
                     system_prompt=policy.prompt) as run:  # logged so `tilepilot export` rebuilds each clip request
        agent = ListenAgent(client, policy, workers=options.workers, events=run.events, deadline=run.deadline)
        run.progress.start("listen", sum(i.num_samples for i in infos) / SAMPLE_RATE, "s of audio")
        note = random_weights_note(client.profile)
        offset = 0.0
        for n, (info, folder) in enumerate(zip(infos, output_folders(run.dir, [i.path for i in infos]))):
            heard = agent.run(info.path, run, options.task, options.question, thread_id=str(n),
                              on_progress=lambda seconds, at=offset: run.progress.update(at + seconds))
            offset += info.num_samples / SAMPLE_RATE
            write_outputs(heard, folder, client.profile.served_name)
            run.emit("input_done", source=str(info.path), clips=len(heard.clips), duration_s=heard.duration_s,
                     outputs=str(folder))
            result = TranscriptResult(
                run=str(run.dir), duration_s=round(heard.duration_s, 3), text=heard.text, summary=heard.summary,
                answer=heard.answer, question=heard.question, outputs=str(folder), note=note,
                clips=[ClipText(start_s=c.start_s, end_s=c.end_s, text=c.text, prompt_tokens=c.prompt_tokens)
                       for c in heard.clips])
            results.append(result)
            if on_input is not None:
                on_input(result)
        run.finish("done", inputs=len(infos))
    return ListenResult(run=str(run.dir), inputs=results)


# -- serve status --------------------------------------------------------------------------------

def serve_status(model: str = "tiny", base_url: str | Sequence[str] | None = None) -> ServeStatus:
    """Is the managed local server of ``model`` up? With ``base_url``: probe what that server offers."""
    from tilepilot.agents.backend import api_key_from, base_urls_from, served_name_from
    from tilepilot.model_runtime import server
    from tilepilot.model_runtime.client import ChatClient
    from tilepilot.model_runtime.profiles import get_profile

    profile = get_profile(model)
    urls = _strings(base_url)
    if urls:
        with ChatClient(base_urls_from(urls), profile, served_name=served_name_from(None), api_key=api_key_from(),
                        max_retries=1, backoff_s=0.2) as client:
            caps = client.probe_all()
        return ServeStatus(model=model, base_url=caps.base_url, running=True, healthy=True,
                           capabilities={"exact": caps.exact, **caps.model_dump(mode="json")})
    state = server.read_state(profile.name)
    healthy = bool(state and server.healthy(state.base_url, state.served_name, api_key_from()))
    return ServeStatus(model=model, base_url=state.base_url if state else None, running=state is not None,
                       healthy=healthy, pid=state.pid if state else None)
