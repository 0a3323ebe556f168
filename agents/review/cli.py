"""``tilepilot review PATH...``: review documents (PDF, Word/ODF/RTF, text, Markdown, scans) against rule files,
with page-cited findings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tilepilot.agents.cli_model import (
    BaseUrlOption, JsonOption, MaxRuntimeOption, ModelOption, OutOption, ResumeOption, RulesOption, check_resume,
    progress_sink, rules_paths,
)
from tilepilot.agents.errors import UsageError
from tilepilot.tools.convert import INPUTS_DESCRIPTION

err = Console(stderr=True)
INPUTS_HELP = f"Files or folders to review: {INPUTS_DESCRIPTION}. Not needed with --resume."


def review(
    paths: Optional[list[str]] = typer.Argument(None, help=INPUTS_HELP, show_default=False),
    rules: RulesOption = None,
    budget_tokens: Optional[int] = typer.Option(None, "--budget-tokens", help="Prompt tokens per request (default: the model's input budget)."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, max=64, help="Chunks in flight at once (map-reduce mode)."),
    mode: str = typer.Option("map-reduce", "--mode", help="map-reduce (parallel chunks) or rolling (in order, carrying notes)."),
    pages: Optional[str] = typer.Option(None, "--pages", help="Page range, e.g. 1-50,60."),
    prefer: str = typer.Option("fidelity", "--prefer", help="fidelity: pages with a good text layer go as text (exact "
                               "quotes and boxes); tokens: such a page goes as an image where that is cheaper and the "
                               "legibility table says the model reads its font size at that budget."),
    legibility: Optional[Path] = typer.Option(None, "--legibility", help="A legibility.json from `tilepilot eval "
                                              "legibility` (your model's measurement) for --prefer tokens."),
    password: Optional[str] = typer.Option(None, "--password", help="Password of encrypted PDFs (a password-protected Word or "
                                          "ODF file is refused: save it without the password)."),
    out: OutOption = None,
    resume: ResumeOption = None,
    max_runtime: MaxRuntimeOption = None,
    no_model: bool = typer.Option(False, "--no-model", help="Only the deterministic checks: no server, fast, offline."),
    as_json: JsonOption = False,
    model: ModelOption = "tiny",
    base_url: BaseUrlOption = None,
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Review the documents as Ray tasks: auto (a local "
                                          "Ray on loopback; auto:N for N workers) or ray://HOST:PORT (a running "
                                          "cluster; --out on storage every node reaches). Needs tilepilot[cluster]."),
    accept: Optional[Path] = typer.Option(None, "--accept", help="Mark the findings --id ID... of this finished run "
                                          "accepted (for `tilepilot export`); reviews nothing."),
    reject: Optional[Path] = typer.Option(None, "--reject", help="Mark the findings --id ID... of this finished run "
                                          "rejected (export leaves them out); reviews nothing."),
    ids: Optional[list[str]] = typer.Option(None, "--id", help="A finding id (from findings.json) for --accept or "
                                            "--reject; repeat it for several."),
) -> None:
    """Review documents (PDF, Word, ODT, RTF, text, Markdown, scans): rule checks, plus the model on page chunks.

    Word, ODT and RTF files are converted to PDF with LibreOffice, text and Markdown are laid out on A4
    pages, and images are scanned pages; the findings cite pages of that PDF and name the file you gave.
    """
    if accept is not None or reject is not None or ids:
        _decide(accept, reject, ids or [], paths)
        return
    from tilepilot.api_types import ReviewRequest
    from tilepilot.operations import run_review_request
    from tilepilot.progress import console_progress
    from tilepilot.agents.review.runner import ReviewOptions
    from tilepilot.agents.runs import read_options

    if mode not in ("map-reduce", "rolling"):
        raise UsageError(f"--mode must be map-reduce or rolling, got {mode!r}")
    if prefer not in ("fidelity", "tokens"):
        raise UsageError(f"--prefer must be fidelity or tokens, got {prefer!r}")
    check_resume(resume, paths, "one or more files or folders to review", "PATH arguments", out)
    if budget_tokens is not None and budget_tokens < 1:
        raise UsageError(f"--budget-tokens must be positive, got {budget_tokens}")
    request = ReviewRequest(paths=list(paths or []), rules=rules_paths(rules), budget_tokens=budget_tokens,
                            concurrency=concurrency, mode=mode, pages=pages, no_model=no_model, model=model,
                            base_url=list(base_url or ()), max_runtime_s=max_runtime, prefer=prefer,
                            legibility=str(legibility) if legibility else None, password=password,
                            out=str(out) if out else None, resume=str(resume) if resume else None)

    from tilepilot.agents.cluster.ray_review import is_cluster_run

    if cluster is not None or is_cluster_run(resume):  # documents as Ray tasks, merged into one run folder
        from tilepilot.agents.cluster.ray_review import review_on_cluster

        if resume is not None:  # the run's own options, model included; only the server and the time limit may change
            options = read_options("review", resume, ReviewOptions)
        else:
            options = ReviewOptions(**{**request.model_dump(include=set(ReviewOptions.model_fields)),
                                       "legibility": str(legibility.resolve()) if legibility else None})
        typer.echo(review_on_cluster(options, cluster, out=out, resume=resume, password=password, base_urls=base_url,
                                     as_json=as_json, console=err, max_runtime_s=max_runtime,
                                     progress=progress_sink(as_json, err)))
        return

    result = run_review_request(request, progress=None if as_json else console_progress(err), quiet=as_json)
    if as_json:
        typer.echo(result.to_json())
        return
    for doc in result.documents:
        failed = f", {len(doc.failed_pages)} failed pages" if doc.failed_pages else ""
        err.print(f"{doc.source}: {doc.pages} pages, {len(doc.findings)} findings{failed}",  # the file given, not its conversion
                  markup=False, highlight=False, soft_wrap=True)
    if result.note:
        err.print(f"[dim]{result.note}[/dim]")
    typer.echo(str(result.report_html))


def _decide(accept: Optional[Path], reject: Optional[Path], ids: list[str], paths: Optional[list[str]]) -> None:
    """``--accept RUN --id ID...`` / ``--reject RUN --id ID...``: a reviewer's verdict, written into findings.json."""
    from tilepilot.agents.review.decisions import mark_findings

    if accept is not None and reject is None:
        run, decision = accept, "accepted"
    elif reject is not None and accept is None:
        run, decision = reject, "rejected"
    else:
        raise UsageError("--id goes with exactly one of --accept RUN or --reject RUN")
    if not ids:
        raise UsageError("--accept/--reject RUN needs the findings to mark: --id ID (repeat it for several)")
    if paths:
        raise UsageError("--accept/--reject marks findings of a finished run; it takes no PATH arguments")
    marked = mark_findings(run, ids, decision)
    typer.echo(f"{run / 'findings.json'}: {marked} finding(s) {decision}")


def register(app: typer.Typer) -> None:
    from tilepilot.agents.review.subcommands import ReviewCommand  # review export | open RUN

    app.command("review", cls=ReviewCommand)(review)
