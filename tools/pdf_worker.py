"""Page work with a deadline: render and read pages in a child process that is killed when it overruns.

A malformed page can make MuPDF spin inside C code, where no Python timeout reaches. So
:class:`PageWorker` keeps one child process that has the document open and does one page
operation per request; the parent waits at most ``deadline_s`` for the answer, then SIGKILLs the
child, raises :class:`PageTimeoutError` for that page and starts a fresh child on the next
request. Images cross the pipe as raw RGB bytes plus their size.

Children come from a *forkserver* that has ``tilepilot.tools.pdf`` (and so PyMuPDF) preloaded: a restart is
a fork of that small, single-threaded process, not a new interpreter, and it is safe even when the
caller runs threads (LangGraph, httpx), which a plain ``fork`` of the caller is not.
Measured (``tests/bench/bench_pdf.py``): a restart costs 19-37 ms with forkserver, 8-12 ms with
``start_method="fork"``; the first worker in a process pays ~0.9 s once to start the forkserver
(a fork-started first worker: ~14 ms). A request round trip is ~0.2 ms.

:func:`iter_pages` streams a document page by page on top of a worker: it holds no page image
after yielding it, and a page that times out or is corrupt becomes a :class:`PageResult` with
``error`` set while the stream goes on with the next page.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import os
import sys
import tempfile
import threading
import types
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tilepilot.tools import errors
from tilepilot.tools.errors import CorruptPdfError, PageRangeError, PageTimeoutError, PdfError
from tilepilot.tools.pdf import PageText, PdfSource, describe_source, open_pdf, parse_page_range

DEFAULT_DEADLINE_S = 30.0
DEADLINE_ENV = "TILEPILOT_PAGE_DEADLINE_S"
# Starting a child (and, the first time, the forkserver itself) is not the PDF's fault, so opening
# the document gets this much on top of the page deadline.
_START_ALLOWANCE_S = 10.0

StartMethod = Literal["forkserver", "fork"]
# A fixed (width, height) in pixels, or a function of the page size in points returning one, so
# mixed page sizes each get their own exact size (e.g. the model's token-budget grid).
RenderSize = tuple[int, int] | Callable[[float, float], tuple[int, int]]


class PageResult(BaseModel):
    """One streamed page: what was asked for, or ``error`` (a one-line message) when the page failed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    page: int
    size_pt: tuple[float, float] | None = None
    image: Image.Image | None = None
    text: PageText | None = None
    error: str | None = None


def default_deadline_s() -> float:
    raw = os.environ.get(DEADLINE_ENV)
    if raw is None:
        return DEFAULT_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise PdfError(f"{DEADLINE_ENV}={raw!r} is not a positive number of seconds; set it to e.g. 30")
    return value


@dataclass
class _Child:
    """Everything the finalizer must clean up, kept apart from the worker so it can be collected."""

    process: multiprocessing.process.BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None
    temp_path: str | None = None

    def stop(self, graceful: bool) -> None:
        if self.conn is not None:
            if graceful and self.process is not None and self.process.is_alive():
                try:
                    self.conn.send(("close", ()))
                except OSError:
                    pass
            self.conn.close()
            self.conn = None
        if self.process is not None:
            if graceful:
                self.process.join(timeout=2.0)
            if self.process.is_alive():
                self.process.kill()
            self.process.join()
            self.process = None

    def cleanup(self) -> None:
        self.stop(graceful=True)
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass
            self.temp_path = None


class PageWorker:
    """Like :class:`tilepilot.tools.pdf.PdfDocument` (render, text, page_size), with every call bounded by ``deadline_s``.

    Calls from several threads are safe but take turns (one child, one request at a time); to
    render pages in parallel, give each thread its own worker.
    """

    def __init__(
        self,
        source: PdfSource,
        password: str | None = None,
        deadline_s: float | None = None,
        start_method: StartMethod = "forkserver",
    ):
        self.name = describe_source(source)
        self.deadline_s = default_deadline_s() if deadline_s is None else float(deadline_s)
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.restarts = 0  # children killed at a deadline or lost to a crash
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._password = password
        # Each literal on its own: typeshed gives the concrete context (which has Process) per method name.
        self._context: multiprocessing.context.ForkServerContext | multiprocessing.context.ForkContext = (
            multiprocessing.get_context("forkserver") if start_method == "forkserver" else multiprocessing.get_context("fork"))
        if start_method == "forkserver":
            # Only takes effect if the forkserver is not running yet; harmless otherwise.
            self._context.set_forkserver_preload(["tilepilot.tools.pdf"])
        self._child = _Child()
        self._finalizer = weakref.finalize(self, _Child.cleanup, self._child)
        if isinstance(source, bytes):
            # Restarts reopen a file instead of shipping the bytes through the pipe again.
            fd, self._child.temp_path = tempfile.mkstemp(prefix="tilepilot-", suffix=".pdf")
            with os.fdopen(fd, "wb") as fh:
                fh.write(source)
            self._path = self._child.temp_path
        else:
            self._path = os.fspath(source)
        # Open now, so a bad file fails here with its one-line error, not on the first page.
        try:
            self.page_count, self.metadata = self._start()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "PageWorker":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._finalizer()

    def restart(self) -> None:
        """Replace the child with a fresh one now (drops whatever MuPDF has cached for the document)."""
        with self._lock:
            self._child.stop(graceful=True)
            self._start()

    def page_range(self, spec: str) -> list[int]:
        return parse_page_range(spec, self.page_count)

    def page_size(self, page: int) -> tuple[float, float]:
        return self._call(page, "page_size", (page,))

    def text(self, page: int) -> PageText:
        return self._call(page, "text", (page,))

    def render(self, page: int, width: int, height: int, clip: Sequence[float] | None = None) -> Image.Image:
        width_px, height_px, samples = self._call(page, "render", (page, width, height, None if clip is None else tuple(clip)))
        return Image.frombytes("RGB", (width_px, height_px), samples)

    # -- child management -------------------------------------------------------------------

    def _start(self) -> tuple[int, dict[str, str]]:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve, args=(child_conn, self._path, self._password, self.name), daemon=True, name="tilepilot-pdf-worker"
        )
        with _caller_script_hidden():
            process.start()
        child_conn.close()
        self._child.process, self._child.conn = process, parent_conn
        wait_s = self.deadline_s + _START_ALLOWANCE_S
        if not parent_conn.poll(wait_s):
            self._child.stop(graceful=False)
            raise CorruptPdfError(f"opening {self.name} took longer than {wait_s:g} s; the file is probably malformed")
        reply = self._receive(None)
        return reply[1], reply[2]

    def _call(self, page: int, op: str, args: tuple[Any, ...]) -> Any:
        if not 1 <= page <= self.page_count:
            raise PageRangeError(f"page {page} of {self.name} does not exist; it has pages 1-{self.page_count}", page=page)
        with self._lock:
            return self._call_locked(page, op, args)

    def _call_locked(self, page: int, op: str, args: tuple[Any, ...]) -> Any:
        if self._child.process is None:
            self.restarts += 1
            self._start()
        conn = self._child.conn
        assert conn is not None
        try:
            conn.send((op, args))
        except OSError:  # the child died while idle (OOM killer, ...): start a fresh one, once
            self._child.stop(graceful=False)
            self.restarts += 1
            self._start()
            conn = self._child.conn
            assert conn is not None
            conn.send((op, args))
        if not conn.poll(self.deadline_s):
            self._child.stop(graceful=False)
            raise PageTimeoutError(
                f"page {page} of {self.name} took longer than {self.deadline_s:g} s and was skipped; "
                f"raise {DEADLINE_ENV} if the page is just very large",
                page=page,
            )
        reply = self._receive(page)
        if reply[0] == "pixels":
            return reply[1], reply[2], self._read_pixels(page, reply[1] * reply[2] * 3)
        return reply[1]

    def _read_pixels(self, page: int, size: int) -> bytearray:
        # Connection.recv_bytes would hold the image two or three times over while assembling
        # it; reading into one buffer of the known size keeps a page to exactly one copy.
        assert self._child.conn is not None
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        while done < size:
            got = os.readv(self._child.conn.fileno(), [view[done:]])
            if got == 0:
                self._child.stop(graceful=False)
                raise CorruptPdfError(f"page {page} of {self.name}: the PDF worker died while sending the image; try again",
                                      page=page)
            done += got
        return buffer

    def _receive(self, page: int | None) -> tuple[Any, ...]:
        assert self._child.conn is not None
        try:
            reply = self._child.conn.recv()
        except (EOFError, OSError):
            exitcode = self._child.process.exitcode if self._child.process else None
            self._child.stop(graceful=False)
            where = f"page {page} of {self.name}" if page else f"opening {self.name}"
            raise CorruptPdfError(f"{where} crashed the PDF worker (exit code {exitcode}); the file is probably malformed",
                                  page=page) from None
        if reply[0] == "error":
            raise _rebuild_error(*reply[1:])
        return reply


@contextmanager
def _caller_script_hidden() -> Iterator[None]:
    """Keep multiprocessing from re-running the caller's ``__main__`` script in the child.

    The forkserver child runs only :func:`_serve`, but multiprocessing would first re-import the
    caller's script there, which starts the caller's work over again when the script lacks an
    ``if __name__ == "__main__":`` guard. A bare stand-in for the moment of ``start()`` records
    no main module to re-import.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _rebuild_error(class_name: str, message: str, page: int | None) -> Exception:
    """The child's error, raised again in the parent: same class, message and page."""
    cls = getattr(errors, class_name, None)
    if isinstance(cls, type) and issubclass(cls, PdfError):
        return cls(message, page=page)
    if class_name == "ValueError":
        return ValueError(message)
    return CorruptPdfError(message, page=page)


def _serve(conn: multiprocessing.connection.Connection, path: str, password: str | None, name: str) -> None:
    """Child loop: open once, then answer ``(op, args)`` requests until told to close or the pipe ends."""
    try:
        doc = open_pdf(path, password, name=name)
    except PdfError as err:
        conn.send(("error", type(err).__name__, str(err), err.page))
        return
    conn.send(("ready", doc.page_count, doc.metadata))
    while True:
        try:
            op, args = conn.recv()
        except EOFError:
            return
        if op == "close":
            return
        try:
            if op == "render":
                pix = doc.render_pixmap(*args)
                conn.send(("pixels", pix.width, pix.height))
                _write_all(conn.fileno(), pix.samples_mv)  # straight from MuPDF's buffer, no copy
                del pix  # the child's only pixmap, freed before the next request
            else:
                conn.send(("ok", getattr(doc, op)(*args)))
        except (PdfError, ValueError) as err:
            conn.send(("error", type(err).__name__, str(err), getattr(err, "page", None)))


def _write_all(fd: int, data: memoryview) -> None:
    """Raw bytes right after a ("pixels", w, h) message; both ends know the length, so no framing."""
    data = data.cast("B")
    while data:
        data = data[os.write(fd, data):]


def iter_pages(
    source: PdfSource | PageWorker,
    pages: str | Iterable[int] | None = None,
    *,
    size: RenderSize | None = None,
    text: bool = True,
    password: str | None = None,
    deadline_s: float | None = None,
) -> Iterator[PageResult]:
    """Stream pages (all, a range like ``"1-5,9"``, or numbers): an image when ``size`` is given, the text layer when ``text``.

    Opening errors (not a PDF, encrypted, ...) and bad ranges raise; a page that times out or is
    corrupt is yielded with ``error`` set. Pass a :class:`PageWorker` to reuse one (it is left open).
    """
    worker = source if isinstance(source, PageWorker) else PageWorker(source, password, deadline_s)
    try:
        for page in _page_numbers(worker, pages):
            yield _one_page(worker, page, size, text)
    finally:
        if worker is not source:
            worker.close()


def _page_numbers(worker: PageWorker, pages: str | Iterable[int] | None) -> Iterable[int]:
    if pages is None:
        return range(1, worker.page_count + 1)  # lazy: a PDF may claim a million pages
    if isinstance(pages, str):
        return worker.page_range(pages)
    numbers = list(pages)
    for page in numbers:
        if not 1 <= page <= worker.page_count:
            raise PageRangeError(f"page {page} of {worker.name} does not exist; it has pages 1-{worker.page_count}", page=page)
    return numbers


def _one_page(worker: PageWorker, page: int, size: RenderSize | None, want_text: bool) -> PageResult:
    # Built and returned in one go, so the generator keeps no image alive once it has yielded.
    try:
        size_pt = worker.page_size(page)
        pixels = (size(*size_pt) if callable(size) else size) if size is not None else None
        return PageResult(
            page=page,
            size_pt=size_pt,
            image=worker.render(page, *pixels) if pixels is not None else None,
            text=worker.text(page) if want_text else None,
        )
    except (PageTimeoutError, CorruptPdfError, PageRangeError) as err:
        # PageRangeError here means a page the file claims but does not have (the range itself
        # was checked against the claimed count): that page failed, the stream goes on.
        return PageResult(page=page, error=str(err))
