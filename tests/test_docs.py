"""The documentation site and the README: built strictly, references that match the code, commands that run.

The site is built once per module with the real MkDocs Material (installed by .ci/setup-env.sh into its
own cached environment, which this checkout's .venv adds to its path) into a temporary folder. Its
reference pages are generated from the code at build time; these tests compare the built pages with the
code walked independently here, so a generator that drops a command, an option or a key fails.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel

from tests.conftest import REPO
from tests.requires import skip_missing

DOCS = REPO / "docs"
HEADING = re.compile(r'<h([1-6]) id="([^"]+)"[^>]*>(.*?)</h\1>', re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        skip_missing("mkdocs-material", "source .ci/setup-env.sh installs the documentation tools (TILEPILOT_DOCS_VENV)")
    out = tmp_path_factory.mktemp("site") / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _sections(page: Path, level: int = 6) -> dict[str, tuple[str, str]]:
    """Heading id -> (its text, the HTML from it to the next heading of `level` or above)."""
    text = page.read_text()
    marks = list(HEADING.finditer(text))
    found = {}
    for i, mark in enumerate(marks):
        end = next((m.start() for m in marks[i + 1:] if int(m.group(1)) <= max(level, int(mark.group(1)))), len(text))
        title = html.unescape(re.sub(r"<[^>]+>", "", mark.group(3))).rstrip("¶").strip()
        found[mark.group(2)] = (title, text[mark.end(): end])
    return found


def _headings(page: Path, level: int = 6) -> dict[str, str]:
    """Heading text (tags and the permalink stripped) -> its section's HTML."""
    return dict(_sections(page, level).values())


# -- the build -------------------------------------------------------------------------------------

def test_the_site_builds_strictly_with_every_page_of_the_nav(site: Path) -> None:
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    built = {str(p.relative_to(site)) for p in site.rglob("index.html")}
    for page in pages:
        expected = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert expected in built, f"docs/{page} was not built"
    assert not list(site.rglob("*.py")) and not (site / "requirements.txt").exists(), "hook sources were published"


def test_the_built_site_loads_no_font_script_or_style_from_the_network(site: Path) -> None:
    remote = re.compile(r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']?(?:https?:)?//|<link\b[^>]*\bhref=["']?(?:https?:)?//""", re.I)
    problems = []
    for page in site.rglob("*.html"):
        text = page.read_text()
        problems += [f"{page.relative_to(site)}: {m.group(0)}" for m in remote.finditer(text)]
    for sheet in site.rglob("*.css"):
        problems += [f"{sheet.relative_to(site)}: {m}" for m in re.findall(r"@import[^;]*|url\(\s*['\"]?(?:https?:)?//[^)]*\)", sheet.read_text())]
    for path in (*site.rglob("*.html"), *site.rglob("*.css"), *site.rglob("*.js")):
        if re.search(r"fonts\.(googleapis|gstatic)\.com", path.read_text(errors="replace")):
            problems.append(f"{path.relative_to(site)}: a web font host")
    assert not problems, problems[:20]


# -- references generated from the code -----------------------------------------------------------

def _cli_commands() -> dict[tuple[str, ...], list[str]]:
    """Every command path of the typer app -> its visible argument names and option strings."""
    from tilepilot.agents import cli
    from tilepilot.agents.review.subcommands import review_tools

    if not cli.app.registered_groups:
        cli._register()
    found: dict[tuple[str, ...], list[str]] = {}

    def visit(command, path: tuple[str, ...]) -> None:
        found[path] = [name for p in command.params if not p.hidden
                       for name in ([p.name] if p.param_type_name == "argument" else [*p.opts, *p.secondary_opts])]
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                visit(sub, path + (name,))

    visit(typer.main.get_command(cli.app), ("tilepilot",))
    for name, sub in typer.main.get_command(review_tools).commands.items():
        visit(sub, ("tilepilot", "review", name))
    return found


def test_the_cli_reference_lists_every_command_and_option_of_the_app(site: Path) -> None:
    sections = {key: body for key, (_, body) in _sections(site / "reference" / "cli" / "index.html").items()}
    commands = _cli_commands()
    assert len(commands) > 20 and ("tilepilot", "serve", "plan") in commands and ("tilepilot", "review", "open") in commands
    documented = {key for key in sections if key.startswith("tilepilot")}
    assert documented == {"-".join(path) for path in commands}
    for path, names in commands.items():
        section = html.unescape(re.sub(r"<[^>]+>", "", sections["-".join(path)]))
        missing = [name for name in names if name not in section]
        assert not missing, f"{' '.join(path)}: {missing} missing from the CLI reference"


def _model_sections(model: type[BaseModel], path: str, root: str) -> dict[str, list[str]]:
    """Section title -> key names, for a model and every model nested in its fields."""
    found = {path or root: list(model.model_fields)}
    for name, field in model.model_fields.items():
        def nested(annotation) -> list[tuple[type[BaseModel], bool]]:
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                return [(annotation, False)]
            many = typing.get_origin(annotation) is list
            return [(m, many or in_list) for arg in typing.get_args(annotation) for m, in_list in nested(arg)]
        for inner, many in nested(field.annotation):
            found.update(_model_sections(inner, f"{path}.{name}".lstrip(".") + ("[]" if many else ""), root))
    return found


@pytest.mark.parametrize("page, model, root", [
    ("rule-file", "tilepilot.agents.rules.schema:RuleFrontMatter", "front matter (top level)"),
    ("task-file", "tilepilot.agents.eval.tasks.schema:TaskFile", "task file (top level)"),
])
def test_the_format_references_list_every_key_of_their_models(site: Path, page: str, model: str, root: str) -> None:
    module, name = model.split(":")
    expected = _model_sections(getattr(__import__(module, fromlist=[name]), name), "", root)
    headings = _headings(site / "reference" / page / "index.html")
    assert len(expected) > 5
    for title, keys in expected.items():
        assert title in headings, f"{page}: no section {title!r}"
        missing = [key for key in keys if f"<code>{key}</code>" not in headings[title]]
        assert not missing, f"{page} {title}: keys {missing} missing"


def test_the_python_api_reference_documents_every_public_name(site: Path) -> None:
    import tilepilot

    headings = _headings(site / "reference" / "python-api" / "index.html", level=3)
    names = [name for name in tilepilot.__all__ if name != "__version__"]
    assert "review" in names and all(f"tilepilot.{name}" in headings for name in names)
    review = headings["tilepilot.review"]
    assert "Review documents against the rules" in review, "the docstring of tilepilot.review is not shown"
    assert "budget_tokens" in headings["tilepilot.ReviewRequest"], "the request model's fields are not listed"


# -- Getting started, as written -------------------------------------------------------------------

# Every command of the Getting started page is either run here or named as covered elsewhere.
RUN_HERE = ("tilepilot --help", "tilepilot rules ", "python examples/review/make_contract.py")
NOT_RUN_HERE = {
    "bash examples/demo.sh": "CI runs it (tests/test_setup.py) and it needs the model server",
    "bash tests/run.sh": "it is this suite",
    "source .ci/setup-env.sh": "the suite already runs inside it",
    "Xvfb ": "the desktop example needs an X server of its own (tests/agents/desktop)",
    "DISPLAY=": "the desktop example",
    "tilepilot replay ": "needs the desktop example's run",
    "bash examples/listen/make_memo.sh": "the listen example (tests/agents/listen)",
    "tilepilot listen ": "needs the model server",
    "tilepilot review ": "with the model: needs the server (the demo runs it); open: serves until stopped",
}


def _getting_started_commands() -> list[str]:
    page = (DOCS / "getting-started.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", page, re.S | re.M)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _runs_here(command: str) -> bool:
    return command.startswith(RUN_HERE) or (command.startswith("tilepilot review ") and "--no-model" in command)


def test_the_getting_started_commands_run_as_written(tmp_path: Path) -> None:
    commands = _getting_started_commands()
    unsorted = [c for c in commands if not _runs_here(c) and not c.startswith(tuple(NOT_RUN_HERE))]
    assert not unsorted, f"decide whether the test runs these Getting started commands: {unsorted}"
    cheap = [c for c in commands if _runs_here(c)]
    assert len(cheap) >= 4, cheap

    for folder in ("examples", "rules"):  # a checkout's files, in a folder of their own: the run writes runs/
        shutil.copytree(REPO / folder, tmp_path / folder)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    outputs = {}
    for command in cheap:
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, command
        outputs[command] = proc.stdout

    assert any("review" in out and "listen" in out for c, out in outputs.items() if c.startswith("tilepilot --help"))
    assert any("contract-rules.md" in out for c, out in outputs.items() if c.startswith("tilepilot rules explain"))
    review = next(c for c in cheap if "--no-model" in c)
    run = tmp_path / shlex.split(review)[shlex.split(review).index("--out") + 1]
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    # What the page says the checks find: PII on pages 3 and 9, unlimited liability on 5, automatic
    # renewal on 7, and the governing-law clause missing (a document-level finding).
    findings = [f for doc in json.loads((run / "findings.json").read_text())["documents"] for f in doc["findings"]]
    assert {3, 5, 7, 9} <= {f["page"] for f in findings}, findings
    assert any(f["page"] is None and "governing" in f["rule"] for f in findings), findings


# -- the README ------------------------------------------------------------------------------------

def test_the_readme_is_short_has_the_two_commands_and_links_that_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", quick, re.S) for line in block.splitlines() if line.strip()]
    assert commands == ["bash examples/demo.sh", "bash tests/run.sh"]
    assert readme.index("## Quick start") < readme.index("## Installing as a library") and "pip install 'tilepilot[" in readme
    links = re.findall(r"\]\(((?:docs|examples)/[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 15 and not [link for link in links if not (REPO / link).is_file()]
    assert "python -m mkdocs serve" in readme and "python -m mkdocs build" in readme
