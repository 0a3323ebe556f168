"""Hand-built hostile PDFs: each is raw PDF syntax, written byte by byte, so it can lie in ways a
PDF library would refuse to write (claimed page counts, cycles, broken cross-references)."""

from __future__ import annotations

import zlib
from pathlib import Path


def _build(objects: dict[int, bytes], root: int = 1, xref_ok: bool = True, trailer_extra: bytes = b"") -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        off = offsets.get(num, 0)
        if not xref_ok:
            off = (off * 7919 + 13) % 100_000  # every entry points somewhere wrong
        out += b"%010d 00000 %s \n" % (off, b"n" if num in offsets else b"f")
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (size, root, trailer_extra, xref_at)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _text_page(parent: int, content: int, font: int, box: bytes = b"0 0 612 792") -> bytes:
    return (b"<< /Type /Page /Parent %d 0 R /MediaBox [%s] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (parent, box, content, font))


def _text(s: str, x: int = 72, y: int = 720, size: int = 12) -> bytes:
    return b"BT /F1 %d Tf %d %d Td (%s) Tj ET" % (size, x, y, s.encode("latin-1"))


def _one_page(text: bytes, *, count: int = 1, box: bytes = b"0 0 612 792", extra: dict[int, bytes] | None = None,
              kids: bytes = b"3 0 R") -> dict[int, bytes]:
    """Catalog (1), page tree (2), one text page (3) with its content (4) and font (5), plus extras."""
    return {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        3: _text_page(2, 4, 5, box=box),
        4: _stream(text),
        5: _FONT,
        **(extra or {}),
    }


def claims_million_pages(path: str | Path) -> Path:
    """The page tree's /Count says 1,000,000; one page exists."""
    objs = _one_page(_text("The only real page of a document that claims a million."), count=1_000_000)
    Path(path).write_bytes(_build(objs))
    return Path(path)


def huge_page(path: str | Path) -> Path:
    """One 200 x 200 inch page (14400 pt, the largest a PDF allows) with a little text."""
    objs = _one_page(_text("Governing law: a very large page.", 720, 13000, 200), box=b"0 0 14400 14400")
    Path(path).write_bytes(_build(objs))
    return Path(path)


def looping_page_tree(path: str | Path) -> Path:
    """A Pages node that lists itself (and its parent) among its kids, beside one good page."""
    objs = _one_page(_text("A good page before the loop."), count=3, kids=b"3 0 R 6 0 R",
                     extra={6: b"<< /Type /Pages /Parent 2 0 R /Kids [6 0 R 2 0 R] /Count 2 >>"})
    Path(path).write_bytes(_build(objs))
    return Path(path)


def deeply_nested_page_tree(path: str | Path, depth: int = 5000) -> Path:
    """The only page sits under ``depth`` levels of Pages nodes."""
    objs = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for level in range(depth):
        num = 2 + level
        parent = b"/Parent %d 0 R " % (num - 1) if level else b""
        objs[num] = b"<< /Type /Pages %s/Kids [%d 0 R] /Count 1 >>" % (parent, num + 1)
    page = 2 + depth
    objs[page] = _text_page(page - 1, page + 1, page + 2)
    objs[page + 1] = _stream(_text("Deep down."))
    objs[page + 2] = _FONT
    Path(path).write_bytes(_build(objs))
    return Path(path)


def broken_xref(path: str | Path) -> Path:
    """Every cross-reference offset is wrong; a reader must rebuild the table by scanning."""
    objs = _one_page(_text("Recovered despite a broken xref."))
    Path(path).write_bytes(_build(objs, xref_ok=False))
    return Path(path)


def broken_font(path: str | Path) -> Path:
    """An embedded TrueType font whose program is garbage, used by the page's text."""
    junk = bytes((i * 37 + 11) % 256 for i in range(4096))
    objs = _one_page(_text("Text in a broken font."), extra={
        5: b"<< /Type /Font /Subtype /TrueType /BaseFont /Broken /FirstChar 32 /LastChar 126 "
           b"/Widths [%s] /FontDescriptor 6 0 R >>" % b" ".join([b"500"] * 95),
        6: b"<< /Type /FontDescriptor /FontName /Broken /Flags 32 /FontBBox [0 0 1000 1000] "
           b"/ItalicAngle 0 /Ascent 800 /Descent -200 /CapHeight 700 /StemV 80 /FontFile2 7 0 R >>",
        7: _stream(zlib.compress(junk), b"/Filter /FlateDecode /Length1 4096 "),
    })
    Path(path).write_bytes(_build(objs))
    return Path(path)


def unrenderable_page(path: str | Path, pages: int = 10, bad: int = 10) -> Path:
    """``pages`` text pages; page ``bad`` also places an image whose PNG-predictor row is too wide to decode.

    Its text layer reads and its image is seen by the text layer (so the planner sends it as an
    image), but MuPDF refuses to draw it: every render of that page fails, every other page is sound.
    """
    kids = [3 + 3 * i for i in range(pages)]  # each page: page object, content stream, image (bad page only)
    objs: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), pages),
        3 + 3 * pages: _FONT,
    }
    font = 3 + 3 * pages
    for i, num in enumerate(kids, start=1):
        text = _text(f"Page {i}: the Supplier shall deliver the goods within thirty days of the order.")
        if i != bad:
            objs[num] = _text_page(2, num + 1, font)
            objs[num + 1] = _stream(text)
            continue
        objs[num] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << "
                     b"/Font << /F1 %d 0 R >> /XObject << /Im1 %d 0 R >> >> >>" % (num + 1, font, num + 2))
        objs[num + 1] = _stream(text + b" q 500 0 0 500 50 50 cm /Im1 Do Q")
        objs[num + 2] = _stream(zlib.compress(b"\x02" * 5000), b"/Type /XObject /Subtype /Image /Width 100 /Height 100 "
                                b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode "
                                b"/DecodeParms << /Predictor 15 /Columns 2000000000 /Colors 4 /BitsPerComponent 16 >> ")
    Path(path).write_bytes(_build(objs))
    return Path(path)


HOSTILE = {
    "claims_million_pages": claims_million_pages,
    "huge_page": huge_page,
    "looping_page_tree": looping_page_tree,
    "deeply_nested_page_tree": deeply_nested_page_tree,
    "broken_xref": broken_xref,
    "broken_font": broken_font,
}
