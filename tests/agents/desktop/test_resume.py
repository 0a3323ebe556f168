"""``tilepilot desktop --resume`` after a SIGKILL, on Xvfb with the real CPU vLLM server (tiny model).

The run continues after the last recorded step; the step a kill cut short is observed afresh
(never executed from the old screenshot), and every step is recorded once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tilepilot.agents.runs import EVENTS_NAME, RUN_FINISHED, RUN_RESUMED, RUN_STARTED, read_events
from tests.agents.killing import kill_when
from tests.conftest import tilepilot
from tests.x11.servers import XServer

pytestmark = [pytest.mark.integration, pytest.mark.x11]

STEPS = 5


def test_sigkill_then_resume_continues_after_the_last_recorded_step(xvfb: XServer, screen_only_env: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**screen_only_env, "DISPLAY": xvfb.display}  # no done/fail offered: the run reaches its step limit
    # --dry-run: the tiny model's noise is decided and guarded but never executed on the shared display.
    kill_when(["desktop", "look at the screen", "--dry-run", "--actions", "click,move,scroll", "--max-steps", str(STEPS),
               "--out", str(run), "--json"], run, "step", 2, env)
    before = json.loads((run / "trajectory.json").read_text())
    recorded = [s["step"] for s in before["steps"]]
    assert recorded[:2] == [0, 1] and before["status"] is None

    proc = tilepilot("desktop", "--resume", str(run), "--json", env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]  # max_steps
    summary = json.loads(proc.stdout)
    assert summary["status"] == "max_steps" and len(summary["steps"]) == STEPS
    after = json.loads((run / "trajectory.json").read_text())
    assert [s["step"] for s in after["steps"]] == list(range(STEPS))
    assert after["task"] == "look at the screen" and after["options"]["dry_run"] is True
    # Steps checkpointed before the kill are kept as they were (a prefix: at least step 0, whose
    # checkpoint was saved before step 1 began); every other step was observed after the resume.
    resumed_at = next(read_events(run / EVENTS_NAME, RUN_RESUMED))["t"]
    kept = [new == old for old, new in zip(before["steps"], after["steps"])]
    assert kept[0] and kept == sorted(kept, reverse=True), kept
    assert all(s["started_at"] >= resumed_at for s in after["steps"][sum(kept):])
    kinds = [e["kind"] for e in read_events(run / EVENTS_NAME) if e["kind"] in (RUN_STARTED, RUN_RESUMED, RUN_FINISHED)]
    assert kinds == [RUN_STARTED, RUN_RESUMED, RUN_FINISHED]
    steps_logged = [e["step"] for e in read_events(run / EVENTS_NAME, "step")]
    assert sorted(set(steps_logged)) == list(range(STEPS))


def test_max_runtime_stops_the_run_with_its_own_status_and_exit_code(xvfb: XServer, server_env: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**server_env, "DISPLAY": xvfb.display}
    proc = tilepilot("desktop", "look at the screen", "--dry-run", "--max-runtime", "0.01", "--out", str(run), "--json",
                     env=env, timeout=300)
    assert proc.returncode == 6, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "deadline" and summary["steps"] == []
    (finished,) = read_events(run / EVENTS_NAME, RUN_FINISHED)
    assert finished["status"] == "deadline" and "0.01 s time limit (--max-runtime)" in finished["reason"]
