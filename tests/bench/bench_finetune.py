"""Learning from the agent's own runs, end to end: oracle runs -> export -> fine-tune -> serve -> eval again.

    python tests/bench/bench_finetune.py [--small] [--steps N] [--lr X] [--lora] [--keep DIR]

1. ``tilepilot eval grounding -m oracle --keep-runs``: the reference answerer's runs, each with its
   eval.json verdict.
2. ``tilepilot export`` of the runs on the *training* screens only; the 1920x1080 screen (another
   scene and layout, and a grid the training never saw) is held out.
3. ``tilepilot model finetune`` of the tiny checkpoint on that set (CPU).
4. ``tilepilot eval grounding -m tiny -m CKPT``: the untrained and the fine-tuned model, each served
   by vLLM CPU (``tilepilot serve``), through the same real desktop pipeline.

Prints the hit rate of both on the training screens and on the held-out one, and the time of each
phase. Asserts nothing: the figures are the result, whatever they show.
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

REPO_ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = "1920x1080"


def tilepilot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tilepilot", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"tilepilot {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc


def timed(label: str, times: dict[str, float], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = tilepilot(*args, env=env)
    times[label] = time.monotonic() - started
    print(f"[bench] {label}: {times[label]:.0f} s", file=sys.stderr, flush=True)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small grounding suite (2 screens, 2 budgets)")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: 100 passes over the set)")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TILEPILOT_STATE_DIR": str(work / "serve-state")}
    env.pop("TILEPILOT_BASE_URL", None)
    small = ["--small"] if args.small else []
    times: dict[str, float] = {}

    timed("oracle runs", times, "eval", "grounding", "-m", "oracle", "--keep-runs", *small, "--out", str(work / "oracle"), env=env)
    screens = sorted(p for p in (work / "oracle" / "grounding" / "oracle").iterdir() if "x" in p.name and p.is_dir())
    train = [p for p in screens if p.name != HELD_OUT]
    exported = timed("export", times, "export", *map(str, train), "--to", str(work / "set"), env=env)
    print(f"[bench] {exported.stdout.strip()}", file=sys.stderr)
    examples = len((work / "set" / "train.jsonl").read_text().splitlines())
    steps = args.steps or 100 * examples
    checkpoint = work / "tiny-grounding"
    tuned = timed("fine-tune", times, "model", "finetune", str(work / "set"), "--out", str(checkpoint), "--steps", str(steps),
                  "--lr", str(args.lr), *(["--lora"] if args.lora else []), env=env)
    print(f"[bench] {tuned.stdout.strip()}", file=sys.stderr)
    try:
        result = timed("eval tiny + fine-tuned", times, "eval", "grounding", "-m", "tiny", "-m", str(checkpoint), *small,
                       "--json", "--out", str(work / "after"), env=env)
    finally:
        for model in ("tiny", str(checkpoint)):
            subprocess.run([sys.executable, "-m", "tilepilot", "serve", "stop", "--model", model], env=env, cwd=REPO_ROOT,
                           capture_output=True)
    systems = {r["system"]: r["metrics"] for r in json.loads(result.stdout)["results"]}
    train_names = [p.name for p in train]

    def on(metrics: dict, screens: list[str]) -> str:
        rates = [(metrics[f"hit_rate@screen={s}"], s) for s in screens if f"hit_rate@screen={s}" in metrics]
        return " ".join(f"{rate:.3f} ({s})" for rate, s in rates)

    print(f"\ngrounding{' (small)' if args.small else ''}: {examples} training examples from {', '.join(train_names)}; "
          f"{steps} steps{' (LoRA)' if args.lora else ''} at lr {args.lr}")
    print(f"{'system':<16} {'all':>6}  training screens            held out")
    for label, metrics in systems.items():
        name = "fine-tuned" if label != "tiny" else "tiny (untrained)"
        print(f"{name:<16} {metrics['hit_rate']:>6.3f}  {on(metrics, train_names):<27} {on(metrics, [HELD_OUT])}")
    print("times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; total {sum(times.values()):.0f} s")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
