"""Benchmark PDF pages for the model: render rate at the token-budget grids, encode cost, memory.

Run: python tests/bench/bench_pdf.py [--runs 5] [--pages 1000] [--other-python /tmp/venv-pymupdf2/bin/python]

Prints tables, asserts nothing:
1. grid size per budget (280, 560, 1120) on a US-letter page, computed here (tools must not
   import model_runtime): the largest W, H multiples of 48 keeping the page's aspect with
   (W/48)*(H/48) <= budget;
2. pages/s rendered at those sizes, in-process and through the killable PageWorker;
3. PNG vs JPEG encode time and size of those renders;
4. PageWorker start and restart cost, forkserver vs fork;
5. peak RSS (VmHWM, each case in a fresh child process) while streaming --pages pages vs
   keeping them all as images;
6. with --other-python: import time and VmHWM of the PyMuPDF in that interpreter vs this one.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.gen import pdfs  # noqa: E402
from tilepilot.tools.pdf import open_pdf  # noqa: E402
from tilepilot.tools.pdf_worker import PageWorker  # noqa: E402

BUDGETS = (280, 560, 1120)
PATCH = 48  # 16 px patches merged 3x3
LETTER = (612.0, 792.0)


def grid_size(width_pt: float, height_pt: float, budget: int) -> tuple[int, int]:
    """Largest (W, H) in pixels, multiples of 48, same aspect as the page, (W/48)*(H/48) <= budget."""
    scale = math.sqrt(budget / (width_pt * height_pt))  # patches per point at exactly the budget
    cols, rows = max(1, math.floor(width_pt * scale)), max(1, math.floor(height_pt * scale))
    return cols * PATCH, rows * PATCH


def _median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).rjust(w) for cell, w in zip(line, widths)))


def bench_render(corpus: Path, runs: int) -> list:
    pages = range(1, 17)  # dense, sparse, scan, table x 4
    rows, images = [], {}
    with open_pdf(corpus) as doc, PageWorker(corpus) as worker:
        for budget in BUDGETS:
            width, height = grid_size(*LETTER, budget)
            local = _median_s(lambda: [doc.render(p, width, height) for p in pages], runs)
            remote = _median_s(lambda: [worker.render(p, width, height) for p in pages], runs)
            tokens = (width // PATCH) * (height // PATCH)
            rows.append((budget, f"{width}x{height}", tokens, f"{len(pages) / local:.0f}", f"{len(pages) / remote:.0f}"))
            images[budget] = [doc.render(p, width, height) for p in (1, 3)]  # a dense page and a scan
    _table("Render rate, US letter, mixed pages (median of runs)", ("budget", "W x H", "tokens", "pages/s in-process", "pages/s worker"), rows)
    return images


def bench_encode(images: dict, runs: int) -> None:
    rows = []
    for budget, pair in images.items():
        for kind, image in zip(("dense", "scan"), pair):
            row: list[object] = [budget, kind]
            for fmt, options in (("PNG", {}), ("PNG", {"compress_level": 1}), ("JPEG", {"quality": 90})):
                out = io.BytesIO()
                seconds = _median_s(lambda: (out.seek(0), out.truncate(), image.save(out, fmt, **options)), runs)
                row += [f"{seconds * 1000:.1f}", f"{len(out.getvalue()) // 1024}"]
            rows.append(tuple(row))
    _table(
        "Encode (median ms, KiB)",
        ("budget", "page", "PNG ms", "PNG KiB", "PNG-1 ms", "PNG-1 KiB", "JPEG90 ms", "JPEG90 KiB"),
        rows,
    )


_COLD_START_CHILD = """
import sys, time
from tilepilot.tools.pdf_worker import PageWorker
started = time.perf_counter()
PageWorker(sys.argv[1], start_method=sys.argv[2]).close()
print(time.perf_counter() - started)
"""


def bench_restart(corpus: Path, runs: int) -> None:
    rows = []
    for method in ("forkserver", "fork"):
        # Cold: the first worker of a fresh process (for forkserver, that starts the server too).
        cold = statistics.median(
            float(subprocess.run([sys.executable, "-c", _COLD_START_CHILD, str(corpus), method], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout)
            for _ in range(runs)
        )
        with PageWorker(corpus, start_method=method) as worker:
            restart = _median_s(worker.restart, runs * 2)
            request = _median_s(lambda: worker.page_size(1), runs * 4)
        rows.append((method, f"{cold * 1000:.0f}", f"{restart * 1000:.1f}", f"{request * 1000:.2f}"))
    _table("PageWorker (median ms)", ("start method", "first worker in a process", "restart", "page_size round trip"), rows)


_RSS_CHILD = """
import json, sys
from tilepilot.tools.pdf_worker import PageWorker, iter_pages
def hwm(pid="self"):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")).split()[1]) // 1024
path, width, height, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "keep"
kept = []
with PageWorker(path) as worker:
    for result in iter_pages(worker, size=(width, height), text=True):
        if keep:
            kept.append(result.image)
    print(json.dumps({"parent": hwm(), "worker": hwm(worker._child.process.pid), "pages": len(kept) if keep else None}))
"""


def bench_rss(pages: int) -> None:
    width, height = grid_size(*LETTER, BUDGETS[0])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = pdfs.long_pdf(Path(folder) / "long.pdf", pages)
        for mode in ("stream", "keep"):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path), str(width), str(height), mode], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
            numbers = json.loads(out.stdout)
            seconds = time.perf_counter() - started
            rows.append((mode, pages, f"{width}x{height}", numbers["parent"], numbers["worker"], f"{seconds:.1f}", f"{pages / seconds:.0f}"))
    _table("Peak RSS, render + text layer of every page (VmHWM MiB, fresh process each)", ("mode", "pages", "W x H", "caller MiB", "worker MiB", "wall s", "pages/s"), rows)


_IMPORT_CHILD = """
import time
started = time.perf_counter()
import pymupdf
imported = time.perf_counter() - started
doc = pymupdf.open(); page = doc.new_page(); page.insert_text((72, 72), "hello"); page.get_pixmap(dpi=150)
hwm = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) // 1024
print(pymupdf.VersionBind, imported, hwm)
"""


def bench_import(pythons: list[str], runs: int) -> None:
    rows = []
    for python in pythons:
        samples = [subprocess.run([python, "-c", _IMPORT_CHILD], capture_output=True, text=True, check=True).stdout.split() for _ in range(runs)]
        rows.append((samples[0][0], f"{statistics.median(float(s[1]) for s in samples) * 1000:.0f}", statistics.median(int(s[2]) for s in samples), python))
    _table("import pymupdf (fresh process each, median)", ("PyMuPDF", "import ms", "VmHWM MiB after 1 render", "python"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--other-python", action="append", default=[], help="an interpreter with another PyMuPDF (e.g. 2.x)")
    args = parser.parse_args()
    _table("Grid sizes, US letter 612x792 pt", ("budget", "W x H px", "patches", "tokens"), [
        (b, "{}x{}".format(*grid_size(*LETTER, b)), "{}x{}".format(*(v // PATCH for v in grid_size(*LETTER, b))),
         (grid_size(*LETTER, b)[0] // PATCH) * (grid_size(*LETTER, b)[1] // PATCH)) for b in BUDGETS])
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.pdf"
        pdfs.mixed_corpus(corpus, 16)
        images = bench_render(corpus, args.runs)
        bench_encode(images, args.runs)
        bench_restart(corpus, args.runs)
    bench_rss(args.pages)
    bench_import([sys.executable, *args.other_python], max(args.runs, 5))


if __name__ == "__main__":
    main()
