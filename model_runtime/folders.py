"""A folder that appears whole or not at all: built under a temporary name, then renamed into place."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def folder_in_place(out: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block succeeds it replaces ``out``.

    A build that fails or is killed leaves no half-written ``out`` (a server or reader would take
    it for a finished one), only at worst a hidden ``.NAME.*`` folder, which an error removes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
