"""The ``tilepilot`` command line.

Each command group lives in its own module and registers a typer app here. :func:`main` is the
console-script entry point: it turns every user-facing error into one line on stderr and an
exit code, so a bad PDF or a down server never shows a traceback.
"""

from __future__ import annotations

import sys

import typer

from tilepilot.agents.errors import USER_ERRORS, exit_code_for

app = typer.Typer(
    name="tilepilot",
    help="Offline agents for documents, desktop UIs and audio, on one encoder-free multimodal model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tilepilot {version('tilepilot')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """tilepilot: agents that read documents, operate desktop UIs and listen to audio."""


def _register() -> None:
    # Command groups. Each module exposes `register(app)`; keep this list in CLI order.
    from tilepilot.agents import cli_model, cli_plan

    cli_model.register(app)
    cli_plan.register(cli_model.serve_app)
    # --- registered command groups (one line each) ---
    from tilepilot.agents.desktop import cli as desktop_cli; desktop_cli.register(app)  # noqa: E702
    from tilepilot.agents.listen import cli as listen_cli; listen_cli.register(app)  # noqa: E702
    from tilepilot.agents.rules import cli as rules_cli; rules_cli.register(app)  # noqa: E702
    from tilepilot.agents.review import cli as review_cli; review_cli.register(app)  # noqa: E702
    from tilepilot.agents.eval import cli as eval_cli; eval_cli.register(app)  # noqa: E702
    from tilepilot.agents.export import cli as export_cli; export_cli.register(app)  # noqa: E702
    from tilepilot.agents.mcp import transport as mcp_cli; mcp_cli.register(app)  # noqa: E702


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        # Standalone mode: typer/click print usage errors (one line plus usage, exit 2) and turn
        # Ctrl-C into "Aborted!"; our own errors propagate out of it and are printed here.
        app(args=argv, standalone_mode=True)
    except USER_ERRORS as err:
        print(f"tilepilot: error: {err}", file=sys.stderr)
        sys.exit(exit_code_for(err))


if __name__ == "__main__":
    main()
