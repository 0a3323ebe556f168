"""A folder that appears whole or not at all, and never replaces what tilepilot did not write.

:func:`folder_in_place` builds an output folder (a checkpoint, a GGUF export, a dataset) under a
temporary name beside it and swaps it in when the build succeeds:

1. before anything is built, ``out`` is checked (:func:`check_output_folder`): it must be new, empty,
   or a folder tilepilot wrote (it holds :data:`MARKER_NAME`), and it must be neither one of the
   command's inputs nor a folder above or inside one (paths resolved, symlinks included);
2. the new folder gets the marker, the old ``out`` (if any) is renamed aside, the new one renamed
   into place, and only then is the old copy removed.

A kill at any point loses nothing: before the swap the old ``out`` is untouched (at worst a hidden
``.NAME.tilepilot-new-*`` folder is left); between the two renames the old copy waits under
``.NAME.tilepilot-old-*`` and the next build of ``out`` puts it back first (and drops the unswapped
new one); after the swap the leftover old copy is removed by the next build.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tilepilot.model_runtime.errors import ModelRuntimeError

MARKER_NAME = ".tilepilot-output"
# What tilepilot's builders left in their folders before the marker existed: still theirs to replace.
LEGACY_MARKERS = (".complete", "tilepilot-gguf.json", "tilepilot-finetune.json")
_NEW, _OLD = ".tilepilot-new-", ".tilepilot-old-"


class OutputFolderError(ModelRuntimeError):
    """An output folder would replace something tilepilot did not write, or the command's own input."""


def written_by_tilepilot(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (MARKER_NAME, *LEGACY_MARKERS))


def check_output_folder(out: Path, inputs: Sequence[Path] = (), *, option: str = "--out",
                        error: Callable[[str], Exception] = OutputFolderError) -> None:
    """Raise ``error`` (one line naming ``option``) if building ``out`` could destroy anything but an earlier output."""
    target = Path(out).expanduser().resolve()
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if target == source or target in source.parents or source in target.parents:
            where = "is" if target == source else "holds" if target in source.parents else "is inside"
            raise error(f"{option} {out}: {where} the input {given}; write the output somewhere else")
    if not target.exists():
        return
    if not target.is_dir():
        raise error(f"{option} {out}: exists and is not a folder; pick a new folder")
    if any(target.iterdir()) and not written_by_tilepilot(target):
        raise error(f"{option} {out}: holds files tilepilot did not write (no {MARKER_NAME} in it), so it is never "
                    "replaced; pick a new or empty folder")


@contextmanager
def folder_in_place(out: Path, inputs: Sequence[Path] = (), *, option: str = "--out",
                    error: Callable[[str], Exception] = OutputFolderError) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the block succeeds it replaces ``out`` (see the module)."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    _finish_interrupted_swap(out)
    check_output_folder(out, inputs, option=option, error=error)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_NEW}", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER_NAME).write_text("written by tilepilot: a later build may replace this folder\n", encoding="utf-8")
        _swap(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap(new: Path, out: Path) -> None:
    """Rename the old ``out`` aside, ``new`` into place, then remove the old copy."""
    if not out.exists():
        new.rename(out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD}", dir=out.parent))
    out.rename(aside)  # onto an empty folder: allowed, and atomic
    try:
        new.rename(out)
    except BaseException:
        aside.rename(out)
        raise
    if aside.is_symlink():
        aside.unlink()
    else:
        shutil.rmtree(aside, ignore_errors=True)


def _finish_interrupted_swap(out: Path) -> None:
    """A kill between the two renames left ``out`` missing and its old copy aside: put it back.
    A kill after the swap left the old copy (or an empty placeholder): remove it."""
    asides = sorted(out.parent.glob(f".{out.name}{_OLD}*"), key=lambda p: p.stat().st_mtime)
    if not out.exists():
        whole = [p for p in asides if p.is_dir() and any(p.iterdir())]
        if whole:
            whole[-1].rename(out)
            asides.remove(whole[-1])
            # The build the kill stopped was complete (marked) but never swapped in: the old copy is back instead.
            asides += [p for p in out.parent.glob(f".{out.name}{_NEW}*") if (p / MARKER_NAME).is_file()]
    for leftover in asides:
        if leftover.is_symlink():  # ``out`` was a link: the link went aside, the folder it names stays
            leftover.unlink()
        else:
            shutil.rmtree(leftover, ignore_errors=True)
