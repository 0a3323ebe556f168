"""``tilepilot eval SUITE``: score the agents on a labelled suite, several systems side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

err = Console(stderr=True)


def eval_command(
    suite: str = typer.Argument(..., help="Suite to run: review, grounding, desktop, legibility or listen."),
    model: Optional[list[str]] = typer.Option(
        None, "--model", "-m",
        help="System to score: tiny, gemma-4-12b, a checkpoint folder, oracle or oracle:P (oracle-normalized[:P]: "
             "the oracle with 0..1000 coordinates). Repeat to compare several."),
    base_url: Optional[list[str]] = typer.Option(
        None, "--base-url",
        help="Server of the Nth non-oracle --model (in order; '-' = managed local server; a comma list = replicas)."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON instead of a table."),
    out: Optional[Path] = typer.Option(None, "--out", help="Eval folder (default ./runs/eval-<UTC time>)."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Your own labelled data (review: PDFs, rules.md, labels.jsonl)."),
    tasks: Optional[Path] = typer.Option(
        None, "--tasks", help="desktop: a folder of task files (YAML) on real apps instead of the built-in tasks."),
    small: bool = typer.Option(False, "--small", help="The small variant of the suite (what the tests run)."),
    keep_runs: bool = typer.Option(
        False, "--keep-runs",
        help="Keep every agent run folder with its eval.json verdict, hits too (desktop suites; for `tilepilot export`)."),
) -> None:
    """Measure how well the agents do their job: metrics as rows, systems as columns, misses in report.html."""
    from tilepilot.tools.extras import check as check_extra

    check_extra("eval", "tilepilot eval")  # before anything is imported or written: one line, no traceback
    from tilepilot.agents.eval.core import parse_systems, run_suite, suite_module
    from tilepilot.agents.eval.report import breakdown_table, machine_output, metrics_table, render_html
    from tilepilot.agents.runs import new_run_dir, write_atomic

    systems = parse_systems(model or [], base_url or [])
    suite_module(suite)  # unknown suite: one line, before any folder exists
    if tasks is not None:
        from tilepilot.agents.errors import UsageError
        from tilepilot.agents.eval.tasks.loader import load_task_dir

        if suite != "desktop" or dataset is not None:
            raise UsageError("--tasks DIR goes with the desktop suite only, and without --dataset")
        load_task_dir(tasks)  # every bad task file: one line each, before anything is written or started
        dataset = tasks
    elif dataset is not None:
        from tilepilot.agents.eval.dataset import load_dataset

        load_dataset(dataset)  # a malformed dataset fails here, before anything is written
    run_dir = new_run_dir("eval", out)

    def done(result) -> None:
        err.print(f"{result.suite} / {result.system}: {result.seconds:.1f} s")

    results = run_suite(suite, systems, run_dir, small=small, dataset=dataset, keep_runs=keep_runs, on_done=done)
    write_atomic(run_dir / "results.json", json.dumps([r.model_dump(mode="json") for r in results], indent=1))
    write_atomic(run_dir / "report.html", render_html(results, run_dir))
    if as_json:
        typer.echo(machine_output(results))
        return
    out_console = Console()
    out_console.print(metrics_table(results))
    table = breakdown_table(results)
    if table is not None:
        out_console.print(table)
    err.print(str(run_dir / "report.html"))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
