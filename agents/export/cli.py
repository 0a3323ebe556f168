"""``tilepilot export RUN... --to DIR``: turn what the agents did well into a fine-tuning set."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Callable

import typer
from pydantic import ValidationError
from rich.console import Console

from tilepilot.agents.export.dataset import Example, ExportError, SourceSummary, write_dataset
from tilepilot.agents.runs import MANIFEST_NAME, RunManifest

err = Console(stderr=True)
Exporter = Callable[[Path], tuple[list[Example], SourceSummary]]
EXPORTED_AGENTS = ("desktop", "review", "listen")  # tilepilot.agents.export.<agent>.<agent>_examples


def exporter(agent: str) -> Exporter:
    return getattr(importlib.import_module(f"tilepilot.agents.export.{agent}"), f"{agent}_examples")


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders: each path itself, or every run folder below it (an eval folder, ./runs)."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ExportError(f"{path}: no such folder; pass run folders (or folders that hold them)")
        runs = [path] if (path / MANIFEST_NAME).is_file() else sorted(p.parent for p in path.rglob(MANIFEST_NAME))
        if not runs:
            raise ExportError(f"{path}: no run folders in it (none has a {MANIFEST_NAME})")
        found += [r for r in runs if r not in found]
    return found


def agent_of(run: Path) -> str:
    try:
        return RunManifest.model_validate_json((run / MANIFEST_NAME).read_text(encoding="utf-8")).agent
    except (OSError, UnicodeDecodeError, ValidationError):  # invalid JSON is a ValidationError too
        raise ExportError(f"{run / MANIFEST_NAME}: unreadable; the run folder is damaged") from None


def collect(paths: list[Path]) -> Iterator[tuple[list[Example], SourceSummary]]:
    """Each run's examples and its summary, one run at a time (the writer drops them after writing)."""
    for run in find_runs(paths):
        agent = agent_of(run)
        if agent not in EXPORTED_AGENTS:
            yield [], SourceSummary(run=str(run), agent=agent, examples=0, note="left out: nothing to learn from this agent")
        else:
            yield exporter(agent)(run)


def export_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, or folders holding them (an eval folder run with --keep-runs).")],
    to: Annotated[Path, typer.Option("--to", help="The dataset folder to write (must be new or empty).")],
    license: Annotated[str, typer.Option("--license", help="Licence of the set, for its card (SPDX id or 'other').")] = "other",
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --to folder that an earlier export wrote (never other folders).")] = False,
) -> None:
    """Export successful desktop steps, accepted review findings and corrected transcripts as a fine-tuning set."""
    summary = write_dataset(collect(runs), to, license=license, force=force, inputs=runs)
    for source in summary.sources:
        err.print(f"{source.run}: {source.examples} example(s){'; ' + source.note if source.note else ''}")
    agents = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_agent.items()))
    typer.echo(f"{summary.path}: {summary.examples} examples ({agents}), {summary.images} images, {summary.audios} audio clips")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
