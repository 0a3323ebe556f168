"""A kill at any moment leaves either the old complete output or the new complete one."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tilepilot.agents.atomic import streamed_atomic, write_atomic

WRITER = """
import json, sys
from pathlib import Path
from tilepilot.agents.atomic import write_atomic
target = Path(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    n += 1
    doc = {"version": n, "findings": [{"page": i, "quote": "x" * 200} for i in range(8000)]}
    write_atomic(target, json.dumps(doc))
"""


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "findings.json"
    rng = random.Random(5)
    versions = []
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if target.exists():
            doc = json.loads(target.read_text())  # raises on a torn file
            assert len(doc["findings"]) == 8000
            versions.append(doc["version"])
    assert versions, "the writer never completed a file; lengthen the sleeps"
    # what a kill can leave behind is only hidden temp files, never a visible partial output
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == ["findings.json"]


def test_an_error_half_way_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path):
    target = tmp_path / "report.md"
    write_atomic(target, "old, complete\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with streamed_atomic(target) as out:
            out.write("new, half ")
            raise RuntimeError("disk full")  # as a failing merge would, after some pieces
    assert target.read_text() == "old, complete\n" and [p.name for p in tmp_path.iterdir()] == ["report.md"]
    with streamed_atomic(target) as out:
        for piece in ("new, ", "complete", "\n"):
            out.write(piece)
    assert target.read_text(encoding="utf-8") == "new, complete\n"
    write_atomic(target, b"\xc3\xa9 bytes as given\n")
    assert target.read_text(encoding="utf-8") == "é bytes as given\n" and len(list(tmp_path.iterdir())) == 1
