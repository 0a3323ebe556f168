"""Desktop task files on real apps (``tilepilot eval desktop --tasks DIR``): the accessibility-tree reference
agent completes the small variant of examples/desktop-tasks in real mousepad under Xvfb, judged by the files
the app wrote; oracle:0.5 lands strictly between 0 and 1; the tiny model's score is printed; bad task files
give one line each with file:line and start nothing; a task whose app dies mid-run fails with the reason
while the next task still runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import tilepilot
from tests.requires import require_binary
from tilepilot.agents.eval.tasks.loader import TaskProblemsError, load_task_dir
from tilepilot.agents.eval.tasks.schema import WidgetQuery
from tilepilot.agents.eval.tasks.session import find_widget
from tilepilot.tools.accessibility import Widget

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "desktop-tasks"


@pytest.fixture(scope="module")
def real_apps() -> None:
    for binary, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool"), ("openbox", "openbox"), ("dbus-launch", "dbus-x11"),
                            ("mousepad", "mousepad"), ("xprop", "x11-utils")):
        require_binary(binary, package)


def _eval(out: Path, tasks: Path, *systems: str) -> dict[str, dict]:
    """Run the CLI as a user would; the results as stored in results.json (with the misses), by system."""
    proc = tilepilot("eval", "desktop", "--tasks", str(tasks), "--small", *systems, "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["system"] for r in json.loads(proc.stdout)["results"]} == {r["system"] for r in json.loads((out / "results.json").read_text())}
    return {r["system"]: r for r in json.loads((out / "results.json").read_text())}


@pytest.fixture(scope="module")
def small_run(real_apps, vllm_server, tmp_path_factory) -> tuple[Path, dict[str, dict], str]:
    out = tmp_path_factory.mktemp("tasks") / "out"
    tiny = f"tiny@{vllm_server.base_url}"
    results = _eval(out, EXAMPLES, "--model", "oracle", "--model", "oracle:0.5", "--model", "tiny", "--base-url", vllm_server.base_url)
    return out, results, tiny


def test_reference_agent_completes_the_small_variant_on_real_apps(small_run):
    _, results, _ = small_run
    small = [t for t in load_task_dir(EXAMPLES) if t.task.small]
    metrics = results["oracle"]["metrics"]
    assert metrics["success_rate"] == 1.0, results["oracle"]["misses"]
    assert metrics["tasks"] == len(small) == 5 and metrics["oracle_unidentified"] == 0
    assert metrics["guard_denials"] >= 1 and metrics["confirmations"] >= 1  # the refusal and the confirmed save


def test_half_reference_is_strictly_between_and_tiny_is_printed(small_run):
    out, results, tiny = small_run
    half = results["oracle:0.5"]["metrics"]["success_rate"]
    assert 0.0 < half < 1.0, results["oracle:0.5"]
    misses = results["oracle:0.5"]["misses"]
    assert misses and all("run done" in m["detail"] for m in misses)  # it said done; the files say otherwise
    assert all(m["image"] and (out / m["image"]).is_file() for m in misses)
    print("\n[eval desktop --tasks small, tiny]", json.dumps({k: round(v, 3) for k, v in results[tiny]["metrics"].items()}))
    assert results[tiny]["metrics"]["tasks"] == 5


def test_bad_task_files_are_one_line_each_and_nothing_starts(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    good = (EXAMPLES / "mousepad-write.yaml").read_text(encoding="utf-8")
    (tasks / "a-unknown-evaluator.yaml").write_text(good.replace("  - file:", "  - screenshot: {looks: right}\n  - file:"), encoding="utf-8")
    (tasks / "b-missing-app.yaml").write_text(good.replace("launch: [mousepad,", "launch: [no-such-editor-4711,"), encoding="utf-8")
    (tasks / "c-cannot-run.yaml").write_text(good.replace("  - file:", "  - http: {path: /submit, received: {name: Ada}}\n  - file:"),
                                             encoding="utf-8")
    out = tmp_path / "out"
    proc = tilepilot("eval", "desktop", "--tasks", str(tasks), "--model", "oracle", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert f"a-unknown-evaluator.yaml:11: check[0].screenshot: unknown evaluator 'screenshot'" in lines[0]
    assert "b-missing-app.yaml:7: setup.launch: the app 'no-such-editor-4711' is not installed" in lines[1]
    assert "c-cannot-run.yaml:11: check[0].http: this check cannot run" in lines[2]
    assert not out.exists()  # nothing written, so nothing started


def test_the_shipped_suite_is_valid_and_widgets_match_by_role_name_and_position():
    loaded = load_task_dir(EXAMPLES)
    assert sum(t.task.small for t in loaded) == 5
    assert all(t.task.reference and t.task.check for t in loaded)
    widgets = [Widget(app="a", window="w", role="menu item", name="Save As...      ", bbox=(0, 0, 9, 9)),
               Widget(app="a", window="w", role="text", name="", bbox=(0, 20, 9, 29)),
               Widget(app="a", window="w", role="text", name="", bbox=(0, 40, 9, 49))]
    assert find_widget(widgets, WidgetQuery(role="menu item", name="Save As...")) is widgets[0]  # GTK's accelerator padding
    assert find_widget(widgets, WidgetQuery(role="text", index=1)) is widgets[2]
    assert find_widget(widgets, WidgetQuery(role="text", index=2)) is None


def test_a_crashing_app_fails_its_task_with_the_reason_and_the_suite_goes_on(real_apps, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write = (EXAMPLES / "mousepad-write.yaml").read_text(encoding="utf-8")
    # The app is killed 4 s after its launch, while the reference waits between its steps.
    crash = write.replace("launch: [mousepad,", 'launch: [timeout, "4", mousepad,').replace(
        '  - type: "Dear Ada', '  - wait: 3\n  - wait: 3\n  - type: "Dear Ada')
    (tasks / "a-crash.yaml").write_text(crash, encoding="utf-8")
    shutil.copy(EXAMPLES / "mousepad-write.yaml", tasks / "b-write.yaml")
    results = _eval(tmp_path / "out", tasks, "--model", "oracle")
    breakdown, misses = results["oracle"]["breakdown"], results["oracle"]["misses"]
    assert breakdown["task=b-write"]["success_rate"] == 1.0 and breakdown["task=a-crash"]["success_rate"] == 0.0
    assert len(misses) == 1 and "the app exited with code 124 during the run" in misses[0]["detail"], misses


def test_task_problems_name_file_and_line(tmp_path):
    (tmp_path / "t.yaml").write_text("app: x\nsetup:\n  launch: [mousepad]\n  ready: {role: text}\ninstruction: go\n"
                                     "check:\n  - file: {path: a.txt}\nreference:\n  - click: {role: text}\n", encoding="utf-8")
    with pytest.raises(TaskProblemsError) as err:
        load_task_dir(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 't.yaml'}:7: check[0].file: give exactly one of equals, contains")
