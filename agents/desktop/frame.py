"""The model's coordinate frame: THE one mapping between what the model says and the screen.

The model answers in its profile's convention (``ModelProfile.coordinates``):

- ``pixels``: pixels of the screenshot it was shown, x in 0..W-1, y in 0..H-1;
- ``normalized``: 0..1000 on both axes, the convention several grounding models use; 0 is the
  first pixel's centre and 1000 the last one's (corner-aligned, so both edges are reachable).

A model point goes model -> image pixel (here) -> screen pixel (``Geometry.to_screen``, with
the monitor offset). Everything the model reads back -- its own earlier actions, the outcome
lines, a guard's reason naming a point or a forbidden region -- is written in the same frame
(:meth:`ModelFrame.describe`), so the model never sees a screen coordinate.
"""

from __future__ import annotations

import re
from pydantic import BaseModel, ConfigDict

from tilepilot.model_runtime.profiles import CoordinateConvention as Convention
from tilepilot.tools.actions import Action
from tilepilot.tools.screen import Geometry

NORMALIZED_MAX = 1000

# Screen coordinates as the guard (tilepilot.agents.rules.guard) and the executor (tilepilot.tools.ui) write them:
# points "(x, y)" and rectangles "(x=.., y=.., w=.., h=..)".
_POINT = re.compile(r"\((-?\d+(?:\.\d+)?), (-?\d+(?:\.\d+)?)\)")
_RECT = re.compile(r"\(x=(-?[\d.]+), y=(-?[\d.]+), w=(-?[\d.]+), h=(-?[\d.]+)\)")


class ModelFrame(BaseModel):
    """One screenshot's geometry seen through the model's coordinate convention."""

    model_config = ConfigDict(frozen=True)

    geometry: Geometry
    convention: Convention = "pixels"

    @property
    def x_max(self) -> int:
        """Largest valid x the model may answer (inclusive)."""
        return NORMALIZED_MAX if self.convention == "normalized" else self.geometry.image_width - 1

    @property
    def y_max(self) -> int:
        return NORMALIZED_MAX if self.convention == "normalized" else self.geometry.image_height - 1

    def _axis_scale(self) -> tuple[float, float]:
        g = self.geometry
        return (max(1, g.image_width - 1) / NORMALIZED_MAX, max(1, g.image_height - 1) / NORMALIZED_MAX)

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """Model point -> (fractional) image pixel."""
        if self.convention == "pixels":
            return x, y
        sx, sy = self._axis_scale()
        return x * sx, y * sy

    def from_image(self, u: float, v: float) -> tuple[int, int]:
        """Image pixel -> the nearest model point."""
        if self.convention == "pixels":
            return round(u), round(v)
        sx, sy = self._axis_scale()
        return round(u / sx), round(v / sy)

    def to_screen(self, x: float, y: float) -> tuple[int, int]:
        return self.geometry.to_screen(*self.to_image(x, y))

    def from_screen(self, x: float, y: float) -> tuple[int, int]:
        return self.from_image(*self.geometry.to_image(x, y))

    def contains(self, x: float, y: float) -> bool:
        return 0 <= x <= self.x_max and 0 <= y <= self.y_max

    def action_to_screen(self, action: Action) -> Action:
        """A (checked) model action in screen pixels; never clamps."""
        return action.map_points(self.to_screen)

    def describe(self, text: str) -> str:
        """``text`` with the screen points and rectangles it names rewritten in this frame."""

        def point(match: re.Match[str]) -> str:
            x, y = self.from_screen(float(match[1]), float(match[2]))
            return f"({x}, {y})"

        def rect(match: re.Match[str]) -> str:
            left, top, w, h = (float(match[i]) for i in range(1, 5))
            x0, y0 = self.from_screen(left, top)
            x1, y1 = self.from_screen(left + w, top + h)
            return f"(x={x0}, y={y0}, w={x1 - x0}, h={y1 - y0})"

        return _POINT.sub(point, _RECT.sub(rect, text))

    def explain(self) -> str:
        """How coordinates work, for the system prompt."""
        g = self.geometry
        if self.convention == "normalized":
            where = (f"Coordinates are normalised to 0..{NORMALIZED_MAX} on both axes, whatever the image size: "
                     f"x from 0 (left edge) to {NORMALIZED_MAX} (right edge), y from 0 (top) to {NORMALIZED_MAX} (bottom).")
        else:
            where = (f"Coordinates are pixels of the screenshot: x from 0 (left) to {g.image_width - 1}, "
                     f"y from 0 (top) to {g.image_height - 1}.")
        return (f"Every screenshot is {g.image_width}x{g.image_height} pixels. {where} "
                "Every coordinate you are told (your earlier actions, outcomes, the guard's reasons) uses the same frame.")
