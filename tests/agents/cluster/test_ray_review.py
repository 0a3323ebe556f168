"""``tilepilot review FOLDER --cluster auto``: a local Ray on loopback against the real tiny vLLM server.

One folder of small generated PDFs with planted rule hits is reviewed once by the single process
and once on Ray; every fault test compares its outcome with that one. The issue asks for 200
documents; on this 2-core box shared with the CPU vLLM server that takes too long for the test
run, so the tests use :data:`DOCUMENTS` and tests/bench/bench_cluster.py runs 200.

What "the same findings" can mean with the tiny random-weight model: its words depend on how
vLLM batches the requests in flight (measured: 2 of 24 documents got other model findings with 4
requests in flight than with 2, the same prompts token for token). So every test asserts exact
equality of the deterministic findings (the rule checks), of the work sent (every chunk of every
document, its pages and its prompt tokens) and of the document list, and that no finding repeats;
the model's own findings are compared for shape (every one on a page of its document), not words.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilepilot.agents.cluster.documents import ATTEMPTS_NAME, DOCS_DIR
from tilepilot.agents.runs import read_events
from tests.agents.killing import kill_when
from tests.agents.review.conftest import CONTRACT_RULES
from tests.conftest import REPO, tilepilot
from tests.gen.corpus import planted_folder

pytest.importorskip("ray", reason="the cluster extra (pip install '.[cluster]') is not installed")
pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCUMENTS = 3  # enough for two workers to share documents and a kill to land mid-folder
# 4 pages (dense, sparse, scan, table) at this budget make several chunks per document, so a kill can
# land between two chunks of one document
REVIEW_ARGS = ["--rules", CONTRACT_RULES, "--budget-tokens", "2600", "--concurrency", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_folder(tmp_path_factory.mktemp("cluster") / "in", DOCUMENTS, pages=4)


@pytest.fixture(scope="module")
def single(corpus: Path, tmp_path_factory: pytest.TempPathFactory, vllm_server) -> Path:
    """The single-process run of the corpus."""
    out = tmp_path_factory.mktemp("single") / "run"
    proc = tilepilot("review", str(corpus), *REVIEW_ARGS, "--out", str(out), "--json",
                     env={"TILEPILOT_BASE_URL": vllm_server.base_url})
    assert proc.returncode == 0, proc.stderr
    return out


def _by_path(run: Path) -> dict[str, list[dict]]:
    return {doc["path"]: doc["findings"] for doc in json.loads((run / "findings.json").read_text())["documents"]}


def _checks(run: Path) -> dict[str, list[dict]]:
    """The rule checks' findings per document (deterministic), in order."""
    return {path: [f for f in found if f["source"] == "check"] for path, found in _by_path(run).items()}


def _sent(run: Path) -> dict[str, list[tuple]]:
    """Per document: every chunk request (chunk, pages, prompt tokens), sorted; summaries depend on model words."""
    sent: dict[str, list[tuple]] = {}
    logs = [run / "events.jsonl", *sorted((run / DOCS_DIR).glob("*/events.jsonl"))]
    for log in logs:
        path = None
        for event in read_events(log):
            if event["kind"] == "planned":
                path = event["path"]
            elif event["kind"] == "request" and event["chunk"] != "summary":
                sent.setdefault(path, []).append((event["chunk"], tuple(event["pages"]), event["prompt_tokens"]))
    return {path: sorted(requests) for path, requests in sent.items()}


def _assert_same_outcome(run: Path, single: Path, resent_allowed: bool = False) -> None:
    assert _checks(run) == _checks(single)
    sent, expected = _sent(run), _sent(single)
    if resent_allowed:  # a chunk in flight at a kill goes again: compare which chunks went, once or more
        sent, expected = ({p: sorted(set(r)) for p, r in d.items()} for d in (sent, expected))
    assert sent == expected
    pages = {doc["path"]: doc["page_count"] for doc in json.loads((run / "findings.json").read_text())["documents"]}
    for path, found in _by_path(run).items():
        assert len({f["id"] for f in found}) == len(found), f"duplicate findings in {path}"
        assert all(f["page"] is None or 1 <= f["page"] <= pages[path] for f in found)


def _resent(run: Path) -> set[tuple[str, str]]:
    """(document, chunk) pairs sent again by a later attempt after an earlier one had finished them."""
    resent = set()
    for events in (run / DOCS_DIR).glob("*/events.jsonl"):
        finished: set[str] = set()
        finished_before_resume: set[str] = set()
        for event in read_events(events):
            if event["kind"] == "run_resumed":
                finished_before_resume |= finished
            elif event["kind"] == "chunk_done":
                finished.add(event["chunk"])
            elif event["kind"] == "request" and event["chunk"] in finished_before_resume:
                resent.add((events.parent.name, event["chunk"]))
    return resent


def test_cluster_findings_equal_single_process(corpus: Path, single: Path, tmp_path: Path, server_env: dict) -> None:
    out = tmp_path / "run"
    proc = tilepilot("review", str(corpus), *REVIEW_ARGS, "--cluster", "auto:2", "--out", str(out), "--json", env=server_env)
    assert proc.returncode == 0, proc.stderr
    machine = json.loads(proc.stdout)
    assert machine["documents"] == DOCUMENTS and machine["failed_documents"] == 0
    clustered = _by_path(out)
    assert list(clustered) == list(_by_path(single))  # input order, as the single process writes them
    _assert_same_outcome(out, single)
    same_words = sum(clustered[p] == found for p, found in _by_path(single).items())
    print(f"\n{same_words} of {DOCUMENTS} documents: every finding equal, model words included")
    planted = {("no-personal-data", 1), ("no-unlimited-liability", 2)}
    hits = {(f["rule"], f["page"]) for found in clustered.values() for f in found if f["source"] == "check"}
    assert planted <= hits
    events = [e["kind"] for e in read_events(out / "events.jsonl")]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert events.count("document_done") == DOCUMENTS
    usage = json.loads((out / "findings.json").read_text())["usage"]
    assert usage["requests"] == sum(1 for _ in (out / DOCS_DIR).glob("*/events.jsonl") for e in read_events(_, "request"))
    report = (out / "report.md").read_text()
    assert all(f"## {path}" in report for path in clustered)
    html = (out / "report.html").read_text()
    assert html.count("<tr><td><a href='docs/") == DOCUMENTS


def _worker_pids(run: Path) -> dict[str, list[int]]:
    attempts: dict[str, list[int]] = {}
    for log in (run / DOCS_DIR).glob(f"*.{ATTEMPTS_NAME}") if (run / DOCS_DIR).is_dir() else []:
        attempts[log.name.split(".")[0]] = [e["pid"] for e in read_events(log)]
    return attempts


def test_worker_sigkilled_mid_run(corpus: Path, single: Path, tmp_path: Path, server_env: dict) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tilepilot", "review", str(corpus), *REVIEW_ARGS, "--cluster", "auto:2",
                             "--out", str(out), "--json"], cwd=REPO, env={**os.environ, **server_env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    victim = None
    deadline = time.monotonic() + 600
    # kill the worker of a document that has a finished chunk but no findings yet: mid-document
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        for key, pids in _worker_pids(out).items():
            events = out / DOCS_DIR / key / "events.jsonl"
            if not (out / DOCS_DIR / key / "findings.json").exists() and any(True for _ in read_events(events, "chunk_done")):
                victim = (key, pids[-1])
                os.kill(pids[-1], signal.SIGKILL)
                break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=900)
    assert victim is not None, f"no worker was caught mid-document: {stderr.decode()[-2000:]}"
    assert proc.returncode == 0, stderr.decode()
    assert len(_worker_pids(out)[victim[0]]) >= 2  # Ray ran the killed task again
    _assert_same_outcome(out, single, resent_allowed=True)
    assert not _resent(out)


def test_resume_after_driver_killed(corpus: Path, single: Path, tmp_path: Path, server_env: dict) -> None:
    out = tmp_path / "run"
    args = ["review", str(corpus), *REVIEW_ARGS, "--cluster", "auto:2", "--out", str(out), "--json"]
    _kill_driver_when(args, out, 1, server_env)  # of DOCUMENTS: the others are left to the resume
    finished = {e["key"] for e in read_events(out / "events.jsonl", "document_done")}
    requests_before = {key: len(list(read_events(out / DOCS_DIR / key / "events.jsonl", "request"))) for key in finished}
    resumed = tilepilot("review", "--resume", str(out), "--json", env=server_env)
    assert resumed.returncode == 0, resumed.stderr
    plan = list(read_events(out / "events.jsonl", "cluster_plan"))[-1]
    assert plan["finished_before"] >= len(finished)
    for key in finished:  # nothing of a finished document went out again
        assert len(list(read_events(out / DOCS_DIR / key / "events.jsonl", "request"))) == requests_before[key]
        assert len(_worker_pids(out)[key]) == 1
    assert not _resent(out)
    _assert_same_outcome(out, single, resent_allowed=True)


def _kill_driver_when(args: list[str], run: Path, documents: int, env: dict[str, str]) -> None:
    """SIGKILL the driver once ``documents`` are done; then wait for its Ray workers to die, and end the rest."""
    group = kill_when(args, run, "document_done", documents, env, timeout_s=600, new_session=True)
    try:
        _wait_for_workers(run)  # GCS and the raylet die with the driver, and the workers with the raylet
    finally:
        try:  # Ray's dashboard and runtime-env agents can outlive a SIGKILLed driver: end them (its group, ours)
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for_workers(run: Path, timeout_s: float = 60) -> None:
    """Wait until no worker that attempted a document of ``run`` is alive."""
    deadline = time.monotonic() + timeout_s
    alive: list[int] = []
    while time.monotonic() < deadline:
        alive = [pid for pids in _worker_pids(run).values() for pid in pids if Path(f"/proc/{pid}").exists()]
        if not alive:
            return
        time.sleep(0.2)
    raise AssertionError(f"Ray workers {alive} still run {timeout_s} s after their driver was killed")


def test_corrupt_pdf_fails_alone(tmp_path: Path) -> None:
    folder = planted_folder(tmp_path / "in", 4, pages=2, corrupt=1)
    out = tmp_path / "run"
    proc = tilepilot("review", str(folder), "--rules", CONTRACT_RULES, "--no-model", "--cluster", "auto:2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "findings.json").read_text())
    assert len(report["documents"]) == 4
    (failed,) = report["failed_documents"]
    assert failed["path"].endswith("corrupt-00.pdf")
    assert "\n" not in failed["reason"] and "not a PDF" in failed["reason"]
    (event,) = read_events(out / "events.jsonl", "document_failed")
    assert event["reason"] == failed["reason"]
    assert failed["reason"] in (out / "report.md").read_text()
    assert "Traceback" not in proc.stderr


def test_bad_cluster_values_are_one_line(tmp_path: Path) -> None:
    folder = planted_folder(tmp_path / "in", 1, pages=1)
    for value, words in (("bogus", "--cluster must be auto, auto:N or ray://HOST:PORT"), ("auto:0", "positive number")):
        out = tmp_path / f"run-{value}"
        proc = tilepilot("review", str(folder), "--no-model", "--cluster", value, "--out", str(out))
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()
    single = tmp_path / "single"
    assert tilepilot("review", str(folder), "--no-model", "--out", str(single)).returncode == 0
    proc = tilepilot("review", "--resume", str(single), "--cluster", "auto")
    assert proc.returncode == 2 and "not started with --cluster" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
