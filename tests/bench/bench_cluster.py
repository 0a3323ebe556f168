"""Cluster review benchmark (``tilepilot review --cluster``): prints tables, asserts nothing.

    python -m tests.bench.bench_cluster [--base-url URL] [--documents 200] [--workers 2] [--hwm-sizes 100,1000]

1. Ray's start-up cost: ``ray.init`` of a local Ray on loopback as ``--cluster auto`` starts it,
   the first task's round trip (a worker process starting), and ``ray.shutdown``.
2. Documents per second on one folder of small planted PDFs (2 pages each): the single process
   against ``--cluster auto:W``, side by side, both through the real CLI, with the model when
   ``--base-url`` is given (else ``--no-model``), and whether both found the same findings.
3. The driver's VmHWM (its own peak RSS, read at exit; Ray's workers are other processes) of
   ``--cluster auto:W --no-model`` at each of ``--hwm-sizes`` documents, with the ratio to the
   smallest (goal: <= 1.25x: results stream to disk, the driver holds no findings).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.bench_review import _CLI, table  # noqa: E402  (the CLI in a child that writes its VmHWM at exit)
from tests.gen.corpus import planted_folder  # noqa: E402

RULES = str(REPO / "rules" / "examples" / "contract.md")

_RAY_STARTUP = """
import json, os, sys, time
sys.path.insert(0, %r)
from tilepilot.agents.cluster.ray_review import parse_cluster, start_ray
t0 = time.monotonic()
ray, workers, init_s = start_ray(parse_cluster("auto:" + sys.argv[1]))
t1 = time.monotonic()
def worker_pid():
    return os.getpid()
ray.get(ray.remote(num_cpus=1)(worker_pid).remote())
t2 = time.monotonic()
ray.shutdown()
print(json.dumps({"init_s": init_s, "first_task_s": round(t2 - t1, 3), "shutdown_s": round(time.monotonic() - t2, 3)}))
""" % str(REPO)


def _cli(args: list[str], env: dict[str, str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run the CLI; returns (wall seconds, VmHWM KiB, the process)."""
    with tempfile.NamedTemporaryFile(suffix=".hwm") as hwm:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _CLI, hwm.name, *args], capture_output=True, text=True,
                              env={**os.environ, **env}, cwd=REPO)
        wall = time.monotonic() - started
        peak = int(Path(hwm.name).read_text() or 0)
    if proc.returncode != 0:
        raise SystemExit(f"tilepilot {' '.join(args[:3])}... failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return wall, peak, proc


def _agreement(one: Path, other: Path) -> str:
    """Whether the rule checks' findings match exactly, and in how many documents every finding matches.

    The tiny random-weight model's words depend on how vLLM batches what is in flight, so its own
    findings can differ between runs that send the same prompts with other concurrency.
    """
    def load(run: Path) -> dict[str, list[dict]]:
        return {d["path"]: d["findings"] for d in json.loads((run / "findings.json").read_text())["documents"]}

    a, b = load(one), load(other)
    checks = all([f for f in a[p] if f["source"] == "check"] == [f for f in b.get(p, []) if f["source"] == "check"] for p in a)
    return f"checks {'equal' if checks and a.keys() == b.keys() else 'DIFFER'}; all findings equal in {sum(a[p] == b.get(p) for p in a)}/{len(a)} documents"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running tiny (or real) server; without it the model part is --no-model")
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hwm-sizes", default="100,1000")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: startup,throughput,hwm")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))

    if "startup" not in skip:
        rows = []
        for attempt in (1, 2):
            proc = subprocess.run([sys.executable, "-c", _RAY_STARTUP, str(args.workers)], capture_output=True, text=True,
                                  env={**os.environ, **env})
            if proc.returncode != 0:
                raise SystemExit(f"starting Ray failed: {proc.stderr[-1500:]}")
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append([attempt, figures["init_s"], figures["first_task_s"], figures["shutdown_s"]])
        table(f"Ray start-up cost (local Ray on loopback, {args.workers} worker CPUs)",
              ["run", "ray.init s", "first task s", "ray.shutdown s"], rows)

    if "throughput" not in skip:
        folder = planted_folder(work / f"in-{args.documents}", args.documents, pages=2)
        model = ["--base-url", args.base_url] if args.base_url else ["--no-model"]
        common = ["review", str(folder), "--rules", RULES, *model, "--json"]
        single_s, single_kb, _ = _cli([*common, "--out", str(work / "single")], env)
        cluster_s, cluster_kb, _ = _cli([*common, "--cluster", f"auto:{args.workers}", "--out", str(work / "cluster")], env)
        same = _agreement(work / "single", work / "cluster")
        what = "tiny model" if args.base_url else "--no-model"
        table(f"Documents per second, {args.documents} documents x 2 pages, {what} (wall time includes start-up)",
              ["mode", "wall s", "documents/s", "driver VmHWM MiB", "agreement with the single process"],
              [["single process", round(single_s, 1), round(args.documents / single_s, 2), single_kb // 1024, "-"],
               [f"--cluster auto:{args.workers}", round(cluster_s, 1), round(args.documents / cluster_s, 2),
                cluster_kb // 1024, same]])

    if "hwm" not in skip:
        rows = []
        base = None
        for size in [int(s) for s in args.hwm_sizes.split(",")]:
            folder = planted_folder(work / f"hwm-{size}", size, pages=2)
            wall, peak, _ = _cli(["review", str(folder), "--rules", RULES, "--no-model", "--json", "--cluster",
                                  f"auto:{args.workers}", "--out", str(work / f"hwm-run-{size}")], env)
            base = base or peak
            rows.append([size, peak // 1024, f"{peak / base:.2f}x", round(wall, 1), round(size / wall, 2)])
        table(f"Driver VmHWM, --cluster auto:{args.workers} --no-model",
              ["documents", "VmHWM MiB", "vs smallest", "wall s", "documents/s"], rows)
    print(f"\n(work folder: {work})")


if __name__ == "__main__":
    main()
