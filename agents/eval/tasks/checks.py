"""The task's evaluators: they read the outcome from the app's world (files, widgets, commands, a
local endpoint), never from what the model said. Each gives a verdict and one line saying why."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

from tilepilot.agents.eval.tasks.schema import Check, CommandCheck, FileCheck, HttpCheck, WidgetCheck
from tilepilot.agents.eval.tasks.session import Receiver, find_widget, read_widgets

COMMAND_TIMEOUT_S = 30.0


class Verdict(BaseModel):
    ok: bool
    detail: str


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def run_checks(checks: list[Check], work: Path, bus: str | None, receiver: Receiver | None) -> list[Verdict]:
    """Every check's verdict, in order (the widget checks share one read of the tree)."""
    widgets = read_widgets(bus, values=True) if bus and any(c.widget for c in checks) else []
    verdicts = []
    for check in checks:
        if check.file is not None:
            verdicts.append(file_verdict(check.file, work))
        elif check.widget is not None:
            verdicts.append(widget_verdict(check.widget, widgets))
        elif check.command is not None:
            verdicts.append(command_verdict(check.command, work))
        elif check.http is not None:
            verdicts.append(http_verdict(check.http, receiver))
    return verdicts


def file_verdict(check: FileCheck, work: Path) -> Verdict:
    path = Path(check.path.replace("{work}", str(work)))
    path = path if path.is_absolute() else work / path
    if check.absent:
        return Verdict(ok=not path.exists(), detail=f"{path.name} {'exists' if path.exists() else 'is absent'}")
    if not path.is_file():
        return Verdict(ok=False, detail=f"{path.name} was not written")
    text = path.read_text(encoding="utf-8", errors="replace")
    shown = normalised(text) if check.normalise else text
    if check.equals is not None:
        want = normalised(check.equals) if check.normalise else check.equals
        return Verdict(ok=shown == want, detail=f"{path.name} holds {shown[:60]!r}, expected {want[:60]!r}")
    want = normalised(check.contains or "") if check.normalise else (check.contains or "")
    return Verdict(ok=want in shown, detail=f"{path.name} {'contains' if want in shown else 'lacks'} {want[:60]!r}")


def widget_verdict(check: WidgetCheck, widgets: list) -> Verdict:
    widget = find_widget(widgets, check)
    if check.absent:
        return Verdict(ok=widget is None, detail=f"{check.describe()} {'shows' if widget else 'is gone'}")
    if widget is None:
        return Verdict(ok=False, detail=f"no {check.describe()} on screen")
    missing = [s for s in check.states if s not in widget.states]
    if missing:
        return Verdict(ok=False, detail=f"{check.describe()} is not {', '.join(missing)}")
    if check.value is not None and (widget.value or "").strip() != check.value:
        return Verdict(ok=False, detail=f"{check.describe()} shows {widget.value!r}, expected {check.value!r}")
    return Verdict(ok=True, detail=f"{check.describe()} as expected")


def command_verdict(check: CommandCheck, work: Path) -> Verdict:
    argv = [a.replace("{work}", str(work)) for a in check.run]
    try:
        code = subprocess.run(argv, cwd=work, capture_output=True, timeout=COMMAND_TIMEOUT_S).returncode
    except (OSError, subprocess.TimeoutExpired) as err:
        return Verdict(ok=False, detail=f"{argv[0]} did not run: {err}")
    return Verdict(ok=code == check.exit_code, detail=f"{argv[0]} exited {code}, expected {check.exit_code}")


def http_verdict(check: HttpCheck, receiver: Receiver | None) -> Verdict:
    posts = [fields for path, fields in (receiver.received if receiver else []) if path == check.path]
    if not posts:
        return Verdict(ok=False, detail=f"nothing was submitted to {check.path}")
    last = posts[-1]
    wrong = {k: last.get(k) for k, v in check.received.items() if last.get(k) != v}
    return Verdict(ok=not wrong, detail=f"{check.path} received {last}" + (f"; wrong: {wrong}" if wrong else ""))
