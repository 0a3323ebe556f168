"""Read and vet task files: every problem is one line ``file:line: message``, and all of a folder's
problems are found before anything is started (no X server, no app, no model server).

Beyond the schema (:mod:`tilepilot.agents.eval.tasks.schema`), a task is vetted for what would only
fail mid-run: an app or a check command that is not installed, an ``http`` check without a server to
receive it, a file check outside the task's folder, task rules that do not load, a reference that
does not end in done or fail.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from tilepilot.agents.errors import RuleProblemsError, UsageError
from tilepilot.agents.eval.tasks.schema import CHECK_KINDS, STEP_KINDS, TaskFile
from tilepilot.agents.rules.loader import _compose, _construct, _key_lines, _locate, load_rule_file

SUFFIXES = (".yaml", ".yml")
Problem = tuple[str, int, str]


class TaskProblemsError(UsageError):
    """Problems in task files; each prints as ``file:line: message`` on a line of its own."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(f"{f}:{line}: {m}" if line else f"{f}: {m}" for f, line, m in self.problems))


@dataclass(frozen=True)
class LoadedTask:
    path: Path
    task: TaskFile
    key_lines: dict[str, int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.task.id or self.path.stem


def load_task_dir(folder: Path) -> list[LoadedTask]:
    """Every task file in ``folder`` (sorted by name), or one TaskProblemsError listing all problems."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--tasks {folder}: not a folder of task files (*.yaml)")
    paths = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not paths:
        raise UsageError(f"--tasks {folder}: no task files (*.yaml) in it")
    tasks, problems = [], []
    for path in paths:
        try:
            tasks.append(load_task_file(path))
        except TaskProblemsError as err:
            problems += err.problems
    ids: dict[str, Path] = {}
    for loaded in tasks:
        if loaded.id in ids:
            problems.append((str(loaded.path), loaded.key_lines.get("id", 1), f"task id {loaded.id!r} is also used by {ids[loaded.id].name}"))
        ids[loaded.id] = loaded.path
    if problems:
        raise TaskProblemsError(problems)
    return tasks


def load_task_file(path: Path) -> LoadedTask:
    display = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskProblemsError([(display, 0, f"cannot read the task file: {err}")]) from None
    try:
        root = _compose(text, 0, display)
        data = _construct(text, 0, display)
    except RuleProblemsError as err:
        raise TaskProblemsError(err.problems) from None
    if not isinstance(data, dict):
        raise TaskProblemsError([(display, 1, "a task file is a YAML mapping (setup, instruction, check, ...)")])
    try:
        task = TaskFile.model_validate(data)
    except ValidationError as err:
        raise TaskProblemsError(_schema_problems(err, root, display)) from None
    loaded = LoadedTask(Path(path), task, _key_lines(root, 0))
    problems = _runtime_problems(loaded)
    if problems:
        raise TaskProblemsError(problems)
    return loaded


def _schema_problems(err: ValidationError, root: yaml.Node | None, display: str) -> list[Problem]:
    problems = []
    for item in err.errors(include_url=False):
        loc = tuple(item["loc"])
        line, key = _locate(root, loc)
        where = (line + 1) if line is not None else 1
        if item["type"] == "extra_forbidden" and len(loc) == 3 and loc[0] == "check":
            message = f"{key}: unknown evaluator {loc[2]!r} (known: {', '.join(CHECK_KINDS)})"
        elif item["type"] == "extra_forbidden" and len(loc) == 3 and loc[0] == "reference":
            message = f"{key}: unknown reference step {loc[2]!r} (known: {', '.join(STEP_KINDS)})"
        elif item["type"] == "extra_forbidden":
            message = f"unknown key {key!r}"
        else:
            got = item.get("input")
            shown = f" (got {got!r})" if item["type"] not in ("value_error", "missing") and not isinstance(got, (dict, list)) else ""
            message = f"{key}: {str(item['msg']).removeprefix('Value error, ')}{shown}" if key else str(item["msg"])
        problems.append((display, where, message))
    return sorted(problems, key=lambda p: p[1])


def _runtime_problems(loaded: LoadedTask) -> list[Problem]:
    """What the schema cannot see and would fail mid-run."""
    task, display, at = loaded.task, str(loaded.path), loaded.key_lines.get
    problems: list[Problem] = []
    binary = task.setup.launch[0]
    if shutil.which(binary) is None:
        problems.append((display, at("setup.launch", 1), f"setup.launch: the app {binary!r} is not installed (not on PATH)"))
    for index, command in enumerate(task.setup.commands):
        if not command or shutil.which(command[0]) is None:
            problems.append((display, at(f"setup.commands[{index}]", 1), f"setup.commands[{index}]: {command[:1]} is not installed"))
    for index, check in enumerate(task.check):
        line, where = at(f"check[{index}]", 1), f"check[{index}].{check.kind}"
        if check.command is not None and shutil.which(check.command.run[0]) is None:
            problems.append((display, line, f"{where}: this check cannot run: {check.command.run[0]!r} is not installed"))
        if check.http is not None and not task.setup.serve:
            problems.append((display, line, f"{where}: this check cannot run: nothing receives submissions (set setup.serve: true)"))
        if check.file is not None and ".." in Path(check.file.path).parts:
            problems.append((display, line, f"{where}: this check cannot run: the path leaves the task's folder"))
    if "{url}" in " ".join([task.instruction, *task.setup.launch]) and not task.setup.serve:
        problems.append((display, at("setup", 1), "{url} is used but setup.serve is not true: nothing serves it"))
    if task.reference and task.reference[-1].kind not in ("done", "fail"):
        problems.append((display, at(f"reference[{len(task.reference) - 1}]", 1), "the reference must end with done or fail"))
    if task.refuse and task.reference and task.reference[-1].kind != "fail":
        problems.append((display, at("refuse", 1), "refuse: true but the reference does not end with fail"))
    if task.rules is not None:
        try:
            load_rule_file(f"{display}#rules", text=task.rules)
        except RuleProblemsError as err:
            base = at("rules", 1)
            problems += [(display, base + line, f"rules: {message}") for _, line, message in err.problems]
    for index, (width, height) in enumerate(task.screens):
        if not (320 <= width <= 7680 and 240 <= height <= 4320):
            problems.append((display, at(f"screens[{index}]", 1), f"screens[{index}]: {width}x{height} is not a usable screen size"))
    return problems
