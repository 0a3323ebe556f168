"""``tilepilot review open RUN``: a triage page for a finished review, served on loopback with a per-run token.

The server binds 127.0.0.1 only and answers 403 to any request without the token it printed (in
the URL's ``?token=`` or an ``X-Tilepilot-Token`` header), so another local user or a web page in
the browser cannot read the findings or write decisions. Decisions go into the run's
``findings.json`` in the format ``tilepilot review --accept`` writes (``decision``, and
``correction`` for a corrected finding), each one a read-modify-write under the run's findings lock
and an atomic replace: two tabs deciding at once never lose each other's decision.
"""

from __future__ import annotations

import hmac
import io
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from pydantic import ValidationError

from tilepilot.agents.errors import RunError
from tilepilot.agents.review.decisions import FINDINGS_NAME, findings_lock, load_findings
from tilepilot.agents.review.findings import FindingCorrection, FindingsFile
from tilepilot.agents.review.triage_page import PAGE_HTML
from tilepilot.agents.runs import write_atomic
from tilepilot.tools.errors import PdfError
from tilepilot.tools.pdf import open_pdf

PAGE_WIDTH_PX = 800  # page images are rendered at this width; boxes are drawn in percent of the page


class TriageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, run: Path, port: int = 0) -> None:
        load_findings(run)  # a run without a valid findings.json is a one-line error before anything listens
        self.run = Path(run)
        self.token = secrets.token_urlsafe(24)
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/?token={self.token}"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="triage", daemon=True)
        thread.start()
        return thread


def findings_payload(report: FindingsFile) -> dict:
    """What the page shows: every finding with its document, page size (for the box) and decision."""
    items = []
    for index, doc in enumerate(report.documents):
        sizes: dict[int, tuple[float, float]] = {}
        try:
            with open_pdf(doc.path) as pdf:
                sizes = {f.page: pdf.page_size(f.page) for f in doc.findings if f.page is not None}
        except PdfError:
            pass  # the page images are gone: findings are still listed, without their page
        for f in doc.findings:
            items.append({**f.model_dump(mode="json"), "doc": index, "document": doc.source or doc.path,
                          "flag": f.flag, "page_size": sizes.get(f.page) if f.page else None})
    return {"run": report.run, "findings": items}


def decide(run: Path, finding_id: str, decision: str | None, correction: dict | None) -> dict:
    """Set (or clear, with ``None``) one finding's decision in findings.json under the lock; returns the finding."""
    if decision not in ("accepted", "rejected", "corrected", None):
        raise ValueError(f"decision must be accepted, rejected or corrected, got {decision!r}")
    fix = FindingCorrection.model_validate(correction) if decision == "corrected" else None
    if fix is not None and not fix.model_dump():
        raise ValueError("a correction must change at least one of severity, rule, quote, rationale")
    with findings_lock(run):
        report = load_findings(run)
        found = None
        documents = []
        for doc in report.documents:
            findings = []
            for f in doc.findings:
                if f.id == finding_id:
                    f = found = f.model_copy(update={"decision": decision, "correction": fix})
                findings.append(f)
            documents.append(doc.model_copy(update={"findings": findings}))
        if found is None:
            raise KeyError(finding_id)
        report = report.model_copy(update={"documents": documents})
        write_atomic(Path(run) / FINDINGS_NAME, report.model_dump_json(indent=2, by_alias=True))
    return found.model_dump(mode="json")


class _Handler(BaseHTTPRequestHandler):
    server: TriageServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # the terminal shows the URL, not a line per image

    def _authorised(self) -> bool:
        given = parse_qs(urlparse(self.path).query).get("token", [""])[0] or self.headers.get("X-Tilepilot-Token", "")
        if hmac.compare_digest(given.encode(), self.server.token.encode()):
            return True
        self._send(403, "text/plain; charset=utf-8", b"forbidden: open the URL tilepilot printed (it carries the token)\n")
        return False

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: object) -> None:
        self._send(status, "application/json", json.dumps(data).encode())

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._authorised():
            return
        path = urlparse(self.path).path
        try:
            if path == "/":
                self._send(200, "text/html; charset=utf-8", PAGE_HTML.encode())
            elif path == "/api/findings":
                self._json(200, findings_payload(load_findings(self.server.run)))
            elif path.startswith("/page/"):
                self._page_image(path)
            else:
                self._send(404, "text/plain", b"not found\n")
        except RunError as err:
            self._json(500, {"error": str(err)})

    def _page_image(self, path: str) -> None:
        try:
            doc_index, page = (int(part) for part in path.removeprefix("/page/").removesuffix(".jpg").split("/"))
            doc = load_findings(self.server.run).documents[doc_index]
            with open_pdf(doc.path) as pdf:
                width, height = pdf.page_size(page)
                image = pdf.render(page, PAGE_WIDTH_PX, max(1, round(PAGE_WIDTH_PX * height / width)))
        except (ValueError, IndexError, PdfError):
            self._send(404, "text/plain", b"no such page\n")
            return
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        self._send(200, "image/jpeg", buffer.getvalue())

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        if urlparse(self.path).path != "/api/decide":
            self._send(404, "text/plain", b"not found\n")
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)) or b"{}")
            finding = decide(self.server.run, str(body.get("id", "")), body.get("decision"), body.get("correction"))
        except KeyError:
            self._json(404, {"error": "no finding with that id"})
        except (ValueError, ValidationError, json.JSONDecodeError) as err:
            self._json(400, {"error": str(err).splitlines()[0]})
        except RunError as err:
            self._json(500, {"error": str(err)})
        else:
            self._json(200, finding)
