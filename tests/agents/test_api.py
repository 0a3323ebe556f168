"""The typed Python API (``tilepilot.review``, ``tilepilot.rules``) and the CLI built on it.

The CLI's ``--json`` output must be exactly the API result's serialisation, and progress must reach
a plain callback. Real PDFs (generated), the real rule files, the real tiny vLLM server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tilepilot
from tests.conftest import REPO, tilepilot as run_cli
from tests.gen.pdfs import mixed_corpus

CONTRACT_RULES = str(REPO / "rules" / "examples" / "contract.md")
PLANTED = {2: ["Contact jane.roe@example.com for notices."], 5: ["The Supplier accepts unlimited liability for delays."]}


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "contract-8.pdf"
    mixed_corpus(path, 8, plant=PLANTED)
    return path


def _without_run(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "run"}


def test_import_is_cheap_and_names_resolve_lazily() -> None:
    code = ("import sys, tilepilot; assert not [m for m in sys.modules if m.startswith('tilepilot.agents.')], "
            "sorted(sys.modules); print(tilepilot.review.__module__, tilepilot.rules.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["tilepilot.operations", "tilepilot.rules"]


def test_all_names_exactly_the_lazily_loaded_api_and_each_resolves() -> None:
    # __all__ is spelled out for type checkers; it must not drift from the names __getattr__ loads.
    assert sorted(tilepilot.__all__) == sorted(["__version__", *tilepilot._API])
    for name in tilepilot.__all__:
        assert getattr(tilepilot, name) is not None, name


def test_review_without_model_reports_findings_progress_and_equals_the_cli_json(contract: Path, tmp_path: Path) -> None:
    events: list[tilepilot.ProgressEvent] = []
    result = tilepilot.review(contract, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "api", progress=events.append)

    assert isinstance(result, tilepilot.ReviewResult)
    assert Path(result.run) == tmp_path / "api" and result.report_html.is_file() and result.report_md.is_file()
    hits = {(f.rule, f.page) for f in result.findings}
    assert {("no-personal-data", 2), ("no-unlimited-liability", 5)} <= hits
    assert [e.kind for e in events][0] == "start" and events[-1].kind == "end" and events[-1].ok
    assert events[0].total == 8 and events[-1].done == 8

    proc = run_cli("review", str(contract), "--rules", CONTRACT_RULES, "--no-model", "--out", str(tmp_path / "cli"), "--json")
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    assert cli["run"] == str(tmp_path / "cli")
    assert _without_run(cli) == _without_run(json.loads(result.to_json()))


def test_a_cancelled_review_stops_resumable_and_resumes_to_the_same_findings(contract: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def stop_after_the_first_page(event: tilepilot.ProgressEvent) -> None:
        if event.kind == "update" and event.done >= 1:
            cancel.set()

    with pytest.raises(tilepilot.TilepilotError, match="cancelled by the caller"):
        tilepilot.review(contract, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "run",
                         progress=stop_after_the_first_page, cancel=cancel)
    finished = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()
                if '"run_finished"' in line]
    assert finished[-1]["status"] == "deadline" and not (tmp_path / "run" / "findings.json").exists()

    resumed = tilepilot.review(resume=tmp_path / "run")
    whole = tilepilot.review(contract, rules=CONTRACT_RULES, no_model=True, out=tmp_path / "whole")
    assert _without_run(json.loads(resumed.to_json())) == _without_run(json.loads(whole.to_json()))


def test_user_mistakes_raise_the_hierarchy_and_write_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "not.pdf"
    bad.write_text("hello")
    with pytest.raises(tilepilot.USER_ERRORS, match="not a PDF"):
        tilepilot.review(bad, no_model=True, out=tmp_path / "run")
    with pytest.raises(tilepilot.TilepilotError, match="mode"):
        tilepilot.review(bad, no_model=True, mode="sideways")
    assert not (tmp_path / "run").exists()


def test_review_on_the_tiny_server(contract: Path, tmp_path: Path, vllm_server) -> None:
    events: list[tilepilot.ProgressEvent] = []
    result = tilepilot.review(contract, rules=CONTRACT_RULES, base_url=vllm_server.base_url, pages="1-2",
                              out=tmp_path / "run", progress=events.append)
    assert result.usage.requests >= 1 and result.usage.prompt_tokens > 0
    assert ("no-personal-data", 2) in {(f.rule, f.page) for f in result.findings}
    assert result.note and "random" in result.note
    assert events[-1].kind == "end" and events[-1].done == 2


def test_rules_check_and_explain_match_the_cli(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    broken.write_text("---\nactions:\n  deny: 7\n---\nbody\n")
    result = tilepilot.rules.check([CONTRACT_RULES, broken])
    assert not result.ok and [f.ok for f in result.files] == [True, False]
    assert result.problems and all(p.startswith(f"{broken}:") for p in result.problems)

    proc = run_cli("rules", "check", CONTRACT_RULES, str(broken))
    assert proc.returncode == 5
    assert proc.stdout.splitlines() == [f"ok  {CONTRACT_RULES}  ({result.files[0].summary})", *result.problems]

    policy = tilepilot.rules.explain("desktop", rules=[CONTRACT_RULES])
    proc = run_cli("rules", "explain", "--agent", "desktop", "--rules", CONTRACT_RULES, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(policy.model_dump_json())


def test_listen_api_result_matches_the_cli_json(vllm_server, tmp_path: Path) -> None:
    from tests.gen.audio import AudioFactory

    speech = AudioFactory(tmp_path / "audio").speech("The meeting starts at nine and ends at noon.")
    events: list[tilepilot.ProgressEvent] = []
    result = tilepilot.listen(speech, task="summarize", base_url=vllm_server.base_url, out=tmp_path / "api",
                              progress=events.append)
    [heard] = result.inputs
    assert isinstance(heard, tilepilot.TranscriptResult) and heard.summary is not None and heard.answer is None
    assert Path(heard.outputs, "transcript.txt").is_file() and events[-1].kind == "end"
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "api" / "events.jsonl").read_text().splitlines()]
    assert "server_probe" in kinds  # the run received its client

    proc = run_cli("listen", str(speech), "--task", "summarize", "--json", "--out", str(tmp_path / "cli"),
                   env={"TILEPILOT_BASE_URL": vllm_server.base_url})
    assert proc.returncode == 0, proc.stderr
    cli, api = json.loads(proc.stdout), json.loads(result.to_json())
    assert list(cli) == list(api) == ["run", "duration_s", "clips", "text", "summary"]
    # The words are the random model's; the audio's cut and its token counts are exact.
    assert cli["duration_s"] == api["duration_s"] and [
        (c["start_s"], c["end_s"], c["prompt_tokens"]) for c in cli["clips"]] == [
        (c["start_s"], c["end_s"], c["prompt_tokens"]) for c in api["clips"]]
