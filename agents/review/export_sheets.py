"""A review run's findings as a spreadsheet: ``.xlsx`` (openpyxl) or ``.csv``, one row per finding, decisions included.

Both formats hold the same cells (:func:`finding_rows`): the finding as the agent wrote it, the
reviewer's decision, and the corrected values where the reviewer corrected it. Every value is
text or a whole number, so the two files agree cell for cell, except that a text that a spreadsheet
would run as a formula (:data:`FORMULA_STARTS`) is a text cell in the xlsx and starts with an
apostrophe in the CSV.
"""

from __future__ import annotations

import csv
import io

from tilepilot.agents.errors import TilepilotError
from tilepilot.agents.review.findings import FindingsFile, xml_text

# A cell a spreadsheet would read as a formula (or, after a tab or carriage return, start one): quotes come
# from documents, and =HYPERLINK(...) in one must stay text (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = ["document", "id", "rule", "severity", "flag", "page", "pages", "paragraph", "quote", "rationale",
           "verified", "source", "decision", "corrected_rule", "corrected_severity", "corrected_quote",
           "corrected_rationale"]


def finding_rows(report: FindingsFile) -> tuple[list[str], list[list[str | int]]]:
    """The header (built-in columns, then one per output field) and one row per finding."""
    fields = sorted({name for doc in report.documents for f in doc.findings for name in f.fields} - {"flag"})  # flag: its own column
    header = COLUMNS + [f"field:{name}" for name in fields]
    rows: list[list[str | int]] = []
    for doc in report.documents:
        for f in doc.findings:
            fix = f.correction
            rows.append([doc.source or doc.path, f.id, f.rule, f.severity, f.flag or "", f.page or "",
                         ",".join(map(str, f.pages)), "" if f.paragraph is None else f.paragraph, f.quote, f.rationale,
                         f.verified, f.source, f.decision or "",
                         (fix.rule or "") if fix else "", (fix.severity or "") if fix else "",
                         (fix.quote or "") if fix else "", (fix.rationale or "") if fix else ""]
                        + [f.fields.get(name, "") for name in fields])
    # xlsx is XML: what it cannot hold is marked in both files alike, so they still agree cell for cell.
    return header, [[xml_text(v) if isinstance(v, str) else v for v in row] for row in rows]


def starts_like_formula(value: object) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def to_csv(report: FindingsFile) -> bytes:
    header, rows = finding_rows(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    # CSV has no cell types: a leading apostrophe is what spreadsheets take as "this is text".
    writer.writerows([[f"'{v}" if starts_like_formula(v) else v for v in row] for row in rows])
    return buffer.getvalue().encode("utf-8")


def to_xlsx(report: FindingsFile) -> bytes:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

    header, rows = finding_rows(report)
    workbook = Workbook()
    sheet = workbook.active
    if not isinstance(sheet, Worksheet):  # a new workbook always starts with one worksheet
        raise TilepilotError(f"openpyxl made a workbook without a worksheet ({type(sheet).__name__})")
    sheet.title = "findings"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
        for cell in sheet[sheet.max_row]:
            if starts_like_formula(cell.value):  # openpyxl takes "=..." for a formula: store every such cell as text
                cell.data_type = "s"
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
