"""Word and other non-PDF review inputs, generated with python-docx, PIL and LibreOffice (no fixtures on disk)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

PLANTED_EMAIL = "jane.roe@example.com"
PII_SENTENCE = f"Notices to the Supplier go to its account manager at {PLANTED_EMAIL} or by post."
LIABILITY_SENTENCE = "The Supplier accepts unlimited liability for any loss arising from the services."


def contract_docx(path: Path, *, clauses: int = 60, pii_at: int = 45, liability_at: int = 20,
                  governing_law: bool = False) -> Path:
    """A services agreement of several pages: the PII sentence is paragraph ``pii_at + 1`` (after the title),
    the unlimited-liability sentence ``liability_at + 1``; no governing-law clause unless asked."""
    from docx import Document

    document = Document()
    document.add_heading("Services Agreement", level=1)
    for n in range(clauses):
        if n == pii_at:
            text = PII_SENTENCE
        elif n == liability_at:
            text = LIABILITY_SENTENCE
        elif n == 5:
            text = "The Supplier shall indemnify the Customer against third-party claims arising from the services."
        elif governing_law and n == 7:
            text = "This Agreement is governed by the laws of England and Wales."
        else:
            text = (f"Clause {n + 1}. The Supplier shall perform the services described in Schedule {n % 4 + 1} with "
                    "reasonable care and skill, and shall keep the Customer informed of the progress of the work.")
        document.add_paragraph(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


def scanned_tiff(path: Path, pages: int = 2) -> Path:
    """A multi-page TIFF of blank pages with a drawn line of 'print' (a scan: no text layer)."""
    frames = []
    for n in range(pages):
        image = Image.new("L", (1275, 1650), 255)
        ImageDraw.Draw(image).text((100, 100 + 40 * n), f"Scanned page {n + 1}", fill=0)
        frames.append(image)
    frames[0].save(path, save_all=True, append_images=frames[1:], dpi=(150, 150))
    return path


def encrypted_odt(source: Path, path: Path, password: str = "secret") -> Path:
    """``source`` saved by LibreOffice as a password-protected .odt (real ODF encryption).

    A Basic macro in a private LibreOffice profile stores the document with ``Password`` set (the
    command line's ``--convert-to`` cannot encrypt). LibreOffice 7.4 ignores ``Password`` when it
    stores OOXML: :func:`encrypted_docx` makes the encrypted .docx.
    """
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is needed to make an encrypted document"
    with tempfile.TemporaryDirectory(prefix="tilepilot-encrypt-") as work:
        profile = Path(work) / "profile"
        env = {"HOME": work, "PATH": "/usr/bin:/bin"}
        base = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore"]
        subprocess.run([*base, "--terminate_after_init"], check=True, timeout=180, capture_output=True, env=env)
        module = profile / "user" / "basic" / "Standard" / "Module1.xba"  # the profile's own, now holding the macro
        module.write_text(_ENCRYPT_MACRO.replace("PASSWORD", password), encoding="utf-8")
        macro = f"macro:///Standard.Module1.Encrypt(\"{source.resolve().as_uri()}\",\"{path.resolve().as_uri()}\")"
        subprocess.run([*base, macro], check=True, timeout=180, capture_output=True, env=env)
    assert path.is_file(), "LibreOffice did not write the encrypted copy"
    return path


def encrypted_docx(source: Path, path: Path, password: str = "secret") -> Path:
    """``source`` (a .docx) encrypted as Word encrypts it: Agile encryption, the package inside an OLE
    compound file (``EncryptionInfo``, ``EncryptedPackage``), made with msoffcrypto-tool."""
    import io

    from tests.requires import require_module

    require_module("msoffcrypto", "test")  # msoffcrypto-tool
    import msoffcrypto.format.ooxml

    encrypted = io.BytesIO()
    with source.open("rb") as plain:
        msoffcrypto.format.ooxml.OOXMLFile(plain).encrypt(password, encrypted)
    path.write_bytes(encrypted.getvalue())
    return path


_ENCRYPT_MACRO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" script:language="StarBasic">
Sub Encrypt(src As String, dst As String)
  Dim load(0) As New com.sun.star.beans.PropertyValue
  load(0).Name = &quot;Hidden&quot; : load(0).Value = True
  doc = StarDesktop.loadComponentFromURL(src, &quot;_blank&quot;, 0, load())
  Dim store(1) As New com.sun.star.beans.PropertyValue
  store(0).Name = &quot;FilterName&quot; : store(0).Value = &quot;writer8&quot;
  store(1).Name = &quot;Password&quot; : store(1).Value = &quot;PASSWORD&quot;
  doc.storeToURL(dst, store())
  doc.close(True)
  StarDesktop.terminate()
End Sub
</script:module>
"""


def linked_image_odt(path: Path, image_url: str) -> Path:
    """An .odt whose only picture is *linked*, not embedded: opening the document loads ``image_url``."""
    import zipfile

    content = f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.2">
<office:body><office:text>
<text:p>Services Agreement with the Supplier's logo.</text:p>
<text:p><draw:frame draw:name="logo" text:anchor-type="as-char" svg:width="2cm" svg:height="2cm">
<draw:image xlink:href="{image_url}" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>
</draw:frame></text:p>
</office:text></office:body></office:document-content>"""
    manifest = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">
<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>
<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
</manifest:manifest>"""
    with zipfile.ZipFile(path, "w") as package:
        package.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")  # first, stored
        package.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
        package.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
    return path


def long_rtf(path: Path, paragraphs: int = 20_000) -> Path:
    """An RTF that LibreOffice takes long to convert (20000 paragraphs: about 20 s here, 2.4 MB)."""
    clause = "The Supplier shall perform the services with reasonable care and skill, and keep the Customer informed."
    body = "".join(f"\\par Clause {n + 1}. {clause}\n" for n in range(paragraphs))
    path.write_text("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times;}}\n" + body + "}")
    return path
