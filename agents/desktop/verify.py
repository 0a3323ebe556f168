"""Verified steps: did an executed action change the screen, and is the agent stuck?

After each executed action the next observation is compared with the screenshot the action was
decided on. The comparison runs on a small grey copy (longest side :data:`THUMB_SIDE` px, box
filtered), so it costs about a millisecond and ignores JPEG noise (a resumed run compares with
the screenshot read back from the run folder) while a changed label, a caret or a moved window
still shows up: each thumbnail pixel averages a few screen pixels, and one dark glyph stroke in
that square moves it by far more than :data:`PIXEL_DELTA`.

"No visible change" goes back to the model in the step's outcome line and into the trajectory
(``StepRecord.screen_changed``). The same action repeated on an unchanged screen
:data:`STUCK_REPEATS` times in a row ends the run with status ``stuck``: a model that keeps
clicking a dead spot would otherwise run until ``--max-steps``.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageChops
from pydantic import BaseModel

from tilepilot.agents.desktop.state import StepRecord

THUMB_SIDE = 256  # px of the longest side of the compared copy
PIXEL_DELTA = 24  # grey levels (of 255) a thumbnail pixel must move to count as changed
STUCK_REPEATS = 3
# Waiting on a screen that does not change yet (a slow app) is no sign of being stuck.
NOT_STUCK_KINDS = ("wait",)


class ScreenChange(BaseModel):
    """How two screenshots differ on their thumbnails."""

    changed: bool
    changed_pixels: int  # thumbnail pixels that moved by more than PIXEL_DELTA
    max_delta: int


def thumbnail(image: Image.Image) -> Image.Image:
    """The small grey copy that :func:`compare` looks at."""
    grey = image.convert("L")
    factor = max(1, -(-max(grey.size) // THUMB_SIDE))
    return grey.reduce(factor) if factor > 1 else grey


def compare(before: Image.Image, after: Image.Image) -> ScreenChange:
    """Compare two thumbnails (from :func:`thumbnail`); a different size always counts as a change."""
    if before.size != after.size:
        return ScreenChange(changed=True, changed_pixels=after.width * after.height, max_delta=255)
    diff = ImageChops.difference(before, after)
    histogram = diff.histogram()
    moved = sum(histogram[PIXEL_DELTA + 1:])
    top = max((level for level, count in enumerate(histogram) if count), default=0)
    return ScreenChange(changed=moved > 0, changed_pixels=moved, max_delta=top)


def stuck_reason(steps: Sequence[StepRecord], repeats: int = STUCK_REPEATS) -> str | None:
    """Why the run is stuck, or None: the last ``repeats`` steps executed one action and changed nothing."""
    if len(steps) < repeats:
        return None
    last = steps[-repeats:]
    first = last[0].screen_action
    if first is None or first.kind in NOT_STUCK_KINDS or any(s.screen_action != first or not s.executed or s.screen_changed is not False for s in last):
        return None
    return (f"stuck: the same {first.kind} action on an unchanged screen {repeats} times in a row "
            f"(steps {last[0].step}-{last[-1].step})")
