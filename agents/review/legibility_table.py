"""Which image budget reads which font size, per model profile: the evidence behind ``--prefer tokens``.

The table has the shape of the ``smallest_legible_budget`` key of the ``legibility.json`` that
``tilepilot eval legibility`` writes: ``{profile: {font_pt: budget | null}}``. A default table
ships beside this module (``legibility_table.json``, with where each row comes from); a user's own
measurement (``--legibility FILE``, the eval's output as is) replaces the rows it has.

Lookups are conservative: a page's font size is estimated from its median word-box height and
rounded down, and it is read by the row of the largest measured size at or below it. A size below
every measured one, a profile without a row, or a null entry means: no budget is known to read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ValidationError

from tilepilot.agents.errors import UsageError

DEFAULT_TABLE = Path(__file__).with_name("legibility_table.json")
# A word box from the text layer is this many times the font size tall (Helvetica 1.374, Times
# 1.334: measured with PyMuPDF); dividing by the larger factor under-estimates the size, which errs
# towards a larger budget, or towards text.
WORD_BOX_PER_PT = 1.374


class LegibilityTable(BaseModel):
    """``{profile name: {font size in pt (as a string, JSON keys): smallest legible budget or None}}``."""

    smallest_legible_budget: dict[str, dict[str, int | None]]

    def budget_for(self, profile: str, font_pt: float) -> int | None:
        """The smallest budget known to read ``font_pt`` for ``profile``; None when none is known."""
        row = self.smallest_legible_budget.get(profile) or {}
        measured = sorted((float(size), budget) for size, budget in row.items())
        below = [budget for size, budget in measured if size <= math.floor(round(font_pt, 1))]  # 8.99 pt is 9 pt
        return below[-1] if below else None

    def merged(self, other: "LegibilityTable") -> "LegibilityTable":
        return LegibilityTable(smallest_legible_budget={**self.smallest_legible_budget, **other.smallest_legible_budget})


def font_pt_of_word_height(height_pt: float) -> float:
    return height_pt / WORD_BOX_PER_PT


def load_table(path: Path | None = None) -> LegibilityTable:
    """The shipped table, with the rows of ``path`` (an eval ``legibility.json``) replacing its own."""
    table = _read(DEFAULT_TABLE)
    return table.merged(_read(path)) if path is not None else table


def _read(path: Path) -> LegibilityTable:
    try:
        return LegibilityTable.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as err:
        raise UsageError(f"--legibility {path}: cannot be read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        where = ".".join(str(p) for p in first["loc"]) + ": " + first["msg"] if first else str(err).splitlines()[0]
        raise UsageError(f"--legibility {path}: not a legibility table ({where}); use the legibility.json that "
                         f"`tilepilot eval legibility` writes") from None
