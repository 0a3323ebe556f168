"""Eval benchmark: the time of each ``tilepilot eval`` suite with the reference answerer, full variants.

    python tests/bench/bench_eval.py [--suite review ...] [--fresh] [--small]

Every suite must run in at most 10 minutes with ``--model oracle`` on the 2-core CI machine; this
prints each one's wall time (generation of its labelled data included with ``--fresh``, which
empties the suite data cache first), its headline metrics and how many requests the oracle could
not identify. Asserts nothing.
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

from tilepilot.agents.eval.core import SystemSpec, eval_cache_dir, run_suite  # noqa: E402
from tilepilot.agents.eval.registry import SUITES  # noqa: E402

HEADLINE = ("precision", "recall", "f1", "success_rate", "hit_rate", "cer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="suite to time (repeat; default: all)")
    parser.add_argument("--fresh", action="store_true", help="empty ~/.cache/tilepilot/eval first (time the generation too)")
    parser.add_argument("--small", action="store_true", help="the test-run variants instead of the full ones")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(eval_cache_dir(), ignore_errors=True)
    print(f"{'suite':<12} {'seconds':>8}  {'limit':>6}  metrics")
    for name in args.suite or list(SUITES):
        with tempfile.TemporaryDirectory(prefix=f"bench-eval-{name}-") as tmp:
            started = time.monotonic()
            [result] = run_suite(name, [SystemSpec(label="oracle", model="oracle")], Path(tmp), small=args.small)
            seconds = time.monotonic() - started
        shown = {k: round(v, 3) for k, v in result.metrics.items() if k in HEADLINE or k.startswith(("oracle_", "pages", "prompt"))}
        print(f"{name:<12} {seconds:8.1f}  {'ok' if seconds <= 600 else 'OVER':>6}  {shown}", flush=True)


if __name__ == "__main__":
    main()
