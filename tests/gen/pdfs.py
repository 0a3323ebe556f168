"""Deterministic test PDFs, written with PyMuPDF's *writing* API (tilepilot.tools.pdf only reads).

Each function writes one file to the path it is given and returns that path (or, for
:func:`mixed_corpus`, the kind of every page). The same arguments give the same content; only
the encrypted file differs byte for byte between runs (AES-256 salts are random).

Page kinds and what a reader should measure on them:
- ``dense`` / ``sparse``: digital text, text layer present, no images.
- ``scan``: one full-page image of rendered text and no text layer (what a scanner produces).
- ``table``: a drawn grid with text in its cells.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Mapping, Sequence

import pymupdf
from PIL import Image

LETTER = (612.0, 792.0)
A4 = (595.0, 842.0)
FIXED_METADATA = {
    "title": "tilepilot test document",
    "author": "tests.gen.pdfs",
    "subject": "generated fixture",
    "keywords": "tilepilot, test",
    "creator": "tests.gen.pdfs",
    "producer": "PyMuPDF",
    "creationDate": "D:20240101000000Z",
    "modDate": "D:20240101000000Z",
}
PAGE_KINDS = ("dense", "sparse", "scan", "table")
_WORDS = (
    "agreement party payment invoice term notice clause liability period service delivery "
    "account balance report quarter review schedule annex section obligation warranty supplier "
    "customer contract renewal budget figure total amount due within days written consent"
).split()
_MARGIN = 54.0
_SCAN_DPI = 100


def _save(doc: pymupdf.Document, path: str | Path, **options: object) -> Path:
    doc.set_metadata(FIXED_METADATA)
    doc.save(str(path), deflate=True, no_new_id=True, **options)
    doc.close()
    return Path(path)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _write_lines(page: pymupdf.Page, lines: Sequence[str], top: float, fontsize: float) -> None:
    if lines:
        # One insert_text call per page: several times faster than one per line.
        page.insert_text((_MARGIN, top + fontsize), "\n".join(lines), fontsize=fontsize, fontname="helv")


def _text_lines(kind: str, rng: random.Random, planted: Sequence[str]) -> tuple[list[str], float]:
    if kind == "dense":
        return [_sentence(rng, 11) for _ in range(55)] + list(planted), 9.0
    return ["Summary", _sentence(rng, 8), _sentence(rng, 6)] + list(planted), 12.0


def _add_text_page(doc: pymupdf.Document, kind: str, rng: random.Random, planted: Sequence[str], size: tuple[float, float] = LETTER) -> None:
    page = doc.new_page(width=size[0], height=size[1])
    lines, fontsize = _text_lines(kind, rng, planted)
    _write_lines(page, lines, _MARGIN, fontsize)


def _add_scan_page(doc: pymupdf.Document, rng: random.Random, planted: Sequence[str], size: tuple[float, float] = LETTER) -> None:
    # Typeset the text on a scratch page, photograph it in gray, and place only the photo.
    scratch = pymupdf.open()
    source = scratch.new_page(width=size[0], height=size[1])
    _write_lines(source, [_sentence(rng, 9) for _ in range(25)] + list(planted), _MARGIN, 11.0)
    photo = source.get_pixmap(dpi=_SCAN_DPI, colorspace=pymupdf.csGRAY)
    scratch.close()
    # PIL's libjpeg-turbo encodes ~10x faster than MuPDF's own JPEG writer.
    jpeg = io.BytesIO()
    Image.frombytes("L", (photo.width, photo.height), photo.samples).save(jpeg, "JPEG", quality=70)
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_image(page.rect, stream=jpeg.getvalue())


def _add_table_page(doc: pymupdf.Document, rng: random.Random, planted: Sequence[str], rows: int = 8, cols: int = 4) -> None:
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    cell_w, cell_h = (LETTER[0] - 2 * _MARGIN) / cols, 24.0
    shape = page.new_shape()
    for r in range(rows + 1):
        shape.draw_line((_MARGIN, _MARGIN + r * cell_h), (_MARGIN + cols * cell_w, _MARGIN + r * cell_h))
    for c in range(cols + 1):
        shape.draw_line((_MARGIN + c * cell_w, _MARGIN), (_MARGIN + c * cell_w, _MARGIN + rows * cell_h))
    shape.finish(color=(0, 0, 0), width=0.8)
    shape.commit()
    for c in range(cols):
        # One multi-line insert per column (line height = row height): far faster than per cell.
        column = [f"Col {c + 1}"] + [f"R{r + 1}C1" if c == 0 else f"{rng.randrange(100, 99999)}" for r in range(1, rows)]
        page.insert_text((_MARGIN + c * cell_w + 4, _MARGIN + 16), "\n".join(column), fontsize=10, fontname="helv", lineheight=cell_h / 10)
    _write_lines(page, list(planted), _MARGIN + rows * cell_h + 24, 11.0)


def _add_page(doc: pymupdf.Document, kind: str, rng: random.Random, planted: Sequence[str]) -> None:
    if kind == "scan":
        _add_scan_page(doc, rng, planted)
    elif kind == "table":
        _add_table_page(doc, rng, planted)
    else:
        _add_text_page(doc, kind, rng, planted)


def digital_pdf(path: str | Path, pages: int = 3, seed: int = 0) -> Path:
    """Dense digital text pages; page N starts with the line ``Page N heading``."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        _add_text_page(doc, "dense", random.Random(seed * 7919 + number), [], LETTER)
        doc[-1].insert_text((_MARGIN, 40), f"Page {number} heading", fontsize=14, fontname="helv")
    return _save(doc, path)


def scanned_pdf(path: str | Path, pages: int = 2, seed: int = 0) -> Path:
    """Image-only pages of rendered text: no text layer at all."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        _add_scan_page(doc, random.Random(seed * 7919 + number), [])
    return _save(doc, path)


def table_pdf(path: str | Path, rows: int = 8, cols: int = 4, seed: int = 0) -> Path:
    """One page with a ruled grid; header cells say ``Col c``, first-column cells ``Rr C1``."""
    doc = pymupdf.open()
    _add_table_page(doc, random.Random(seed), [], rows, cols)
    return _save(doc, path)


def encrypted_pdf(path: str | Path, password: str = "open-sesame", pages: int = 2) -> Path:
    """AES-256 with a user password (nothing readable without it)."""
    doc = pymupdf.open(digital_pdf(Path(path), pages))
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    doc.close()
    Path(path).write_bytes(data)
    return Path(path)


def truncated_pdf(path: str | Path, keep: float = 0.6) -> Path:
    """A valid 3-page PDF cut off after ``keep`` of its bytes, as an interrupted download leaves it."""
    data = Path(digital_pdf(path, 3)).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def not_a_pdf(path: str | Path) -> Path:
    """Plain text bytes under a .pdf name."""
    Path(path).write_bytes(b"Quarterly numbers\nrevenue,12\ncosts,9\n" * 20)
    return Path(path)


def empty_pdf(path: str | Path) -> Path:
    """A well-formed PDF whose page tree has no pages (PyMuPDF refuses to save one, so hand-written)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    Path(path).write_bytes(bytes(out))
    return Path(path)


# (width, height, /Rotate): letter, A4, landscape tabloid, a small card, and letter rotated 90°.
MIXED_SIZES: tuple[tuple[float, float, int], ...] = (
    (612.0, 792.0, 0),
    (595.0, 842.0, 0),
    (1224.0, 792.0, 0),
    (252.0, 144.0, 0),
    (612.0, 792.0, 90),
)


def mixed_sizes_pdf(path: str | Path) -> Path:
    """One page per entry of :data:`MIXED_SIZES`; each says ``Size page N``."""
    doc = pymupdf.open()
    for number, (width, height, rotation) in enumerate(MIXED_SIZES, start=1):
        page = doc.new_page(width=width, height=height)
        page.insert_text((20, 40), f"Size page {number}", fontsize=12, fontname="helv")
        page.set_rotation(rotation)
    return _save(doc, path)


def long_pdf(path: str | Path, pages: int = 1000) -> Path:
    """Many short text pages (``Page N of the long document``); 1000 pages take about a second."""
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=LETTER[0], height=LETTER[1])
        page.insert_text((72, 72), f"Page {number} of the long document", fontsize=12, fontname="helv")
    return _save(doc, path)


def spinning_pdf(path: str | Path, curves: int = 50_000) -> Path:
    """Three pages; page 2 strokes ``curves`` page-wide Bézier curves (50 000 take ~30 s to render here).

    Pages 1 and 3 are ordinary text pages (``Before the heavy page`` / ``After the heavy page``).
    The heavy stream is arithmetic, not random, so writing it costs milliseconds.
    """
    doc = pymupdf.open()
    doc.new_page(width=LETTER[0], height=LETTER[1]).insert_text((72, 72), "Before the heavy page", fontname="helv")
    heavy = doc.new_page(width=LETTER[0], height=LETTER[1])
    ops = [b"0.5 w\n"]
    for k in range(curves):
        ops.append(b"%d %d m %d %d %d %d %d %d c S\n" % (
            k * 37 % 612, k * 53 % 792, k * 91 % 612, k * 13 % 792, k * 71 % 612, k * 29 % 792, k * 17 % 612, k * 83 % 792))
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, b"".join(ops))
    doc.xref_set_key(heavy.xref, "Contents", f"{xref} 0 R")
    doc.new_page(width=LETTER[0], height=LETTER[1]).insert_text((72, 72), "After the heavy page", fontname="helv")
    return _save(doc, path)


def mixed_corpus(path: str | Path, pages: int, plant: Mapping[int, Sequence[str]] | None = None, seed: int = 0) -> list[str]:
    """A long document cycling dense, sparse, scan and table pages; returns each page's kind.

    ``plant`` maps 1-based page numbers to extra lines written on that page: as text on text and
    table pages, and inside the picture on scan pages (so only the model's eyes can find them).
    Page N's kind is ``PAGE_KINDS[(N - 1) % 4]``. 300 pages take a few seconds.
    """
    plant = dict(plant or {})
    unknown = sorted(p for p in plant if not 1 <= p <= pages)
    if unknown:
        raise ValueError(f"plant names pages {unknown} outside 1-{pages}")
    doc = pymupdf.open()
    kinds = []
    for number in range(1, pages + 1):
        kind = PAGE_KINDS[(number - 1) % len(PAGE_KINDS)]
        _add_page(doc, kind, random.Random(seed * 7919 + number), plant.get(number, ()))
        kinds.append(kind)
    _save(doc, path)
    return kinds
