"""Request latency per input kind against a running tiny server (prints a table, no asserts).

    python -m tests.bench.bench_model_runtime --base-url http://127.0.0.1:8765 [--pid PID]

Each row: the median wall time of N requests (4 output tokens), the prompt tokens the server
reported and whether the client's estimate matched. With --pid, the server's VmHWM (its process
and children) is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from PIL import Image

from tilepilot.model_runtime.client import ChatClient
from tilepilot.model_runtime.payloads import AudioPart, ImagePart, Message, TextPart
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS, tiny_profile
from tilepilot.model_runtime.processes import peak_rss_kb
from tests.gen.audio import tone_samples


def _page() -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (792, 612, 3), dtype=np.uint8))


def _tone(seconds: float) -> np.ndarray:
    return tone_samples(seconds, 16_000, amplitude=0.3)[:, 0]


def cases() -> list[tuple[str, list, int]]:
    page = _page()
    rows = [("text", [TextPart(text="Summarise the termination clause.")], 280)]
    rows += [(f"letter page @{b}", [ImagePart(image=page), TextPart(text="Read.")], b) for b in IMAGE_BUDGETS]
    rows += [(f"audio {s:g} s", [AudioPart(samples=_tone(s)), TextPart(text="Transcribe.")], 280) for s in (1, 10, 30)]
    rows.append(("page@280 + audio 10 s", [ImagePart(image=page), AudioPart(samples=_tone(10)), TextPart(text="?")], 280))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("TILEPILOT_BASE_URL", "http://127.0.0.1:8765"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pid", type=int, default=None)
    args = parser.parse_args()
    client = ChatClient([args.base_url], tiny_profile())
    print(f"{'case':<24}{'median s':>10}{'prompt tokens':>15}{'estimate ok':>13}")
    for name, parts, budget in cases():
        times, ok, tokens = [], True, 0
        for _ in range(args.runs):
            started = time.perf_counter()
            res = client.chat([Message(role="user", parts=parts)], max_tokens=4, image_budget=budget)
            times.append(time.perf_counter() - started)
            ok &= res.usage.prompt_tokens == res.estimated_prompt_tokens
            tokens = res.usage.prompt_tokens
        print(f"{name:<24}{statistics.median(times):>10.3f}{tokens:>15}{'yes' if ok else 'NO':>13}")
    if args.pid:
        print(f"\nserver VmHWM (process + children): {peak_rss_kb(args.pid) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
