"""audio_splitter, tile_iterator, string_splitter and document_splitter on generated media:
output columns and values (Pixeltable's), edge cases, bad arguments, missing extras."""

from __future__ import annotations

import sys
import wave
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ConfigError, SchemaError
from pxlite.functions.audio import audio_splitter
from pxlite.functions.document import document_splitter
from pxlite.functions.image import tile_iterator
from pxlite.functions.iterator_call import IteratorCall
from pxlite.iterators.document import Section, token_chunks
from pxlite.iterators.string import string_splitter
from tools.mediagen import write_pdf, write_wav

HTML = """<!DOCTYPE html>
<html><head><title>My Doc</title><style>p {color: red}</style></head>
<body>
<nav>Home | About</nav>
<h1>Intro</h1>
<p>First paragraph. It has two sentences.</p>
<p>Second &amp; last paragraph of intro.</p>
<h2>Details</h2>
<p>Detail text here.</p>
<script>var hidden = 1;</script>
<h1>Next</h1>
<p>Final words.</p>
</body></html>
"""

MARKDOWN = """# Intro

First paragraph. It has two sentences.

Second *emphasised* paragraph with `code`.

## Details

- item one
- item two

# Next

Final words.
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docs")
    (d / "d.html").write_text(HTML)
    (d / "d.md").write_text(MARKDOWN)
    (d / "d.txt").write_text("Line one of para one.\nLine two.\n\nPara two here. Another one!\n")
    write_pdf(d / "d.pdf", [["Page one text.", "Second line (with parens)."], [],
                            ["Third page. Two sentences."]])
    (d / "noext").write_text(HTML)  # no file name extension: recognised by its first bytes
    return {p.name: p for p in d.iterdir()}


def _chunks(path: Path, **args) -> list[dict]:
    with document_splitter(str(path), **args) as it:
        return list(it)


# ---- audio_splitter ----------------------------------------------------------------------------

def _seconds(path: str) -> float:
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("audio") / "a.wav", 10.0)


def test_audio_segments_by_duration_stay_on_the_grid(wav):
    with audio_splitter(str(wav), duration=3.0) as it:
        rows = list(it)
        assert set(rows[0]) == {"segment_start", "segment_end", "audio_segment"}
        # PCM packets hold 256 samples (0.032 s at 8 kHz): each cut is the first packet
        # boundary at or after 3, 6, 9 s, measured against that grid (no drift)
        assert [(r["segment_start"], r["segment_end"]) for r in rows] == [
            (0.0, 3.008), (3.008, 6.016), (6.016, 9.024), (9.024, 10.0)]
        lengths = [_seconds(r["audio_segment"]) for r in rows]
        assert lengths == pytest.approx([r["segment_end"] - r["segment_start"] for r in rows])
        assert sum(lengths) == pytest.approx(10.0)
        files = [r["audio_segment"] for r in rows]
    assert not any(Path(f).exists() for f in files)


def test_audio_overlap_min_duration_and_max_size(wav):
    with audio_splitter(str(wav), duration=3.0, overlap=1.0) as it:
        rows = list(it)
    starts = [r["segment_start"] for r in rows]
    ends = [r["segment_end"] for r in rows]
    assert all(e - s2 >= 1.0 for e, s2 in zip(ends, starts[1:], strict=False))  # overlapping
    assert ends[-1] == 10.0
    with audio_splitter(str(wav), duration=4.0, min_segment_duration=2.5) as it:
        assert [r["segment_end"] for r in it][-1] < 10.0  # a 2-second tail is dropped
    with audio_splitter(str(wav), max_size=40000) as it:
        rows = list(it)
        sizes = [Path(r["audio_segment"]).stat().st_size for r in rows]
    assert max(sizes) <= 40000 and rows[-1]["segment_end"] == 10.0 and len(rows) == 5


def test_audio_splitter_reads_the_audio_of_a_video(tmp_path):
    from tools.mediagen import write_video

    v = write_video(tmp_path / "v.mp4", 20, fps=10, audio=True)
    with audio_splitter(str(v), duration=1.0) as it:
        rows = list(it)
        assert rows[-1]["segment_end"] == pytest.approx(2.0, abs=0.05)
        assert all(r["audio_segment"].endswith(".m4a") for r in rows)


@pytest.mark.parametrize(("args", "message"), [
    ({}, "exactly one of duration"),
    ({"duration": 1, "max_size": 10}, "exactly one of duration"),
    ({"duration": -1}, "duration must be a number > 0"),
    ({"max_size": 0}, "max_size must be an integer > 0"),
    ({"duration": 1, "overlap": 1}, "overlap must be less than duration"),
    ({"duration": 1, "overlap": -0.5}, "overlap must be a number >= 0"),
    ({"duration": 1, "min_segment_duration": 2}, "at least min_segment_duration"),
])
def test_audio_splitter_refuses_bad_arguments(db, args, message):
    t = db.create_table("a", {"audio": pxl.Audio})
    with pytest.raises(SchemaError, match=message):
        audio_splitter(t.audio, **args)


def test_audio_splitter_errors_on_bad_files(wav, tmp_path):
    with pytest.raises(SchemaError, match="cannot hold even one packet"):
        list(audio_splitter(str(wav), max_size=100))
    junk = tmp_path / "j.wav"
    junk.write_bytes(b"\x01\x02" * 100)
    with pytest.raises(SchemaError, match=r"cannot read .* as audio"):
        list(audio_splitter(str(junk), duration=1))


# ---- tile_iterator -------------------------------------------------------------------------------

def test_tiles_cover_the_image_in_row_major_order():
    img = Image.new("RGB", (10, 7))
    for x in range(10):
        for y in range(7):
            img.putpixel((x, y), (x * 20, y * 30, 7))
    with tile_iterator(img, (4, 4), overlap=(1, 1)) as it:
        rows = list(it)
    # widths 4, 7, 10 hold 1, 2, 3 tiles with overlap 1; heights 4, 7 hold 1, 2
    assert [r["tile_coord"] for r in rows] == [[i, j] for j in range(2) for i in range(3)]
    assert [r["tile_box"] for r in rows[:3]] == [[0, 0, 4, 4], [3, 0, 7, 4], [6, 0, 10, 4]]
    for r in rows:
        x1, y1, _, _ = r["tile_box"]
        assert r["tile"].size == (4, 4)
        assert r["tile"].getpixel((0, 0)) == (x1 * 20, y1 * 30, 7)
    with tile_iterator(Image.new("RGB", (5, 5), "white"), (4, 4)) as it:
        last = list(it)[-1]["tile"]  # past the edge: padded with black
    assert last.getpixel((0, 0)) == (255, 255, 255) and last.getpixel((3, 3)) == (0, 0, 0)


@pytest.mark.parametrize(("args", "message"), [
    ({"tile_size": (0, 4)}, "tile_size must be a pair of positive integers"),
    ({"tile_size": 4}, "tile_size must be a pair"),
    ({"tile_size": (4, 4), "overlap": (-1, 0)}, "overlap must be a pair of non-negative"),
    ({"tile_size": (4, 4), "overlap": (4, 0)}, "strictly smaller than tile_size"),
])
def test_tile_iterator_refuses_bad_arguments(db, args, message):
    t = db.create_table("i", {"image": pxl.Image, "s": pxl.String})
    with pytest.raises(SchemaError, match=message):
        tile_iterator(t.image, **args)
    with pytest.raises(SchemaError, match="input must be a Image expression"):
        tile_iterator(t.s, (4, 4))


def test_tile_call_round_trips(db):
    t = db.create_table("i", {"image": pxl.Image})
    call = tile_iterator(t.image, (64, 32), overlap=(8, 0))
    assert list(call.columns()) == ["pos", "tile", "tile_coord", "tile_box"]
    assert IteratorCall.from_json(call.to_json(), t._meta()).args == {
        "tile_size": [64, 32], "overlap": [8, 0]}


# ---- string_splitter ----------------------------------------------------------------------------

def test_sentences_split_in_many_threads_at_once_stay_apart():
    """A view's build runs its iterators in a thread pool: each thread's sentences are its
    own text's (a pysbd segmenter keeps the text it works on, so one shared by threads mixed
    two documents' sentences up)."""
    from concurrent.futures import ThreadPoolExecutor

    from pxlite.iterators.string import sentences

    words = ["apples", "boats", "clouds", "doors", "eagles", "forks", "games", "hills"]
    expected = [[f"Text {k} speaks of {w} and {v}." for w in words for v in words]
                for k in range(8)]
    texts = [" ".join(sents) for sents in expected]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(sentences, texts)) == expected


def test_string_splitter_gives_sentences(db):
    text = "Dr. Smith arrived at 3 p.m. yesterday. He said: 'Hello!' Then he left? Yes."
    with string_splitter(text) as it:
        assert [r["text"] for r in it] == [
            "Dr. Smith arrived at 3 p.m. yesterday.", "He said: 'Hello!'", "Then he left?",
            "Yes."]
    with string_splitter("   ") as it:
        assert list(it) == []
    t = db.create_table("s", {"text": pxl.String, "n": pxl.Int})
    call = string_splitter(t.text, separators="sentence")
    assert list(call.columns()) == ["pos", "text"]
    with pytest.raises(SchemaError, match="separators must be 'sentence'"):
        string_splitter(t.text, separators="paragraph")
    with pytest.raises(SchemaError, match="input must be a String expression"):
        string_splitter(t.n)


# ---- document_splitter -------------------------------------------------------------------------

def test_html_split_at_headings_with_metadata(docs):
    rows = _chunks(docs["d.html"], separators="heading", metadata="title,heading,sourceline")
    assert rows == [
        {"text": "Intro First paragraph. It has two sentences. Second & last paragraph of "
                 "intro.", "title": "My Doc", "heading": {"h1": "Intro"}, "sourceline": 5},
        {"text": "Details Detail text here.", "title": "My Doc",
         "heading": {"h1": "Intro", "h2": "Details"}, "sourceline": 8},
        {"text": "Next Final words.", "title": "My Doc", "heading": {"h1": "Next"},
         "sourceline": 11},
    ]  # no nav, no script, no style, no title in the text
    assert _chunks(docs["noext"], separators="heading") == [{"text": r["text"]} for r in rows]
    with_nav = _chunks(docs["d.html"], separators="heading", skip_tags=[])
    assert [r["text"] for r in with_nav[:2]] == ["Home | About", rows[0]["text"]]


def test_html_and_markdown_paragraphs_and_sentences(docs):
    html = _chunks(docs["d.html"], separators="paragraph", metadata="heading")
    assert [r["text"] for r in html] == [
        "Intro", "First paragraph. It has two sentences.", "Second & last paragraph of intro.",
        "Details", "Detail text here.", "Next", "Final words."]
    assert html[4]["heading"] == {"h1": "Intro", "h2": "Details"}
    md = _chunks(docs["d.md"], separators="sentence", metadata="heading,sourceline")
    assert [(r["text"], r["sourceline"]) for r in md] == [
        ("Intro", 1), ("First paragraph.", 3), ("It has two sentences.", 3),
        ("Second emphasised paragraph with code.", 5), ("Details", 7), ("item one", 9),
        ("item two", 10), ("Next", 12), ("Final words.", 14)]
    assert md[6]["heading"] == {"h1": "Intro", "h2": "Details"}
    assert md[7]["heading"] == {"h1": "Next"}  # a new h1 closes the h2


def test_plain_text_paragraphs_and_char_limit(docs):
    par = _chunks(docs["d.txt"], separators="paragraph", metadata="sourceline")
    assert par == [{"text": "Line one of para one. Line two.", "sourceline": 1},
                   {"text": "Para two here. Another one!", "sourceline": 4}]
    chars = _chunks(docs["d.txt"], separators="paragraph,char_limit", limit=12, overlap=2)
    assert [r["text"] for r in chars[:3]] == ["Line one of ", "f para one. ", ". Line two."]
    assert all(len(r["text"]) <= 12 for r in chars)


def test_pdf_pages_text_box_and_images(docs):
    rows = _chunks(docs["d.pdf"], separators="page", metadata="page,bounding_box,title",
                   elements=["text", "image"], image_dpi=36)
    assert [(r["page"], r["text"]) for r in rows] == [
        (0, "Page one text.\nSecond line (with parens)."), (2, "Third page. Two sentences.")]
    x1, y1, x2, y2 = rows[0]["bounding_box"]
    assert 70 <= x1 < x2 <= 300 and 690 <= y1 < y2 <= 740  # the text drawn at (72, 720)
    assert rows[0]["image"].size == (306, 396)  # 612 x 792 points at 36 dpi
    whole = _chunks(docs["d.pdf"], separators="sentence", metadata="page")
    assert [r["text"] for r in whole] == ["Page one text.", "Second line (with parens).",
                                          "Third page.", "Two sentences."]
    with pytest.raises(SchemaError, match="'paragraph' separator does not apply to PDF"):
        _chunks(docs["d.pdf"], separators="paragraph")


def test_pdfium_is_called_by_one_thread_at_a_time(docs, monkeypatch):
    """PDFium is not thread-safe, not even on different documents; computed columns and a
    view's build read documents in threads. Every PDFium call pxlite makes holds one lock:
    checked at the calls themselves while eight threads read PDFs at once."""
    from concurrent.futures import ThreadPoolExecutor

    import pypdfium2 as pdfium

    from pxlite.iterators.document import PDFIUM_LOCK

    unlocked: list[str] = []

    def guard(cls: type, name: str) -> None:
        real = getattr(cls, name)

        def checked(*a, **k):
            if not PDFIUM_LOCK._is_owned():  # type: ignore[attr-defined]
                unlocked.append(f"{cls.__name__}.{name}")
            return real(*a, **k)
        monkeypatch.setattr(cls, name, checked)

    for cls, names in ((pdfium.PdfDocument, ("__init__", "__len__", "__getitem__",
                                             "get_metadata_dict", "close")),
                       (pdfium.PdfPage, ("get_textpage", "render", "close")),
                       (pdfium.PdfTextPage, ("get_text_bounded", "count_rects", "close")),
                       (pdfium.PdfBitmap, ("to_pil", "close"))):
        for name in names:
            guard(cls, name)

    def read(_: int) -> list[Any]:
        return [(r["page"], r["text"], r["image"].size) for r in _chunks(
            docs["d.pdf"], separators="page", metadata="page", elements=["text", "image"],
            image_dpi=36)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(read, range(16)))
    assert got == [read(0)] * 16 and len(got[0]) == 2
    assert unlocked == []


def test_token_chunks_count_tokens_and_never_split_a_character():
    """The token_limit splitter with a real tiktoken encoding built here (byte-level: one
    token per byte), since the named encodings are downloaded on first use."""
    import tiktoken

    enc = tiktoken.Encoding(name="bytes", pat_str=r"[\s\S]", mergeable_ranks={
        bytes([b]): b for b in range(256)}, special_tokens={})
    out = list(token_chunks([Section(text="abcdefghij", page=3)], enc, limit=4, overlap=1))
    assert [s.text for s in out] == ["abcd", "defg", "ghij", "j"]
    assert all(s.page == 3 for s in out)
    accented = list(token_chunks([Section(text="aé")], enc, limit=2, overlap=0))
    assert [s.text for s in accented] == ["a", "é"]  # 'é' is two bytes: never cut in half


def test_token_limit_without_its_encoding_is_a_clear_error(docs):
    with pytest.raises(SchemaError, match="unknown tiktoken encoding or model 'no_such_enc'"):
        _chunks(docs["d.txt"], separators="token_limit", limit=10,
                tiktoken_encoding="no_such_enc")


@pytest.mark.parametrize(("args", "message"), [
    ({"separators": None}, "separators is required"),
    ({"separators": "heading,chapter"}, "unknown separator 'chapter'"),
    ({"separators": 5}, "separator must be a comma-separated string"),
    ({"separators": "heading", "metadata": "author"}, "unknown metadata 'author'"),
    ({"separators": "heading", "elements": ["video"]}, "unknown element 'video'"),
    ({"separators": "heading", "elements": ["image"]},
     "'image' element needs separators='page'"),
    ({"separators": "heading", "limit": 10}, "limit and overlap need"),
    ({"separators": "char_limit"}, "needs limit="),
    ({"separators": "char_limit,token_limit", "limit": 5}, "not both"),
    ({"separators": "char_limit", "limit": 0}, "limit must be an integer > 0"),
    ({"separators": "char_limit", "limit": 5, "overlap": 5}, "overlap must be less than limit"),
    ({"separators": "heading", "skip_tags": "nav"}, "skip_tags must be a list"),
])
def test_document_splitter_refuses_bad_arguments(db, args, message):
    t = db.create_table("d", {"doc": pxl.Document})
    with pytest.raises(SchemaError, match=message):
        document_splitter(t.doc, **args)


def test_document_call_schema_follows_its_arguments(db):
    t = db.create_table("d", {"doc": pxl.Document})
    call = document_splitter(t.doc, "page", elements=["image", "text"],
                             metadata="page, bounding_box")
    assert [(k, repr(v)) for k, v in call.columns().items()] == [
        ("pos", "Required[Int]"), ("image", "Image"), ("text", "String"), ("page", "Int"),
        ("bounding_box", "Json")]
    again = IteratorCall.from_json(call.to_json(), t._meta())
    assert again == call and again.output_schema == call.output_schema


def test_not_a_document(tmp_path):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 50)
    with pytest.raises(SchemaError, match="not a PDF, HTML, Markdown or text document"):
        _chunks(binary, separators="paragraph")
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"%PDF-1.4 but nothing else")
    with pytest.raises(SchemaError, match=r"cannot read .* as a PDF"):
        _chunks(fake, separators="page")


@pytest.mark.parametrize(("module", "extra", "build"), [
    ("pypdfium2", "documents", lambda: document_splitter("x.pdf", "page")),
    ("markdown_it", "documents", lambda: document_splitter("x.md", "heading")),
    ("pysbd", "documents", lambda: string_splitter("One. Two.")),
    ("av", "video", lambda: audio_splitter("x.wav", duration=1)),
])
def test_missing_extras_are_named(monkeypatch, module, extra, build):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError, match=rf"'{module}' package.*pxlite\[{extra}\]"):
        build()
