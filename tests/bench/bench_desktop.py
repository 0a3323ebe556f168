"""Benchmark the desktop agent: per-step overhead without the model, and the prefix-cache hit rate.

Run: python tests/bench/bench_desktop.py [--runs 15] [--base-url URL] [--steps 20]

1. Step overhead (no model): capture -> resize to the 1120 grid -> save the trajectory JPEG ->
   window titles -> build + encode the request (K=4 screenshots in history) -> map -> guard,
   median ms per stage, on a busy 1280x800 and 1920x1080 Xvfb screen. Target: <= 25 ms.
2. Prefix-cache hit rate over a 20-step dry run against a real server (``--base-url`` or env
   TILEPILOT_BASE_URL / TILEPILOT_TEST_BASE_URL), from the server's /metrics counters
   vllm:prefix_cache_hits / vllm:prefix_cache_queries. Skipped without a server.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from agents.desktop.actions import to_screen  # noqa: E402
from agents.desktop.history import build_messages, instructions  # noqa: E402
from agents.desktop.screen_texts import X11WindowTitles  # noqa: E402
from agents.desktop.state import DesktopOptions  # noqa: E402
from agents.rules import GuardContext, ScreenBounds, build_policy, guard  # noqa: E402
from model_runtime.budget import image_grid  # noqa: E402
from model_runtime.payloads import encode_messages  # noqa: E402
from model_runtime.profiles import tiny_profile  # noqa: E402
from tests.bench.bench_screen import BUSY_WINDOW  # noqa: E402
from tests.x11.servers import start_xvfb, terminate_process  # noqa: E402
from tools.actions import Click  # noqa: E402
from tools.screen import Screen  # noqa: E402

SIZES = ((1280, 800), (1920, 1080))
BUDGET = 1120
SAFE_RULES = REPO_ROOT / "rules" / "examples" / "safe-desktop.md"


def step_overhead(width: int, height: int, runs: int) -> dict[str, float | str]:
    from agents.desktop.trajectory import TrajectoryWriter

    profile = tiny_profile()
    policy = build_policy("desktop", [str(SAFE_RULES)])
    with start_xvfb(width, height, window_manager=False) as server, tempfile.TemporaryDirectory() as tmp:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_WINDOW, str(width), str(height)],
                                env=server.env, stdout=subprocess.PIPE, text=True)
        try:
            busy.stdout.readline()
            writer = TrajectoryWriter(Path(tmp), DesktopOptions(task="bench"), "tiny", profile.input_budget)
            titles = X11WindowTitles(server.display)
            with Screen(server.display) as screen:
                grid = image_grid(width, height, BUDGET)
                system = instructions(grid.width, grid.height, DesktopOptions(task="x").kinds)
                from agents.desktop.state import StepRecord

                stages: dict[str, list[float]] = {k: [] for k in ("capture", "resize", "save jpeg", "titles",
                                                                 "build 1 img", "build 4 img", "map", "guard")}
                history: list = []  # the last screenshots, as a real run keeps them (each encoded once)

                def timed(stage: str, fn: Callable[[], object]) -> object:
                    started = time.perf_counter()
                    result = fn()
                    stages[stage].append((time.perf_counter() - started) * 1000)
                    return result

                def build(older: list) -> object:
                    images = dict(enumerate(older))
                    steps = [StepRecord(step=i, started_at=0, screenshot="", geometry=small.geometry, raw_output="{}")
                             for i in range(len(older))]
                    return encode_messages(build_messages(system, "bench", steps, images, small.image, 0), profile, BUDGET)

                # Every iteration is one fresh step: a new capture, so nothing is encoded in advance.
                for step in range(runs):
                    cap = timed("capture", lambda: screen.capture_monitor(1))
                    small = timed("resize", lambda: cap.resized_to(grid.width, grid.height))
                    timed("save jpeg", lambda: writer.save_screenshot(step, small.image))
                    info = timed("titles", titles.read)
                    timed("build 1 img", lambda: build([]))
                    timed("build 4 img", lambda: build(history[-3:]))
                    history.append(small.image)
                    g = small.geometry
                    mapped = timed("map", lambda: to_screen(Click(x=g.image_width // 2, y=g.image_height // 3), g))
                    ctx = GuardContext(agent="desktop", screen=ScreenBounds(width=width, height=height),
                                       screen_texts=info.texts, window_title=info.window_title or "busy", focus_point=None)
                    timed("guard", lambda: guard(mapped, ctx, policy))
                med = {k: statistics.median(v) for k, v in stages.items()}
                capture_ms, resize_ms, save_ms, titles_ms = med["capture"], med["resize"], med["save jpeg"], med["titles"]
                build1_ms, build4_ms, map_ms, guard_ms = med["build 1 img"], med["build 4 img"], med["map"], med["guard"]
            titles.close()
        finally:
            terminate_process(busy)
    no_model = capture_ms + resize_ms + save_ms + titles_ms + build4_ms + map_ms + guard_ms
    return {"grid": f"{grid.width}x{grid.height}", "capture": capture_ms, "resize": resize_ms, "save jpeg": save_ms,
            "titles": titles_ms, "build 1 img": build1_ms, "build 4 img": build4_ms, "map": map_ms, "guard": guard_ms,
            "step (1 img)": no_model - build4_ms + build1_ms, "step (4 img)": no_model}


def _metrics(base_url: str) -> dict[str, float]:
    import httpx

    text = httpx.get(base_url.rstrip("/") + "/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("vllm:prefix_cache_hits", "vllm:prefix_cache_queries"):
            if line.startswith(name) and not line.startswith("#"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def prefix_cache(base_url: str, steps: int) -> dict[str, float]:
    from agents.desktop.runner import run_desktop
    from model_runtime.client import ChatClient

    client = ChatClient([base_url], tiny_profile())
    policy = build_policy("desktop", [])
    kinds = ("click", "move", "scroll", "type", "hotkey", "key")  # no done/fail: run all the steps
    with start_xvfb(1280, 800, window_manager=False) as server, tempfile.TemporaryDirectory() as tmp:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_WINDOW, "1280", "800"], env=server.env, stdout=subprocess.PIPE, text=True)
        try:
            busy.stdout.readline()
            before = _metrics(base_url)
            started = time.perf_counter()
            options = DesktopOptions(task="look around", max_steps=steps, dry_run=True, kinds=kinds, settle_ms=0)
            result = run_desktop(options, client, policy, Path(tmp) / "run", display=server.display)
            elapsed = time.perf_counter() - started
            after = _metrics(base_url)
        finally:
            terminate_process(busy)
    hits = after.get("vllm:prefix_cache_hits", 0) - before.get("vllm:prefix_cache_hits", 0)
    queries = after.get("vllm:prefix_cache_queries", 0) - before.get("vllm:prefix_cache_queries", 0)
    prompt = sum(s.usage.prompt_tokens for s in result.steps if s.usage)
    return {"steps": len(result.steps), "prompt tokens": prompt, "queried": queries, "hits": hits,
            "hit rate": hits / queries if queries else float("nan"), "s/step": elapsed / max(1, len(result.steps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--base-url", default=os.environ.get("TILEPILOT_BASE_URL") or os.environ.get("TILEPILOT_TEST_BASE_URL"))
    args = parser.parse_args()

    print(f"desktop step overhead without the model, median ms of {args.runs} runs, budget {BUDGET}, busy screen")
    rows = {f"{w}x{h}": step_overhead(w, h, args.runs) for w, h in SIZES}
    keys = list(next(iter(rows.values())))
    print(f"{'stage':<14}" + "".join(f"{name:>14}" for name in rows))
    for key in keys:
        cells = "".join(f"{v[key]:>14}" if isinstance(v[key], str) else f"{v[key]:>14.2f}" for v in rows.values())
        print(f"{key:<14}{cells}")
    if not args.base_url:
        print("\nprefix cache: skipped (no --base-url / TILEPILOT_BASE_URL)")
        return
    print(f"\nprefix cache over a {args.steps}-step dry run against {args.base_url}")
    for key, value in prefix_cache(args.base_url, args.steps).items():
        print(f"{key:<14}{value:>14.3f}" if isinstance(value, float) else f"{key:<14}{value:>14}")


if __name__ == "__main__":
    main()
