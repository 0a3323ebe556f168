"""Write examples/review/contract.pdf: a 12-page services contract with planted clauses and PII.

    python examples/review/make_contract.py            # writes contract.pdf next to this file
    tilepilot review examples/review/contract.pdf --rules examples/review/contract-rules.md

Planted (page: what the rule checks must report):
  3: an e-mail address and a phone number (no-personal-data)
  5: "unlimited liability" (no-unlimited-liability)
  7: "automatically renew" (auto-renewal)
  9: an IBAN (no-personal-data)
  page 11 is a scanned signature page (image only): only the model's eyes can read it.
The contract has no governing-law clause, so governing-law-clause is reported as missing.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pymupdf
from PIL import Image

SECTIONS = {
    1: ["SERVICES AGREEMENT", "", "This Services Agreement is made between Northwind Analytics Ltd (the Supplier)",
        "and Contoso Retail GmbH (the Customer)."],
    2: ["1. Services", "The Supplier shall provide the data services described in Annex A.",
        "2. Fees", "The Customer shall pay each invoice within thirty days of receipt."],
    3: ["3. Notices", "Notices to the Supplier go to the account manager, Jane Roe,",
        "at jane.roe@northwind.example or by telephone on 212-555-0187."],
    4: ["4. Indemnification", "Each party shall indemnify the other against third-party claims",
        "arising from its breach of this Agreement."],
    5: ["5. Liability", "The Customer accepts unlimited liability for any loss of the Supplier's data."],
    6: ["6. Confidentiality", "Each party keeps the other's confidential information secret for five years."],
    7: ["7. Term", "This Agreement runs for one year and shall automatically renew for further one-year",
         "terms unless terminated by the Supplier."],
    8: ["8. Termination", "The Supplier may terminate this Agreement at any time without cause."],
    9: ["9. Payment details", "Payments go to IBAN DE89 3704 0044 0532 0130 00."],
    10: ["10. Miscellaneous", "This Agreement is the entire agreement between the parties."],
    12: ["Annex A", "Monthly data quality reports and a quarterly review meeting."],
}


def main(out: Path) -> Path:
    doc = pymupdf.open()
    for number in range(1, 13):
        page = doc.new_page(width=612, height=792)
        if number == 11:  # a scanned signature page: the picture of text, no text layer
            scratch = pymupdf.open()
            src = scratch.new_page(width=612, height=792)
            src.insert_text((72, 100), "Signed for the Supplier: J. Roe, 1 March 2025\nSigned for the Customer: M. Weber",
                            fontsize=13, fontname="helv")
            pix = src.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY)
            buf = io.BytesIO()
            Image.frombytes("L", (pix.width, pix.height), pix.samples).save(buf, "JPEG", quality=75)
            page.insert_image(page.rect, stream=buf.getvalue())
            continue
        page.insert_text((72, 90), "\n".join(SECTIONS[number]), fontsize=11, fontname="helv")
        page.insert_text((280, 760), f"Page {number} of 12", fontsize=9, fontname="helv")
    doc.set_metadata({"title": "Services Agreement (tilepilot example)", "creationDate": "D:20250101000000Z"})
    doc.save(str(out), deflate=True, no_new_id=True)
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("contract.pdf")))
