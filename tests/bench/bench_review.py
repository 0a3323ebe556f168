"""Review agent benchmark: prints a table, asserts nothing.

    python -m tests.bench.bench_review [--base-url http://127.0.0.1:8765] [--model-pages 24] [--cli-sizes 30,300,1000]

0. With a server: the whole ``tilepilot review`` process end to end (the CLI, its graph, the chunk
   pool, the page workers' parent side, reports), peak RSS (its own VmHWM, read at exit) and peak
   thread count at 30, 300 and 1000 pages of one mixed PDF, with the ratio to the 30-page peak
   (goal: <= 1.25x). Page workers are separate processes and not counted.
1. Client peak RSS (VmHWM of a fresh child process) at 10/100/1000 pages of the mixed corpus:
   the review's page path (plan + lazy per-chunk render at the exact grid + JPEG encode, as the
   map step does, without sending), ``--no-model`` end to end, and a naive baseline that renders
   every page at 150 dpi and keeps it.
2. Prompt tokens per document on a mixed corpus: adaptive plan vs always-text vs always-image@560.
3. With a server: a real review at concurrency 1 and 4 (pages/s), its largest request against
   the budget, and the vLLM prefix-cache hit rate over those runs (``/metrics`` counters).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]

_CHILD_PRELUDE = "import sys; sys.path.insert(0, %r)\n" % str(REPO)

_REVIEW_PATH = _CHILD_PRELUDE + """
import io
from tilepilot.agents.review.planner import TextTokenCounter, pack_chunks, plan_page
from tilepilot.agents.review.prompts import page_text_block
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.profiles import tiny_profile
from tilepilot.tools.pdf_worker import PageWorker
profile = tiny_profile()
with PageWorker(sys.argv[1]) as worker:
    counter = TextTokenCounter(None)
    plans = [plan_page(worker.text(p), profile, counter, page_text_block) for p in range(1, worker.page_count + 1)]
    for chunk in pack_chunks(plans, 6000, profile):
        for page in chunk.pages:
            if page.modality != "text":
                g = image_grid(round(page.width_pt), round(page.height_pt), chunk.image_budget, profile.vision)
                worker.render(page.page, g.width, g.height).save(io.BytesIO(), "JPEG", quality=90)
"""

_NO_MODEL = _CHILD_PRELUDE + """
from tilepilot.agents.review.runner import ReviewOptions, run_review
from rich.console import Console
import tempfile, pathlib
run_review(ReviewOptions(paths=[sys.argv[1]], no_model=True), out=pathlib.Path(tempfile.mkdtemp()) / "run",
           console=Console(stderr=True, force_terminal=False))
"""

_NAIVE = _CHILD_PRELUDE + """
import pymupdf
from PIL import Image
doc = pymupdf.open(sys.argv[1])
kept = []
for page in doc:
    pix = page.get_pixmap(dpi=150)
    kept.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
"""

_HWM = "\nprint('VMHWM', [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"

# The real CLI in this process; at exit (normal, error or SystemExit) its own VmHWM goes to a file.
_CLI = _CHILD_PRELUDE + """
import atexit
HWM_FILE = sys.argv[1]
def _peak():
    with open(HWM_FILE, "w") as out:
        out.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
atexit.register(_peak)
from tilepilot.agents.cli import main
sys.argv = ["tilepilot"] + sys.argv[2:]
main()
"""


def child_hwm_mib(script: str, pdf: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", script + _HWM, str(pdf)], capture_output=True, text=True, timeout=1800)
    match = re.search(r"VMHWM (\d+)", proc.stdout)
    if not match:
        raise RuntimeError(proc.stderr[-800:])
    return int(match.group(1)) / 1024


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def bench_memory(folder: Path, sizes: list[int]) -> None:
    from tests.gen.pdfs import mixed_corpus

    rows = []
    for n in sizes:
        pdf = folder / f"mixed-{n}.pdf"
        mixed_corpus(pdf, n)
        naive = child_hwm_mib(_NAIVE, pdf) if n <= 100 else "skipped (~6 MiB/page: %d MiB)" % (6 * n)
        rows.append([n, f"{child_hwm_mib(_REVIEW_PATH, pdf):.0f}", f"{child_hwm_mib(_NO_MODEL, pdf):.0f}",
                     naive if isinstance(naive, str) else f"{naive:.0f}"])
    table("Peak RSS (VmHWM, MiB, client process)", ["pages", "review page path (lazy render)", "--no-model run",
                                                   "naive: render all @150 dpi, keep"], rows)


def _status_value(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cli_peak(pdf: Path, out: Path, base_url: str, extra: list[str]) -> tuple[float, int, float, dict]:
    """(VmHWM MiB, peak threads, seconds, --json output) of one ``tilepilot review`` process."""
    hwm_file = out.with_suffix(".hwm")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", _CLI, str(hwm_file), "review", str(pdf), "--out", str(out), "--json",
                             "--base-url", base_url, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    threads = 0
    while proc.poll() is None:
        threads = max(threads, _status_value(proc.pid, "Threads") or 0)
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(stderr[-800:])
    return int(hwm_file.read_text()) / 1024, threads, seconds, json.loads(stdout)


def bench_cli_memory(folder: Path, base_url: str, sizes: list[int], budget: int, concurrency: int) -> None:
    from tests.gen.pdfs import mixed_corpus

    rows, first = [], None
    for n in sizes:
        pdf = folder / f"cli-{n}.pdf"
        mixed_corpus(pdf, n)
        hwm, threads, seconds, result = cli_peak(pdf, folder / f"cli-run-{n}", base_url,
                                                 ["--budget-tokens", str(budget), "--concurrency", str(concurrency)])
        first = first or hwm
        rows.append([n, f"{hwm:.0f}", f"{hwm / first:.2f}x", threads, result["usage"]["requests"], f"{seconds:.0f}"])
    table(f"`tilepilot review` end to end, tiny model (VmHWM of the CLI process, MiB; --concurrency {concurrency}, "
          f"--budget-tokens {budget})", ["pages", "peak RSS", "vs first", "peak threads", "requests", "seconds"], rows)


def bench_tokens(folder: Path, base_url: str | None) -> None:
    """Prompt tokens per page kind: fidelity first (the default) and --prefer tokens, beside always-text / always-image."""
    from tilepilot.agents.review.planner import TextTokenCounter, image_tokens, plan_page
    from tilepilot.agents.review.prompts import page_text_block
    from tilepilot.model_runtime.profiles import GEMMA_4_12B, tiny_profile
    from tests.gen.pdfs import mixed_corpus
    from tilepilot.tools.pdf import open_pdf

    profile = tiny_profile()
    # --prefer tokens needs a profile whose legibility row reads something (tiny reads nothing): the
    # shipped gemma-4-12b row, on the same image grid (the vision spec is the same).
    reader = GEMMA_4_12B
    pdf = folder / "tokens-40.pdf"
    kinds = mixed_corpus(pdf, 40)
    tokenize = None
    if base_url:
        def tokenize(text: str) -> int:
            return httpx.post(f"{base_url}/tokenize", json={"model": profile.served_name, "prompt": text}).json()["count"]
    counter = TextTokenCounter(tokenize)

    def cost(plan) -> int:
        return plan.text_tokens + (image_tokens(plan.width_pt, plan.height_pt, plan.image_budget, profile) if plan.image_budget else 0)

    per_kind: dict[str, list[int]] = {}
    with open_pdf(pdf) as doc:
        for page, kind in zip(range(1, 41), kinds):
            text = doc.text(page)
            fidelity = cost(plan_page(text, profile, counter, page_text_block))
            cheap = cost(plan_page(text, reader, counter, page_text_block, "tokens"))
            row = [1, fidelity, cheap, counter.count(page_text_block(text)), image_tokens(text.width, text.height, 560, profile)]
            per_kind[kind] = [a + b for a, b in zip(per_kind.get(kind, [0] * 5), row)]
    rows = [[k, *v] for k, v in per_kind.items()]
    total = [sum(v[i] for v in per_kind.values()) for i in range(5)]
    rows.append(["**document**", total[0], total[1], total[2], f"{total[3]} (scans unread)", total[4]])
    table("Prompt tokens, mixed 40-page corpus (text counts: /tokenize-calibrated)" + ("" if base_url else " [no server: estimated]"),
          ["page kind", "pages", "fidelity (default)", "--prefer tokens (gemma-4-12b table)", "always text", "always image@560"], rows)


def _prefix_counters(base_url: str) -> tuple[float, float]:
    text = httpx.get(f"{base_url}/metrics").text
    def value(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))
    return value("vllm:prefix_cache_hits_total"), value("vllm:prefix_cache_queries_total")


def bench_model(folder: Path, base_url: str, pages: int, budget: int) -> None:
    from tests.gen.pdfs import mixed_corpus

    pdf = folder / f"model-{pages}.pdf"
    mixed_corpus(pdf, pages, seed=7)
    hits0, queries0 = _prefix_counters(base_url)
    rows = []
    for concurrency in (1, 4):
        out = folder / f"run-c{concurrency}"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "tilepilot", "review", str(pdf), "--budget-tokens", str(budget),
                               "--concurrency", str(concurrency), "--out", str(out), "--json", "--base-url", base_url],
                              capture_output=True, text=True, cwd=REPO, timeout=1800)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            rows.append([concurrency, "failed", proc.stderr.strip()[-200:], "", ""])
            continue
        usage = json.loads(proc.stdout)["usage"]
        rows.append([concurrency, f"{pages / seconds:.2f}", usage["requests"], f"{usage['max_prompt_tokens']} / {budget}",
                     usage["prompt_tokens"]])
    hits1, queries1 = _prefix_counters(base_url)
    rate = (hits1 - hits0) / (queries1 - queries0) if queries1 > queries0 else float("nan")
    table(f"Real review, {pages}-page mixed PDF, tiny model on CPU vLLM (wall time incl. process start)",
          ["concurrency", "pages/s", "requests", "largest request / budget", "prompt tokens"], rows)
    print(f"\nprefix-cache hit rate over these runs: {rate:.1%} ({hits1 - hits0:.0f} of {queries1 - queries0:.0f} prompt tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=None, help="a running tiny server (skip the model part without it)")
    parser.add_argument("--model-pages", type=int, default=24)
    parser.add_argument("--budget-tokens", type=int, default=6000)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--cli-sizes", default="30,300,1000", help="pages of the end-to-end CLI runs (with --base-url)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--only-cli", action="store_true", help="only the end-to-end CLI memory table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.base_url:
            bench_cli_memory(folder, args.base_url.rstrip("/"), [int(s) for s in args.cli_sizes.split(",")],
                             args.budget_tokens, args.concurrency)
        if args.only_cli:
            return
        bench_memory(folder, [int(s) for s in args.sizes.split(",")])
        bench_tokens(folder, args.base_url)
        if args.base_url:
            bench_model(folder, args.base_url.rstrip("/"), args.model_pages, args.budget_tokens)


if __name__ == "__main__":
    main()
