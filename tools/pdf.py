"""Read PDFs with PyMuPDF: open (path or bytes), page sizes, exact-size renders, text layer, search.

Pages are 1-based everywhere in this API. Coordinates are PDF points with the origin at the top
left of the (rotated) page, as PyMuPDF reports them, so a bbox from :meth:`PdfDocument.text` can be
passed straight back as a ``clip`` to :meth:`PdfDocument.render`.

Everything here runs in the calling process. For untrusted files use :mod:`tilepilot.tools.pdf_worker`,
which runs the same page work in a child process that is killed at a deadline.

Why PyMuPDF 1.26 and not 2.x (measured on this machine, fresh subprocess each, median of 5-7,
three runs on a shared 2-core box; ``tests/bench/bench_pdf.py --other-python <venv>/bin/python``
repeats it):

=========  ===============  =========================  ===================================
PyMuPDF    import time      VmHWM, import + 1 render   what ``import pymupdf`` loads
=========  ===============  =========================  ===================================
1.26.7     122-164 ms       55 MiB                     MuPDF bindings only
2.0        955-1849 ms      141-143 MiB                + pymupdf.layout, numpy, onnxruntime
=========  ===============  =========================  ===================================

(bare Python 3.11: 8.5 MiB). 2.0 (MuPDF 1.28.5) drew the same pixels as 1.26.7 (MuPDF 1.26.12)
on all four page kinds of ``tests.gen.pdfs.mixed_corpus``; its extra ~0.9 s and
~87 MiB per process pay for a layout-analysis model this project does not use (the multimodal
model reads the page itself), and every fresh page-worker process would pay them again.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Sequence, cast

import numpy as np
import pymupdf
from PIL import Image
from pydantic import BaseModel, Field

from tilepilot.tools.errors import (
    CorruptPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    NotAPdfError,
    PageRangeError,
    PdfError,
    PdfNotFoundError,
    PdfPasswordError,
)

BBox = tuple[float, float, float, float]
_RawWord = tuple[float, float, float, float, str, int, int, int]  # MuPDF's "words": box, text, block, line, word
PdfSource = str | os.PathLike[str] | bytes

# The PDF spec lets a header sit anywhere in the first 1024 bytes; %%EOF must end the file
# (we allow trailing junk of the same size, which real-world writers produce).
_HEADER_WINDOW = 1024
_TRAILER_WINDOW = 1024
# Coverage is measured on a boolean grid no larger than this on the long side: a union of
# rectangles at sub-point precision on a letter page, and bounded work on a poster-sized one.
_COVERAGE_GRID = 1024

# Keep MuPDF's own warnings ("repairing PDF document", ...) off stderr: problems surface as
# one-line PdfErrors instead.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)


class Word(BaseModel):
    text: str
    bbox: BBox
    block: int
    line: int


class PageText(BaseModel):
    """A page's text layer plus the measures that tell a digital page from a scanned one."""

    page: int = Field(description="1-based page number")
    width: float = Field(description="page width in points")
    height: float = Field(description="page height in points")
    words: list[Word]
    text: str
    text_coverage: float = Field(description="fraction of the page area under word bboxes (union)")
    image_coverage: float = Field(description="fraction of the page area under placed images (union)")
    char_count: int = Field(description="non-whitespace characters in the text layer")
    drawing_coverage: float = Field(0.0, description="fraction of the page area under figure-like vector paths (union): "
                                                     "filled shapes or curves at least 12 pt on each side, not lines or frames")

    @property
    def looks_scanned(self) -> bool:
        """A page that is mostly picture and has (almost) no text layer: it needs the model's eyes."""
        return self.image_coverage >= 0.5 and self.char_count < 20


def describe_source(source: PdfSource) -> str:
    """How error messages name a source: its path, or its size when it came from memory."""
    if isinstance(source, bytes):
        return f"<PDF from memory, {len(source)} bytes>"
    return str(source)


def open_pdf(source: PdfSource, password: str | None = None, *, name: str | None = None) -> "PdfDocument":
    """Open a PDF from a path or bytes; every unusable file raises a one-line :class:`PdfError`.

    ``name`` replaces the path in messages (the page worker opens a temporary copy of bytes).
    """
    name = name or describe_source(source)
    head, tail = _read_ends(source, name)
    if b"%PDF-" not in head:
        raise NotAPdfError(f"{name} is not a PDF (no %PDF- header); pass a PDF file")
    try:
        if isinstance(source, bytes):
            doc = pymupdf.open(stream=source, filetype="pdf")
        else:
            doc = pymupdf.open(os.fspath(source), filetype="pdf")
    except Exception as err:  # MuPDF raises FileDataError/RuntimeError with multi-line text
        raise CorruptPdfError(f"{name} is corrupt and cannot be opened ({_one_line(err)}); re-export or re-download it") from None
    try:
        _check_usable(doc, name, tail, password)
    except BaseException:
        doc.close()
        raise
    return PdfDocument(doc, name)


def _read_ends(source: PdfSource, name: str) -> tuple[bytes, bytes]:
    if isinstance(source, bytes):
        return source[:_HEADER_WINDOW], source[-_TRAILER_WINDOW:]
    try:
        with open(source, "rb") as fh:
            head = fh.read(_HEADER_WINDOW)
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - _TRAILER_WINDOW))
            return head, fh.read()
    except FileNotFoundError:
        raise PdfNotFoundError(f"{name} does not exist; check the path") from None
    except IsADirectoryError:
        raise PdfNotFoundError(f"{name} is a folder, not a PDF file; pass a file") from None
    except OSError as err:
        raise PdfNotFoundError(f"{name} cannot be read ({err.strerror}); check its permissions") from None


def _check_usable(doc: pymupdf.Document, name: str, tail: bytes, password: str | None) -> None:
    # A cut-off download still opens: MuPDF silently rebuilds the xref from what is left. Only
    # call it truncated when both signs agree, so merely untidy files (repaired, %%EOF present)
    # stay readable.
    if doc.is_repaired and b"%%EOF" not in tail:
        raise CorruptPdfError(f"{name} is truncated (no %%EOF at the end); re-download or re-export it")
    if doc.needs_pass:
        if password is None:
            raise EncryptedPdfError(f"{name} is encrypted; give its password (--password)")
        if not doc.authenticate(password):
            raise PdfPasswordError(f"{name}: the password is wrong; check it and try again")
    try:
        count = doc.page_count
    except Exception as err:
        raise CorruptPdfError(f"{name} has an unreadable page tree ({_one_line(err)}); re-export it") from None
    if count == 0:
        raise EmptyPdfError(f"{name} has no pages; pass a PDF with at least one page")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def parse_page_range(spec: str, page_count: int) -> list[int]:
    """Parse ``"1-5,9"`` (also ``"7-"`` = 7 to the end) into 1-based page numbers, in order, no repeats."""
    pages: list[int] = []
    seen: set[int] = set()
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise PageRangeError(f"page range {spec!r} is empty or has an empty item; use e.g. '1-5,9'")
    for item in items:
        first, last = _parse_range_item(item, spec, page_count)
        for page in range(first, last + 1):
            if page not in seen:
                seen.add(page)
                pages.append(page)
    return pages


def _parse_range_item(item: str, spec: str, page_count: int) -> tuple[int, int]:
    start, dash, end = item.partition("-")
    try:
        first = int(start)
        last = (int(end) if end.strip() else page_count) if dash else first
    except ValueError:
        raise PageRangeError(f"page range {spec!r}: {item!r} is not a page or 'from-to'; use e.g. '1-5,9'") from None
    if first < 1 or last > page_count:
        raise PageRangeError(f"page range {spec!r}: {item!r} is outside pages 1-{page_count}; the document has {page_count} pages")
    if first > last:
        raise PageRangeError(f"page range {spec!r}: {item!r} runs backwards; write it as '{last}-{first}'")
    return first, last


class PdfDocument:
    """An open PDF. Use :func:`open_pdf`; close it (or use ``with``) to release MuPDF's memory.

    Not thread-safe (PyMuPDF is not): use one document per thread, or a PageWorker each.
    """

    def __init__(self, doc: pymupdf.Document, name: str):
        self._doc = doc
        self.name = name

    def __enter__(self) -> "PdfDocument":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._doc.is_closed:
            self._doc.close()

    @property
    def page_count(self) -> int:
        return self._doc.page_count

    @property
    def metadata(self) -> dict[str, str]:
        """Info-dictionary entries that are set (title, author, ..., creationDate); empty ones are left out."""
        return {key: str(value) for key, value in (self._doc.metadata or {}).items() if value}

    def page_range(self, spec: str) -> list[int]:
        return parse_page_range(spec, self.page_count)

    def page_size(self, page: int) -> tuple[float, float]:
        """(width, height) in points, after the page's /Rotate; reads only that page."""
        rect = self._page(page).rect
        return rect.width, rect.height

    def render(self, page: int, width: int, height: int, clip: Sequence[float] | None = None) -> Image.Image:
        """Render ``page`` (or the ``clip`` rectangle of it, in points) to exactly ``width`` x ``height`` RGB pixels."""
        w, h, samples = self.render_raw(page, width, height, clip)
        return Image.frombytes("RGB", (w, h), samples)

    def render_raw(self, page: int, width: int, height: int, clip: Sequence[float] | None = None) -> tuple[int, int, bytes]:
        """Like :meth:`render`, as ``(width, height, RGB bytes)``."""
        pix = self.render_pixmap(page, width, height, clip)
        return pix.width, pix.height, pix.samples

    def render_pixmap(self, page: int, width: int, height: int, clip: Sequence[float] | None = None) -> pymupdf.Pixmap:
        """Like :meth:`render`, as MuPDF's RGB pixmap (``samples_mv`` reads its pixels without a copy)."""
        if width < 1 or height < 1:
            raise ValueError(f"render size must be at least 1x1 pixels, got {width}x{height}")
        fz_page = self._page(page)
        area = _clip_rect(fz_page.rect, clip, page)
        try:
            return _draw(fz_page, area, width, height)
        except Exception as err:
            raise CorruptPdfError(f"page {page} of {self.name} cannot be rendered ({_one_line(err)})", page=page) from None

    def text(self, page: int) -> PageText:
        fz_page = self._page(page)
        try:
            textpage = fz_page.get_textpage(flags=pymupdf.TEXTFLAGS_WORDS)
            # get_text's return type depends on the mode, which pymupdf's annotations do not say.
            raw_words = cast(list[_RawWord], fz_page.get_text("words", textpage=textpage, sort=False))
            text = cast(str, fz_page.get_text("text", textpage=textpage))
            image_boxes = [info["bbox"] for info in fz_page.get_image_info()]
            drawing_boxes = _figure_paths(fz_page)
        except Exception as err:
            raise CorruptPdfError(f"page {page} of {self.name} has an unreadable text layer ({_one_line(err)})", page=page) from None
        rect = fz_page.rect
        # MuPDF reports text in the unrotated page's frame; a page with /Rotate is read, rendered and
        # shown turned, so its boxes are turned the same way (else they land beside their words).
        turn = fz_page.rotation_matrix if fz_page.rotation else None
        words = [Word(text=w[4], bbox=_turned(w[:4], turn), block=w[5], line=w[6]) for w in raw_words]
        image_boxes = [_turned(box, turn) for box in image_boxes]
        drawing_boxes = [_turned(box, turn) for box in drawing_boxes]
        return PageText(
            page=page,
            width=rect.width,
            height=rect.height,
            words=words,
            text=text,
            text_coverage=coverage([word.bbox for word in words], rect.width, rect.height),
            image_coverage=coverage(image_boxes, rect.width, rect.height),
            char_count=sum(len(word.text) for word in words),
            drawing_coverage=coverage(drawing_boxes, rect.width, rect.height),
        )

    def search(self, page: int, needle: str) -> list[BBox]:
        """Bounding boxes (points) of every case-insensitive occurrence of ``needle`` on ``page``."""
        if not needle.strip():
            raise ValueError("search text must not be empty")
        try:
            hits = self._page(page).search_for(needle)
        except Exception as err:
            raise CorruptPdfError(f"page {page} of {self.name} cannot be searched ({_one_line(err)})", page=page) from None
        turn = self._page(page).rotation_matrix if self._page(page).rotation else None
        return [_turned((r.x0, r.y0, r.x1, r.y1), turn) for r in hits]

    def _page(self, page: int) -> pymupdf.Page:
        if not 1 <= page <= self.page_count:
            raise PageRangeError(f"page {page} of {self.name} does not exist; it has pages 1-{self.page_count}", page=page)
        try:
            return self._doc.load_page(page - 1)
        except Exception as err:
            raise CorruptPdfError(f"page {page} of {self.name} is corrupt ({_one_line(err)})", page=page) from None


_FIGURE_MIN_PT = 12.0


def _figure_paths(page: pymupdf.Page) -> list[BBox]:
    """Boxes of vector paths that draw a figure: filled shapes or curves, both sides >= 12 pt.

    Rules, underlines, table grids and page frames are strokes of straight lines: they carry no
    content of their own that the text layer lacks, so they are left out.
    """
    boxes: list[BBox] = []
    drawings = page.get_cdrawings()
    if drawings is None:  # as iterating None would, this ends in the caller's "unreadable text layer"
        raise ValueError("MuPDF returned no drawings list")
    for path in drawings:
        x0, y0, x1, y1 = path["rect"]
        if x1 - x0 < _FIGURE_MIN_PT or y1 - y0 < _FIGURE_MIN_PT:
            continue
        if path.get("fill") is not None or any(item[0] == "c" for item in path["items"]):
            boxes.append((x0, y0, x1, y1))
    return boxes


def _turned(box: Sequence[float], turn: pymupdf.Matrix | None) -> BBox:
    """``box`` from the unrotated page's frame into the displayed (rotated) one."""
    if turn is None:
        return (box[0], box[1], box[2], box[3])
    r = pymupdf.Rect(box) * turn
    return (r.x0, r.y0, r.x1, r.y1)


def _clip_rect(page_rect: pymupdf.Rect, clip: Sequence[float] | None, page: int) -> pymupdf.Rect:
    if clip is None:
        return page_rect
    area = pymupdf.Rect(clip)
    # Half a point of slack: bboxes from the text layer may poke out of the page by rounding.
    if area.is_empty or not _inside(area, page_rect, 0.5):
        corners = (page_rect.x0, page_rect.y0, page_rect.x1, page_rect.y1)
        raise ValueError(f"clip {tuple(clip)} is empty or not inside page {page} ({corners})")
    return area


def _inside(inner: pymupdf.Rect, outer: pymupdf.Rect, slack: float) -> bool:
    return (
        inner.x0 >= outer.x0 - slack
        and inner.y0 >= outer.y0 - slack
        and inner.x1 <= outer.x1 + slack
        and inner.y1 <= outer.y1 + slack
    )


def _draw(page: pymupdf.Page, area: pymupdf.Rect, width: int, height: int) -> pymupdf.Pixmap:
    """Draw ``area`` of ``page`` into a pixmap of exactly ``width`` x ``height``, in one pass.

    ``Page.get_pixmap`` sizes its pixmap by rounding the transformed (float32) rectangle, which
    comes out one pixel too wide or tall for many clips and even for some whole rotated pages.
    Here the pixmap is allocated at the exact size first and the matrix maps ``area`` onto it,
    so the size holds by construction.
    """
    mu = pymupdf.mupdf
    sx, sy = width / area.width, height / area.height
    ctm = mu.FzMatrix(sx, 0, 0, sy, -area.x0 * sx, -area.y0 * sy)
    pix = mu.fz_new_pixmap_with_bbox(mu.fz_device_rgb(), mu.FzIrect(0, 0, width, height), mu.FzSeparations(), 0)
    mu.fz_clear_pixmap_with_value(pix, 0xFF)
    device = mu.fz_new_draw_device(mu.FzMatrix(), pix)
    this = page.this
    if this is None:  # MuPDF has let go of the page: a bug here, not in the PDF
        raise PdfError("could not draw a page: MuPDF had already dropped it")
    try:
        fz_page = this if isinstance(this, mu.FzPage) else this.super()  # PdfPage -> FzPage
        mu.fz_run_page(fz_page, device, ctm, mu.FzCookie())
    finally:
        mu.fz_close_device(device)
    # The 'raw' constructor wraps the pixmap as is (the plain one would add an alpha channel).
    return pymupdf.Pixmap("raw", pix)


def coverage(boxes: Sequence[Sequence[float]], width: float, height: float) -> float:
    """Fraction of a ``width`` x ``height`` page covered by the union of ``boxes`` (clipped to the page)."""
    if not boxes or width <= 0 or height <= 0:
        return 0.0
    cells_per_pt = min(1.0, _COVERAGE_GRID / max(width, height))
    cols, rows = max(1, round(width * cells_per_pt)), max(1, round(height * cells_per_pt))
    grid = np.zeros((rows, cols), dtype=bool)
    for x0, y0, x1, y1 in (box[:4] for box in boxes):
        c0, c1 = (int(np.clip(round(v * cells_per_pt), 0, cols)) for v in (x0, x1))
        r0, r1 = (int(np.clip(round(v * cells_per_pt), 0, rows)) for v in (y0, y1))
        grid[r0:r1, c0:c1] = True
    return float(grid.mean())
