"""LibreOffice converts untrusted documents: no network, no leftover process, limits and a locked-down profile.

Attacks, each against the real ``soffice``: a document that links an image on a local HTTP server
(plain ``soffice --convert-to`` fetches it: the test checks that first, so it cannot pass vacuously),
and a conversion that outlives its timeout (``soffice.bin`` must not survive the launcher).
"""

from __future__ import annotations

import http.server
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilepilot.tools import convert
from tilepilot.tools.convert import ConversionError, to_pdf
from tests.gen.office import linked_image_odt, long_rtf
from tests.requires import require_binary

require_binary("soffice", "libreoffice-writer-nogui")

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f00f0004850180848a8c210000000049454e44ae426082")


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that serves a PNG and records every path asked for."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_a_linked_image_is_never_fetched(tmp_path: Path, image_server: tuple[str, list[str]]) -> None:
    base, requests = image_server
    document = linked_image_odt(tmp_path / "contract.odt", f"{base}/logo.png")
    # The attack is real: LibreOffice with its defaults fetches the picture while converting.
    plain = tmp_path / "plain"
    subprocess.run([shutil.which("soffice"), f"-env:UserInstallation={(plain / 'profile').as_uri()}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(plain), str(document)], capture_output=True, timeout=180)
    assert requests == ["/logo.png"], requests
    requests.clear()

    pdf = to_pdf(document, cache_dir=tmp_path / "cache")
    assert pdf.stat().st_size > 0
    assert requests == [], f"the conversion fetched {requests}"


def _soffice_bins(marker: str) -> set[int]:
    """Live (not zombie) soffice.bin processes whose command line names ``marker``."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if comm == "soffice.bin" and marker.encode() in cmdline and state != "Z":
            found.add(int(proc.name))
    return found


def test_a_conversion_killed_on_timeout_leaves_no_soffice_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = long_rtf(tmp_path / "long.rtf")  # about 20 s of work
    work = tmp_path / "work"  # the conversion's folder is made in here, so its processes name it
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    monkeypatch.setattr(convert, "SOFFICE_TIMEOUT_S", 6.0)
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_soffice_bins(str(work)))
            done.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(ConversionError) as raised:
            to_pdf(document, cache_dir=tmp_path / "cache")
    finally:
        done.set()
        watcher.join()
    left = _soffice_bins(str(work))
    for pid in left:  # leave nothing behind for the next test, whatever happened
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert "did not finish converting it within 6 s" in str(raised.value) and "\n" not in str(raised.value)
    assert seen, "soffice.bin never ran: the test proves nothing"
    assert not left, f"soffice.bin {sorted(left)} outlived the conversion's timeout"


def test_without_a_network_namespace_it_says_so(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    convert.network_isolation.cache_clear()
    monkeypatch.setattr(convert.shutil, "which", lambda name: None)  # no unshare on this machine
    try:
        with caplog.at_level(logging.WARNING, logger=convert.__name__):
            assert convert.network_isolation() == ()
    finally:
        convert.network_isolation.cache_clear()
    assert any("network access" in r.getMessage() for r in caplog.records), caplog.records
