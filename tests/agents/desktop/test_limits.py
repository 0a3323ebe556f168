"""``limits.max_runtime_s`` from a rule file stops desktop and review (issue 13, point 6).

The run's deadline is the smaller of ``--max-runtime`` and the rules' value. A run that hits it
stops with status ``deadline`` (the one status every agent's ``run_finished`` uses for it; exit
code 6), keeps every finished step and says how to resume.
"""

from __future__ import annotations

import json
from pathlib import Path

from tilepilot.agents.runs import read_events
from tests.agents.desktop.doubles import fixed
from tests.agents.desktop.test_loop_offline import _run
from tests.conftest import tilepilot
from tests.gen.pdfs import mixed_corpus
from tilepilot.tools.actions import Wait

RULES_LIMIT = "limits:\n  max_runtime_s: 0.3\n"


def test_a_rule_files_max_runtime_stops_desktop_and_keeps_the_steps(tmp_path: Path) -> None:
    # 0.3 s in the rules against the default 900 s of --max-runtime: the rules win.
    result, _, _ = _run(tmp_path, [fixed(Wait(ms=150))], RULES_LIMIT, max_steps=500)
    assert result.status == "deadline", result.stop_reason
    assert "0.3 s time limit (limits.max_runtime_s in the rules)" in result.stop_reason
    assert "--resume" in result.stop_reason
    saved = json.loads((Path(result.run) / "trajectory.json").read_text())
    assert saved["status"] == "deadline" and len(saved["steps"]) == len(result.steps) < 500
    finished = list(read_events(Path(result.run) / "events.jsonl", "run_finished"))
    assert [e["status"] for e in finished] == ["deadline"]
    started = list(read_events(Path(result.run) / "events.jsonl", "run_started"))
    assert started[0]["max_runtime_s"] == 0.3
    # A smaller --max-runtime wins over the rules.
    cli, _, _ = _run(tmp_path / "cli", [fixed(Wait(ms=0))], "limits:\n  max_runtime_s: 600\n", max_steps=500, max_runtime_s=0.001)
    assert cli.status == "deadline" and "(--max-runtime)" in cli.stop_reason


def test_a_rule_files_max_runtime_stops_review(tmp_path: Path) -> None:
    pdf = tmp_path / "contract.pdf"
    mixed_corpus(pdf, 12)
    repo = Path(__file__).resolve().parents[3]
    rules = tmp_path / "contract-limited.md"
    text = (repo / "rules" / "examples" / "contract.md").read_text(encoding="utf-8")
    rules.write_text(text.replace("applies_to: [review]\n", "applies_to: [review]\nlimits:\n  max_runtime_s: 0.01\n", 1),
                     encoding="utf-8")
    run = tmp_path / "run"
    proc = tilepilot("review", str(pdf), "--rules", str(rules), "--no-model", "--out", str(run))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 6 and len(lines) == 1, proc.stderr
    assert "0.01 s time limit (limits.max_runtime_s in the rules)" in lines[0] and f"--resume {run}" in lines[0]
    assert [e["status"] for e in read_events(run / "events.jsonl", "run_finished")] == ["deadline"]
