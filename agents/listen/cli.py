"""``tilepilot listen AUDIO... [--task transcribe|summarize|ask --question TEXT] [--json] [--out DIR]``.

One run folder per invocation; ``--resume RUN`` continues a killed or stopped one. With one input the outputs are ``transcript.txt`` and
``transcript.json`` in it; with several, each input gets a ``<n>-<stem>/`` subfolder holding
the same two files. ``--json`` prints one JSON object per input, one per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from pydantic import BaseModel
from rich.console import Console

from tilepilot.agents.backend import connect, random_weights_note
from tilepilot.agents.cli_model import (
    BaseUrlOption, JsonOption, MaxRuntimeOption, ModelOption, OutOption, ResumeOption, RulesOption, check_resume,
    progress_sink, rules_paths,
)
from tilepilot.agents.errors import UsageError
from tilepilot.agents.listen.agent import DEFAULT_WORKERS, TASKS, ListenAgent, ListenResult, Task
from tilepilot.agents.rules import build_policy
from tilepilot.agents.runs import Deadline, Run, read_options, write_atomic
from tilepilot.tools.audio import SAMPLE_RATE, AudioInfo, probe

out = Console()
err = Console(stderr=True)


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


def output_folders(run_dir: Path, sources: list[Path]) -> list[Path]:
    if len(sources) == 1:
        return [run_dir]
    return [run_dir / f"{i + 1}-{src.stem}" for i, src in enumerate(sources)]


class ListenOptions(BaseModel):
    """What a listen run was started with (its manifest; ``--resume`` reads it back)."""

    files: list[str]
    task: Task = "transcribe"
    question: Optional[str] = None
    rules: list[str] = []
    workers: int = DEFAULT_WORKERS
    model: str = "tiny"
    max_runtime_s: Optional[float] = None


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
    check_resume(resume, audio, "one or more audio files", "AUDIO arguments", out_dir)
    if resume is not None:  # the run's own inputs and options; only the server and the time limit may change
        options = read_options("listen", resume, ListenOptions)
        if max_runtime is not None:
            options = options.model_copy(update={"max_runtime_s": max_runtime})
    else:
        task = task or ("ask" if question else "transcribe")
        if task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
        if task == "ask" and not (question and question.strip()):
            raise UsageError("--task ask needs --question TEXT")
        if task != "ask" and question:
            raise UsageError(f"--question only goes with --task ask, not --task {task}")
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        options = ListenOptions(files=[str(Path(a).resolve()) for a in audio or ()], task=task, question=question,
                                rules=rules_paths(rules), workers=workers, model=model, max_runtime_s=max_runtime)
    # Check every input, the rules and the server first: a bad file or a down server is reported
    # before a run folder exists. (probe decodes formats whose header has no frame count, e.g. m4a.)
    infos: list[AudioInfo] = [probe(Path(path)) for path in options.files]
    policy = build_policy("listen", options.rules, target=options.files[0])
    deadline = Deadline.of(options.max_runtime_s, policy.limit("max_runtime_s"))
    with connect(options.model, base_url, quiet=as_json) as client, \
            Run.open("listen", options, out=out_dir, resume=resume, deadline=deadline,
                     progress=progress_sink(as_json, err), model=client.profile.served_name,
                     system_prompt=policy.prompt) as run:  # logged so `tilepilot export` rebuilds each clip request
        agent = ListenAgent(client, policy, workers=options.workers, events=run.events, deadline=run.deadline)
        run.progress.start("listen", sum(i.num_samples for i in infos) / SAMPLE_RATE, "s of audio")
        offset = 0.0
        for n, (info, folder) in enumerate(zip(infos, output_folders(run.dir, [i.path for i in infos]))):
            result = agent.run(info.path, run, options.task, options.question, thread_id=str(n),
                               on_progress=lambda seconds, at=offset: run.progress.update(at + seconds))
            offset += info.num_samples / SAMPLE_RATE
            write_outputs(result, folder, client.profile.served_name)
            run.emit("input_done", source=str(info.path), clips=len(result.clips), duration_s=result.duration_s,
                     outputs=str(folder))
            if as_json:
                typer.echo(json.dumps(summary_json(result, run.dir), ensure_ascii=False))
            else:
                _print_human(result, folder, random_weights_note(client.profile))
        run.finish("done", inputs=len(infos))


def _print_human(result: ListenResult, folder: Path, note: Optional[str]) -> None:
    out.print(result.text, markup=False, highlight=False)
    for label, value in (("Summary", result.summary), ("Answer", result.answer)):
        if value is not None:
            out.print(f"\n[bold]{label}[/bold]")
            out.print(value, markup=False, highlight=False)
    prompt = sum(c.prompt_tokens for c in result.clips)
    err.print(f"[dim]{result.duration_s:.1f} s in {len(result.clips)} clips, {prompt} prompt tokens; "
              f"wrote {folder}/transcript.txt and transcript.json{f' ({note})' if note else ''}[/dim]")


def register(app: typer.Typer) -> None:
    app.command("listen")(listen)
