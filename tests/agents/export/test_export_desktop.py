"""``tilepilot export`` of desktop runs: every request rebuilt exactly (the real server counts the same
tokens it counted when the agent sent it), only checked successes exported, bad run folders refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tilepilot.agents.desktop.trajectory import load_trajectory
from tilepilot.agents.export.dataset import load_dataset
from tilepilot.agents.export.desktop import step_example
from tilepilot.agents.runs import EVENTS_NAME, EvalVerdict, read_events, write_verdict
from tests.agents.desktop.screen_only_proxy import screen_only_proxy
from tests.conftest import tilepilot
from tests.x11.servers import XServer
from tests.x11.tk import launch_tk_app

pytestmark = [pytest.mark.integration, pytest.mark.x11, pytest.mark.slow]

STEPS = 6  # enough for the history to carry several screenshots (window of 4)


@pytest.fixture(scope="module")
def desktop_run(xvfb: XServer, vllm_server, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    folder = tmp_path_factory.mktemp("desktop-export")
    app = launch_tk_app(xvfb, folder / "app.jsonl", label="export me", geometry="1220x720+30+40")
    try:
        run = folder / "run"
        # No done/fail in the schema (screen_only_proxy), so the run takes all STEPS with the real server's answers.
        with screen_only_proxy(vllm_server.base_url) as url:
            proc = tilepilot("desktop", "press OK", "--max-steps", str(STEPS), "--actions", "click,move,scroll,key",
                             "--out", str(run), "--json",
                             env={"TILEPILOT_BASE_URL": url, "DISPLAY": xvfb.display}, input="", timeout=600)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
    finally:
        app.stop()
    return run


def test_every_rebuilt_request_counts_what_the_server_counted(desktop_run: Path, chat_client) -> None:
    trajectory = load_trajectory(desktop_run)
    sent = {e["step"]: e["usage"]["prompt_tokens"] for e in read_events(desktop_run / EVENTS_NAME, "step") if e.get("usage")}
    assert len(sent) == STEPS
    shown = []
    for index, step in enumerate(trajectory.steps):
        example = step_example(desktop_run, trajectory, index)
        images = sum(1 for m in example.messages for p in m.parts if p.kind == "image")
        assert images == step.usage.images
        shown.append(images)
        assert chat_client.count_prompt_tokens(example.messages, image_budget=example.image_budget) == sent[step.step], step.step
    assert max(shown) >= 3  # the history really carried earlier screenshots and answers


def test_export_of_checked_runs_keeps_the_bytes_and_the_server_agrees_on_every_count(grounding_run, chat_client,
                                                                                      tmp_path: Path) -> None:
    # The reference answerer's grounding runs (each with its eval.json): the in-process oracle server
    # recorded the counts; the real vLLM server must count the exported requests the same.
    out, results = grounding_run
    runs = out / "grounding" / "oracle"
    proc = tilepilot("export", str(runs), "--to", str(tmp_path / "set"), "--license", "CC-BY-4.0")
    assert proc.returncode == 0, proc.stderr
    examples = list(load_dataset(tmp_path / "set"))
    assert len(examples) == results["oracle"]["metrics"]["cases"]
    for example in examples:
        assert chat_client.count_prompt_tokens(example.messages, image_budget=example.meta["image_budget"]) == \
            example.meta["prompt_tokens"], example.meta["source"]
    lines = [json.loads(line) for line in (tmp_path / "set" / "train.jsonl").read_text().splitlines()]
    run = Path(lines[-1]["tilepilot"]["source"].partition("#")[0])
    assert (tmp_path / "set" / lines[-1]["images"][-1]).read_bytes() == (run / "steps" / "0000.jpg").read_bytes()
    answer = lines[-1]["messages"][-1]
    assert answer["role"] == "assistant" and json.loads(answer["content"][0]["text"])["action"]["kind"] == "click"
    assert ": " not in answer["content"][0]["text"]  # compact, as a constrained server writes it
    card = (tmp_path / "set" / "README.md").read_text()
    assert "license: CC-BY-4.0" in card and str(run) in card and f"{len(examples)} examples" in card


def _export_fails(runs: list[Path], to: Path, expected: str) -> None:
    proc = tilepilot("export", *map(str, runs), "--to", str(to))
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not to.exists() and not [p for p in to.parent.iterdir() if p.name.startswith(f".{to.name}")]


def test_bad_run_folders_get_one_line_and_nothing_written(desktop_run: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    shutil.copytree(desktop_run, missing)
    write_verdict(missing, EvalVerdict(suite="test", case="x", success=True))
    (missing / "steps" / "0001.jpg").unlink()
    _export_fails([missing], tmp_path / "out1", "screenshot of step 1")

    failed = tmp_path / "failed"  # the harness says it failed, and nothing else is given: empty selection
    shutil.copytree(desktop_run, failed)
    write_verdict(failed, EvalVerdict(suite="test", case="x", success=False))
    _export_fails([failed], tmp_path / "out2", "nothing to export")

    unchecked = tmp_path / "unchecked"  # no check, and the run did not end in done
    shutil.copytree(desktop_run, unchecked)
    _export_fails([unchecked], tmp_path / "out3", "nothing to export")

    old = tmp_path / "old"  # written before runs kept their rules prompt
    shutil.copytree(desktop_run, old)
    write_verdict(old, EvalVerdict(suite="test", case="x", success=True))
    data = json.loads((old / "trajectory.json").read_text())
    del data["policy_prompt"]
    (old / "trajectory.json").write_text(json.dumps(data))
    _export_fails([old], tmp_path / "out4", "cannot be rebuilt exactly")

    _export_fails([tmp_path / "nowhere"], tmp_path / "out5", "no such folder")
