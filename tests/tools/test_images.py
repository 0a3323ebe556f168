"""Image inputs (review scans, ``ask --image``): only the decoder the name says, and no decompression bombs.

Every attack goes through the real CLI and must end in one line, without a traceback or a run folder.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tilepilot.tools.images import ImageReadError, open_image
from tests.conftest import tilepilot


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: Pillow sizes it from the header alone."""
    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def _review_one_line(path: Path, tmp_path: Path) -> str:
    out = tmp_path / "run"
    proc = tilepilot("review", str(path), "--no-model", "--out", str(out), env={"TILEPILOT_CACHE": str(tmp_path / "cache")})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize("width, height", [(30_000, 30_000), (10_000, 10_000)], ids=["over-twice-the-limit", "warning-range"])
def test_a_decompression_bomb_is_one_line(tmp_path: Path, width: int, height: int) -> None:
    bomb = tmp_path / "scan.png"
    bomb.write_bytes(_png_claiming(width, height))
    line = _review_one_line(bomb, tmp_path)
    assert str(bomb) in line and "decompression bomb" in line, line
    proc = tilepilot("ask", "what is this?", "--image", str(bomb), "--base-url", "http://127.0.0.1:9")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1 and "decompression bomb" in lines[0], proc.stderr


def test_a_bomb_in_a_later_tiff_frame_is_refused(tmp_path: Path) -> None:
    # Pillow checks the size of the first frame only; the second one here has 100 megapixels.
    scan = tmp_path / "scan.tiff"
    Image.new("L", (100, 100), 255).save(scan, save_all=True, compression="tiff_deflate",
                                         append_images=[Image.new("1", (10_000, 10_000), 1)])
    line = _review_one_line(scan, tmp_path)
    assert "decompression bomb" in line, line


@pytest.mark.parametrize("fmt", ["JPEG", "ICO", "GIF"])
def test_content_of_another_format_than_the_name_is_refused(tmp_path: Path, fmt: str) -> None:
    disguised = tmp_path / "page.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(disguised, format=fmt)
    line = _review_one_line(disguised, tmp_path)
    assert f"{disguised}: not a PNG image" in line, line
    with pytest.raises(ImageReadError, match="not a PNG image"):
        open_image(disguised)


def test_ask_refuses_an_image_type_it_does_not_read(tmp_path: Path) -> None:
    bmp = tmp_path / "shot.bmp"
    Image.new("RGB", (8, 8)).save(bmp)
    proc = tilepilot("ask", "what is this?", "--image", str(bmp), "--base-url", "http://127.0.0.1:9")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1 and "unsupported image type '.bmp'" in lines[0], proc.stderr


def test_honest_scans_still_convert(tmp_path: Path) -> None:
    from tilepilot.tools.convert import to_pdf

    png, tiff = tmp_path / "page.png", tmp_path / "pages.tif"
    Image.new("RGB", (300, 400), "white").save(png, dpi=(100, 100))
    Image.new("L", (300, 400), 255).save(tiff, save_all=True, append_images=[Image.new("L", (300, 400), 128)])
    import pymupdf

    assert pymupdf.open(to_pdf(png, tmp_path / "cache")).page_count == 1
    assert pymupdf.open(to_pdf(tiff, tmp_path / "cache")).page_count == 2
