"""Which rule files apply to a run, in order (later files override earlier ones).

1. the shipped ``rules/default.md``;
2. the shipped ``rules/<agent>.md``;
3. ``--rules`` files or folders, in the order given (a folder contributes its ``*.md``, sorted);
4. ``AGENTS.md`` files from the filesystem root down to the target document's folder, nearest last.

Nothing is dropped silently: a missing ``--rules`` path or an empty folder is an error, and the
caller lists files skipped for other reasons (``applies_to``, duplicates) in ``rules explain``.

An ``AGENTS.md`` is found, not given: it may have come with the document. One that anybody could
have put there or changed -- in a world-writable folder, itself world-writable, or owned by another
user (neither this one nor root) -- is not read at all; it is listed as skipped, with the reason.
What a read one may do is limited by the merge (:mod:`tilepilot.agents.rules.merge`): add, never replace.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal, Sequence

from tilepilot.agents.errors import RuleProblemsError

Origin = Literal["shipped default", "shipped agent", "--rules", "AGENTS.md"]
AGENTS_FILE_NAME = "AGENTS.md"


@dataclass(frozen=True)
class RuleSource:
    path: Path
    origin: Origin
    skipped: str | None = None  # why a found AGENTS.md is not read (see untrusted_reason)


def shipped_rules_dir() -> Path:
    """The folder of the shipped rule files (the package ``tilepilot.shipped_rules``, data only)."""
    return Path(str(files("tilepilot.shipped_rules").joinpath("default.md"))).parent


def discover(agent: str, rules_paths: Sequence[str | Path] = (), target: str | Path | None = None) -> list[RuleSource]:
    shipped = shipped_rules_dir()
    sources = [RuleSource(shipped / "default.md", "shipped default"), RuleSource(shipped / f"{agent}.md", "shipped agent")]
    problems: list[tuple[str, int, str]] = []
    for given in rules_paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob("*.md") if p.is_file())
            if not found:
                problems.append((str(given), 0, "folder holds no *.md rule files: add one or drop this --rules"))
            sources.extend(RuleSource(p, "--rules") for p in found)
        elif path.is_file():
            sources.append(RuleSource(path, "--rules"))
        else:
            problems.append((str(given), 0, "no such rule file or folder: check the --rules path"))
    if problems:
        raise RuleProblemsError(problems)
    if target is not None:
        sources.extend(agents_sources_for(Path(target)))
    return sources


def agents_sources_for(target: Path) -> list[RuleSource]:
    """Every ``AGENTS.md`` from the root down to ``target``'s folder (``target`` itself if a folder), with
    ``skipped`` set on those that another user could have written."""
    folder = target.expanduser().resolve()
    if not folder.is_dir():
        folder = folder.parent
    chain = [*reversed(folder.parents), folder]
    found = [d / AGENTS_FILE_NAME for d in chain if (d / AGENTS_FILE_NAME).is_file()]
    return [RuleSource(path, "AGENTS.md", untrusted_reason(path)) for path in found]


def agents_files_for(target: Path) -> list[Path]:
    """The ``AGENTS.md`` files that are read for ``target`` (those not skipped as untrusted)."""
    return [source.path for source in agents_sources_for(target) if source.skipped is None]


def untrusted_reason(path: Path) -> str | None:
    """Why another user could have written ``path`` (None: only this user or root could)."""
    try:
        folder, info = path.parent.stat(), path.stat()
    except OSError as err:
        return f"cannot check who may write it ({err.strerror})"
    if folder.st_mode & stat.S_IWOTH:
        return f"its folder {path.parent} is world-writable, so anybody could have put it there"
    if info.st_mode & stat.S_IWOTH:
        return "the file is world-writable, so anybody could have changed it"
    if info.st_uid not in (os.getuid(), 0):
        return f"it belongs to another user (uid {info.st_uid}), not to you or root"
    return None
