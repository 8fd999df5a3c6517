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


CORPUS = Path(__file__).resolve().parents[2] / "flows" / "samples" / "openrag"
# Four documents on four topics, one per format, long enough for several chunks each (Split Text in the
# OpenRAG flow: 1,000 characters, 200 overlap). The first sentence of each is what the k-NN test asks for.
TOPICS = {
    "volcanoes.html": [
        "Volcanoes form where molten rock from the mantle rises through the crust and erupts at the surface.",
        "Shield volcanoes such as Mauna Loa are built from fluid basalt lava flows that travel far before cooling.",
        "Stratovolcanoes like Mount Fuji alternate layers of ash and sticky lava and erupt explosively.",
        "Pyroclastic flows are avalanches of hot gas and rock that race down a volcano's slopes.",
        "Volcanologists watch ground swelling, gas emissions and small earthquakes to forecast eruptions.",
        "Volcanic soils weather into fertile land, which is why farms often climb the flanks of volcanoes.",
        "The 1815 eruption of Tambora cooled the planet and caused the year without a summer in 1816.",
        "Calderas form when a magma chamber empties and the summit collapses into the void below.",
        "Hot springs and geysers draw their heat from magma that lies close beneath the surface.",
        "Lava tubes are tunnels left behind when the surface of a lava flow cools while the inside keeps flowing.",
        "Obsidian is volcanic glass, formed when lava cools too fast for crystals to grow.",
        "Submarine volcanoes along mid-ocean ridges create new sea floor as the plates spread apart.",
    ],
    "honeybees.docx": [
        "Honeybees live in colonies of tens of thousands of workers serving a single egg-laying queen.",
        "Forager bees tell their sisters where flowers are with the waggle dance, whose angle points to the food.",
        "Worker bees secrete wax from glands on their abdomen and shape it into hexagonal comb cells.",
        "Nectar becomes honey as bees add enzymes and fan their wings to evaporate the water.",
        "A colony swarms in spring: the old queen leaves with half the workers to found a new nest.",
        "Drones are male bees whose only task is to mate with a queen from another colony.",
        "Beekeepers inspect frames for brood, pollen and capped honey to judge the health of a hive.",
        "The varroa mite feeds on developing bees and spreads viruses that weaken whole colonies.",
        "Bees pollinate apples, almonds and many crops, a service worth billions every year.",
        "Royal jelly fed to a larva decides whether it grows into a queen or a worker.",
        "In winter the colony clusters around the queen and shivers its flight muscles to stay warm.",
        "Propolis, a resin gathered from tree buds, seals cracks and protects the hive against germs.",
    ],
    "chess.md": [
        "Chess openings such as the Sicilian Defence fight for the centre of the board from the first move.",
        "Castling moves the king to safety and brings a rook toward the centre in a single turn.",
        "A pin holds a piece in place because moving it would expose a more valuable piece behind it.",
        "In the endgame the king becomes an attacking piece and marches toward the centre.",
        "Passed pawns, with no enemy pawn in front or beside them, are strong candidates for promotion.",
        "Zugzwang is the situation where any move a player makes worsens their position.",
        "The Elo rating system estimates playing strength from the results of rated games.",
        "A fork is a single move that attacks two enemy pieces at once, often with a knight.",
        "Stalemate ends the game in a draw when the side to move has no legal move and is not in check.",
        "Grandmasters study thousands of games to recognise patterns instead of calculating every line.",
        "The bishop pair is an advantage in open positions where long diagonals are free of pawns.",
        "Time controls such as blitz and rapid limit each player's thinking time with a clock.",
    ],
    "tides.pdf": [
        "Ocean tides rise and fall twice a day because the Moon's gravity pulls the water toward it.",
        "Spring tides, with the largest range, come when the Sun and Moon line up at new and full moon.",
        "Neap tides happen at the quarter moons, when the Sun and Moon pull at right angles.",
        "The Bay of Fundy in Canada has the highest tidal range on Earth, over fifteen metres.",
        "Tide tables predict the time and height of high and low water for each harbour.",
        "Tidal currents run fastest through narrow straits between high and low water.",
        "Tidal power stations use barrages or underwater turbines to turn moving water into electricity.",
        "Intertidal zones are covered at high tide and exposed at low tide, home to barnacles and crabs.",
        "Some seas, such as the Mediterranean, have very small tides because of their shape and size.",
        "Tidal friction slowly lengthens the day and pushes the Moon a few centimetres farther each year.",
        "Sailors time departures with the ebb tide to carry their boats out of the harbour.",
        "A tidal bore is a wave that travels up a river against its current when the tide comes in.",
    ],
}


def write_corpus() -> None:
    import docx  # python-docx

    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, lines in TOPICS.items():
        path = CORPUS / name
        title = name.split(".")[0].capitalize()
        if name.endswith(".html"):
            body = "".join(f"<p>{line}</p>\n" for line in lines)
            path.write_text(
                f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n"
                f"<h1>{title}</h1>\n{body}</body></html>\n",
                encoding="utf-8",
            )
        elif name.endswith(".md"):
            path.write_text(f"# {title}\n\n" + "\n\n".join(lines) + "\n", encoding="utf-8")
        elif name.endswith(".docx"):
            d = docx.Document()
            d.add_heading(title, level=1)
            for line in lines:
                d.add_paragraph(line)
            d.save(str(path))
        else:
            path.write_bytes(pdf_bytes([title, *lines]))
        print(path, path.stat().st_size)


def main() -> None:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    (SAMPLES / "sample.html").write_text(HTML, encoding="utf-8")
    (SAMPLES / "sample.md").write_text(MARKDOWN, encoding="utf-8")
    write_docx(SAMPLES / "sample.docx")
    (SAMPLES / "sample.pdf").write_bytes(pdf_bytes([f"{TITLE} (PDF)", *PARAGRAPHS]))
    for p in sorted(SAMPLES.iterdir()):
        print(p, p.stat().st_size)
    write_corpus()


if __name__ == "__main__":
    main()
