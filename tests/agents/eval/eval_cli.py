"""Run ``tilepilot eval`` as a user would (a child process, ``--json``) and read its results per system."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tilepilot


def eval_json(suite: str, out: Path, *models: str, small: bool = True, keep_runs: bool = False) -> dict[str, dict]:
    """``tilepilot eval SUITE --model M ... [--small] [--keep-runs] --json --out OUT``: system label -> its result object."""
    args = ["eval", suite, *[a for m in models for a in ("--model", m)], *(["--small"] if small else []),
            *(["--keep-runs"] if keep_runs else []), "--json", "--out", str(out)]
    proc = tilepilot(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["system"]: r for r in json.loads(proc.stdout)["results"]}


def oracle_run_fixture(suite: str, scope: str = "module", keep_runs: bool = False):
    """A fixture: the small suite run once for ``oracle`` and ``oracle:0.5``; gives (out dir, results)."""

    @pytest.fixture(scope=scope)
    def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
        out = tmp_path_factory.mktemp("eval") / "out"
        return out, eval_json(suite, out, "oracle", "oracle:0.5", keep_runs=keep_runs)

    return oracle_run
