"""Screen capture (mss) and the one screen <-> image coordinate mapping.

A capture is a PIL RGB image plus the :class:`Geometry` that ties its pixels to the X screen:
which screen rectangle it shows (offsets may be negative on multi-monitor setups) and how big
the image is. The model only ever sees a resized image, so every coordinate it returns goes
through :meth:`Geometry.to_screen` before it reaches the mouse.

Mapping formula. Screen pixel ``left + i`` has its centre at ``i + 0.5`` inside the captured area,
image pixel ``u`` at ``u + 0.5`` inside the image; ``s = width / image_width``. When the image is
no larger than the screen, the centres of the first and last pixels are aligned (corner-aligned)::

    x_screen = left + round_half_up(x_img * (width - 1) / (image_width - 1))
    x_img    = (x_screen - left) * (image_width - 1) / (width - 1)

When the image is larger (the model's grid upscales small screens), every centre is aligned, as
the resize itself does::

    x_screen = left + round_half_up((x_img + 0.5) * s - 0.5)
    x_img    = (x_screen - left + 0.5) / s - 0.5

(same for y; a 1-pixel-wide side maps to the middle of the area). Consequences, all tested at
every size: corners and edges are exact (image (0, 0) -> (left, top), image (W-1, H-1) ->
(right, bottom)); every image pixel maps onto one of the screen pixels ``[u * s, (u + 1) * s)``
it shows (corner alignment alone broke this when upscaling: 800 px shown as 1824 px sent 16
columns one screen pixel past what they show); screen -> image -> screen is the identity; and
image -> screen -> image moves a point by at most half a screen pixel, i.e. at most half an image
pixel whenever the image is no larger than the screen.
"""

from __future__ import annotations

import math
import os

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tilepilot.tools.errors import CaptureError, DisplayUnavailableError, MonitorNotFoundError
from tilepilot.tools.extras import require

# Lanczos-quality downscale at a fraction of the cost: PIL first box-reduces by an integer
# factor, then resamples the remaining <= 2x with bicubic (see Image.resize's reducing_gap).
RESIZE_FILTER = Image.Resampling.BICUBIC
UPSCALE_FILTER = Image.Resampling.BILINEAR
RESIZE_REDUCING_GAP = 2.0


def _round_half_up(value: float) -> int:
    # Not round(): banker's rounding would send 0.5 and 1.5 in the same direction.
    return math.floor(value + 0.5)


class Geometry(BaseModel):
    """Where a captured image sits on the screen and how its pixels map to screen pixels."""

    model_config = ConfigDict(frozen=True)

    left: int
    top: int
    width: int = Field(gt=0, description="screen pixels covered by the capture")
    height: int = Field(gt=0)
    image_width: int = Field(gt=0, description="pixels of the (possibly resized) image")
    image_height: int = Field(gt=0)

    @property
    def scale_x(self) -> float:
        """Screen pixels per image pixel, horizontally (> 1 when the image was shrunk)."""
        return self.width / self.image_width

    @property
    def scale_y(self) -> float:
        return self.height / self.image_height

    @property
    def right(self) -> int:
        """Last screen column inside the capture (inclusive)."""
        return self.left + self.width - 1

    @property
    def bottom(self) -> int:
        return self.top + self.height - 1

    def to_screen(self, x_img: float, y_img: float) -> tuple[int, int]:
        """Image point -> screen pixel. Points outside the image map outside the capture."""
        x = self._axis_to_screen(x_img, self.left, self.width, self.image_width)
        y = self._axis_to_screen(y_img, self.top, self.height, self.image_height)
        return x, y

    def _axis_to_screen(self, v: float, offset: int, size: int, image_size: int) -> int:
        if image_size == 1:
            return offset + (size - 1) // 2 + _round_half_up(v * size)
        if image_size > size:  # upscaled: centre-aligned (see the module docstring)
            return offset + _round_half_up(((2 * v + 1) * size - image_size) / (2 * image_size))
        # Multiply before dividing: exact for whole pixels, so corners never drift by 1e-13.
        return offset + _round_half_up(v * (size - 1) / (image_size - 1))

    def to_image(self, x_scr: float, y_scr: float) -> tuple[float, float]:
        """Screen point -> (fractional) image point; exact inverse of :meth:`to_screen`."""
        x = self._axis_to_image(x_scr, self.left, self.width, self.image_width)
        y = self._axis_to_image(y_scr, self.top, self.height, self.image_height)
        return x, y

    def _axis_to_image(self, v: float, offset: int, size: int, image_size: int) -> float:
        if image_size == 1:
            return (v - offset - (size - 1) // 2) / size
        if image_size > size:
            return ((2 * (v - offset) + 1) * image_size - size) / (2 * size)
        return (v - offset) * (image_size - 1) / (size - 1)

    def contains_image_point(self, x_img: float, y_img: float) -> bool:
        """True when the point lies between the first and last pixel centres of the image."""
        return 0 <= x_img <= self.image_width - 1 and 0 <= y_img <= self.image_height - 1

    def contains_screen_point(self, x_scr: float, y_scr: float) -> bool:
        return self.left <= x_scr <= self.right and self.top <= y_scr <= self.bottom

    def resized(self, image_width: int, image_height: int) -> Geometry:
        """Same screen area, shown in an image of a different size."""
        return self.model_copy(update={"image_width": image_width, "image_height": image_height})


class Monitor(BaseModel):
    """One entry of mss's monitor list. Index 0 is the union of all monitors."""

    model_config = ConfigDict(frozen=True)

    index: int
    left: int
    top: int
    width: int
    height: int

    @property
    def is_virtual(self) -> bool:
        return self.index == 0

    def contains(self, x: int, y: int) -> bool:
        return self.left <= x < self.left + self.width and self.top <= y < self.top + self.height


class Region(BaseModel):
    """A screen rectangle in screen pixels (left/top may be negative)."""

    model_config = ConfigDict(frozen=True)

    left: int
    top: int
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Capture(BaseModel):
    """A captured (or resized) image and the geometry that maps it back onto the screen."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    image: Image.Image
    geometry: Geometry
    monitor: int = Field(description="mss monitor index; -1 for an arbitrary region")

    def resized_to(self, image_width: int, image_height: int) -> Capture:
        """Resize once with a good filter and return the capture with the matching geometry."""
        if (image_width, image_height) == self.image.size:
            return self
        if image_width >= self.image.width and image_height >= self.image.height:
            # Enlarging adds no detail; bilinear is ~40% cheaper than bicubic here and as legible.
            image = self.image.resize((image_width, image_height), UPSCALE_FILTER)
        else:
            image = self.image.resize(
                (image_width, image_height), RESIZE_FILTER, reducing_gap=RESIZE_REDUCING_GAP
            )
        geometry = self.geometry.resized(image_width, image_height)
        return Capture(image=image, geometry=geometry, monitor=self.monitor)


def require_display(display: str | None = None) -> str:
    """Return the X display name to use, or raise a one-line error when there is none.

    Checked before touching mss or Xlib, whose own failures are C-level noise.
    """
    name = display if display is not None else os.environ.get("DISPLAY", "")
    if not name:
        raise DisplayUnavailableError(
            "no X display: DISPLAY is not set; run inside a desktop session or under Xvfb "
            "(e.g. xvfb-run -s '-screen 0 1280x800x24' tilepilot ...)"
        )
    return name


class Screen:
    """An open connection to one X display for listing monitors and capturing pixels.

    Reuse one instance for many captures: connecting costs more than grabbing a frame.
    mss objects are not shareable across threads, so neither is this.
    """

    def __init__(self, display: str | None = None) -> None:
        self.display = require_display(display)
        # Imported here: connecting costs, both need a display, and mss comes with the desktop extra.
        mss = require("mss", "taking screenshots")

        try:
            self._mss = mss.MSS(display=self.display)
            raw_monitors = self._mss.monitors
        except mss.ScreenShotError as exc:
            raise DisplayUnavailableError(
                f"cannot open X display {self.display!r}: is the X server running and "
                f"DISPLAY correct? ({_first_line(exc)})"
            ) from None
        self._monitors = [
            Monitor(index=i, left=m["left"], top=m["top"], width=m["width"], height=m["height"])
            for i, m in enumerate(raw_monitors)
        ]

    def __enter__(self) -> Screen:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._mss.close()

    def monitors(self) -> list[Monitor]:
        """All monitors; element 0 is the virtual screen spanning them all."""
        return list(self._monitors)

    def monitor(self, index: int) -> Monitor:
        if not 0 <= index < len(self._monitors):
            raise MonitorNotFoundError(
                f"monitor {index} does not exist on display {self.display!r}: "
                f"choose 0 (all) to {len(self._monitors) - 1}"
            )
        return self._monitors[index]

    def capture_monitor(self, index: int = 1) -> Capture:
        """Capture one monitor (1..n) or, with index 0, everything."""
        mon = self.monitor(index)
        region = Region(left=mon.left, top=mon.top, width=mon.width, height=mon.height)
        return self._grab(region, monitor=index)

    def capture_all(self) -> Capture:
        return self.capture_monitor(0)

    def capture_region(self, region: Region) -> Capture:
        """Capture an arbitrary rectangle; it must lie inside the virtual screen."""
        screen = self._monitors[0]
        inside = (
            region.left >= screen.left
            and region.top >= screen.top
            and region.left + region.width <= screen.left + screen.width
            and region.top + region.height <= screen.top + screen.height
        )
        if not inside:
            raise CaptureError(
                f"region {region.width}x{region.height}+{region.left}+{region.top} lies outside "
                f"the screen {screen.width}x{screen.height}+{screen.left}+{screen.top}: shrink it"
            )
        return self._grab(region, monitor=-1)

    def _grab(self, region: Region, monitor: int) -> Capture:
        import mss

        box = {"left": region.left, "top": region.top, "width": region.width, "height": region.height}
        try:
            shot = self._mss.grab(box)
        except mss.ScreenShotError as exc:
            raise CaptureError(
                f"screen capture of {region.width}x{region.height}+{region.left}+{region.top} "
                f"failed on display {self.display!r}: {_first_line(exc)}"
            ) from None
        # BGRX -> RGB in one C pass; mss may return a different pixel size than requested
        # (HiDPI), which is exactly what the geometry's image size records.
        image = Image.frombuffer("RGB", shot.size, shot.bgra, "raw", "BGRX", 0, 1)
        geometry = Geometry(
            left=region.left,
            top=region.top,
            width=region.width,
            height=region.height,
            image_width=image.width,
            image_height=image.height,
        )
        return Capture(image=image, geometry=geometry, monitor=monitor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def list_monitors(display: str | None = None) -> list[Monitor]:
    with Screen(display) as screen:
        return screen.monitors()


def capture(
    monitor: int = 1, region: Region | None = None, display: str | None = None
) -> Capture:
    """One-shot capture of a monitor (0 = everything) or, if given, a region."""
    with Screen(display) as screen:
        return screen.capture_region(region) if region else screen.capture_monitor(monitor)
