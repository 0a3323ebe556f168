"""The review suite's Word documents: contracts written with python-docx, reviewed through the LibreOffice conversion.

Each one plants what the PDF contracts plant on text pages (an e-mail address, automatic renewal,
unlimited liability, the clause that shares Confidential Information, and in some a missing
governing-law or data-protection clause). Its labels are found in the PDF that
:func:`tilepilot.tools.convert.to_pdf` makes of it (the very PDF the review reads, from the same
content-hash cache), so pages and boxes are those of the converted pages and true by construction.
"""

from __future__ import annotations

import random
from pathlib import Path

import pymupdf

from tilepilot.tools.convert import to_pdf

_CLAUSE = ("The Supplier performs the services with reasonable care and skill and keeps the Customer informed of the "
           "progress of the work. Each invoice states the services, the period and the amount due in euros.")


def word_contract(path: Path, seed: int, paragraphs: int = 70) -> list[dict]:
    """Write a .docx contract to ``path``; returns its labels (the ``labels.jsonl`` format), in converted-PDF pages."""
    from docx import Document

    rng = random.Random(1000 + seed)
    person = rng.choice(("Jane Roe", "Omar Haddad", "Li Wei", "Maria Rossi"))
    email = f"{person.split()[0].lower()}.{person.split()[1].lower()}@wingtip.example"
    governing_law, data_protection = seed % 2 == 0, seed % 3 != 2
    planted = {
        5: ("pii-email", f"Notices go to the account manager, {person}, at {email} during business hours.", email),
        25: ("auto-renewal", "This Agreement will automatically renew for successive terms of one year.",
             "automatically renew"),
        40: ("no-unlimited-liability", "The Supplier accepts unlimited liability for the data services.",
             "unlimited liability"),
        55: ("model", "The Supplier may share Confidential Information with its subcontractors without notice.",
             "may share Confidential Information with its subcontractors without notice"),
    }
    document = Document()
    document.add_heading("SERVICES AGREEMENT", level=1)
    document.add_paragraph('"Confidential Information" means all information disclosed by the Customer, including '
                           "personal data of its employees and customers.")
    for n in range(paragraphs):
        document.add_paragraph(planted[n][1] if n in planted else f"{n + 2}. {_CLAUSE}")
    if governing_law:
        document.add_paragraph("This Agreement is governed by the laws of England and Wales.")
    if data_protection:
        document.add_paragraph("Data protection. Each party processes personal data only under a written data processing "
                               "agreement that meets the GDPR.")
    document.core_properties.title = f"tilepilot eval review {path.name}"
    document.save(str(path))
    labels = []
    with pymupdf.open(to_pdf(path)) as pdf:
        for rule, _, quote in planted.values():
            hits = [(n + 1, rects) for n, page in enumerate(pdf.pages()) if (rects := page.search_for(quote))]
            if len(hits) != 1:
                raise AssertionError(f"generator bug: {quote!r} is on {len(hits)} pages of the converted {path.name}")
            page, rects = hits[0]
            box = pymupdf.Rect(rects[0])
            for rect in rects[1:]:
                box |= rect
            labels.append({"document": path.name, "rule": rule, "page": page, "quote": quote,
                           "bbox": [round(v, 2) for v in box], "kind": "word"})
    if not governing_law:
        labels.append({"document": path.name, "rule": "governing-law-clause", "page": None, "quote": None, "bbox": None,
                       "kind": "document"})
    if not data_protection:
        labels.append({"document": path.name, "rule": "model", "page": None, "quote": None, "bbox": None, "kind": "document"})
    return labels


def word_kinds(path: Path) -> list[str]:
    with pymupdf.open(to_pdf(path)) as pdf:
        return ["word"] * pdf.page_count
