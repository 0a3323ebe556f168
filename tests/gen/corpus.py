"""A folder of many small PDFs with planted rule hits (the cluster review tests and benchmark)."""

from __future__ import annotations

from pathlib import Path

from tests.gen.pdfs import mixed_corpus, not_a_pdf

# what document i carries, by i % 3: a personal-data hit on page 1, an unlimited-liability hit on page 2, nothing
PLANTS = (
    {1: ["Contact jane.roe@example.com for notices."]},
    {2: ["The Supplier accepts unlimited liability for delays."]},
    {},
)


def planted_folder(folder: Path, count: int, pages: int = 2, corrupt: int = 0) -> Path:
    """``count`` PDFs of ``pages`` pages (dense, sparse, ...) named doc-00000.pdf...; ``corrupt`` more that are not PDFs."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        mixed_corpus(folder / f"doc-{i:05d}.pdf", pages, plant={p: lines for p, lines in PLANTS[i % 3].items() if p <= pages},
                     seed=i)
    for i in range(corrupt):
        not_a_pdf(folder / f"corrupt-{i:02d}.pdf")
    return folder
