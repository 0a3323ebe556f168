"""Which rule files apply to a run, in order (later files override earlier ones).

1. the shipped ``rules/default.md``;
2. the shipped ``rules/<agent>.md``;
3. ``--rules`` files or folders, in the order given (a folder contributes its ``*.md``, sorted);
4. ``AGENTS.md`` files from the filesystem root down to the target document's folder, nearest last.

Nothing is dropped silently: a missing ``--rules`` path or an empty folder is an error, and the
caller lists files skipped for other reasons (``applies_to``, duplicates) in ``rules explain``.
"""

from __future__ import annotations

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
        sources.extend(RuleSource(p, "AGENTS.md") for p in agents_files_for(Path(target)))
    return sources


def agents_files_for(target: Path) -> list[Path]:
    """``AGENTS.md`` files from the root down to ``target``'s folder (``target`` itself if a folder)."""
    folder = target.expanduser().resolve()
    if not folder.is_dir():
        folder = folder.parent
    chain = [*reversed(folder.parents), folder]
    return [d / AGENTS_FILE_NAME for d in chain if (d / AGENTS_FILE_NAME).is_file()]
