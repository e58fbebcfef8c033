"""Document functions and iterators, with Pixeltable's names: :func:`document_splitter` (see
:class:`pxlite.iterators.document.DocumentSplitter`) and ``extract_text``, a method of Document
expressions giving a document's whole text. PDF needs pypdfium2 and Markdown markdown-it-py
(the ``pxlite[documents]`` extra); HTML and plain text need nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..iterators.base import ComponentIterator
from ..iterators.document import DocumentSplitter, document_text
from ..types import Document
from .iterator_call import IteratorCall, make_call
from .media_common import media_function

if TYPE_CHECKING:
    from ..exprs import Expr

__all__ = ["document_splitter", "extract_text"]


def document_splitter(document: Expr | str, separators: str, *,
                      elements: list[str] | None = None, limit: int | None = None,
                      overlap: int | None = None, metadata: str = "",
                      skip_tags: list[str] | None = None,
                      tiktoken_encoding: str | None = "cl100k_base",
                      tiktoken_target_model: str | None = None, image_dpi: int = 300
                      ) -> IteratorCall | ComponentIterator:
    """A document's chunks, one row each: ``text`` (and ``image`` for PDF pages) plus the
    ``metadata`` columns asked for (``title``, ``heading``, ``sourceline``, ``page``,
    ``bounding_box``), split at ``separators`` (``'heading'``, ``'paragraph'``,
    ``'sentence'``, ``'token_limit'``, ``'char_limit'``, ``'page'``; comma-separated). On an
    expression, the iterator call a view takes; on a local path, the running iterator."""
    args: dict[str, Any] = {
        "separators": separators, "elements": elements, "limit": limit, "overlap": overlap,
        "metadata": metadata, "skip_tags": skip_tags, "tiktoken_encoding": tiktoken_encoding,
        "tiktoken_target_model": tiktoken_target_model, "image_dpi": image_dpi}
    return make_call(DocumentSplitter, document, args)


@media_function("document", Document, (("pypdfium2", "documents"), ("markdown_it", "documents")))
def extract_text(document: str) -> str:
    """A document's whole text: a PDF's pages, an HTML body without its markup, scripts,
    styles and navigation, Markdown without its markup, or a text file; one paragraph (PDF:
    one page) per line."""
    return document_text(document)
