"""The review suite's reference answerer: which document and pages a request shows, and their labels.

A review chunk request holds page headers (``=== page N (...) ===``) followed by the page's text
layer, its image, or both. The document is identified from the request itself: by the hash of a
page's text block when the chunk sends any text, else by the pixels of its first image (the
candidate pages are rendered at exactly the size received, encoded as the client encodes them,
and compared byte for byte). The right answer is every label on the chunk's pages, plus the
document-level labels in the chunk that holds the document's last page; the wrong answer moves
each label to another page and another rule, with real words of that page (so it survives the
quote check and counts as a false positive).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
from pathlib import Path

from PIL import Image

from tilepilot.agents.eval.dataset import Dataset, Label
from tilepilot.agents.eval.rigs.oracle import OracleReply
from tilepilot.model_runtime.payloads import encode_image
from tilepilot.tools.convert import to_pdf
from tilepilot.tools.pdf import open_pdf

_HEADER = re.compile(r"=== page (\d+) \((text layer|image|image and text layer)\) ===")
_DOCUMENT = re.compile(r"^Document: (.+)$", re.M)


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()


class ReviewAnswerer:
    """Callable as an :data:`~tilepilot.agents.eval.rigs.oracle.Answerer`; built once per dataset."""

    def __init__(self, data: Dataset, rule_ids: list[str]):
        self.data = data
        self.rules = sorted(set(rule_ids) | {"model"})
        self.by_text: dict[str, str] = {}  # digest of a page's text block -> document
        self.words: dict[tuple[str, int], str] = {}  # a few real words of each page, for wrong answers
        self.sizes: dict[tuple[str, int], tuple[float, float]] = {}
        self._render_lock = threading.Lock()  # PyMuPDF is not thread-safe; the server is threaded
        for name in data.documents:
            with open_pdf(to_pdf(data.root / name)) as doc:  # a Word document: the PDF the review reads
                for page in range(1, doc.page_count + 1):
                    text = doc.text(page)
                    if text.text.strip():
                        self.by_text[_digest(text.text)] = name
                    self.words[(name, page)] = " ".join(w.text for w in text.words[:4]) or "see the page"
                    self.sizes[(name, page)] = (text.width, text.height)

    def __call__(self, body: dict) -> OracleReply | None:
        parts = _user_parts(body)
        texts = [p.get("text", "") for p in parts if p.get("type") == "text"]
        summary = next((m for t in texts if (m := _DOCUMENT.search(t))), None)
        if summary is not None:
            name = Path(summary.group(1).strip()).name
            answer = {"summary": f"Review of {name}: see the findings."}
            return OracleReply(key=f"summary:{name}", right=answer, wrong=answer)
        pages, document, sizes = self._pages_and_document(parts)
        if not pages or document is None:
            return None
        key = f"{document}:{pages[0]}-{pages[-1]}"
        last = max(self.data.documents[document], 1)
        labels = [lb for lb in self.data.labels if lb.document == document and
                  (lb.page in pages or (lb.page is None and last in pages))]
        right = {"findings": [_finding(lb.rule, lb.page, lb.quote or "", f"planted {lb.rule} problem",
                                       self._pixels(document, lb, sizes)) for lb in labels]}
        wrong = {"findings": self._wrong(document, pages, labels)}
        extra = _extra_fields(body)  # the rules' output.fields (a suggestion): required strings of every finding
        for answer in (right, wrong):
            answer["findings"] = [{**{name: f"see the {f['rule']} label" for name in extra}, **f} for f in answer["findings"]]
        return OracleReply(key=key, right=right, wrong=wrong)

    def _pixels(self, document: str, label: Label, sizes: dict[int, tuple[int, int]]) -> list[float] | None:
        """The label's box in the pixels of the page image the request showed (None: no image, no box)."""
        if label.page not in sizes or label.bbox is None:
            return None
        width, height = self.sizes[(document, label.page)]
        sx, sy = sizes[label.page][0] / width, sizes[label.page][1] / height
        x0, y0, x1, y1 = label.bbox
        return [round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1)]

    def _pages_and_document(self, parts: list[dict]) -> tuple[list[int], str | None, dict[int, tuple[int, int]]]:
        pages: list[int] = []
        sizes: dict[int, tuple[int, int]] = {}
        document: str | None = None
        first_image: tuple[int, str] | None = None
        current = None
        for part in parts:
            if part.get("type") == "text":
                header = _HEADER.search(part.get("text", ""))
                if header:
                    current = int(header.group(1))
                    pages.append(current)
                elif current is not None and document is None:
                    document = self.by_text.get(_digest(part["text"]))
            elif part.get("type") == "image_url" and current is not None:
                sizes[current] = _image_size(part["image_url"]["url"])
                first_image = first_image or (current, part["image_url"]["url"])
        if document is None and first_image is not None:
            document = self._by_pixels(*first_image)
        return pages, document, sizes

    def _by_pixels(self, page: int, url: str) -> str | None:
        """Render each candidate page at the received size and compare the encoded bytes."""
        width, height = _image_size(url)
        candidates = sorted((name for name in self.data.documents if (name, page) in self.sizes),
                            key=lambda name: self.data.kind(name, page) != "scan")
        with self._render_lock:
            for name in candidates:
                pw, ph = self.sizes[(name, page)]
                if abs(pw / ph - width / height) > 0.1:
                    continue
                with open_pdf(self.data.root / name) as doc:
                    if encode_image(doc.render(page, width, height), "jpeg") == url:
                        return name
        return None

    def _wrong(self, document: str, pages: list[int], labels: list[Label]) -> list[dict]:
        """Per label: its rule on another page of the chunk, and another rule on its own page.

        Neither may coincide with a label (a "wrong" answer that hits another label would be right).
        """
        taken = {(lb.rule, lb.page) for lb in self.data.labels if lb.document == document}
        wrong = []
        for index, label in enumerate(labels):
            page = label.page or pages[0]
            others = [p for p in pages if p != page and (label.rule, p) not in taken]
            if others:
                moved = others[index % len(others)]
                wrong.append(_finding(label.rule, moved, self.words[(document, moved)], "misplaced"))
            start = self.rules.index(label.rule) if label.rule in self.rules else 0
            rules = [self.rules[(start + k) % len(self.rules)] for k in range(1, len(self.rules))]
            rule = next((r for r in rules if (r, page) not in taken), None)
            if rule is not None:
                wrong.append(_finding(rule, page, self.words[(document, page)], "wrong rule"))
        return wrong


def _finding(rule: str, page: int | None, quote: str, rationale: str, box: list[float] | None = None) -> dict:
    return {"rule": rule, "severity": "high", "page": page, "quote": quote, "rationale": rationale, "box": box}


def _extra_fields(body: dict) -> list[str]:
    """Required finding properties of the request's answer schema beyond the ones every review answer has."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    finding = (schema.get("$defs") or {}).get("Finding") or {}
    known = {"rule", "severity", "page", "quote", "rationale", "box"}
    return [name for name in finding.get("required", []) if name not in known]


def _image_size(url: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.size


def _user_parts(body: dict) -> list[dict]:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, list) else [{"type": "text", "text": str(content)}]
    return []
