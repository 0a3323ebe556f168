"""``tilepilot eval review``: the reference answerer scores 1.0 through the real review path, oracle:0.5
about half, the tiny model is the floor; a cap on a perfect model shows up in the score."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from tilepilot.agents.eval.rigs import oracle as oracle_module
from tilepilot.agents.eval.core import SuiteResult, SystemSpec, run_suite
from tilepilot.agents.eval.dataset import Label
from tilepilot.agents.eval.report import metrics_table
from tilepilot.agents.eval.review_suite import match, score
from tilepilot.agents.review.findings import Finding
from tests.conftest import tilepilot


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    proc = tilepilot("eval", "review", "--model", "oracle", "--model", "oracle:0.5", "--small", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, {r["system"]: r for r in json.loads(proc.stdout)["results"]}


def test_oracle_scores_one_on_every_rule_and_page_kind(oracle_run):
    _, results = oracle_run
    metrics = results["oracle"]["metrics"]
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (1.0, 1.0, 1.0), metrics
    assert metrics["oracle_unidentified"] == 0 and metrics["failed_pages"] == 0
    assert metrics["labels"] >= 25
    breakdown = results["oracle"]["breakdown"]
    kinds = {g for g in breakdown if g.startswith("kind=")}
    # image-only, small print, table, rotated, two columns, cross-page definition, missing clause
    assert {"kind=scan", "kind=small", "kind=table", "kind=rotated", "kind=columns", "kind=late", "kind=document"} <= kinds
    rules = {g for g in breakdown if g.startswith("rule=")}
    assert {f"rule=pii-{k}" for k in ("email", "phone", "iban", "card", "ssn")} <= rules
    for group, values in breakdown.items():
        assert (values["precision"], values["recall"]) == (1.0, 1.0), group
    assert breakdown["kind=scan"]["model_recall"] == 1.0  # only the model can read a scan
    assert breakdown["kind=word"]["recall"] == 1.0  # the Word documents, through the LibreOffice conversion
    # boxes: the text layer's on rotated pages (turned with the page), the model's own on scans
    assert metrics["boxes_iou50"] == 1.0 and breakdown["kind=rotated"]["boxes_iou50"] == 1.0
    assert breakdown["kind=scan"]["quotes_verified"] == 0.0  # inherent: a scan has no text layer to check a quote on
    assert metrics["prompt_tokens_per_page"] > 0 and metrics["pages_per_second"] > 0


def test_half_oracle_scores_about_half_and_its_misses_are_drawn(oracle_run):
    out, results = oracle_run
    metrics = results["oracle:0.5"]["metrics"]
    assert 0.3 <= metrics["f1"] <= 0.7, metrics
    # Only 7 labels of the small suite are the model's alone (right or wrong by a hash of each case): 2..5 of them.
    assert 0.2 <= metrics["model_recall"] <= 0.8, metrics
    assert results["oracle:0.5"]["misses"] > 0 and results["oracle"]["misses"] == 0
    html = (out / "report.html").read_text()
    assert "<rect" in html and "missed: expected" in html and "false positive" in html
    stored = [SuiteResult.model_validate(r) for r in json.loads((out / "results.json").read_text())]
    console = Console(record=True, width=120)
    console.print(metrics_table(stored))
    text = console.export_text()
    assert "oracle:0.5" in text and "1.000" in text
    for miss in stored[1].misses:
        if miss.image:
            assert (out / miss.image).is_file()


def test_a_cap_on_findings_per_chunk_is_a_measured_ceiling(tmp_path, monkeypatch):
    capped = oracle_module.oracle_profile().model_copy(update={"max_findings_per_chunk": 1})
    monkeypatch.setattr(oracle_module, "oracle_profile", lambda *convention: capped)
    [result] = run_suite("review", [SystemSpec(label="oracle", model="oracle")], tmp_path, small=True)
    assert result.metrics["precision"] == 1.0 and result.metrics["model_recall"] < 1.0, result.metrics


def _finding(rule: str, page: int | None, source: str = "model") -> Finding:
    return Finding(id=f"{rule}{page}{source}", rule=rule, severity="high", page=page, quote="q", rationale="r", source=source)


def test_matching_is_one_to_one_and_page_null_labels_match_any_page():
    labels = [Label(document="a.pdf", rule="r", page=2), Label(document="a.pdf", rule="gdpr", page=None)]
    pairs = match(labels, [_finding("r", 2), _finding("r", 2, "check"), _finding("gdpr", 7), _finding("x", 1)])
    assert [(p.label is not None, p.finding is not None) for p in pairs] == [(True, True), (True, True), (False, True), (False, True)]
    from tilepilot.agents.eval.dataset import Dataset

    data = Dataset(root=".", rules="rules.md", documents={"a.pdf": 9}, labels=labels)
    result = score(data, {"a.pdf": [_finding("r", 3), _finding("gdpr", 4)]})
    assert result.metrics["recall"] == 0.5 and result.metrics["precision"] == 0.5
    assert result.breakdown["rule=r"]["recall"] == 0.0 and result.breakdown["rule=gdpr"]["recall"] == 1.0


@pytest.mark.integration
def test_tiny_model_review_score_is_the_floor(vllm_server, tmp_path):
    """The real CLI, a table (not --json), the URL paired with the one non-oracle model."""
    out = tmp_path / "out"
    proc = tilepilot("eval", "review", "--small", "--model", "oracle", "--model", "tiny", "--base-url", vllm_server.base_url,
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "f1" in proc.stdout and "model_recall" in proc.stdout  # the table
    results = {r["system"]: SuiteResult.model_validate(r) for r in json.loads((out / "results.json").read_text())}
    metrics = results[f"tiny@{vllm_server.base_url}"].metrics
    print("\n[eval review tiny small]", json.dumps({k: round(v, 3) for k, v in metrics.items()}))
    assert metrics["labels"] >= 25 and "oracle_unidentified" not in metrics
    # The floor is what the deterministic checks find whatever the model says: some labels (recall > 0),
    # never the ones only a model can find (f1 below the oracle's 1.0).
    assert metrics["recall"] > 0.0 and metrics["f1"] < 1.0, metrics
    assert metrics["model_recall"] < 0.2, metrics
    assert results["oracle"].metrics["f1"] == 1.0
