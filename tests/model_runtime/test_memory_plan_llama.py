"""The memory plan against llama.cpp's own KV report, on the geometry twin (the 12B's attention geometry on a
small model, exported to GGUF): llama-server started with the plan's flags must allocate exactly the KV
cache the plan predicted, at four contexts and two slot counts. Each start takes a second or two."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tilepilot.model_runtime import gguf, memory_plan as mp
from tilepilot.model_runtime.llama_server import exported_dir
from tilepilot.model_runtime.server import free_port, serving_env
from tilepilot.model_runtime.tiny import default_checkpoint_dir
from tests.model_runtime.test_llama_gguf import _llama_build

pytestmark = pytest.mark.integration
KV_LINE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers")


@pytest.fixture(scope="module")
def twin_gguf() -> tuple[Path, Path]:
    build = _llama_build()
    checkpoint = default_checkpoint_dir(geometry="twin")
    if not (checkpoint / ".complete").is_file():
        subprocess.run(["python", "-m", "tilepilot.model_runtime.tiny", "--geometry", "twin"], env=serving_env(),
                       check=True, capture_output=True)
    out = exported_dir(checkpoint)
    if gguf.read_export(out) is None:
        gguf.export(checkpoint, out, "f16")
    return build / "bin" / "llama-server", out / "model.gguf"


def reported_kv(server: Path, model: Path, flags: list[str], log: Path) -> list[tuple[float, int, int]]:
    """Start llama-server, read its two KV cache lines (full, then sliding), stop it."""
    port = free_port(0)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", "2",
                                 "--no-webui", "-lv", "4", *flags], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            found = KV_LINE.findall(log.read_text(errors="replace"))
            if len(found) == 2:
                return [(float(mib), int(cells), int(layers)) for mib, cells, layers in found]
            time.sleep(0.2)
        raise AssertionError(f"llama-server reported no KV cache (exit {proc.poll()}): {log.read_text()[-800:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("parallel", [1, 2])
def test_llama_server_allocates_the_planned_kv_cache(twin_gguf, parallel, tmp_path):
    server, model = twin_gguf
    geometry = mp.geometry_of(default_checkpoint_dir(geometry="twin"))
    rows = []
    for context in (4096, 8192, 16384, 32768):
        plan = mp.plan(geometry, "llama.cpp", model="twin", weights_bytes=model.stat().st_size, memory_bytes=64 * mp.GiB,
                       parallel=parallel, context=context)
        full, sliding = reported_kv(server, model, plan.engine_flags, tmp_path / f"{context}-{parallel}.log")
        measured = (full[0] + sliding[0]) * mp.MiB
        predicted = plan.total_bytes - plan.weights_bytes - plan.overhead_bytes
        rows.append((context, predicted / mp.MiB, measured / mp.MiB, sliding[1]))
        assert (full[2], sliding[2]) == (2, 10)  # 2 full-attention layers, 10 sliding-window layers
        assert measured == predicted, (context, parallel, full, sliding)
    print(f"\n[plan vs llama-server, {parallel} slot(s)] context, predicted MiB, reported MiB, SWA cells: {rows}")
