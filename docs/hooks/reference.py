"""MkDocs hook: fills the reference pages from the code at build time, so they cannot drift from it.

A page asks for generated text with a marker line, ``<!-- generated: NAME -->``; the hook replaces it
before the page's Markdown is converted. An unknown NAME fails the build. NAME is one of:

- ``cli``: every command and option of the typer app (cli_reference.py);
- ``rule-file``, ``task-file``: every key, type and default of the pydantic models that read rule files'
  front matter and desktop task files (model_reference.py);
- ``errors``: every error class of the one hierarchy with its exit code;
- ``python-api``: every public name of the ``tilepilot`` package, as mkdocstrings directives (functions,
  modules) and key tables (the request and result models), in the order of ``tilepilot.__all__``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib import import_module

try:  # the generators read tilepilot's own objects: say plainly where to get it
    import_module("tilepilot.agents.cli")
except ImportError as err:
    raise SystemExit(f"the docs build needs tilepilot importable ({err}): `source .ci/setup-env.sh`, then "
                     "`python -m mkdocs build`") from None

from cli_reference import cli_reference  # noqa: E402 (after the check above)
from model_reference import key_rows, model_reference  # noqa: E402
from pydantic import BaseModel  # noqa: E402

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.MULTILINE)


def _rule_file() -> str:
    from tilepilot.agents.rules.schema import RuleFrontMatter

    return model_reference(RuleFrontMatter, "front matter (top level)")


def _task_file() -> str:
    from tilepilot.agents.eval.tasks.schema import TaskFile

    return model_reference(TaskFile, "task file (top level)")


# Griffe (mkdocstrings' loader) finds the `tilepilot` package in agents/api but not the packages that
# pyproject's package-dir maps beside it, so names defined there are described from the objects here.
OUTSIDE_THE_API_FOLDER = ("tilepilot.agents.", "tilepilot.tools.", "tilepilot.model_runtime.")


def _outside(value: object) -> str:
    """An exception class (its bases, exit code and subclasses) or a tuple of classes, from the object."""
    if isinstance(value, tuple):
        return "A tuple of the error classes that are user mistakes: " + ", ".join(
            f"`{cls.__module__}.{cls.__name__}`" for cls in value) + ". See [Exit codes and errors](errors.md)."
    assert inspect.isclass(value), value
    bases = ", ".join(base.__name__ for base in value.__bases__)
    subclasses = ", ".join(f"`{sub.__name__}`" for sub in value.__subclasses__())
    doc = inspect.cleandoc(value.__doc__ or "") if value.__doc__ != Exception.__doc__ else ""
    return "\n\n".join(part for part in (
        f"`class {value.__name__}({bases})`, in `{value.__module__}`; exit code {getattr(value, 'exit_code', 1)}.",
        doc, f"Subclasses: {subclasses}." if subclasses else "") if part)


def _python_api() -> str:
    import tilepilot

    lines = []
    for name in tilepilot.__all__:
        if name == "__version__":
            continue
        module = tilepilot._API[name]
        value = getattr(tilepilot, name)
        target = f"tilepilot.{name}" if module == "tilepilot" else f"{module}.{name}"
        lines += [f"### `tilepilot.{name}`", ""]
        if target.startswith(OUTSIDE_THE_API_FOLDER):
            lines += [_outside(value), ""]
        elif inspect.isclass(value) and issubclass(value, BaseModel):
            lines += [f"::: {target}", "    options:", "      show_root_heading: false", "      members: false", ""]
            lines += [*key_rows(value), ""]
        else:  # the signature is part of the object's own heading; a module shows what it defines itself
            lines += [f"::: {target}", "    options:", "      show_root_heading: true", "      show_root_toc_entry: false"]
            if inspect.ismodule(value):
                own = [n for n, v in vars(value).items() if not n.startswith("_") and getattr(v, "__module__", None) == value.__name__
                       and (inspect.isfunction(v) or inspect.isclass(v))]
                lines += [f"      members: [{', '.join(own)}]"]
            lines.append("")
    return "\n".join(lines)


def _errors() -> str:
    """Every user-facing error class, its exit code and its docstring, from the one hierarchy (USER_ERRORS)."""
    from tilepilot.agents.errors import USER_ERRORS

    def below(cls: type) -> list[type]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in below(child))]

    classes = {cls: None for root in USER_ERRORS for cls in below(root) if cls.__module__.startswith("tilepilot.")}
    rows = ["| exit code | error | module | when |", "|---|---|---|---|"]
    for cls in sorted(classes, key=lambda c: (getattr(c, "exit_code", 1), c.__module__, c.__name__)):
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        when = " ".join(re.sub(r"``(.+?)``", r"`\1`", doc).split()).replace("|", "\\|")
        rows.append(f"| {getattr(cls, 'exit_code', 1)} | `{cls.__name__}` | `{cls.__module__}` | {when} |")
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "rule-file": _rule_file,
    "task-file": _task_file,
    "python-api": _python_api,
    "errors": _errors,
}


def expand(markdown: str, where: str) -> str:
    """The page with each marker replaced by its generated Markdown."""

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated section {name!r} (known: {', '.join(GENERATORS)})")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs' hook signature)
    return expand(markdown, page.file.src_uri)

