"""Open an image file the way its name says, or fail in one line.

Pillow's ``Image.open`` guesses the format from the bytes and accepts any of the dozens it knows,
whatever the file is called; a ``.png`` that is really an EPS, a PSD or an ICNS goes through a
decoder nobody meant to run. Here the suffix decides the one decoder that may read it
(:data:`IMAGE_FORMATS`), and a picture (or a TIFF frame) whose pixel count is a decompression bomb
(over Pillow's ``MAX_IMAGE_PIXELS``, about 89 megapixels; a 600 dpi A4 scan is 35) is refused
before it is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tilepilot.tools.errors import ToolError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)


class ImageReadError(ToolError):
    """An image file is missing, of another format than its name says, corrupt, or too large to decode."""


def open_image(path: Path, data: bytes | None = None) -> Image.Image:
    """``path`` (or ``data``, named by ``path``) opened with the one decoder its suffix names.

    Pillow decodes lazily: decode (``load``, ``convert``, frame by frame) inside :func:`decoding`.
    """
    path = Path(path)
    wanted = IMAGE_FORMATS.get(path.suffix.lower())
    if wanted is None:
        raise ImageReadError(f"{path}: unsupported image type {path.suffix or '(no extension)'!r}; "
                             f"use {', '.join(IMAGE_SUFFIXES)}")
    with decoding(path):
        try:
            image = Image.open(io.BytesIO(data) if data is not None else path, formats=[wanted])
        except UnidentifiedImageError:
            raise ImageReadError(f"{path}: not a {wanted} image (its content is another format, or damaged); "
                                 "save it in the format its name says") from None
        check_pixels(path, image)
        return image


@contextmanager
def decoding(path: Path) -> Iterator[None]:
    """Turn what Pillow raises while reading ``path`` into one :class:`ImageReadError` line."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse the whole range.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ImageReadError(f"{path}: not a readable image ({first})") from None


def check_pixels(path: Path, image: Image.Image) -> None:
    """Refuse a frame larger than Pillow's bomb limit (Pillow checks only the first frame of a file)."""
    if Image.MAX_IMAGE_PIXELS is not None and image.width * image.height > Image.MAX_IMAGE_PIXELS:
        raise _bomb(path)


def _bomb(path: Path) -> ImageReadError:
    return ImageReadError(f"{path}: the image is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels: "
                          "a decompression bomb); scale it down first")
