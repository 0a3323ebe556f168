"""Property tests for tilepilot.tools.screen.Geometry, the one screen <-> image coordinate mapping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilepilot.tools.screen import Geometry

BUDGETS = (70, 140, 280, 560, 1120)
PATCH = 48  # 16 px patches merged 3x3 (see DESIGN.md "Images")


def model_grid(width: int, height: int, budget: int) -> tuple[int, int]:
    """Largest (W, H), multiples of 48, keeping the aspect ratio, with (W/48)*(H/48) <= budget.

    Like the model's processor this also upscales small screens (800x600 at 1120 -> 1824x1344),
    so the geometry must handle images larger than the screen too.
    Written here on purpose (tools must not import model_runtime): an independent oracle.
    """
    scale = math.sqrt(budget * PATCH * PATCH / (width * height))
    cols = max(1, math.floor(width * scale / PATCH))
    rows = max(1, math.floor(height * scale / PATCH))
    while cols * rows > budget:  # float rounding at the boundary
        if cols >= rows:
            cols -= 1
        else:
            rows -= 1
    return cols * PATCH, rows * PATCH


def test_model_grid_oracle_fills_the_budget() -> None:
    assert model_grid(1920, 1080, 1120) == (2112, 1200)  # 44 x 25 = 1100 tokens
    for budget in BUDGETS:
        for width, height in ((1920, 1080), (1280, 800), (800, 600), (5120, 2880), (1080, 1920)):
            w, h = model_grid(width, height, budget)
            cols, rows = w // PATCH, h // PATCH
            assert cols * rows <= budget
            assert (cols + 1) * (rows + 1) > budget  # one more column and row would not fit
            assert abs(w / h - width / height) < 0.25 * width / height  # aspect roughly kept


screen_sizes = st.tuples(st.integers(800, 5120), st.integers(600, 2880))
offsets = st.tuples(st.integers(-5120, 5120), st.integers(-2880, 2880))


@st.composite
def geometries(draw: st.DrawFn) -> Geometry:
    (width, height), (left, top) = draw(screen_sizes), draw(offsets)
    image_width, image_height = model_grid(width, height, draw(st.sampled_from(BUDGETS)))
    return Geometry(left=left, top=top, width=width, height=height,
                    image_width=image_width, image_height=image_height)


def _pixel_is_shown(g: Geometry, u: int, v: int) -> None:
    # Image pixel u shows screen pixels [u*scale, (u+1)*scale): its mapped point must be one of
    # them (the nearest whole one when a screen pixel is wider than the image pixel).
    xs, ys = g.to_screen(u, v)
    assert g.contains_screen_point(xs, ys)
    assert u * g.scale_x - 1 < xs - g.left < (u + 1) * g.scale_x
    assert v * g.scale_y - 1 < ys - g.top < (v + 1) * g.scale_y


@settings(max_examples=150, deadline=None)
@given(geometries())
def test_corners_and_edges_are_exact(g: Geometry) -> None:
    w, h = g.image_width - 1, g.image_height - 1
    assert g.to_screen(0, 0) == (g.left, g.top)
    assert g.to_screen(w, h) == (g.right, g.bottom)
    assert g.to_screen(w, 0) == (g.right, g.top)
    assert g.to_screen(0, h) == (g.left, g.bottom)
    for u in (0, w):
        for v in (0, h):
            _pixel_is_shown(g, u, v)
    assert g.contains_image_point(*g.to_image(g.left, g.top))
    assert g.contains_image_point(*g.to_image(g.right, g.bottom))


# The size that exposed the old corner-aligned mapping (1 seed in 7), kept as fixed cases.
FIXED = [Geometry(left=0, top=0, width=800, height=600, image_width=1824, image_height=1344),
         Geometry(left=-1280, top=0, width=1280, height=800, image_width=2016, image_height=1248),
         Geometry(left=0, top=0, width=1920, height=1080, image_width=912, image_height=528)]


@pytest.mark.parametrize("g", FIXED, ids=lambda g: f"{g.width}x{g.height}-{g.image_width}x{g.image_height}")
def test_every_pixel_of_fixed_sizes_is_shown_where_it_maps(g: Geometry) -> None:
    for u in range(g.image_width):
        _pixel_is_shown(g, u, u * g.image_height // g.image_width)


@settings(max_examples=150, deadline=None)
@given(geometries(), st.data())
def test_image_screen_image_round_trip_within_half_a_pixel(g: Geometry, data: st.DataObject) -> None:
    x_img = data.draw(st.floats(0, g.image_width - 1))
    y_img = data.draw(st.floats(0, g.image_height - 1))
    xs, ys = g.to_screen(x_img, y_img)
    assert g.contains_screen_point(xs, ys)
    x_back, y_back = g.to_image(xs, ys)
    # Within half a screen pixel, in image pixels 0.5 / scale: at most half an image pixel
    # whenever the image is no larger than the screen. An upscaled image cannot do better.
    half_x, half_y = 0.5 / g.scale_x, 0.5 / g.scale_y
    assert abs(x_back - x_img) <= half_x + 1e-9 and abs(y_back - y_img) <= half_y + 1e-9
    if g.image_width <= g.width and g.image_height <= g.height:
        assert abs(x_back - x_img) <= 0.5 + 1e-9 and abs(y_back - y_img) <= 0.5 + 1e-9


@settings(max_examples=150, deadline=None)
@given(geometries(), st.data())
def test_screen_image_screen_is_identity(g: Geometry, data: st.DataObject) -> None:
    xs = data.draw(st.integers(g.left, g.right))
    ys = data.draw(st.integers(g.top, g.bottom))
    x_img, y_img = g.to_image(xs, ys)
    assert g.contains_image_point(x_img, y_img)
    assert g.to_screen(x_img, y_img) == (xs, ys)


@settings(max_examples=100, deadline=None)
@given(geometries(), st.data())
def test_every_image_pixel_lands_on_the_screen_pixels_it_shows(g: Geometry, data: st.DataObject) -> None:
    _pixel_is_shown(g, data.draw(st.integers(0, g.image_width - 1)), data.draw(st.integers(0, g.image_height - 1)))


@settings(max_examples=100, deadline=None)
@given(geometries(), st.data())
def test_mapping_is_monotonic(g: Geometry, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, g.image_width - 2))
    left, right = g.to_screen(a, 0)[0], g.to_screen(a + 1, 0)[0]
    if g.image_width <= g.width:
        assert left < right  # distinct image columns never collapse onto one screen column
    else:
        assert left <= right <= left + 1  # upscaled: neighbours are at most one screen px apart


def test_upscaled_image_round_trip_within_half_a_screen_pixel() -> None:
    g = Geometry(left=-100, top=50, width=300, height=200, image_width=960, image_height=480)
    for x in range(0, 960, 7):
        xs, _ = g.to_screen(x, 0)
        assert abs(g.to_image(xs, 50)[0] - x) <= 0.5 / g.scale_x + 1e-9
    assert g.to_screen(0, 0) == (-100, 50) and g.to_screen(959, 479) == (199, 249)


def test_resized_keeps_screen_area_and_changes_scale() -> None:
    g = Geometry(left=1920, top=0, width=1280, height=1024, image_width=1280, image_height=1024)
    r = g.resized(960, 768)
    assert (r.left, r.top, r.width, r.height) == (1920, 0, 1280, 1024)
    assert r.scale_x == pytest.approx(4 / 3) and r.scale_y == pytest.approx(4 / 3)
    assert r.to_screen(959, 767) == (3199, 1023)
    assert g.to_screen(100, 100) == (2020, 100)  # identity scale: pure offset


def test_contains_image_point_bounds() -> None:
    g = Geometry(left=0, top=0, width=1920, height=1080, image_width=1920, image_height=1056)
    assert g.contains_image_point(0, 0) and g.contains_image_point(1919, 1055)
    assert not g.contains_image_point(-0.1, 5)
    assert not g.contains_image_point(1920, 5) and not g.contains_image_point(5, 1056)


def test_degenerate_single_pixel_image_maps_to_the_middle() -> None:
    g = Geometry(left=10, top=20, width=101, height=51, image_width=1, image_height=1)
    assert g.to_screen(0, 0) == (60, 45)
    assert g.to_image(60, 45) == (0, 0)


def test_geometry_is_frozen_and_validated() -> None:
    g = Geometry(left=0, top=0, width=10, height=10, image_width=5, image_height=5)
    with pytest.raises(Exception):
        g.left = 3  # type: ignore[misc]
    with pytest.raises(Exception):
        Geometry(left=0, top=0, width=0, height=10, image_width=5, image_height=5)
