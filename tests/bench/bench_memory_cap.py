"""The memory plan under a real memory cap, at full size: a 1000-page review and a 30-step desktop run with
llama-server (the geometry twin) and the agents in one cgroup v1 group, then the engine's own sizing.

    source .ci/setup-env.sh && python -m tests.bench.bench_memory_cap [--cap-mib 1024] [--pages 1000] [--steps 30]

Needs root (cgroup v1), Xvfb and openbox, and the twin's GGUF (tests/model_runtime/test_memory_plan_llama.py
or ``serve start --engine llama.cpp --model <twin>`` exports it). Prints what happened; asserts nothing.
tests/model_runtime/test_memory_cap.py runs the same at 100 pages and 3 steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tilepilot.model_runtime.memory_budget import MiB
from tests.model_runtime.test_memory_cap import describe, run_with_the_defaults, run_with_the_plan
from tests.x11.servers import start_xvfb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-mib", type=int, default=1024)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memory-cap-"))
    started = time.monotonic()
    with start_xvfb(1280, 800, window_manager=True) as xserver:
        planned = run_with_the_plan(args.cap_mib * MiB, args.pages, args.steps, work, xserver)
    review = json.loads(planned["review"].stdout) if planned["review"].returncode == 0 else None
    desktop = json.loads(planned["desktop"].stdout) if planned["desktop"].returncode in (0, 1) else None
    print(f"with the plan ({time.monotonic() - started:.0f} s): {planned['plan']}")
    print(f"  review {args.pages} pages: exit {planned['review'].returncode}, failed pages "
          f"{review['documents'][0]['failed_pages'] if review else planned['review'].stderr.strip()[-300:]}")
    print(f"  desktop: exit {planned['desktop'].returncode}, {len(desktop['steps']) if desktop else '?'} steps, "
          f"status {desktop['status'] if desktop else planned['desktop'].stderr.strip()[-300:]}")
    print(f"  cgroup of {args.cap_mib} MiB: {describe(planned)}")
    started = time.monotonic()
    defaults = run_with_the_defaults(args.cap_mib * MiB, args.pages, work)
    print(f"engine defaults ({time.monotonic() - started:.0f} s): {defaults['outcome']}")
    print(f"  cgroup of {args.cap_mib} MiB: {describe(defaults)}")


if __name__ == "__main__":
    main()
