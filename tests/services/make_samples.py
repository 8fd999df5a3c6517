"""Regenerate the tiny sample documents in tests/services/samples/ (they are committed).

Run with the service venv, which has python-docx (a docling dependency):

    services/docling/.venv/bin/python tests/services/make_samples.py

The PDF is written by hand (one page, Helvetica text) so no PDF library is needed.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"

TITLE = "Stepflow sample"
PARAGRAPHS = [
    "OpenSearch stores vector embeddings for semantic search.",
    "Docling converts documents into structured text before chunking.",
]

HTML = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{TITLE} (HTML)</title></head>
<body>
<h1>{TITLE} (HTML)</h1>
<p>{PARAGRAPHS[0]}</p>
<p>{PARAGRAPHS[1]}</p>
<table><tr><th>Service</th><th>Role</th></tr>
<tr><td>Docling</td><td>conversion</td></tr><tr><td>OpenSearch</td><td>vector store</td></tr></table>
</body></html>
"""

MARKDOWN = f"""# {TITLE} (Markdown)

{PARAGRAPHS[0]}

{PARAGRAPHS[1]}

| Service | Role |
| --- | --- |
| Docling | conversion |
| OpenSearch | vector store |
"""


def write_docx(path: Path) -> None:
    import docx  # python-docx

    d = docx.Document()
    import datetime

    fixed = datetime.datetime(2026, 1, 1)
    d.core_properties.created = d.core_properties.modified = fixed
    d.add_heading(f"{TITLE} (DOCX)", level=1)
    for p in PARAGRAPHS:
        d.add_paragraph(p)
    d.save(str(path))


def pdf_bytes(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF with Helvetica text and a correct xref table."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 18 Tf", "72 720 Td", f"({esc(lines[0])}) Tj", "/F1 11 Tf"]
    for line in lines[1:]:
        ops += ["0 -28 Td", f"({esc(line)}) Tj"]
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def main() -> None:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    (SAMPLES / "sample.html").write_text(HTML, encoding="utf-8")
    (SAMPLES / "sample.md").write_text(MARKDOWN, encoding="utf-8")
    write_docx(SAMPLES / "sample.docx")
    (SAMPLES / "sample.pdf").write_bytes(pdf_bytes([f"{TITLE} (PDF)", *PARAGRAPHS]))
    for p in sorted(SAMPLES.iterdir()):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
