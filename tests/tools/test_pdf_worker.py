"""tilepilot.tools.pdf_worker on real PDFs: the deadline kills a really slow page, streaming holds one image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.gen import pdfs
from tests.gen.hostile_pdfs import unrenderable_page
from tilepilot.tools.errors import CorruptPdfError, EncryptedPdfError, NotAPdfError, PageRangeError, PageTimeoutError, PdfError, PdfPasswordError
from tilepilot.tools.pdf_worker import DEADLINE_ENV, PageWorker, default_deadline_s, iter_pages

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 1.0  # the heavy page needs ~30 s; ordinary pages ~10 ms even on a busy machine


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("worker")
    return {
        "spinning": pdfs.spinning_pdf(folder / "spinning.pdf"),
        "long": pdfs.long_pdf(folder / "long.pdf", 1000),
        "encrypted": pdfs.encrypted_pdf(folder / "encrypted.pdf", "pw"),
        "not_pdf": pdfs.not_a_pdf(folder / "not.pdf"),
    }


def test_deadline_kills_a_spinning_page_and_a_new_worker_serves_the_next_page(files) -> None:
    with PageWorker(files["spinning"], deadline_s=DEADLINE_S) as worker:
        assert worker.render(1, 100, 130).size == (100, 130)
        doomed_pid = worker._child.process.pid
        with pytest.raises(PageTimeoutError) as info:
            worker.render(2, 612, 792)
        assert info.value.page == 2 and "page 2 of" in str(info.value) and "\n" not in str(info.value)
        assert worker._child.process is None  # the spinning child is gone ...
        with pytest.raises(ProcessLookupError):
            os.kill(doomed_pid, 0)  # ... killed and reaped, not left spinning in the background
        assert worker.render(3, 120, 155).size == (120, 155)
        assert "After the heavy page" in worker.text(3).text
        assert worker._child.process.pid != doomed_pid and worker.restarts == 1  # a fresh child served page 3


def test_stream_reports_the_timed_out_page_and_goes_on(files) -> None:
    results = list(iter_pages(files["spinning"], size=(80, 104), deadline_s=DEADLINE_S))
    assert [r.page for r in results] == [1, 2, 3]
    assert results[1].error is not None and "page 2" in results[1].error and results[1].image is None
    for result in (results[0], results[2]):
        assert result.error is None and result.image.size == (80, 104) and result.size_pt == (612.0, 792.0)
    assert "Before the heavy page" in results[0].text.text and "After the heavy page" in results[2].text.text


def test_thousand_page_document_opens_and_streams(files) -> None:
    seen = 0
    with PageWorker(files["long"], deadline_s=10) as worker:
        assert worker.page_count == 1000
        for result in iter_pages(worker, size=lambda w, h: (round(w / 12), round(h / 12))):
            seen += 1
            assert result.error is None and result.image.size == (51, 66)
            assert result.text.text.startswith(f"Page {result.page} of the long document")
        assert worker.restarts == 0
    assert seen == 1000


def test_stream_keeps_only_the_current_image_alive(files) -> None:
    alive: list[weakref.ref] = []
    for result in iter_pages(files["long"], "1-25", size=(300, 388), text=False):
        # No gc.collect(): refcounting alone must free them, so nothing (not even a cycle) holds on.
        assert [ref() is not None for ref in alive] == [False] * len(alive)  # earlier pages are gone
        alive.append(weakref.ref(result.image))
        assert result.text is None
    assert len(alive) == 25


def test_streaming_memory_stays_at_one_page_in_a_child_process(files) -> None:
    # Real RSS, measured in a fresh process: 40 pages of 1700x2200 (15 MB each as a PIL image,
    # 600 MB if kept) may raise the high-water mark by a few pages after the first page, no more.
    # The worker child (MuPDF's side) is held to the same bound.
    script = textwrap.dedent(
        f"""
        import json
        from tilepilot.tools.pdf_worker import PageWorker, iter_pages
        def hwm(pid="self"):
            return int(next(l for l in open(f"/proc/{{pid}}/status") if l.startswith("VmHWM")).split()[1]) * 1024
        worker = PageWorker({str(files["long"])!r})
        stream = iter_pages(worker, "1-40", size=(1700, 2200), text=False)
        first = next(stream)
        after_first, child_after_first = hwm(), hwm(worker._child.process.pid)
        del first
        count = 1
        for result in stream:  # holds the previous page while the next one arrives, like any caller
            count += 1
        print(json.dumps({{"after_first": after_first, "end": hwm(), "count": count,
                          "child_after_first": child_after_first, "child_end": hwm(worker._child.process.pid)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    numbers = json.loads(out.stdout)
    page_bytes = 1700 * 2200 * 4  # PIL keeps RGB as 4 bytes per pixel
    assert numbers["count"] == 40
    assert numbers["end"] - numbers["after_first"] < 3 * page_bytes, numbers
    assert numbers["child_end"] - numbers["child_after_first"] < 3 * page_bytes, numbers


def test_open_errors_cross_the_process_boundary(files) -> None:
    with pytest.raises(NotAPdfError) as info:
        PageWorker(files["not_pdf"])
    assert str(files["not_pdf"]) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EncryptedPdfError):
        PageWorker(files["encrypted"])
    with pytest.raises(PdfPasswordError):
        PageWorker(files["encrypted"].read_bytes(), password="wrong")
    with PageWorker(files["encrypted"].read_bytes(), password="pw") as worker:
        assert "Page 1 heading" in worker.text(1).text


def test_page_errors_and_range(files) -> None:
    with PageWorker(files["long"]) as worker:
        with pytest.raises(PageRangeError):
            worker.render(1001, 10, 10)
        with pytest.raises(ValueError):
            worker.render(1, 10, 10, clip=(0, 0, 5000, 5000))
        assert worker.render(2, 10, 10).size == (10, 10)  # the worker survived both
        with pytest.raises(PageRangeError):
            list(iter_pages(worker, "999-1002"))
        assert [r.page for r in iter_pages(worker, "2,1000", text=False)] == [2, 1000]


def test_worker_killed_while_idle_is_replaced(files) -> None:
    with PageWorker(files["long"]) as worker:
        os.kill(worker._child.process.pid, signal.SIGKILL)  # as the OOM killer would
        worker._child.process.join(30)  # dead before the next request, however busy the machine
        assert "Page 7 of" in worker.text(7).text
        assert worker.restarts == 1


def test_a_page_error_keeps_its_page_across_the_process_boundary(tmp_path: Path) -> None:
    pdf = unrenderable_page(tmp_path / "bad.pdf", pages=10, bad=10)
    with PageWorker(pdf) as worker:
        with pytest.raises(CorruptPdfError) as info:
            worker.render(10, 61, 79)
        assert type(info.value) is CorruptPdfError and info.value.page == 10 and "cannot be rendered" in str(info.value)
        assert worker.render(1, 61, 79).size == (61, 79) and worker.restarts == 0  # the child survived
    [result] = iter_pages(pdf, [10], size=(61, 79))
    assert result.error is not None and "page 10 of" in result.error and result.image is None


def test_threads_sharing_a_worker_take_turns(files) -> None:
    with PageWorker(files["long"]) as worker, ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda page: worker.text(page).text, range(1, 41)))
        sizes = list(pool.map(lambda page: worker.render(page, 30 + page, 40).size, range(1, 41)))
    assert [t.split()[1] for t in texts] == [str(page) for page in range(1, 41)]
    assert sizes == [(30 + page, 40) for page in range(1, 41)]


def test_bytes_source_leaves_no_temp_file(files) -> None:
    worker = PageWorker(files["long"].read_bytes())
    temp = Path(worker._child.temp_path)
    assert temp.exists() and worker.name.startswith("<PDF from memory")
    worker.close()
    assert not temp.exists() and worker._child.process is None


def test_fork_start_method_works_too(files) -> None:
    with PageWorker(files["spinning"], deadline_s=DEADLINE_S, start_method="fork") as worker:
        with pytest.raises(PageTimeoutError):
            worker.render(2, 612, 792)
        assert worker.render(3, 50, 60).size == (50, 60)


def test_unguarded_caller_script_is_not_rerun_in_the_worker(files, tmp_path: Path) -> None:
    # multiprocessing would re-import a script lacking `if __name__ == "__main__":` in the child.
    script = tmp_path / "unguarded.py"
    script.write_text(f"from tilepilot.tools.pdf_worker import PageWorker\nprint('RUN')\nw = PageWorker({str(files['long'])!r})\nprint(w.render(1, 8, 9).size)\nw.close()\n")
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["RUN", "(8,", "9)"]


def test_deadline_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert default_deadline_s() == 30.0
    monkeypatch.setenv(DEADLINE_ENV, "2.5")
    assert default_deadline_s() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(DEADLINE_ENV, bad)
        with pytest.raises(PdfError) as info:
            default_deadline_s()
        assert DEADLINE_ENV in str(info.value) and "\n" not in str(info.value)
