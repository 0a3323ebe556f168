"""Hostile and broken PDFs fail cleanly, per page where possible, with bounded memory.

Also a fuzz test (hypothesis) of the PDF open path: mutated bytes of a valid PDF either open or
raise a one-line ToolError; reading their pages never raises anything else.
"""

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gen.hostile_pdfs import HOSTILE
from tests.gen.pdfs import digital_pdf, spinning_pdf
from tilepilot.tools.errors import ToolError
from tilepilot.tools.pdf import open_pdf
from tilepilot.tools.pdf_worker import iter_pages


def _read_everything(source) -> list[str]:
    """Open, then read every page's size, text and a small render; return per-page outcomes."""
    outcomes = []
    with open_pdf(source) as doc:
        for page in range(1, min(doc.page_count, 5) + 1):
            try:
                doc.page_size(page)
                doc.text(page)
                doc.render(page, 48, 96)
                outcomes.append("ok")
            except ToolError as err:
                assert "\n" not in str(err) and f"page {page}" in str(err)
                outcomes.append("error")
    return outcomes


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdf_fails_cleanly_per_page(tmp_path, name):
    path = HOSTILE[name](tmp_path / f"{name}.pdf")
    outcomes = _read_everything(path)
    assert outcomes[0] == "ok"  # the one good page is always readable
    if name in ("claims_million_pages", "looping_page_tree"):
        assert "error" in outcomes  # the pages that do not exist fail on their own


def test_claimed_page_count_is_not_trusted_blindly(tmp_path):
    path = HOSTILE["claims_million_pages"](tmp_path / "claims.pdf")
    with open_pdf(path) as doc:
        assert doc.page_count == 1_000_000  # what the file claims ...
        results = list(iter_pages(path, "1-4", text=True))
    assert [r.error is None for r in results] == [True, False, False, False]  # ... and what exists


def test_huge_page_renders_at_the_grid_with_bounded_memory(tmp_path):
    """A 200x200-inch page at the 1120 budget grid: memory is set by the grid, not the page."""
    path = HOSTILE["huge_page"](tmp_path / "huge.pdf")
    code = f"""
import json
from tilepilot.tools.pdf import open_pdf
with open_pdf({str(path)!r}) as doc:
    img = doc.render(1, 1632, 1632)
    dark = sum(1 for p in img.convert('L').getdata() if p < 128)
status = open('/proc/self/status').read()
hwm = int([l for l in status.splitlines() if l.startswith('VmHWM')][0].split()[1])
print(json.dumps({{"size": img.size, "dark": dark, "vmhwm_kb": hwm}}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    print(f"\nhuge page at 1632x1632: VmHWM {out['vmhwm_kb'] / 1024:.0f} MiB")
    assert out["size"] == [1632, 1632] and out["dark"] > 0  # the text was drawn
    # At 300 dpi the page alone would be 60000x60000 px (10 GB); the grid render stays small.
    assert out["vmhwm_kb"] < 400 * 1024


def test_spinning_page_is_abandoned_and_the_rest_continues(tmp_path):
    path = spinning_pdf(tmp_path / "spin.pdf")
    results = list(iter_pages(path, size=(200, 260), text=False, deadline_s=1.0))
    errors = {r.page: r.error for r in results if r.error}
    assert list(errors) == [2] and "2" in errors[2]
    assert all(r.image is not None for r in results if r.page != 2)


@pytest.fixture(scope="module")
def valid_pdf_bytes(tmp_path_factory):
    return digital_pdf(tmp_path_factory.mktemp("fuzz") / "seed.pdf", pages=2).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_pdf_open_path(valid_pdf_bytes, data):
    blob = bytearray(valid_pdf_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "splice"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if op == "flip" and blob:
            blob[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del blob[pos:pos + data.draw(st.integers(1, 200))]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
    try:
        _read_everything(bytes(blob))
    except ToolError as err:
        assert "\n" not in str(err)
