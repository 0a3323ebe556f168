"""``tilepilot listen AUDIO... [--task transcribe|summarize|ask --question TEXT] [--json] [--out DIR]``.

One run folder per invocation; ``--resume RUN`` continues a killed or stopped one. With one input the outputs are ``transcript.txt`` and
``transcript.json`` in it; with several, each input gets a ``<n>-<stem>/`` subfolder holding
the same two files. ``--json`` prints one JSON object per input, one per line. The work is
``tilepilot.listen`` (:mod:`tilepilot.operations`); this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tilepilot.api_types import ListenRequest, TranscriptResult
from tilepilot.agents.cli_model import (
    BaseUrlOption, JsonOption, MaxRuntimeOption, ModelOption, OutOption, ResumeOption, RulesOption, rules_paths,
)
from tilepilot.agents.errors import UsageError
from tilepilot.agents.listen.agent import DEFAULT_WORKERS, TASKS, is_task

out = Console()
err = Console(stderr=True)


def listen(
    audio: Optional[list[Path]] = typer.Argument(None, help="Audio files (wav, flac, ogg, mp3, m4a, ...), any length."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="transcribe (default), summarize or ask."),
    question: Optional[str] = typer.Option(None, "--question", "-q", help="The question for --task ask (implies it)."),
    rules: RulesOption = None,
    as_json: JsonOption = False,
    out_dir: OutOption = None,
    resume: ResumeOption = None,
    max_runtime: MaxRuntimeOption = None,
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", help="Clips sent to the server at once."),
    model: ModelOption = "tiny",
    base_url: BaseUrlOption = None,
) -> None:
    """Transcribe, summarize or answer a question about audio recordings."""
    from tilepilot.operations import run_listen_request
    from tilepilot.progress import console_progress

    if task is not None and not is_task(task):
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    request = ListenRequest(files=[str(a) for a in audio or ()], task=task, question=question, rules=rules_paths(rules),
                            workers=workers, model=model, base_url=list(base_url or ()),
                            out=str(out_dir) if out_dir else None, resume=str(resume) if resume else None,
                            max_runtime_s=max_runtime)

    def show(result: TranscriptResult) -> None:
        if as_json:
            typer.echo(result.to_json())
        else:
            _print_human(result)

    run_listen_request(request, progress=None if as_json else console_progress(err), on_input=show, quiet=as_json)


def _print_human(result: TranscriptResult) -> None:
    out.print(result.text, markup=False, highlight=False)
    for label, value in (("Summary", result.summary), ("Answer", result.answer)):
        if value is not None:
            out.print(f"\n[bold]{label}[/bold]")
            out.print(value, markup=False, highlight=False)
    prompt = sum(c.prompt_tokens for c in result.clips)
    note = result.note
    err.print(f"[dim]{result.duration_s:.1f} s in {len(result.clips)} clips, {prompt} prompt tokens; "
              f"wrote {result.outputs}/transcript.txt and transcript.json{f' ({note})' if note else ''}[/dim]")


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)
