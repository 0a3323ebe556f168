"""The CLI reference, generated from the typer app itself, so it lists what `tilepilot --help` lists.

Every command is walked from the app's click tree (typer builds it), plus the two subcommands that
``review`` dispatches itself (``review export``, ``review open``: see agents/review/subcommands.py).
Each command gets a section headed by its full path, its usage line, its help text and one row per
argument and option, in the words and with the defaults its ``--help`` prints.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import typer

from tilepilot.agents import cli
from tilepilot.agents.review.subcommands import SUBCOMMANDS, review_tools

# Commands whose subcommands are dispatched by the command itself, not by a click group.
DISPATCHED = {("tilepilot", "review"): (review_tools, SUBCOMMANDS)}


def root_command() -> Any:
    """The app's click command, with every command group registered (once per process)."""
    if not cli.app.registered_groups:
        cli._register()
    return typer.main.get_command(cli.app)


def walk(command: Any = None, path: tuple[str, ...] = ("tilepilot",), parent: Any = None) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, command, its context) for the root and every visible command below it, in CLI order."""
    command = command if command is not None else root_command()
    ctx = command.context_class(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, path + (name,), ctx)
    if path in DISPATCHED:
        app, names = DISPATCHED[path]
        group = typer.main.get_command(app)
        for name in names:
            yield from walk(group.get_command(ctx, name), path + (name,), ctx)


def visible_params(command: Any, ctx: Any) -> list[Any]:
    """Arguments and options as --help lists them, without --help itself."""
    return [p for p in command.get_params(ctx) if not p.hidden and p.name != "help"]


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped, angle brackets kept literal."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _prose(text: str) -> str:
    """A docstring as Markdown: reST ``literals`` become `code`, typer's \\b paragraph marks go."""
    text = inspect.cleandoc(text or "").replace("\b\n", "")
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _param_row(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx)
    decl, help_text = record if record else (param.name, getattr(param, "help", "") or "")
    names, _, kind = decl.partition(" <")
    kind = kind.rstrip(">") if kind else ("flag" if param.param_type_name == "option" else "")
    what = "argument" if param.param_type_name == "argument" else "option"
    return f"| `{names.strip()}` | {what} | {_cell(kind)} | {_cell(help_text)} |"


def command_section(path: tuple[str, ...], command: Any, ctx: Any) -> str:
    heading = "#" * min(len(path) + 1, 4)
    usage = " ".join((*path, *command.collect_usage_pieces(ctx)))
    lines = [f"{heading} `{' '.join(path)}`", "", f"```text\n{usage}\n```", ""]
    if command.help:
        lines += [_prose(command.help), ""]
    if getattr(command, "epilog", None):
        lines += [_prose(command.epilog), ""]
    params = visible_params(command, ctx)
    if params:
        lines += ["| argument or option | kind | type | description |", "|---|---|---|---|"]
        lines += [_param_row(param, ctx) for param in params]
        lines.append("")
    if hasattr(command, "list_commands") or path in DISPATCHED:
        subs = [p for p, _, _ in walk(command, path, ctx.parent) if len(p) == len(path) + 1]
        lines += ["Commands: " + ", ".join(f"[`{' '.join(p)}`](#{'-'.join(p)})" for p in subs), ""]
    return "\n".join(lines)


def cli_reference() -> str:
    """Every command of the app, one section each, depth first in the order --help lists them."""
    return "\n".join(command_section(path, command, ctx) for path, command, ctx in walk())
