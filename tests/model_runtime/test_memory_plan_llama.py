"""The memory plan against llama.cpp itself, on the geometry twin (the 12B's attention geometry on a small
model, exported to GGUF): llama-server started with the plan's flags must allocate exactly the KV cache the
plan predicted, at four contexts and two slot counts, and a compute buffer within 5% of the plan's; its
VmHWM after an image and a request that fills the context must be within 10% of the plan's total. The
12B's compute buffer is checked against llama.cpp's own estimator on a shape-only GGUF."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tilepilot.model_runtime import gguf, memory_plan as mp
from tilepilot.model_runtime.llama_server import exported_dir
from tilepilot.model_runtime.server import free_port, serving_env
from tilepilot.model_runtime.tiny import default_checkpoint_dir
from tests.model_runtime.shape_gguf import write_shape_gguf
from tests.requires import require_llama_build
from tests.serving import wait_for_models

pytestmark = pytest.mark.integration
KV_LINE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells,\s+(\d+) layers")
COMPUTE_LINE = re.compile(r"sched_reserve: +CPU compute buffer size =\s+([\d.]+) MiB")


@pytest.fixture(scope="module")
def twin_gguf() -> tuple[Path, Path]:
    build = require_llama_build()
    checkpoint = default_checkpoint_dir(geometry="twin")
    if not (checkpoint / ".complete").is_file():
        subprocess.run(["python", "-m", "tilepilot.model_runtime.tiny", "--geometry", "twin"], env=serving_env(),
                       check=True, capture_output=True)
    out = exported_dir(checkpoint)
    if gguf.read_export(out) is None:
        gguf.export(checkpoint, out, "f16")
    return build / "bin" / "llama-server", out / "model.gguf"


def reported_kv(server: Path, model: Path, flags: list[str], log: Path) -> tuple[list[tuple[float, int, int]], float]:
    """Start llama-server, read its two KV cache lines (full, then sliding) and its text model's compute
    buffer (MiB), stop it."""
    port = free_port(0)
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", "2",
                                 "--no-webui", "-lv", "4", *flags], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text(errors="replace")
            found, compute = KV_LINE.findall(text), COMPUTE_LINE.search(text)
            if len(found) == 2 and compute:
                return [(float(mib), int(cells), int(layers)) for mib, cells, layers in found], float(compute.group(1))
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
        (full, sliding), compute = reported_kv(server, model, plan.engine_flags, tmp_path / f"{context}-{parallel}.log")
        measured = (full[0] + sliding[0]) * mp.MiB
        predicted = plan.total_bytes - plan.weights_bytes - plan.overhead_bytes
        rows.append((context, predicted / mp.MiB, measured / mp.MiB, sliding[1], plan.compute_bytes / mp.MiB, compute))
        assert (full[2], sliding[2]) == (2, 10)  # 2 full-attention layers, 10 sliding-window layers
        assert measured == predicted, (context, parallel, full, sliding)
        assert abs(plan.compute_bytes / mp.MiB / compute - 1) < 0.05, (context, parallel, plan.compute_bytes, compute)
    print(f"\n[plan vs llama-server, {parallel} slot(s)] context, KV predicted MiB, KV reported MiB, SWA cells, "
          f"compute predicted MiB, compute reported MiB: {rows}")


def test_the_12b_compute_buffer_as_llama_cpps_own_estimator_sizes_it(twin_gguf, tmp_path):
    """llama-fit-params on a GGUF with the 12B's shapes and no weights: its compute figure is the plan's within 5%,
    and its context figure (KV cache and output buffer) is the plan's KV cache to the MiB."""
    server, model = twin_gguf
    build = server.parent.parent
    shape = write_shape_gguf(model, mp.GEMMA_4_12B_GEOMETRY, tmp_path / "12b-shape.gguf", build / "llama.cpp")
    assert shape.stat().st_size > 20 * mp.GiB and shape.stat().st_blocks * 512 < 64 * mp.MiB  # a hole, not weights
    rows = []
    for context in (4096, 32768, 131072):
        plan = mp.plan(mp.GEMMA_4_12B_GEOMETRY, "llama.cpp", model="12b", weights_bytes=0, memory_bytes=64 * mp.GiB,
                       context=context)
        proc = subprocess.run([str(build / "bin" / "llama-fit-params"), "-m", str(shape), *plan.engine_flags[:2],
                               "-b", "2048", "-ub", "2048", "--fit-print", "on"], capture_output=True, text=True, timeout=120)
        _, _, context_mib, compute_mib = proc.stdout.split()
        kv = plan.total_bytes - plan.weights_bytes - plan.overhead_bytes
        rows.append((context, kv / mp.MiB, int(context_mib), plan.compute_bytes / mp.MiB, int(compute_mib)))
        assert int(context_mib) == round(kv / mp.MiB), (context, proc.stdout)
        assert abs(plan.compute_bytes / mp.MiB / int(compute_mib) - 1) < 0.05, (context, proc.stdout)
    print(f"\n[12B: plan vs llama-fit-params] context, KV plan MiB, fit context MiB, compute plan MiB, fit compute MiB: {rows}")


def test_server_vmhwm_after_an_image_and_a_full_context_is_the_plans_total(twin_gguf, tmp_path):
    server, model = twin_gguf
    context = 4096
    weights = model.stat().st_size + (model.parent / "mmproj.gguf").stat().st_size
    plan = mp.plan(mp.geometry_of(default_checkpoint_dir(geometry="twin")), "llama.cpp", model="twin",
                   weights_bytes=weights, memory_bytes=64 * mp.GiB, context=context)
    port = free_port(0)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(server), "-m", str(model), "--mmproj", str(model.parent / "mmproj.gguf"),
                                 "--host", "127.0.0.1", "--port", str(port), "-t", "2", "--no-webui",
                                 "--chat-template", "gemma", "--no-jinja", *plan.engine_flags], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_models(proc, url, log, "llama-server (twin)", limit_s=120)
        image = io.BytesIO()
        Image.new("RGB", (896, 896), (200, 30, 30)).save(image, "JPEG")
        uri = "data:image/jpeg;base64," + base64.b64encode(image.getvalue()).decode()
        seen = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={"max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": "what is it"}]}]})
        assert seen.status_code == 200, seen.text
        words = httpx.post(f"{url}/tokenize", json={"content": "the quick brown fox jumps over the lazy dog " * (context // 9)})
        filled = httpx.post(f"{url}/completion", timeout=900, json={
            "prompt": words.json()["tokens"][: context - 16], "n_predict": 1, "cache_prompt": False})
        assert filled.status_code == 200 and filled.json()["tokens_evaluated"] >= context - 16, filled.text[:300]
        hwm = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1)) * 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\n[twin at {context}] plan total {plan.total_bytes / mp.MiB:.0f} MiB, llama-server VmHWM {hwm / mp.MiB:.0f} MiB, "
          f"ratio {hwm / plan.total_bytes:.3f}")
    assert abs(hwm / plan.total_bytes - 1) < 0.10
