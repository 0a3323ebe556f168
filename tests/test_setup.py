"""The setup that README's two commands run: quiet, and one environment per checkout.

Each test copies this checkout's files to a fresh folder (as a clone would be) and sources
.ci/setup-env.sh there with the shared dependency cache, which the session already built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.requires import skip_missing

pytestmark = pytest.mark.slow


def _checkout(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _source_setup(checkout: Path, then: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VENV", "VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(["bash", "-c", f"source .ci/setup-env.sh && {then}"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600)


def test_fresh_checkout_setup_prints_steps_only_and_no_warnings(tmp_path):
    checkout = _checkout(tmp_path / "clone")
    proc = _source_setup(checkout, "tilepilot --version")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert lines[-1].startswith("tilepilot "), lines
    assert all(line.startswith("[setup] ") for line in lines[:-1]), lines
    assert not [line for line in lines if "warning" in line.lower()], lines


def test_each_checkout_runs_its_own_code_and_survives_another_being_deleted(tmp_path):
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    where = "python -c 'import tilepilot.agents as a; print(a.__file__)' && command -v tilepilot"
    for checkout in (first, second):
        proc = _source_setup(checkout, where)
        assert proc.returncode == 0, proc.stderr[-2000:]
        module, command = proc.stdout.split()[-2:]
        assert module.startswith(str(checkout)) and command.startswith(str(checkout)), proc.stdout
    shutil.rmtree(second)
    proc = _source_setup(first, "tilepilot --version")
    assert proc.returncode == 0 and proc.stdout.startswith("tilepilot "), proc.stderr[-2000:]


def test_quick_start_demo_output_has_no_warnings(tmp_path, server_env):
    # The README's first command, in a fresh checkout, against the session's server.
    checkout = _checkout(tmp_path / "clone")
    env = {**{k: v for k, v in os.environ.items() if k not in ("VENV", "VIRTUAL_ENV", "PYTHONPATH")}, **server_env}
    proc = subprocess.run(["bash", "examples/demo.sh"], cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert not [line for line in lines if "warning" in line.lower()], lines
    report = Path(proc.stdout.splitlines()[-1])
    assert report.name == "report.html" and (checkout / report).is_file(), proc.stdout
    steps = [line for line in lines if line.startswith(("[setup] ", "[demo] "))]
    assert len(steps) >= 3, lines


def test_static_analysers_resolve_tilepilot_and_its_dependencies_without_running_python():
    """Pyright reads .venv as pyproject.toml's [tool.pyright] says, without running its .pth code or import hooks."""
    pyright = shutil.which("pyright")
    if pyright is None:
        skip_missing("pyright", "source .ci/setup-env.sh installs it")
    # Between them these import tilepilot's three layers, its root package and pydantic, PIL, langgraph, httpx, numpy.
    files = ["agents/review/mapper.py", "agents/api/operations.py", "tools/pdf_worker.py", "model_runtime/client.py"]
    proc = subprocess.run([pyright, "--outputjson", *files], cwd=REPO, capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    assert report["summary"]["filesAnalyzed"] == len(files), report["summary"]
    unresolved = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}" for d in report["generalDiagnostics"]
                  if d.get("rule") in ("reportMissingImports", "reportMissingModuleSource")]
    assert unresolved == [], "\n".join(unresolved)
