"""Issue 5, test 3: the agent's image -> screen mapping, property-based, on the real budget grids.

tests/tools/test_geometry.py checks Geometry on arbitrary sizes; here the image is always the
grid that tilepilot.model_runtime.budget gives for the screen (often an *upscale*: 1280x800 at 1120 is
2016x1248), the offsets include negative ones, and the mapping is the agent's own ``to_screen``.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tilepilot.agents.desktop.actions import check_model_action, reply_schema, to_screen
from tilepilot.agents.desktop.frame import ModelFrame
from tilepilot.model_runtime.budget import image_grid
from tilepilot.model_runtime.profiles import IMAGE_BUDGETS
from tilepilot.tools.actions import Click, Drag, parse_action
from tilepilot.tools.screen import Geometry


@st.composite
def screens(draw) -> Geometry:
    width = draw(st.integers(800, 5120))
    height = draw(st.integers(600, 2880))
    left = draw(st.integers(-6000, 6000))
    top = draw(st.integers(-3000, 3000))
    grid = image_grid(width, height, draw(st.sampled_from(IMAGE_BUDGETS)))
    return Geometry(left=left, top=top, width=width, height=height, image_width=grid.width, image_height=grid.height)


@settings(max_examples=300, deadline=None)
@given(screens(), st.data())
def test_image_pixel_to_screen_and_back(g: Geometry, data: st.DataObject) -> None:
    u = data.draw(st.integers(0, g.image_width - 1))
    v = data.draw(st.integers(0, g.image_height - 1))
    assert check_model_action(Click(x=u, y=v), ModelFrame(geometry=g), ("click",)) is None
    screen = to_screen(Click(x=u, y=v), ModelFrame(geometry=g))
    assert g.contains_screen_point(screen.x, screen.y)
    back_u, back_v = g.to_image(screen.x, screen.y)
    # Within half an image pixel when the grid shrinks the screen; when it upscales, several image
    # pixels show one screen pixel and the bound is half a screen pixel (in image pixels).
    assert abs(back_u - u) <= max(0.5, 0.5 / g.scale_x) + 1e-9
    assert abs(back_v - v) <= max(0.5, 0.5 / g.scale_y) + 1e-9
    # The other direction is exact: a screen pixel seen in the image maps back onto itself.
    sx = data.draw(st.integers(g.left, g.right))
    assert g.to_screen(*g.to_image(sx, g.top)) == (sx, g.top)


@settings(max_examples=200, deadline=None)
@given(screens())
def test_corners_and_edges_are_exact(g: Geometry) -> None:
    w, h = g.image_width - 1, g.image_height - 1
    corners = Drag(path=[(0, 0), (w, 0), (w, h), (0, h)])
    assert to_screen(corners, ModelFrame(geometry=g)).path == [(g.left, g.top), (g.right, g.top), (g.right, g.bottom), (g.left, g.bottom)]
    assert check_model_action(corners, ModelFrame(geometry=g), ("drag",)) is None


@settings(max_examples=100, deadline=None)
@given(screens(), st.sampled_from([(-1, 0), (0, -1), (1, 0), (0, 1)]))
def test_one_pixel_past_an_edge_is_invalid(g: Geometry, step: tuple[int, int]) -> None:
    x = -1 if step[0] < 0 else (g.image_width if step[0] > 0 else 0)
    y = -1 if step[1] < 0 else (g.image_height if step[1] > 0 else 0)
    reason = check_model_action(Click(x=x, y=y), ModelFrame(geometry=g), ("click",))
    assert reason is not None and "outside" in reason


def test_strict_schema_bounds_coordinates_and_offers_only_the_given_kinds() -> None:
    frame = ModelFrame(geometry=Geometry(left=0, top=0, width=1280, height=800, image_width=2016, image_height=1248))
    schema = reply_schema(frame, ("click", "type", "done")).model_json_schema()
    defs = schema["$defs"]
    assert sorted(defs) == ["Click", "Done", "Type"]
    assert defs["Click"]["properties"]["x"] == {"type": "integer", "minimum": 0, "maximum": 2015}
    assert defs["Click"]["properties"]["y"]["maximum"] == 1247
    assert set(defs["Click"]["required"]) == {"kind", "x", "y", "button", "count"}
    assert defs["Type"]["properties"]["text"]["maxLength"] == 200
    assert sorted(schema["properties"]["action"]["discriminator"]["mapping"]) == ["click", "done", "type"]
    # Parsing still accepts any Action: the agent, not the parser, rejects what is out of bounds.
    tiny = ModelFrame(geometry=Geometry(left=0, top=0, width=10, height=10, image_width=10, image_height=10))
    parsed = reply_schema(tiny, ("click",)).model_validate_json(json.dumps({"thought": "", "action": {"kind": "click", "x": 50, "y": 1}}))
    assert parsed.action == parse_action({"kind": "click", "x": 50, "y": 1})
