"""Fixtures for the desktop agent tests: Xvfb + the Tk test app, its rule file and its labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.x11.tk import Rect, TkApp

REPO = Path(__file__).resolve().parents[3]


def pad(rect: Rect, px: int) -> tuple[int, int, int, int]:
    return rect.x - px, rect.y - px, rect.width + 2 * px, rect.height + 2 * px


def write_rules(path: Path, denied: tuple[int, int, int, int], extra: str = "") -> Path:
    """A rule file: the rectangle ``denied`` (the Delete button, padded) and any 'Delete' label are off limits."""
    x, y, w, h = denied
    path.write_text(
        "---\napplies_to: [desktop]\nactions:\n"
        f"  deny_regions:\n    - {{x: {x}, y: {y}, w: {w}, h: {h}, name: \"delete button\"}}\n"
        "  deny_text:\n    - '/\\bdelete\\b/i'\n" + extra + "---\nNever delete anything.\n",
        encoding="utf-8",
    )
    return path


def app_texts(app: TkApp) -> list[dict]:
    """The app's visible labels with their screen boxes (what an accessibility tree would give)."""
    assert app.ready is not None
    labels = {".ok": "OK", ".delete": "Delete", ".label": app.ready.label}
    out = []
    for widget, text in labels.items():
        r = app.widget(widget)
        out.append({"text": text, "bbox": [r.x, r.y, r.x + r.width - 1, r.y + r.height - 1]})
    return out


def drive(spec: dict, tmp_path: Path, timeout: float = 120) -> dict:
    """Run tests/agents/desktop/drive.py with ``spec``; returns its RunResult JSON."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.agents.desktop.drive", str(spec_path)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, "DISPLAY": spec["display"]},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture()
def delete_rules(tk_app: TkApp, tmp_path: Path) -> Path:  # noqa: F811
    return write_rules(tmp_path / "rules.md", pad(tk_app.widget(".delete"), 6))


@pytest.fixture()
def screen_only_env(server_env: dict) -> dict:
    """``server_env`` through a proxy that offers the tiny model screen actions only (no done/fail), so
    a real-model run reaches its step limit (tests/agents/desktop/screen_only_proxy.py)."""
    from tests.agents.desktop.screen_only_proxy import screen_only_proxy

    with screen_only_proxy(server_env["TILEPILOT_BASE_URL"]) as url:
        yield {**server_env, "TILEPILOT_BASE_URL": url}
