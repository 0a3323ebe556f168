"""``tilepilot listen AUDIO... [--task transcribe|summarize|ask --question TEXT] [--json] [--out DIR]``.

One run folder per invocation. With one input the outputs are ``transcript.txt`` and
``transcript.json`` in it; with several, each input gets a ``<n>-<stem>/`` subfolder holding
the same two files. ``--json`` prints one JSON object per input, one per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from agents.backend import connect
from agents.cli_model import BaseUrlOpt, ModelOpt
from agents.errors import UsageError
from agents.listen.agent import DEFAULT_WORKERS, TASKS, ListenAgent, ListenResult
from agents.rules import build_policy
from agents.runs import EVENTS_NAME, EventLog, new_run_dir, write_atomic
from tools.audio import SAMPLE_RATE, AudioInfo, probe

out = Console()
err = Console(stderr=True)

PROGRESS_AFTER_S = 60.0  # shorter audio finishes before a bar would be worth drawing


def summary_json(result: ListenResult, run_dir: Path) -> dict:
    """The ``--json`` object: the documented keys only, in a stable order."""
    data: dict = {
        "run": str(run_dir),
        "duration_s": round(result.duration_s, 3),
        "clips": [{"start_s": c.start_s, "end_s": c.end_s, "text": c.text, "prompt_tokens": c.prompt_tokens}
                  for c in result.clips],
        "text": result.text,
    }
    if result.summary is not None:
        data["summary"] = result.summary
    if result.answer is not None:
        data["answer"] = result.answer
    return data


def write_outputs(result: ListenResult, folder: Path, model: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = result.text + "\n"
    if result.summary is not None:
        body += f"\n## Summary\n\n{result.summary}\n"
    if result.answer is not None:
        body += f"\n## Question\n\n{result.question}\n\n## Answer\n\n{result.answer}\n"
    write_atomic(folder / "transcript.txt", body)
    payload = {"source": str(result.source), "model": model, **result.model_dump(mode="json", exclude={"source"})}
    write_atomic(folder / "transcript.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _output_folders(run_dir: Path, sources: list[Path]) -> list[Path]:
    if len(sources) == 1:
        return [run_dir]
    return [run_dir / f"{i + 1}-{src.stem}" for i, src in enumerate(sources)]


def listen(
    audio: list[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, m4a, ...), any length."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="transcribe (default), summarize or ask."),
    question: Optional[str] = typer.Option(None, "--question", "-q", help="The question for --task ask (implies it)."),
    rules: Optional[list[Path]] = typer.Option(None, "--rules", help="Extra rule files or folders; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per input."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default ./runs/listen-<UTC time>)."),
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", help="Clips sent to the server at once."),
    model: str = ModelOpt,
    base_url: Optional[list[str]] = BaseUrlOpt,
) -> None:
    """Transcribe, summarize or answer a question about audio recordings."""
    task = task or ("ask" if question else "transcribe")
    if task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "ask" and not (question and question.strip()):
        raise UsageError("--task ask needs --question TEXT")
    if task != "ask" and question:
        raise UsageError(f"--question only goes with --task ask, not --task {task}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    # Check every input, the rules and the server first: a bad file or a down server is reported
    # before a run folder exists. (probe decodes formats whose header has no frame count, e.g. m4a.)
    infos: list[AudioInfo] = [probe(path) for path in audio]
    policy = build_policy("listen", [str(p) for p in rules or ()], target=str(audio[0]))
    with connect(model, base_url, quiet=as_json) as client:
        run_dir = new_run_dir("listen", out_dir)
        with EventLog(run_dir / EVENTS_NAME) as events:
            agent = ListenAgent(client, policy, workers=workers, events=events)
            events.emit("start", task=task, question=question, files=[str(i.path) for i in infos], model=client.model)
            for n, (info, folder) in enumerate(zip(infos, _output_folders(run_dir, [i.path for i in infos]))):
                result = _run_one(agent, info, run_dir, task, question, thread_id=str(n), show_progress=not as_json)
                write_outputs(result, folder, client.model)
                events.emit("done", source=str(info.path), clips=len(result.clips), duration_s=result.duration_s,
                            outputs=str(folder))
                if as_json:
                    typer.echo(json.dumps(summary_json(result, run_dir), ensure_ascii=False))
                else:
                    _print_human(result, folder, client.profile.is_random_weights)


def _run_one(agent: ListenAgent, info: AudioInfo, run_dir: Path, task: str, question: Optional[str],
             thread_id: str, show_progress: bool) -> ListenResult:
    total = info.num_samples / SAMPLE_RATE
    if not show_progress or total < PROGRESS_AFTER_S:
        return agent.run(info.path, run_dir, task, question, thread_id=thread_id)  # type: ignore[arg-type]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        bar = progress.add_task(f"listening to {info.path.name}", total=total)
        return agent.run(info.path, run_dir, task, question, thread_id=thread_id,  # type: ignore[arg-type]
                         on_progress=lambda seconds: progress.update(bar, completed=min(seconds, total)))


def _print_human(result: ListenResult, folder: Path, noise: bool) -> None:
    out.print(result.text, markup=False, highlight=False)
    for label, value in (("Summary", result.summary), ("Answer", result.answer)):
        if value is not None:
            out.print(f"\n[bold]{label}[/bold]")
            out.print(value, markup=False, highlight=False)
    prompt = sum(c.prompt_tokens for c in result.clips)
    note = " (tiny random-weight model: the words are noise)" if noise else ""
    err.print(f"[dim]{result.duration_s:.1f} s in {len(result.clips)} clips, {prompt} prompt tokens; "
              f"wrote {folder}/transcript.txt and transcript.json{note}[/dim]")


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)
