"""Atomic file writes: a reader, or a run killed half-way, sees the old file or the whole new one, never part.

The data goes to a temporary file in the target's folder (``os.replace`` is atomic only within one
file system), is fsynced, then renamed over the target; on any error the temporary file is removed.
``tools`` and ``model_runtime`` may not import ``agents``, so their few renames into a cache stay their own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` in one atomic step."""
    with _replaced_when_complete(Path(path), "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def streamed_atomic(path: Path) -> Iterator[IO[str]]:
    """Like :func:`write_atomic`, for a UTF-8 text file written piece by piece (each piece can be dropped once written)."""
    with _replaced_when_complete(Path(path), "w") as handle:
        yield handle


@contextmanager
def _replaced_when_complete(path: Path, mode: str) -> Iterator[IO]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
