"""``tilepilot review export RUN --to FILE`` and ``tilepilot review open RUN``: working with a finished review run.

``review`` itself takes paths (``tilepilot review contract.docx``), so these are dispatched by
:class:`ReviewCommand`: a first argument ``export`` or ``open`` that is not an existing file or
folder runs the subcommand; anything else is an ordinary review.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

from tilepilot.agents.errors import UsageError

SUBCOMMANDS = ("export", "open")
review_tools = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class ReviewCommand(TyperCommand):
    """The ``review`` command, with ``review export`` and ``review open`` dispatched before its own parsing."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["epilog"] = ("Finished runs: tilepilot review open RUN (triage in the browser); "
                            "tilepilot review export RUN --to FILE.docx|.xlsx|.csv.")
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] in SUBCOMMANDS and not Path(args[0]).exists():
            command = typer.main.get_command(review_tools)
            command.main(args=list(args), prog_name=ctx.command_path, standalone_mode=False)
            ctx.exit(0)
        return super().parse_args(ctx, args)


@review_tools.command("export")
def export(
    run: Path = typer.Argument(..., help="A finished review run folder."),
    to: Path = typer.Option(..., "--to", help="FILE.docx: the reviewed Word file with a comment on each finding (and "
                            "the playbook's standard wording as tracked changes); FILE.xlsx or FILE.csv: one row per "
                            "finding, decisions included."),
    document: Optional[str] = typer.Option(None, "--document", help="For .docx, which reviewed Word file (its name) "
                                           "when the run reviewed several."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --to file (never a document the run reviewed)."),
) -> None:
    """Export a review run's findings: Word comments and tracked changes, or a spreadsheet."""
    from tilepilot.agents.review.decisions import load_findings
    from tilepilot.agents.review.export_sheets import to_csv, to_xlsx
    from tilepilot.agents.review.export_word import write_commented_docx, word_findings
    from tilepilot.agents.runs import write_atomic

    report = load_findings(run)
    _check_target(to, [Path(p) for d in report.documents for p in (d.source, d.path) if p], force)
    suffix = to.suffix.lower()
    if suffix == ".csv":
        data, what = to_csv(report), f"{sum(len(d.findings) for d in report.documents)} findings"
    elif suffix == ".xlsx":
        data, what = to_xlsx(report), f"{sum(len(d.findings) for d in report.documents)} findings"
    elif suffix == ".docx":
        words = [d for d in report.documents if (d.source or "").lower().endswith(".docx")]
        if document is not None:
            words = [d for d in words if Path(d.source or "").name == document or d.source == document]
        if len(words) != 1:
            names = ", ".join(Path(d.source or "").name for d in report.documents if (d.source or "").lower().endswith(".docx"))
            raise UsageError(f"{run}: " + (f"pick the Word file with --document NAME (one of: {names})" if len(words) > 1 or document
                                           else "the run reviewed no .docx; Word output needs one (.xlsx and .csv work for any run)"))
        standards = {rule: positions.standard for rule, positions in report.playbook.items()}
        data, what = write_commented_docx(words[0], standards), f"{len(word_findings(words[0]))} findings as comments"
    else:
        raise UsageError(f"--to {to}: give a .docx, .xlsx or .csv file")
    if not to.parent.is_dir():
        raise UsageError(f"--to {to}: folder {to.parent} does not exist")
    write_atomic(to, data)
    typer.echo(f"{to}: {what}")


def _check_target(to: Path, reviewed: list[Path], force: bool) -> None:
    """Never write over a reviewed document (the .docx that gets the comments, most likely); nothing else without --force."""
    target = to.expanduser().resolve()
    for source in reviewed:
        same = target == source.expanduser().resolve() or (to.exists() and source.exists() and os.path.samefile(to, source))
        if same:
            raise UsageError(f"--to {to}: is a document this run reviewed ({source}); write the export to a new file")
    if to.is_dir():
        raise UsageError(f"--to {to}: is a folder; give a file name")
    if to.exists() and not force:
        raise UsageError(f"--to {to}: exists; pass --force to replace it")


@review_tools.command("open")
def open_run(
    run: Path = typer.Argument(..., help="A finished review run folder."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Loopback port (0: a free one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the URL only; do not open a browser."),
) -> None:
    """Triage a run's findings in the browser: accept, reject or correct each one (keys j/k/a/r).

    Serves on 127.0.0.1 with a token in the URL; decisions go into the run's findings.json as
    `--accept`/`--reject` write them. Ctrl-C stops it.
    """
    import webbrowser

    from tilepilot.agents.review.triage import TriageServer

    try:
        server = TriageServer(run, port)
    except OSError as err:
        raise UsageError(f"--port {port}: cannot listen on 127.0.0.1 ({err.strerror})") from None
    typer.echo(server.url)  # the only way in: the token is in it
    if not no_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
