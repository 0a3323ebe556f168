"""Eval benchmark for the media suites: ``legibility`` and ``listen``, full variants, with their tables.

    python tests/bench/bench_eval_media.py [--suite legibility|listen ...] [--model oracle ...]
                                           [--base-url URL ...] [--fresh] [--small]

Prints, per suite and system, the wall time (each suite must stay under 10 minutes with the oracle
on the 2-core CI machine), the headline metrics, and the suite's own table: CER per font size and
image budget for legibility (with the budget the review planner picks today), WER / key-fact
recall / faster-whisper's WER per recording for listen. ``--fresh`` deletes the cached recordings
and baseline transcripts first, so speech generation and the baseline are timed too. Systems are
given as for ``tilepilot eval`` (default: oracle and oracle:0.5). Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tilepilot.agents.eval.core import SuiteResult, eval_cache_dir, parse_systems, run_suite  # noqa: E402

SUITES = ("legibility", "listen")


def legibility_table(result: SuiteResult) -> list[str]:
    rows = {k: v for k, v in result.breakdown.items() if k.startswith("font=") and ",budget=" in k}
    fonts = sorted({int(k.split(",")[0][5:-2]) for k in rows})
    budgets = sorted({int(k.split("budget=")[1]) for k in rows})
    lines = ["  CER  font\\budget " + "".join(f"{b:>7}" for b in budgets) + "   planner"]
    for font in fonts:
        cells = "".join(f"{rows[f'font={font}pt,budget={b}']['cer']:7.3f}" for b in budgets)
        planner = int(result.breakdown[f"font={font}pt"].get("planner_budget", 0))
        lines.append(f"       {font:>4} pt    {cells}   {planner:>7}")
    return lines


def listen_table(result: SuiteResult) -> list[str]:
    lines = ["  recording       s  wpm clips  wer    recall  baseline_wer  max_completion_tokens"]
    for key, row in result.breakdown.items():
        if key.startswith("recording="):
            lines.append(f"  {key[10:]:<13} {row['seconds_of_audio']:5.1f} {row['wpm']:4.0f} {row['clips']:4.0f}  "
                         f"{row['wer']:.3f}  {row['key_fact_recall']:.3f}   {row.get('baseline_wer', float('nan')):.3f}"
                         f"         {row['completion_tokens_max']:.0f}")
        elif key.startswith("baseline="):
            lines.append(f"  {key}: corpus wer {row['wer']:.3f}")
    return lines + [f"  miss: {m.case}: {m.detail}" for m in result.misses[:6]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=SUITES, help="suite to run (repeat; default: both)")
    parser.add_argument("--model", action="append", help="system, as for tilepilot eval (default: oracle, oracle:0.5)")
    parser.add_argument("--base-url", action="append", default=[], help="server of the Nth non-oracle --model")
    parser.add_argument("--fresh", action="store_true", help="delete cached recordings and baseline transcripts first")
    parser.add_argument("--small", action="store_true", help="the test-run variants instead of the full ones")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(eval_cache_dir() / "listen", ignore_errors=True)
    systems = parse_systems(args.model or ["oracle", "oracle:0.5"], args.base_url)
    for name in args.suite or SUITES:
        for system in systems:
            with tempfile.TemporaryDirectory(prefix=f"bench-eval-{name}-") as tmp:
                started = time.monotonic()
                [result] = run_suite(name, [system], Path(tmp), small=args.small)
                seconds = time.monotonic() - started
            shown = {k: round(v, 4) for k, v in result.metrics.items()}
            print(f"{name} / {system.label}: {seconds:.1f} s ({'ok' if seconds <= 600 else 'OVER 10 min'})  {shown}")
            for line in (legibility_table if name == "legibility" else listen_table)(result):
                print(line)
            print(flush=True)


if __name__ == "__main__":
    main()
