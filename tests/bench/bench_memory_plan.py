"""The memory plan against vLLM itself, on the geometry twin (the 12B's attention on a small model).

    python -m tests.bench.bench_memory_plan [--contexts 4096 8192 16384 32768]

For each context the plan predicts the KV pool one sequence needs; vLLM is started with exactly that
pool (``--kv-cache-memory-bytes``) and the plan's flags, and its own report ("Maximum concurrency for
N tokens per request: X") gives the figure vLLM computes (pool / X). Then one request fills the
context and the server's VmHWM (its three processes summed) is set against the plan's total. A table
is printed; nothing is asserted (tests/model_runtime/test_memory_plan.py holds the arithmetic).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tilepilot.agents.backend import ensure_tiny_checkpoint
from tilepilot.model_runtime import memory_plan as mp
from tilepilot.model_runtime.profiles import tiny_profile
from tilepilot.model_runtime.server import free_port, serve_command, serving_env
from tilepilot.model_runtime.tiny import default_checkpoint_dir
from tests.serving import wait_for_models

CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")


def tree_hwm_bytes(pid: int) -> int:
    """VmHWM of a process and its descendants, summed (vLLM runs an API server, an engine core and a worker)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) * 1024
        todo += [int(c) for c in children]
    return total


def measure(checkpoint: Path, context: int) -> dict:
    geometry = mp.geometry_of(checkpoint)
    weights = mp.weights_bytes_of(checkpoint, None, "bf16")
    plan = mp.plan(geometry, "vllm", model="twin", weights_bytes=weights, memory_bytes=64 * mp.GiB, context=context)
    kv_need = plan.total_bytes - plan.weights_bytes - plan.overhead_bytes
    profile = tiny_profile(checkpoint).model_copy(update={"max_model_len": context, "kv_cache_bytes": kv_need,
                                                          "max_num_seqs": 1, "name": "twin", "served_name": "twin"})
    port = free_port(0)
    cmd = serve_command(profile, "127.0.0.1", port) + ["--max-num-batched-tokens", str(mp.VLLM_MAX_BATCHED_TOKENS)]
    log = Path(tempfile.mkdtemp(prefix="twin-")) / "vllm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=serving_env())
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_models(proc, url, log, "vLLM (twin)", limit_s=600)
        match = CONCURRENCY.search(log.read_text(errors="replace"))
        vllm_need = int(kv_need / float(match.group(2))) if match else None
        words = "the quick brown fox jumps over the lazy dog " * (context // 12)
        started = time.monotonic()
        r = httpx.post(f"{url}/v1/completions", timeout=900, json={
            "model": "twin", "prompt": words, "max_tokens": 1, "temperature": 0, "truncate_prompt_tokens": context - 8})
        prompt_tokens = r.json().get("usage", {}).get("prompt_tokens") if r.status_code == 200 else f"HTTP {r.status_code}"
        return {"context": context, "plan_kv": kv_need, "vllm_kv": vllm_need, "prompt_tokens": prompt_tokens,
                "prefill_s": round(time.monotonic() - started, 1), "plan_total": plan.total_bytes,
                "hwm": tree_hwm_bytes(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    args = parser.parse_args()
    checkpoint = default_checkpoint_dir(geometry="twin")
    if not (checkpoint / ".complete").is_file():
        subprocess.run(["python", "-m", "tilepilot.model_runtime.tiny", "--geometry", "twin"], env=serving_env(), check=True)
    ensure_tiny_checkpoint()
    rows = [measure(checkpoint, c) for c in args.contexts]
    print(json.dumps(rows))
    print(f"\n| context | plan KV (MiB) | vLLM's own KV figure (MiB) | ratio | prompt tokens | plan total (GiB) | "
          "server VmHWM (GiB) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        vllm = f"{r['vllm_kv'] / mp.MiB:.1f}" if r["vllm_kv"] else "not reported"
        ratio = f"{r['vllm_kv'] / r['plan_kv']:.3f}" if r["vllm_kv"] else "-"
        print(f"| {r['context']} | {r['plan_kv'] / mp.MiB:.1f} | {vllm} | {ratio} | {r['prompt_tokens']} | "
              f"{r['plan_total'] / mp.GiB:.2f} | {r['hwm'] / mp.GiB:.2f} | {r['hwm'] / r['plan_total']:.2f} |")


if __name__ == "__main__":
    main()
