"""String iterator: :class:`StringSplitter` cuts a text into sentences, and the user-facing
:func:`string_splitter`.

Sentences come from pysbd (rule-based sentence boundary detection, the ``pxlite[documents]``
extra): it needs no model download, where Pixeltable's spaCy needs a model installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError
from ..functions.iterator_call import IteratorCall, make_call
from ..types import Required, String
from .base import ComponentIterator, check_keys, register_iterator

if TYPE_CHECKING:
    from ..exprs import Expr

#: Each thread's pysbd segmenters, one per language (building one compiles its rules). Per
#: thread: a segmenter keeps the text it is segmenting on itself (``original_text``), so two
#: threads sharing one (a view's build runs its iterators in a pool) mix their texts up.
_SEGMENTERS = threading.local()


def sentences(text: str, language: str = "en") -> list[str]:
    """The sentences of a text, trimmed, empty ones left out (pysbd)."""
    mine: dict[str, Any] = _SEGMENTERS.__dict__.setdefault("by_language", {})
    seg = mine.get(language)
    if seg is None:
        import pysbd

        seg = mine[language] = pysbd.Segmenter(language=language, clean=False)
    return [s.strip() for s in seg.segment(text) if s.strip()]


@register_iterator
class StringSplitter(ComponentIterator):
    """``string_splitter(text, separators='sentence')``: one row per sentence of a string.

    Output (Pixeltable's): ``text`` (String). ``'sentence'`` is the one separator (as in
    Pixeltable)."""

    name = "pxlite.iterators.string.string_splitter"
    input_type = String
    requires = (("pysbd", "documents"),)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        check_keys("string_splitter", args, ("separators",))
        sep = args.get("separators", "sentence")
        if sep != "sentence":
            raise SchemaError(f"string_splitter(): separators must be 'sentence' (the only "
                              f"one supported), got {sep!r}")
        return {"separators": sep}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        return {"text": Required[String]}

    def _rows(self) -> Iterator[dict[str, Any]]:
        if not isinstance(self.value, str):
            raise SchemaError(f"string_splitter(): expected a string, got "
                              f"{type(self.value).__name__}")
        for s in sentences(self.value):
            yield {"text": s}


def string_splitter(text: Expr | str, separators: str = "sentence"
                    ) -> IteratorCall | ComponentIterator:
    """Split strings into sentences: ``create_view(..., iterator=string_splitter(t.text,
    separators='sentence'))``; on a plain string, the running iterator."""
    return make_call(StringSplitter, text, {"separators": separators})


__all__ = ["StringSplitter", "sentences", "string_splitter"]
