"""Turn review inputs that are not PDFs into PDFs: Word/ODF/RTF (LibreOffice), text and Markdown, images.

The review agent reads pages through PyMuPDF, so every other format becomes a PDF first and the
findings cite page, quote and box in that PDF. Conversions are cached by content hash (the bytes
of the input plus :data:`CONVERTER_VERSION`), so the same file is converted once however often,
and wherever, it is reviewed; a resumed run finds the same PDF.

- ``.docx .doc .odt .rtf``: LibreOffice headless (Debian's ``libreoffice-writer-nogui``), contained,
  since the document is untrusted (see :func:`_run_soffice`): a fresh private profile folder
  (``-env:UserInstallation``; two conversions at once, or a desktop LibreOffice the user has open,
  never share or lock one) that turns macros off and blocks linked content and link updates; no
  network (a new network namespace); memory and CPU limits; its own process group, killed whole at
  :data:`SOFFICE_TIMEOUT_S`.
- ``.txt .md``: laid out on A4 pages with PyMuPDF's ``Story`` (Markdown through markdown-it, which
  rich already brings), so the text layer is exact.
- ``.png .jpg .jpeg .tif .tiff``: one page per image frame (multi-page TIFF), sized from the
  image's DPI (200 when it states none): a scanned page with no text layer. Only the decoder the
  suffix names reads it, and a decompression bomb is refused (:mod:`tilepilot.tools.images`).

Every failure is a :class:`ConversionError` whose message is one line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import logging
import os
import resource
import signal
import shutil
import subprocess
import tempfile
import zipfile
from functools import cache
from pathlib import Path

from tilepilot.tools.errors import ToolError
from tilepilot.tools.images import IMAGE_SUFFIXES

CONVERTER_VERSION = "2"  # part of the cache key: bump when a conversion's output changes
OFFICE_SUFFIXES = (".docx", ".doc", ".odt", ".rtf")
TEXT_SUFFIXES = (".txt", ".md")
SUPPORTED_SUFFIXES = (".pdf", *OFFICE_SUFFIXES, *TEXT_SUFFIXES, *IMAGE_SUFFIXES)
# What the review takes, in words, for its --help and the API (from the lists above, so the two never drift).
INPUTS_DESCRIPTION = (f"PDF; {' '.join(OFFICE_SUFFIXES)} (converted with LibreOffice); {' '.join(TEXT_SUFFIXES)}; "
                      f"images {' '.join(IMAGE_SUFFIXES)} (scans; a multi-page TIFF is one page per frame)")
SOFFICE_TIMEOUT_S = 180.0
# Per process (oosplash, soffice.bin). soffice.bin peaks at about 450 MiB of address space converting a
# 2.4 MB RTF of 20000 paragraphs (VmPeak), and at 512 MiB still converts small documents: 2 GiB leaves
# room for pictures while a document built to exhaust memory stops there.
SOFFICE_MEMORY_BYTES = 2 * 1024**3
SOFFICE_CPU_S = int(SOFFICE_TIMEOUT_S)
DEFAULT_DPI = 200
_A4 = (595.0, 842.0)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # compound file: .doc, or an encrypted OOXML package


class ConversionError(ToolError):
    """An input could not be turned into a PDF (corrupt, unreadable, or the converter failed)."""


class UnsupportedFormatError(ConversionError):
    pass


class EncryptedDocumentError(ConversionError):
    pass


class EmptyInputError(ConversionError):
    pass


class ConverterMissingError(ConversionError):
    """LibreOffice (``soffice``) is not installed."""


_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("TILEPILOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tilepilot")  # as model_runtime.tiny
    return Path(base) / "converted"


def to_pdf(path: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """The PDF to review for ``path``: the file itself for a PDF, else its cached conversion."""
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(f"{source}: unsupported format {suffix or '(no extension)'!r}; "
                                     f"tilepilot reviews {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix == ".pdf":
        return source
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ConversionError(f"{source}: no such file") from None
    except OSError as err:
        raise ConversionError(f"{source}: cannot read it ({err.strerror})") from None
    if not data:
        raise EmptyInputError(f"{source}: the file is empty (0 bytes)")
    key = hashlib.sha256(CONVERTER_VERSION.encode() + suffix.encode() + b"\0" + data).hexdigest()[:24]
    target = (cache_dir or default_cache_dir()) / f"{key}.pdf"
    if target.is_file():
        return target
    if suffix in OFFICE_SUFFIXES:
        pdf = _office_to_pdf(source, data)
    elif suffix in TEXT_SUFFIXES:
        pdf = _text_to_pdf(source, data)
    else:
        pdf = _images_to_pdf(source, data)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pdf)
    os.replace(tmp, target)  # two runs converting the same file at once both write the same bytes
    return target


def _office_to_pdf(source: Path, data: bytes) -> bytes:
    _refuse_encrypted(source, data)
    _check_container(source, data)
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise ConverterMissingError(f"{source}: LibreOffice is needed to read {source.suffix} files and is not installed; "
                                    "apt-get install libreoffice-writer-nogui (or save the document as PDF)")
    with tempfile.TemporaryDirectory(prefix="tilepilot-soffice-") as work:
        work_dir = Path(work)
        given = work_dir / f"input{source.suffix.lower()}"  # a plain name: soffice names the output after it
        given.write_bytes(data)
        profile = _locked_down_profile(work_dir / "profile")
        command = [*network_isolation(), soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless",
                   "--norestore", "--nolockcheck", "--convert-to", "pdf", "--outdir", str(work_dir / "out"), str(given)]
        returncode, output = _run_soffice(command, work_dir, source)
        out = work_dir / "out" / "input.pdf"
        if returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            detail = output.strip().splitlines()
            raise ConversionError(f"{source}: LibreOffice could not read it as {source.suffix} (corrupt or not that format)"
                                  + (f": {detail[-1][:200]}" if detail else ""))
        return out.read_bytes()


# The profile a conversion starts from. Macros: level 3 (very high: only signed macros from trusted
# places, and there are none) and switched off outright. BlockUntrustedRefererLinks: a document outside
# the trusted locations (all of them) loads no linked content, such as an image at a URL (checked: with
# it off, a linked image is fetched during --convert-to). Writer's link updates on load: 2 = never.
_PROFILE_SETTINGS = (
    ("org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel", "3"),
    ("org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution", "true"),
    ("org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks", "true"),
    ("org.openoffice.Office.Writer/Content/Update", "Link", "2"),
)


def _locked_down_profile(folder: Path) -> Path:
    """A fresh LibreOffice user profile with :data:`_PROFILE_SETTINGS`; returns its folder."""
    items = "".join(f'<item oor:path="/{path}"><prop oor:name="{name}" oor:op="fuse"><value>{value}</value></prop></item>\n'
                    for path, name, value in _PROFILE_SETTINGS)
    (folder / "user").mkdir(parents=True)
    (folder / "user" / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        f'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n{items}</oor:items>\n')
    return folder


@cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that runs LibreOffice in a new network namespace (no interfaces but a down
    loopback), or () where this machine allows none: then say so once. Root gets one directly; another
    user through a user namespace, where the kernel allows unprivileged ones."""
    unshare = shutil.which("unshare")
    for prefix in (("--net",), ("--user", "--map-root-user", "--net")):
        if unshare is None:
            break
        try:
            probe = subprocess.run([unshare, *prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return (unshare, *prefix)
    _log.warning("LibreOffice conversions run with network access: this machine allows no new network namespace "
                 "(unshare --net); linked content stays blocked by the LibreOffice profile")
    return ()


def _limit_resources() -> None:
    """Runs in the child before exec: caps memory and CPU time, and writes no core file of the document."""
    resource.setrlimit(resource.RLIMIT_AS, (SOFFICE_MEMORY_BYTES, SOFFICE_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (SOFFICE_CPU_S, SOFFICE_CPU_S + 5))  # soft: SIGXCPU, hard: SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_soffice(command: list[str], work_dir: Path, source: Path) -> tuple[int, str]:
    """Run LibreOffice in its own process group; (exit status, its output).

    ``soffice`` is the ``oosplash`` launcher, which starts ``soffice.bin`` as its child: killing only
    the launcher (as a plain timeout does) leaves ``soffice.bin`` converting. On a timeout, or
    anything else that stops the wait (Ctrl-C), the whole group is killed while the launcher is
    still unreaped, so its id, which names the group, cannot have been reused.
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env={**os.environ, "HOME": str(work_dir)}, start_new_session=True,
                            preexec_fn=_limit_resources)
    try:
        output, _ = proc.communicate(timeout=SOFFICE_TIMEOUT_S)
    except BaseException as stopped:
        if proc.returncode is None:  # not reaped: its id still names its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(stopped, subprocess.TimeoutExpired):
            raise ConversionError(f"{source}: LibreOffice did not finish converting it within "
                                  f"{SOFFICE_TIMEOUT_S:.0f} s") from None
        raise
    return proc.returncode, output


def _refuse_encrypted(source: Path, data: bytes) -> None:
    """Password-protected Office files: headless LibreOffice cannot ask for the password, so say so first."""
    if data.startswith(_OLE_MAGIC) and "EncryptedPackage".encode("utf-16-le") in data:
        raise EncryptedDocumentError(f"{source}: the document is password-protected; remove the password in Word "
                                     "(File > Info > Protect Document) or save it as PDF, and review that")
    if source.suffix.lower() == ".odt" and data.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as package:
                manifest = package.read("META-INF/manifest.xml")
        except (zipfile.BadZipFile, KeyError):
            return  # LibreOffice reports what is wrong with it
        if b"encryption-data" in manifest:
            raise EncryptedDocumentError(f"{source}: the document is password-protected; save a copy without the "
                                         "password, or as PDF, and review that")


def _check_container(source: Path, data: bytes) -> None:
    """LibreOffice imports almost any bytes as plain text, so a corrupt file must be caught before it."""
    suffix = source.suffix.lower()
    if suffix == ".rtf":
        ok = data.lstrip()[:5] == b"{\\rtf"
    elif suffix == ".doc":
        ok = data.startswith(_OLE_MAGIC)
    else:  # .docx and .odt are zip packages with their own part names
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as package:
                names = set(package.namelist())
        except zipfile.BadZipFile:
            names = set()
        ok = ("word/document.xml" in names) if suffix == ".docx" else ("content.xml" in names)
    if not ok:
        raise ConversionError(f"{source}: not a valid {suffix} file (corrupt, or another format renamed)")


def _text_to_pdf(source: Path, data: bytes) -> bytes:
    import pymupdf

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # every byte decodes: a legacy 8-bit text file still reads
    if source.suffix.lower() == ".md":
        from markdown_it import MarkdownIt

        body = MarkdownIt("commonmark", {"html": False}).render(text)  # raw HTML in the file stays text
    else:
        body = f"<pre style='white-space:pre-wrap;font-family:monospace'>{html.escape(text)}</pre>"
    story = pymupdf.Story(html=f"<body style='font-family:sans-serif;font-size:11pt'>{body}</body>")
    buffer = io.BytesIO()
    writer = pymupdf.DocumentWriter(buffer)
    page_rect = pymupdf.Rect(0, 0, *_A4)
    more = True
    while more:
        device = writer.begin_page(page_rect)
        more, _ = story.place(page_rect + (56, 56, -56, -56))  # 2 cm margins
        story.draw(device)
        writer.end_page()
    writer.close()
    return buffer.getvalue()


def _images_to_pdf(source: Path, data: bytes) -> bytes:
    import pymupdf
    from PIL import ImageSequence

    from tilepilot.tools.images import ImageReadError, check_pixels, decoding, open_image

    try:
        image = open_image(source, data)  # only the decoder the suffix names; a bomb is refused here
        pdf = pymupdf.open()
        with decoding(source):
            for frame in ImageSequence.Iterator(image):
                check_pixels(source, frame)
                _add_image_page(pdf, frame)
        if pdf.page_count == 0:
            raise ConversionError(f"{source}: the image holds no frames")
        return pdf.tobytes(garbage=3, deflate=True)
    except ImageReadError as err:
        raise ConversionError(str(err)) from None


def _add_image_page(pdf, frame) -> None:
    """One PDF page for one image frame, sized from its DPI (200 when it states none)."""
    dpi = frame.info.get("dpi") or (DEFAULT_DPI, DEFAULT_DPI)
    dpi_x, dpi_y = (float(d) if d and float(d) > 1 else DEFAULT_DPI for d in dpi)
    page = pdf.new_page(width=frame.width * 72.0 / dpi_x, height=frame.height * 72.0 / dpi_y)
    png = io.BytesIO()
    frame.convert("L" if frame.mode in ("1", "L", "I;16") else "RGB").save(png, format="PNG")
    page.insert_image(page.rect, stream=png.getvalue())
