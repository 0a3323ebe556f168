"""Desktop task files benchmark: the full suite of examples/desktop-tasks (21 tasks on real Debian apps, each at
1280x800 and 1024x768) for the reference agent, its degraded ``oracle:0.5`` and the tiny model.

    python tests/bench/bench_desktop_tasks.py [--tasks DIR] [--base-url URL] [--small]

``--base-url`` is the tiny model's server (without it the managed local server is started). Prints the
success rate per system and, per task, the success rate and mean seconds of each system. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tilepilot.agents.eval.core import parse_systems, run_suite  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=Path, default=REPO_ROOT / "examples" / "desktop-tasks")
    parser.add_argument("--base-url", action="append", default=[], help="the tiny model's server")
    parser.add_argument("--small", action="store_true", help="the small variant (5 tasks, 1280x800)")
    parser.add_argument("--out", type=Path, default=None, help="keep the eval folder here")
    args = parser.parse_args()
    systems = parse_systems(["oracle", "oracle:0.5", "tiny"], args.base_url)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-desktop-tasks-"))
    started = time.monotonic()
    results = run_suite("desktop", systems, out, small=args.small, dataset=args.tasks)
    print(f"wall time {time.monotonic() - started:.0f} s; eval folder {out}")
    names = [r.system for r in results]
    print(f"{'system':<28} {'success':>8} {'tasks':>6} {'s/step':>7} {'seconds':>8}")
    for r in results:
        print(f"{r.system:<28} {r.metrics['success_rate']:8.3f} {r.metrics['tasks']:6.0f} {r.metrics['seconds_per_step']:7.2f} {r.seconds:8.0f}")
    groups = sorted({g for r in results for g in r.breakdown})
    print(f"\n{'group':<40} " + " ".join(f"{n[:22]:>24}" for n in names))
    for group in groups:
        cells = [r.breakdown.get(group) for r in results]
        print(f"{group:<40} " + " ".join(f"{c['success_rate']:>10.2f} ({c['seconds']:6.1f} s) " if c else f"{'-':>24}" for c in cells))


if __name__ == "__main__":
    main()
