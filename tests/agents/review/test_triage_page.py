"""`tilepilot review open RUN`: the triage page in real Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.agents.review.conftest import CONTRACT_RULES
from tests.conftest import REPO, tilepilot
from tests.requires import require_binary, require_module

require_binary("chromium")
require_module("playwright", "test")

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def reviewed_once(planted_16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triage") / "run"
    tilepilot("review", str(planted_16), "--rules", CONTRACT_RULES, "--no-model", "--out", str(out), check=True)
    return out


@pytest.fixture()
def run(reviewed_once: Path, tmp_path: Path) -> Path:
    """A fresh copy of the finished run for each test: the tests write decisions into it."""
    return Path(shutil.copytree(reviewed_once, tmp_path / "run"))


@pytest.fixture()
def served(run: Path):
    """The real CLI serving the run; yields the URL it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "tilepilot", "review", "open", str(run), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "token=" in url, proc.stderr.read() if proc.poll() is not None else url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture()
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _decisions(run: Path) -> dict[str, str | None]:
    report = json.loads((run / "findings.json").read_text())
    return {f["id"]: f.get("decision") for d in report["documents"] for f in d["findings"]}


def _rows(page) -> list[tuple[str, str]]:
    return [(row.get_attribute("data-id"), row.get_attribute("data-decision")) for row in page.query_selector_all("#list .row")]


def test_keyboard_accept_and_reject_persist(run: Path, served: str, browser) -> None:
    page = browser.new_page()
    page.goto(served)
    page.wait_for_selector("#list .row")
    ids = [i for i, _ in _rows(page)]
    assert len(ids) >= 3 and ids[0] in _decisions(run)
    page.keyboard.press("a")  # accept the first
    page.wait_for_selector(f"#list .row[data-id='{ids[0]}'][data-decision=accepted]")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")  # back to the second
    page.keyboard.press("r")
    page.wait_for_selector(f"#list .row[data-id='{ids[1]}'][data-decision=rejected]")
    on_disk = _decisions(run)
    assert on_disk[ids[0]] == "accepted" and on_disk[ids[1]] == "rejected"
    assert [d for i, d in on_disk.items() if i not in ids[:2]] == [None] * (len(on_disk) - 2)
    page.reload()
    page.wait_for_selector("#list .row")
    assert dict(_rows(page))[ids[0]] == "accepted" and dict(_rows(page))[ids[1]] == "rejected"
    # The filters narrow the list to the decided findings.
    page.select_option("#f-dec", "rejected")
    assert [i for i, _ in _rows(page)] == [ids[1]]


def test_correction_is_written_in_the_accept_format(run: Path, served: str, browser) -> None:
    from tilepilot.agents.review.decisions import load_findings

    page = browser.new_page()
    page.goto(served)
    page.wait_for_selector("#list .row")
    first = _rows(page)[0][0]
    page.select_option("#c-severity", "low")
    page.fill("#c-rationale", "A reviewer's better reason.")
    page.click("#correct")
    page.wait_for_selector(f"#list .row[data-id='{first}'][data-decision=corrected]")
    finding = next(f for d in load_findings(run).documents for f in d.findings if f.id == first)
    assert finding.decision == "corrected"
    assert finding.correction.model_dump() == {"severity": "low", "rationale": "A reviewer's better reason."}


def test_request_without_the_token_is_403(served: str) -> None:
    base = served.split("?")[0]
    for path in ("", "api/findings", "page/0/1.jpg"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=10)
        assert refused.value.code == 403
    request = urllib.request.Request(base + "api/decide?token=wrong", data=b'{"id": "x", "decision": "accepted"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    with urllib.request.urlopen(served, timeout=10) as ok:
        assert ok.status == 200


def test_two_browser_contexts_keep_both_decisions(run: Path, served: str, browser) -> None:
    tabs = [browser.new_context().new_page() for _ in range(2)]
    for tab in tabs:
        tab.goto(served)
        tab.wait_for_selector("#list .row")
    ids = [i for i, _ in _rows(tabs[0])]
    # Both pages loaded before either decided: each still holds the other's finding as undecided.
    tabs[1].keyboard.press("j")
    tabs[0].keyboard.press("a")
    tabs[1].keyboard.press("a")
    tabs[0].wait_for_selector(f"#list .row[data-id='{ids[0]}'][data-decision=accepted]")
    tabs[1].wait_for_selector(f"#list .row[data-id='{ids[1]}'][data-decision=accepted]")
    on_disk = _decisions(run)
    assert on_disk[ids[0]] == "accepted" and on_disk[ids[1]] == "accepted"


def test_resume_of_a_finished_run_keeps_the_decisions(run: Path) -> None:
    from tilepilot.agents.review.triage import decide

    ids = list(_decisions(run))
    decide(run, ids[0], "accepted", None)
    decide(run, ids[1], "corrected", {"quote": "the reviewer's quote"})
    before = (run / "findings.json").stat().st_mtime_ns
    proc = tilepilot("review", "--resume", str(run))
    assert proc.returncode == 0, proc.stderr
    assert (run / "findings.json").stat().st_mtime_ns != before  # the resumed run wrote its findings again
    after = json.loads((run / "findings.json").read_text())
    found = {f["id"]: f for d in after["documents"] for f in d["findings"]}
    assert found[ids[0]]["decision"] == "accepted"
    assert found[ids[1]]["decision"] == "corrected" and found[ids[1]]["correction"] == {"quote": "the reviewer's quote"}
