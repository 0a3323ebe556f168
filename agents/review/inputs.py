"""The review's inputs: files and folders -> the PDFs to review, each opened and checked before a run starts.

Non-PDF inputs (Word, ODF, RTF, text, Markdown, images) are converted by :mod:`tilepilot.tools.convert`
(cached by content hash), and the review runs on the converted PDF; :class:`ReviewInput` keeps both
paths, so findings cite pages of the PDF and the reports name the file the user gave.

One input that cannot be read stops the run with its one-line error, as before. With several
inputs (a folder, or several paths) a bad one is skipped with its one-line reason and recorded in
``findings.json``'s ``failed_documents``; the rest are reviewed. Only when none is left is it an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tilepilot.agents.errors import UsageError
from tilepilot.agents.review.findings import FailedInput
from tilepilot.tools.convert import to_pdf
from tilepilot.tools.errors import ToolError
from tilepilot.tools.pdf import open_pdf


@dataclass(frozen=True)
class ReviewInput:
    source: Path  # what the user gave
    pdf: Path  # what is reviewed: the source itself, or its converted PDF
    page_count: int
    pages: list[int]

    @property
    def converted(self) -> bool:
        return self.pdf != self.source


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given; a folder's regular, non-hidden files in name order (every kind: an unsupported
    one is reported, never silently passed over)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise UsageError(f"{given}: folder holds no files to review; pass PDF, Word, text or image files or a folder of them")
            found.extend(files)
        else:
            found.append(path)
    if not found:
        raise UsageError("no input: pass one or more files or folders")
    return found


def check_inputs(paths: list[Path], page_spec: str | None, password: str | None,
                 max_pages: float | None) -> tuple[list[ReviewInput], list[FailedInput]]:
    """Convert and open every input once and resolve its pages, before anything is written."""
    inputs: list[ReviewInput] = []
    failed: list[FailedInput] = []
    for path in paths:
        try:
            pdf = to_pdf(path)
            with open_pdf(pdf, password, name=str(path)) as doc:
                pages = doc.page_range(page_spec) if page_spec else list(range(1, doc.page_count + 1))
                if max_pages is not None and len(pages) > max_pages:
                    raise UsageError(f"{path}: {len(pages)} pages exceed the rules' max_pages limit of {max_pages}; "
                                     "pass --pages to review a part")
                inputs.append(ReviewInput(source=path, pdf=pdf, page_count=doc.page_count, pages=pages))
        except (ToolError, UsageError) as err:
            if len(paths) == 1:
                raise
            failed.append(FailedInput(path=str(path), reason=str(err)))
    if not inputs:
        raise UsageError(f"none of the {len(paths)} inputs can be reviewed; first: {failed[0].reason}")
    return inputs, failed
