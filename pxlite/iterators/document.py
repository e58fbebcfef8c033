"""Document iterator: :class:`DocumentSplitter` cuts a PDF, HTML, Markdown or plain-text
document into chunks, and :func:`document_text` gives a document's whole text.

Formats and readers: PDF with pypdfium2 (the ``pxlite[documents]`` extra), Markdown with
markdown-it-py (same extra), HTML with the standard library's ``html.parser``, plain text as
is. A document's format comes from its file name (``.pdf``, ``.md``/``.markdown``,
``.html``/``.htm``/``.xhtml``, ``.txt``), else from its first bytes (``%PDF-``, an HTML tag),
else it is plain text.

Splitting follows Pixeltable: the document is read as a sequence of sections (a new one at
each heading or paragraph, as ``separators`` asks; a PDF gives one per page with ``'page'``,
else one for its whole text), then ``'sentence'`` splits sections into sentences and
``'token_limit'`` / ``'char_limit'`` into pieces of at most ``limit`` tokens or characters,
each starting ``overlap`` before the previous one's end. Each chunk carries the metadata of the
section it came from.
"""

from __future__ import annotations

import html.parser
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SchemaError
from ..types import Document, Image, Int, Json, String
from .base import ComponentIterator, check_keys, check_number, register_iterator
from .string import sentences

#: PDFium is not thread-safe, not even on different documents (pypdfium2's documentation): a
#: crash or a corrupted process. Computed columns and a view's build run documents in threads,
#: so every PDFium call in this process runs holding this lock (never across a ``yield``).
PDFIUM_LOCK = threading.RLock()

if TYPE_CHECKING:
    from ..types import ColumnType

SEPARATORS = ("heading", "paragraph", "sentence", "token_limit", "char_limit", "page")
METADATA = ("title", "heading", "sourceline", "page", "bounding_box")
ELEMENTS = ("text", "image")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_EXTENSIONS = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".html": "html",
               ".htm": "html", ".xhtml": "html", ".txt": "text", ".text": "text"}


@dataclass
class Section:
    """A piece of a document and where it lies: the headings open at its start (``h1``...),
    its first source line (HTML, Markdown, text; 1-based), its page (PDF; 0-based) and the
    bounding box of its text on that page (PDF points, ``[x1, y1, x2, y2]``)."""

    text: str
    heading: dict[str, str] = field(default_factory=dict)
    sourceline: int | None = None
    page: int | None = None
    bounding_box: list[float] | None = None
    image: Any = None


def document_format(path: str) -> str:
    """'pdf', 'html', 'markdown' or 'text' for a local document (see the module docstring)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    with open(path, "rb") as f:
        head = f.read(1024)
    if head.startswith(b"%PDF-"):
        return "pdf"
    if re.match(rb"\s*(<!doctype\s+html|<html|<head|<body)", head, re.IGNORECASE):
        return "html"
    if b"\x00" in head:
        raise SchemaError(f"{path!r} is not a PDF, HTML, Markdown or text document (binary "
                          "content)")
    return "text"


def _parse_list(fn: str, name: str, v: Any, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated string (or a list) of names from ``allowed``, lower-cased."""
    if isinstance(v, str):
        items = [s.strip().lower() for s in v.split(",") if s.strip()]
    elif isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        items = [s.strip().lower() for s in v]
    else:
        raise SchemaError(f"{fn}(): {name} must be a comma-separated string, got {v!r}")
    for s in items:
        if s not in allowed:
            raise SchemaError(f"{fn}(): unknown {name} {s!r}; choose from {', '.join(allowed)}")
    return items


@register_iterator
class DocumentSplitter(ComponentIterator):
    """``document_splitter(document, separators, *, elements=None, limit=None, overlap=None,
    metadata='', skip_tags=None, tiktoken_encoding='cl100k_base', tiktoken_target_model=None,
    image_dpi=300)``: one row per chunk of a document (see the module docstring).

    Outputs (Pixeltable's): ``text`` (String) and, with ``elements=['image']`` (PDF pages
    only), ``image``; plus one column per ``metadata`` name: ``title`` (String: the HTML
    title or PDF Title), ``heading`` (Json: the open headings, ``{"h1": ..., "h2": ...}``),
    ``sourceline`` (Int), ``page`` (Int, 0-based) and ``bounding_box`` (Json). HTML elements
    named in ``skip_tags`` (default ``['nav']``) are left out, with scripts and styles.
    ``'token_limit'`` counts tiktoken tokens (``tiktoken_encoding``, or the encoding of
    ``tiktoken_target_model``).
    """

    name = "pxlite.functions.document.document_splitter"
    input_type = Document
    requires = (("pypdfium2", "documents"), ("markdown_it", "documents"),
                ("pysbd", "documents"))

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        fn = "document_splitter"
        check_keys(fn, args, ("separators", "elements", "limit", "overlap", "metadata",
                              "skip_tags", "tiktoken_encoding", "tiktoken_target_model",
                              "image_dpi"))
        if args.get("separators") is None:
            raise SchemaError(f"{fn}(): separators is required, e.g. separators='heading' "
                              f"(choose from {', '.join(SEPARATORS)})")
        seps = _parse_list(fn, "separator", args["separators"], SEPARATORS)
        elements = _parse_list(fn, "element", args.get("elements") or ["text"], ELEMENTS)
        if not elements:
            raise SchemaError(f"{fn}(): elements cannot be empty; use ['text'] or ['image']")
        meta = _parse_list(fn, "metadata", args.get("metadata") or "", METADATA)
        limit = check_number(fn, "limit", args.get("limit"), integer=True)
        overlap = check_number(fn, "overlap", args.get("overlap"), integer=True, strict=False)
        if "image" in elements and seps != ["page"]:
            raise SchemaError(f"{fn}(): the 'image' element needs separators='page' (PDF pages)")
        limited = [s for s in seps if s in ("token_limit", "char_limit")]
        if len(limited) > 1:
            raise SchemaError(f"{fn}(): give one of 'token_limit' and 'char_limit', not both")
        if (limit is not None or overlap is not None) and not limited:
            raise SchemaError(f"{fn}(): limit and overlap need the 'token_limit' or "
                              "'char_limit' separator")
        if limited and limit is None:
            raise SchemaError(f"{fn}(): the {limited[0]!r} separator needs limit=<max size>")
        if limit is not None and overlap is not None and overlap >= limit:
            raise SchemaError(f"{fn}(): overlap must be less than limit: {overlap} >= {limit}")
        skip = args.get("skip_tags", ["nav"])
        skip = ["nav"] if skip is None else skip
        if not isinstance(skip, (list, tuple)) or not all(isinstance(s, str) for s in skip):
            raise SchemaError(f"{fn}(): skip_tags must be a list of tag names, got {skip!r}")
        enc, model = args.get("tiktoken_encoding", "cl100k_base"), args.get(
            "tiktoken_target_model")
        for k, v in (("tiktoken_encoding", enc), ("tiktoken_target_model", model)):
            if v is not None and not isinstance(v, str):
                raise SchemaError(f"{fn}(): {k} must be a name, got {v!r}")
        dpi = check_number(fn, "image_dpi", args.get("image_dpi", 300), integer=True, none=False)
        return {"separators": seps, "elements": elements, "limit": limit, "overlap": overlap,
                "metadata": meta, "skip_tags": [s.lower() for s in skip],
                "tiktoken_encoding": enc, "tiktoken_target_model": model, "image_dpi": dpi}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        types: dict[str, ColumnType] = {"text": String, "image": Image, "title": String,
                                        "heading": Json, "sourceline": Int, "page": Int,
                                        "bounding_box": Json}
        return {c: types[c] for c in (*args["elements"], *args["metadata"])}

    def _release(self) -> None:
        pdf = getattr(self, "_doc", None)
        if pdf is not None:
            with PDFIUM_LOCK:
                pdf.close()

    def _rows(self) -> Iterator[dict[str, Any]]:
        path = self.input_path()
        fmt = document_format(path)
        seps = self.args["separators"]
        if fmt == "pdf" and "paragraph" in seps:
            raise SchemaError("document_splitter(): the 'paragraph' separator does not apply to "
                              "PDF documents (use 'page', 'sentence' or a limit)")
        title, sections = self._sections(fmt, path)
        if "sentence" in seps:
            sections = _sentence_sections(sections)
        if "token_limit" in seps:
            sections = self._token_chunks(sections)
        if "char_limit" in seps:
            sections = _char_chunks(sections, self.args["limit"], self.args["overlap"] or 0)
        for s in sections:
            if not s.text and s.image is None:
                continue
            row: dict[str, Any] = {}
            for c in (*self.args["elements"], *self.args["metadata"]):
                row[c] = title if c == "title" else (
                    dict(s.heading) if c == "heading" else getattr(s, c))
            yield row

    def _sections(self, fmt: str, path: str) -> tuple[str, Iterator[Section]]:
        seps = set(self.args["separators"])
        on_par = bool(seps & {"paragraph", "sentence"})
        on_head = on_par or "heading" in seps
        if fmt == "pdf":
            return self._pdf_sections(path)
        text = _read_text(path)
        if fmt == "html":
            parser = _HtmlEvents(set(self.args["skip_tags"]))
            parser.feed(text)
            parser.close()
            return parser.title, _group(parser.events, on_head, on_par)
        if fmt == "markdown":
            return "", _group(_markdown_events(text), on_head, on_par)
        return "", _group(_text_events(text), on_head, on_par)

    def _pdf_sections(self, path: str) -> tuple[str, Iterator[Section]]:
        import pypdfium2 as pdfium

        with PDFIUM_LOCK:
            try:
                self._doc = pdf = pdfium.PdfDocument(path)
            except pdfium.PdfiumError as e:
                raise SchemaError(f"document_splitter(): cannot read {path!r} as a PDF ({e})"
                                  ) from e
            title = str(pdf.get_metadata_dict().get("Title") or "")
            n_pages = len(pdf)
        per_page = "page" in self.args["separators"]
        image = "image" in self.args["elements"]
        scale = self.args["image_dpi"] / 72

        def read(i: int) -> tuple[str, list[float] | None, Any]:
            with PDFIUM_LOCK:  # each page read, rendered and closed in one hold of the lock
                page = pdf[i]
                try:
                    tp = page.get_textpage()
                    text, box = _lines(tp.get_text_bounded()), _text_box(tp)
                    tp.close()
                    img = None
                    if per_page and text and image:  # (as Pixeltable: no text, no row)
                        bitmap = page.render(scale=scale)
                        try:  # pixels of its own: the bitmap is closed here, under the lock
                            img = bitmap.to_pil().copy()
                        finally:
                            bitmap.close()
                    return text, box, img
                finally:
                    page.close()

        def pages() -> Iterator[Section]:
            texts: list[str] = []
            for i in range(n_pages):
                text, box, img = read(i)
                if per_page and text:
                    yield Section(text=text, page=i, bounding_box=box, image=img)
                else:
                    texts.append(text)
            if not per_page and any(texts):
                yield Section(text="\n".join(t for t in texts if t))

        return title, pages()

    def _token_chunks(self, sections: Iterable[Section]) -> Iterator[Section]:
        enc = _tiktoken_encoding(self.args["tiktoken_encoding"],
                                 self.args["tiktoken_target_model"])
        yield from token_chunks(sections, enc, self.args["limit"], self.args["overlap"] or 0)


def _lines(text: str) -> str:
    """PDFium's text with its CR LF / CR line ends made LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _text_box(tp: Any) -> list[float] | None:
    """The box around every text rectangle of a PDF page (None for a page without text)."""
    n = tp.count_rects()
    if n == 0:
        return None
    rects = [tp.get_rect(i) for i in range(n)]  # (left, bottom, right, top)
    return [min(r[0] for r in rects), min(r[1] for r in rects),
            max(r[2] for r in rects), max(r[3] for r in rects)]


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte is a character: never fails


# ---- sections from events ----------------------------------------------------------------------
# A reader turns a document into events: ("heading", level, line), ("par", line), ("text", s)
# (heading text comes as text events after its heading event). _group cuts them into sections.

def _group(events: Iterable[tuple[Any, ...]], on_head: bool, on_par: bool
           ) -> Iterator[Section]:
    """Sections from events: a new one at each heading (``on_head``) or paragraph
    (``on_par``); each carries the headings open when it ends (as Pixeltable) and the source
    line of the element it starts with."""
    parts: list[str] = []
    headings: dict[str, str] = {}
    line: int | None = None
    collecting: list[str] | None = None  # a heading's text, until its end
    level = ""

    def emit() -> Iterator[Section]:
        nonlocal line
        if parts:
            yield Section(text=" ".join(parts), heading=dict(headings), sourceline=line)
            parts.clear()
            line = None

    for ev in events:
        kind = ev[0]
        if kind == "text":
            parts.append(ev[1])
            if collecting is not None:
                collecting.append(ev[1])
        elif kind == "end_heading":
            if collecting is not None:
                headings[level] = " ".join(collecting)
                collecting = None
        elif kind in ("heading", "par"):
            if on_par or (kind == "heading" and on_head):
                yield from emit()
            if kind == "heading":
                level = f"h{ev[1]}"
                for lv in [h for h in headings if h >= level]:
                    del headings[lv]
                collecting = []
            if line is None:
                line = ev[-1]
    yield from emit()


class _HtmlEvents(html.parser.HTMLParser):
    """HTML to events (see _group); the <title>; skip_tags, scripts and styles left out."""

    _SILENT = frozenset({"script", "style", "template", "head", "noscript"})
    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                       "meta", "source", "track", "wbr"})

    def __init__(self, skip: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.skip = skip
        self.events: list[tuple[Any, ...]] = []
        self.title = ""
        self._stack: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._VOID:
            return
        self._stack.append(tag)
        if tag == "title":
            self._in_title = True
        if self._hidden():
            return
        line = self.getpos()[0]
        if tag in _HEADINGS:
            self.events.append(("heading", int(tag[1]), line))
        elif tag == "p":
            self.events.append(("par", line))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._stack:
            return  # a stray end tag
        while self._stack:  # close what the document left open inside it
            top = self._stack.pop()
            if top == "title":
                self._in_title = False
            if top in _HEADINGS and not self._hidden():
                self.events.append(("end_heading",))
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if not text:
            return
        if self._in_title:
            self.title = f"{self.title} {text}".strip()
        elif not self._hidden():
            self.events.append(("text", text))

    def _hidden(self) -> bool:
        return any(t in self._SILENT or t in self.skip for t in self._stack)


def _markdown_events(text: str) -> Iterator[tuple[Any, ...]]:
    """Markdown to events (see _group), with markdown-it-py's CommonMark parser."""
    from markdown_it import MarkdownIt

    for tok in MarkdownIt("commonmark").enable("table").parse(text):
        line = tok.map[0] + 1 if tok.map else None
        if tok.type == "heading_open":
            yield ("heading", int(tok.tag[1]), line)
        elif tok.type == "heading_close":
            yield ("end_heading",)
        elif tok.type == "paragraph_open":
            yield ("par", line)
        elif tok.type == "inline":
            words = "".join(" " if c.type in ("softbreak", "hardbreak") else c.content
                            for c in tok.children or ()).split()
            if words:
                yield ("text", " ".join(words))
        elif tok.type in ("fence", "code_block") and tok.content.strip():
            yield ("par", line)
            yield ("text", tok.content.strip())


def _text_events(text: str) -> Iterator[tuple[Any, ...]]:
    """Plain text to events: a paragraph per run of non-blank lines."""
    start: int | None = None
    lines: list[str] = []
    for n, raw in enumerate([*text.splitlines(), ""], 1):
        if raw.strip():
            if start is None:
                start = n
            lines.append(raw.strip())
        elif lines:
            yield ("par", start)
            yield ("text", " ".join(lines))
            start, lines = None, []


# ---- finer splits ------------------------------------------------------------------------------

def _sentence_sections(sections: Iterable[Section]) -> Iterator[Section]:
    for s in sections:
        for sent in sentences(s.text):
            yield Section(text=sent, heading=s.heading, sourceline=s.sourceline, page=s.page,
                          bounding_box=s.bounding_box)


def _char_chunks(sections: Iterable[Section], limit: int, overlap: int) -> Iterator[Section]:
    for s in sections:
        start = 0
        while start < len(s.text):
            yield Section(text=s.text[start:start + limit], heading=s.heading,
                          sourceline=s.sourceline, page=s.page, bounding_box=s.bounding_box)
            start += limit - overlap


def token_chunks(sections: Iterable[Section], encoding: Any, limit: int, overlap: int
                 ) -> Iterator[Section]:
    """Sections cut into pieces of at most ``limit`` tokens of a tiktoken ``encoding``, each
    starting ``overlap`` tokens before the previous one's end; a cut never splits a UTF-8
    character (the piece ends a token earlier)."""
    for s in sections:
        tokens = encoding.encode(s.text, disallowed_special=())
        start = 0
        while start < len(tokens):
            end = min(start + limit, len(tokens))
            text = None
            while end > start:
                try:
                    text = encoding.decode_bytes(tokens[start:end]).decode("utf-8")
                    break
                except UnicodeDecodeError:
                    end -= 1
            if text is None:  # no clean cut: take the tokens with replacement characters
                end = min(start + limit, len(tokens))
                text = encoding.decode(tokens[start:end], errors="replace")
            yield Section(text=text, heading=s.heading, sourceline=s.sourceline, page=s.page,
                          bounding_box=s.bounding_box)
            start = max(start + 1, end - overlap)


def _tiktoken_encoding(name: str, model: str | None) -> Any:
    try:
        import tiktoken
    except ImportError:
        raise ConfigError("document_splitter(): the 'token_limit' separator needs tiktoken: "
                          "pip install tiktoken") from None
    try:
        return (tiktoken.encoding_for_model(model) if model is not None
                else tiktoken.get_encoding(name))
    except (KeyError, ValueError) as e:
        raise SchemaError(f"document_splitter(): unknown tiktoken encoding or model "
                          f"{model or name!r} ({e})") from e
    except Exception as e:  # tiktoken downloads an encoding's table on first use
        raise ConfigError(f"document_splitter(): the tiktoken encoding {model or name!r} "
                          f"cannot be loaded ({type(e).__name__}: {str(e)[:160]}); tiktoken "
                          "downloads it on first use, or reads it from TIKTOKEN_CACHE_DIR"
                          ) from e


def document_text(path: str) -> str:
    """The whole text of a local document (PDF, HTML, Markdown or plain text): its sections'
    texts, one per line (scripts, styles and ``nav`` left out of HTML; Markdown without its
    markup)."""
    it = DocumentSplitter(path, separators="page" if document_format(path) == "pdf"
                          else "paragraph")
    with it:
        return "\n".join(r["text"] for r in it)


__all__ = ["DocumentSplitter", "Section", "document_format", "document_text", "token_chunks"]
