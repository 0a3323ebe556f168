"""Benchmark one screenshot step: capture -> resize to the 1120 budget grid -> encode.

Run: python tests/bench/bench_screen.py [--runs 15]

Starts its own Xvfb per screen size, fills the screen with a busy window (random shapes and
text, so PNG has real work to do), then prints median milliseconds per stage. No asserts.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.tools.test_geometry import model_grid  # noqa: E402
from tests.x11.servers import terminate_process, start_xvfb  # noqa: E402
from tilepilot.tools.screen import Capture, Screen  # noqa: E402

SIZES = ((1280, 800), (1920, 1080))
BUDGET = 1120

# Fills the whole screen with random rectangles, ovals, lines and text; prints "ready" when drawn.
BUSY_WINDOW = r"""
import random, sys, tkinter as tk
w, h = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(1234)
root = tk.Tk(); root.overrideredirect(True); root.geometry(f"{w}x{h}+0+0")
c = tk.Canvas(root, width=w, height=h, highlightthickness=0, bg="white"); c.pack()
colour = lambda: "#%06x" % rng.randrange(1 << 24)
for _ in range(1500):
    x, y = rng.randrange(w), rng.randrange(h)
    kind = rng.randrange(4)
    if kind == 0: c.create_rectangle(x, y, x + rng.randrange(5, 120), y + rng.randrange(5, 80), fill=colour(), outline=colour())
    elif kind == 1: c.create_oval(x, y, x + rng.randrange(5, 90), y + rng.randrange(5, 90), fill=colour())
    elif kind == 2: c.create_line(x, y, rng.randrange(w), rng.randrange(h), fill=colour(), width=rng.randrange(1, 4))
    else: c.create_text(x, y, text="".join(rng.choice("abcdefghij KLMNOP 0123") for _ in range(rng.randrange(4, 30))), fill=colour(), anchor="nw")
root.update(); root.after(300, lambda: (print("ready", flush=True)))
root.mainloop()
"""


def _median_ms(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def _encode(cap: Capture, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        cap.image.save(buf, "JPEG", quality=85)
    else:
        cap.image.save(buf, "PNG")
    return buf.getvalue()


def bench_size(width: int, height: int, runs: int) -> dict[str, float]:
    with start_xvfb(width, height, window_manager=False) as server:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_WINDOW, str(width), str(height)],
                                env=server.env, stdout=subprocess.PIPE, text=True)
        try:
            busy.stdout.readline()  # "ready"
            with Screen(server.display) as screen:
                grid = model_grid(width, height, BUDGET)
                capture_ms, cap = _median_ms(lambda: screen.capture_monitor(1), runs)
                resize_ms, small = _median_ms(lambda: cap.resized_to(*grid), runs)
                png_ms, png = _median_ms(lambda: _encode(small, "PNG"), runs)
                jpeg_ms, jpeg = _median_ms(lambda: _encode(small, "JPEG"), runs)
                step_ms, _ = _median_ms(lambda: _encode(screen.capture_monitor(1).resized_to(*grid), "PNG"), runs)
        finally:
            terminate_process(busy)
    return {"grid": f"{grid[0]}x{grid[1]}", "capture": capture_ms, "resize": resize_ms, "png": png_ms,
            "jpeg": jpeg_ms, "step_png": step_ms, "png_kb": len(png) / 1024, "jpeg_kb": len(jpeg) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    header = (f"{'screen':>10} {'grid':>10} {'capture':>8} {'resize':>7} {'png':>7} {'jpeg85':>7} "
              f"{'step(png)':>9} {'png KB':>7} {'jpeg KB':>7}")
    print(f"median ms over {args.runs} runs, budget {BUDGET}, busy screen")
    print(header)
    for width, height in SIZES:
        r = bench_size(width, height, args.runs)
        print(f"{width}x{height:<5} {r['grid']:>10} {r['capture']:8.1f} {r['resize']:7.1f} {r['png']:7.1f} "
              f"{r['jpeg']:7.1f} {r['step_png']:9.1f} {r['png_kb']:7.0f} {r['jpeg_kb']:7.0f}")


if __name__ == "__main__":
    main()
