"""The review suite's labelled documents, generated deterministically with PyMuPDF.

Every document is a services contract between two parties, built page by page from a seeded
random generator; the labels (``labels.jsonl``, the ``--dataset`` format) are written with it, so
they are true by construction. Page kinds (``kinds.json``) and what each one plants:

=========  ===================================================================================
kind       content and planted problems
=========  ===================================================================================
title      one column, 11 pt: the parties; a notice e-mail address (pii-email)
terms      one column: definitions; "Confidential Information" includes personal data, so a
           late clause that shares it is a problem (rule ``model``, on the late page)
columns    two columns, 10 pt: one-sided termination (``model``) and a phone number (pii-phone)
table      a ruled fee table with numbers; the bank row holds an IBAN (pii-iban)
small      small print, 7-8 pt: automatic renewal (auto-renewal) and a card number (pii-card)
rotated    a landscape annex on a page with /Rotate 90: unlimited liability
scan       image only (a grey JPEG of typeset text, no text layer): an SSN and a phone number,
           which only eyes can find (pii-ssn, pii-phone)
clean      ordinary clauses with near misses (limited liability, dates, amounts, section
           numbers): no labels; findings here are false positives
late       the clause that shares Confidential Information (``model``)
end        governing law (absent in some documents: governing-law-clause, page null) and data
           protection (absent in some: ``model``, page null: only a reader can tell)
=========  ===================================================================================

Label boxes are in PDF points in the page's displayed frame (after /Rotate), origin top-left.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tempfile
from pathlib import Path

import pymupdf
from PIL import Image

VERSION = 2  # bump when the generator changes: part of the cache key (2: Word documents)
LETTER = (612.0, 792.0)
MARGIN = 72.0
FULL_DOCUMENTS, SMALL_DOCUMENTS = 22, 3
FULL_WORD_DOCUMENTS, SMALL_WORD_DOCUMENTS = 3, 1  # .docx contracts, reviewed through LibreOffice (review_word.py)

RULES_MD = """---
applies_to: [review]
checks:
  - {id: pii-email, description: "No e-mail addresses of people.", severity: high, type: pii, detectors: [email]}
  - {id: pii-phone, description: "No phone numbers of people.", severity: high, type: pii, detectors: [phone]}
  - {id: pii-iban, description: "No bank account numbers.", severity: high, type: pii, detectors: [iban]}
  - {id: pii-card, description: "No payment card numbers.", severity: critical, type: pii, detectors: [credit_card]}
  - {id: pii-ssn, description: "No social security numbers.", severity: critical, type: pii, detectors: [ssn]}
  - id: no-unlimited-liability
    description: "Unlimited liability must not be accepted."
    severity: critical
    type: forbidden
    pattern: '/\\bunlimited\\s+liability\\b/i'
  - id: auto-renewal
    description: "Automatic renewal needs an explicit opt-out for the Customer."
    severity: medium
    type: forbidden
    pattern: '/\\bautomatically\\s+renew/i'
  - id: governing-law-clause
    description: "The contract must state its governing law."
    severity: high
    type: required
    pattern: '/\\bgoverning\\s+law\\b|\\bgoverned\\s+by\\s+the\\s+laws?\\b/i'
---
Review this contract for the Customer. Report under rule "model":
- a termination right that only one party has;
- a clause that shares "Confidential Information" with third parties: the definitions make it include
  personal data, so such sharing needs the Customer's consent;
- a contract without a data protection clause (a document-level finding, page null).
"""

_FILLER = ("The parties shall cooperate in good faith and keep records of the services for the term. "
           "Each invoice states the services, the period and the amount due in euros. "
           "Reports are delivered within ten business days after the end of each quarter. "
           "Changes to the services are agreed in writing and signed by both parties. "
           "The Supplier keeps the service levels set out in the schedule and reports every breach. "
           "Liability of either party is limited to the fees paid in the twelve months before the claim. "
           "Renewal of this Agreement requires the written agreement of both parties. "
           "Amounts are stated in EUR, e.g. 12,500.00 per quarter, payable on 1 March 2025 and quarterly after. "
           "Clause 4.2.1 applies to deliveries made under purchase order PO-2025-0042. ").split(". ")
_NAMES = ("Jane Roe", "Omar Haddad", "Li Wei", "Maria Rossi", "Tom Becker", "Ana Souza", "Kenji Sato", "Eva Novak")
_COMPANIES = ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adatum", "Proseware", "Wingtip")


class _Doc:
    """One document under construction: its PDF, labels and page kinds."""

    def __init__(self, name: str, rng: random.Random):
        self.name, self.rng = name, rng
        self.pdf = pymupdf.open()
        self.labels: list[dict] = []
        self.kinds: list[str] = []
        supplier, customer = rng.sample(_COMPANIES, 2)
        self.supplier, self.customer = f"{supplier} Services Ltd", f"{customer} Retail GmbH"
        self.person = rng.choice(_NAMES)

    def label(self, rule: str, page: int | None, quote: str | None, box: tuple | None = None) -> None:
        self.labels.append({"document": self.name, "rule": rule, "page": page, "quote": quote,
                            "bbox": [round(v, 2) for v in box] if box else None,
                            "kind": self.kinds[page - 1] if page else "document"})

    def filler(self, sentences: int) -> list[str]:
        return [self.rng.choice(_FILLER).strip().rstrip(".") + "." for _ in range(sentences)]


def _wrap(sentences: list[str], width: int) -> list[str]:
    lines, line = [], ""
    for word in " ".join(sentences).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def _box(page: pymupdf.Page, quote: str) -> tuple[float, float, float, float]:
    """The quote's box in the displayed frame; generation fails loudly if it is not on the page."""
    rects = page.search_for(quote)
    if not rects:
        raise AssertionError(f"generator bug: {quote!r} not found on its page")
    union = pymupdf.Rect(rects[0])
    for rect in rects[1:]:
        union |= rect
    shown = union * page.rotation_matrix
    return shown.x0, shown.y0, shown.x1, shown.y1


def _text_page(doc: _Doc, kind: str, blocks: list[list[str]], size: float = 11.0, columns: int = 1) -> pymupdf.Page:
    """Write ``blocks`` (paragraphs of lines) in one or two columns; returns the page."""
    page = doc.pdf.new_page(width=LETTER[0], height=LETTER[1])
    doc.kinds.append(kind)
    lines = [line for block in blocks for line in block + [""]]
    if columns == 1:
        page.insert_text((MARGIN, MARGIN), "\n".join(lines), fontsize=size, fontname="helv")
    else:
        half = (len(lines) + 1) // 2
        gutter = (LETTER[0] - 2 * MARGIN) / 2
        page.insert_text((MARGIN, MARGIN), "\n".join(lines[:half]), fontsize=size, fontname="helv")
        page.insert_text((MARGIN + gutter + 12, MARGIN), "\n".join(lines[half:]), fontsize=size, fontname="helv")
    page.insert_text((LETTER[0] / 2 - 30, LETTER[1] - 40), f"Page {len(doc.kinds)}", fontsize=9, fontname="helv")
    return page


def _plant(doc: _Doc, page: pymupdf.Page, rule: str, quote: str) -> None:
    doc.label(rule, len(doc.kinds), quote, _box(page, quote))


# -- PII values that the detectors accept (checksums included) ---------------------------------


def _iban(rng: random.Random) -> str:
    bban = f"{rng.randrange(10**7, 10**8)}{rng.randrange(10**9, 10**10)}"
    digits = int("".join(str(int(c, 36)) for c in bban + "DE00"))
    check = 98 - digits % 97
    compact = f"DE{check:02d}{bban}"
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def _card(rng: random.Random) -> str:
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    total = sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d for i, d in enumerate(int(c) for c in reversed(body)))
    number = body + str((10 - total % 10) % 10)
    return " ".join(number[i:i + 4] for i in range(0, 16, 4))


def _phone(rng: random.Random) -> str:
    return f"{rng.randrange(201, 989)}-555-{rng.randrange(1000, 9999)}"


def _ssn(rng: random.Random) -> str:
    return f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"


# -- page builders ------------------------------------------------------------------------------


def _title(doc: _Doc) -> None:
    email = f"{doc.person.split()[0].lower()}.{doc.person.split()[1].lower()}@{doc.supplier.split()[0].lower()}.example"
    page = _text_page(doc, "title", [["SERVICES AGREEMENT"],
                                     [f"This Services Agreement is made between {doc.supplier} (the Supplier)",
                                      f"and {doc.customer} (the Customer)."],
                                     ["Notices to the Supplier go to its account manager, " + doc.person + ",",
                                      f"at {email} during business hours."],
                                     _wrap(doc.filler(3), 90)])
    _plant(doc, page, "pii-email", email)


def _terms(doc: _Doc) -> None:
    _text_page(doc, "terms", [["1. Definitions"],
                              ['"Confidential Information" means all information disclosed by the Customer,',
                               "including personal data of its employees and customers."],
                              ['"Services" means the data services described in the schedule.'],
                              _wrap(doc.filler(4), 90)])


def _columns(doc: _Doc) -> None:
    phone = _phone(doc.rng)
    clause = "The Supplier may terminate this Agreement at any time without cause."
    body = _wrap(doc.filler(6), 42)
    blocks = [["7. Termination"], _wrap([clause], 42), body[:6], [f"Support line: {phone}"], body[6:]]
    page = _text_page(doc, "columns", blocks, size=10, columns=2)
    _plant(doc, page, "model", "may terminate this Agreement at any time without cause")
    _plant(doc, page, "pii-phone", phone)


def _table(doc: _Doc) -> None:
    iban = _iban(doc.rng)
    page = doc.pdf.new_page(width=LETTER[0], height=LETTER[1])
    doc.kinds.append("table")
    page.insert_text((MARGIN, MARGIN), "Schedule 2: Fees", fontsize=13, fontname="helv")
    rows = [("Item", "Units", "Unit price", "Total")]
    for item in ("Data feed", "Quality report", "Review meeting", "Support hours", "Storage TB"):
        units, price = doc.rng.randrange(1, 40), doc.rng.randrange(100, 5000)
        rows.append((item, str(units), f"{price:,}.00", f"{units * price:,}.00"))
    top, height, widths = MARGIN + 20, 22.0, (170.0, 70.0, 110.0, 118.0)
    shape = page.new_shape()
    for r in range(len(rows) + 1):
        shape.draw_line((MARGIN, top + r * height), (MARGIN + sum(widths), top + r * height))
    x = MARGIN
    for w in (0.0, *widths):
        x += w
        shape.draw_line((x, top), (x, top + len(rows) * height))
    shape.finish(color=(0, 0, 0), width=0.8)
    shape.commit()
    for r, row in enumerate(rows):
        x = MARGIN
        for w, cell in zip(widths, row):
            page.insert_text((x + 4, top + r * height + 15), cell, fontsize=10, fontname="helv")
            x += w
    page.insert_text((MARGIN, top + len(rows) * height + 30), f"Payments to account {iban} only.", fontsize=10, fontname="helv")
    _plant(doc, page, "pii-iban", iban)


def _small(doc: _Doc) -> None:
    card = _card(doc.rng)
    size = doc.rng.choice((7.0, 7.5, 8.0))
    lines = _wrap(doc.filler(70), 125)
    cut = len(lines) // 3
    lines[cut:cut] = ["This Agreement shall automatically renew for successive one-year terms unless the Supplier objects."]
    lines[2 * cut:2 * cut] = [f"Fees may be charged to the Customer's card {card} without further notice."]
    page = _text_page(doc, "small", [["Standard terms (small print)"], lines], size=size)
    _plant(doc, page, "auto-renewal", "automatically renew")
    _plant(doc, page, "pii-card", card)


def _rotated(doc: _Doc) -> None:
    page = doc.pdf.new_page(width=LETTER[1], height=LETTER[0])  # landscape content ...
    doc.kinds.append("rotated")
    lines = ["Annex B: Liability"] + _wrap(doc.filler(3), 110) + ["The Customer accepts unlimited liability for loss of the Supplier's data."]
    page.insert_text((MARGIN, MARGIN), "\n".join(lines + _wrap(doc.filler(3), 110)), fontsize=11, fontname="helv")
    page.set_rotation(90)  # ... on a page turned for display, as scanners and printers leave them
    _plant(doc, page, "no-unlimited-liability", "unlimited liability")


def _scan(doc: _Doc) -> None:
    phone, ssn = _phone(doc.rng), _ssn(doc.rng)
    scratch = pymupdf.open()
    source = scratch.new_page(width=LETTER[0], height=LETTER[1])
    lines = ["Signature page"] + _wrap(doc.filler(3), 80) + [
        f"Signed for the Supplier by {doc.person}, reachable on {phone}.",
        f"Employee identification for the background check: SSN {ssn}."] + _wrap(doc.filler(2), 80)
    source.insert_text((MARGIN, MARGIN), "\n".join(lines), fontsize=12, fontname="helv")
    boxes = [_box(source, phone), _box(source, ssn)]
    photo = source.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY)
    scratch.close()
    jpeg = io.BytesIO()
    Image.frombytes("L", (photo.width, photo.height), photo.samples).save(jpeg, "JPEG", quality=75)
    page = doc.pdf.new_page(width=LETTER[0], height=LETTER[1])
    page.insert_image(page.rect, stream=jpeg.getvalue())
    doc.kinds.append("scan")
    doc.label("pii-phone", len(doc.kinds), phone, boxes[0])
    doc.label("pii-ssn", len(doc.kinds), ssn, boxes[1])


def _clean(doc: _Doc) -> None:
    number = len(doc.kinds) + 1
    _text_page(doc, "clean", [[f"{number}. General"], _wrap(doc.filler(doc.rng.randrange(6, 14)), 90)])


def _late(doc: _Doc) -> None:
    page = _text_page(doc, "late", [["12. Subcontractors"],
                                    ["The Supplier may share Confidential Information with its subcontractors",
                                     "without notice to the Customer."], _wrap(doc.filler(4), 90)])
    _plant(doc, page, "model", "may share Confidential Information with its subcontractors without notice")


def _end(doc: _Doc, governing_law: bool, data_protection: bool) -> None:
    blocks = [["15. Final provisions"], _wrap(doc.filler(2), 90)]
    if governing_law:
        blocks.append(["This Agreement is governed by the laws of England and Wales."])
    if data_protection:
        blocks.append(["16. Data protection", "Each party processes personal data only under a written data",
                       "processing agreement that meets the GDPR."])
    _text_page(doc, "end", blocks)
    if not governing_law:
        doc.label("governing-law-clause", None, None)
    if not data_protection:
        doc.label("model", None, None)


def build_document(name: str, seed: int, pages: int) -> _Doc:
    """One contract of about ``pages`` pages (at least 9: every kind once, clean pages fill up)."""
    doc = _Doc(name, random.Random(seed))
    middle = [_columns, _table, _small, _rotated, _scan] + [_clean] * max(0, pages - 9)
    doc.rng.shuffle(middle)
    if pages >= 14:  # a second scan page in longer documents: more cases only eyes can read
        middle.insert(doc.rng.randrange(len(middle)), _scan)
    _title(doc)
    _terms(doc)
    for build in middle:
        build(doc)
    _late(doc)
    _end(doc, governing_law=seed % 3 != 0, data_protection=seed % 4 != 1)
    return doc


def generate(out: Path, small: bool) -> Path:
    """Write the suite into ``out`` (a new folder): PDFs, .docx files, rules.md, labels.jsonl, kinds.json."""
    out.mkdir(parents=True)
    count = SMALL_DOCUMENTS if small else FULL_DOCUMENTS
    labels, kinds = [], {}
    for index in range(count):
        name = f"contract-{index + 1:02d}.pdf"
        doc = build_document(name, seed=index, pages=9 if small else 12 + index % 5)
        doc.pdf.set_metadata({"title": f"tilepilot eval review {name}", "creationDate": "D:20250101000000Z"})
        doc.pdf.save(str(out / name), deflate=True, no_new_id=True)
        doc.pdf.close()
        labels += doc.labels
        kinds[name] = doc.kinds
    for index in range(SMALL_WORD_DOCUMENTS if small else FULL_WORD_DOCUMENTS):
        from tilepilot.agents.eval.rigs.review_word import word_contract, word_kinds

        path = out / f"contract-word-{index + 1:02d}.docx"
        labels += word_contract(path, seed=index, paragraphs=70 if small else 90 + 10 * index)
        kinds[path.name] = word_kinds(path)
    (out / "rules.md").write_text(RULES_MD)
    (out / "labels.jsonl").write_text("".join(json.dumps(label) + "\n" for label in labels))
    (out / "kinds.json").write_text(json.dumps(kinds, indent=1))
    return out


def suite_dir(cache: Path, small: bool) -> Path:
    """The generated suite, cached: built once into a temporary folder, then renamed into place."""
    target = cache / f"review-{'small' if small else 'full'}-v{VERSION}"
    if (target / "labels.jsonl").is_file():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    try:
        generate(tmp / "data", small)
        if target.exists():
            shutil.rmtree(target)
        (tmp / "data").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
