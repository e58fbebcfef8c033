"""Iterators: one input value in, an ordered stream of output rows out (frames of a video,
chunks of a document, segments of an audio file, tiles of an image, sentences of a text).

An iterator is a :class:`ComponentIterator` subclass, registered under a qualified name
(``pxlite.functions.video.frame_iterator``). It declares its input type, validates and
normalises its arguments (:meth:`ComponentIterator.check_args`), declares its output schema
(pxlite column types, which may depend on the arguments), and, constructed from one input
value and those arguments, yields one dict per output row, in order, holding the resources it
opened (a decoder, a PDF) until :meth:`ComponentIterator.close`.

The user-facing call (``frame_iterator(t.video, fps=1)``) builds an
:class:`pxlite.functions.iterator_call.IteratorCall` (expressions live a layer up; this module
knows nothing of them): the input expression, the iterator and its checked arguments, stored in
the catalog by the iterator's qualified name (:func:`lookup_iterator` finds it again).

What an input value is: the value an expression of the input type has in a row, i.e. a local
file path (``str``) for Video, Audio and Document columns (remote files come through the
bounded download cache), a ``PIL.Image.Image`` for Image, a ``str`` for String.

Media outputs: an Image output is a ``PIL.Image.Image``; a Video or Audio output is the path of
a temporary file the iterator wrote, which stays until :meth:`ComponentIterator.close` (the
consumer stores it before that, and may delete it as soon as it has).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, NotFoundError, SchemaError
from ..storage import file_path
from ..types import ColumnType

if TYPE_CHECKING:
    from types import TracebackType

_registry: dict[str, type[ComponentIterator]] = {}
_lock = threading.Lock()


def require(module: str, extra: str, what: str) -> None:
    """Raise a clear error naming the pip extra when an optional package is not installed.
    (Finding a module's spec does not import it: this stays cheap.)"""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the {module!r} package, which is not installed: "
                          f"pip install 'pxlite[{extra}]'")


class ComponentIterator:
    """Base of pxlite's iterators (see the module docstring). Subclasses set the class
    attributes, implement :meth:`check_args`, :meth:`output_schema` and :meth:`_rows`, and
    release what they opened in :meth:`_release`."""

    #: Qualified name under which the iterator is registered and stored in the catalog.
    name: ClassVar[str]
    #: The type of the input expression (compared by kind: nullability does not matter).
    input_type: ClassVar[ColumnType]
    #: Packages needed at run time, as ``(module, pip extra)`` pairs.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Outputs Pixeltable keeps unstored by default (re-computed when read): ``frame``,
    #: ``tile``. A consumer may store them anyway (pxlite's frame views do).
    unstored: ClassVar[tuple[str, ...]] = ()

    def __init__(self, value: Any, **args: Any) -> None:
        self.value = value
        self.args = self.check_args(args)
        self._tmpdir: str | None = None
        self._closed = False
        self._gen: Iterator[dict[str, Any]] | None = None

    # ---- declared by subclasses ------------------------------------------------------------
    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the arguments (given by keyword, defaults not filled in) and return them
        complete and normalised; a bad one is a SchemaError naming it and what it may be."""
        raise NotImplementedError

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        """The output columns, in order, for checked arguments."""
        raise NotImplementedError

    def _rows(self) -> Iterator[dict[str, Any]]:
        """The outputs, in order (a generator; resources it opens are released by close)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Release what the iterator opened (a decoder, a document); called once by close."""

    # ---- running ---------------------------------------------------------------------------
    def __iter__(self) -> ComponentIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._closed or self.value is None:
            raise StopIteration
        if self._gen is None:
            self._gen = self._rows()
        return next(self._gen)

    def close(self) -> None:
        """Stop: release the decoder or document and delete the temporary files of media
        outputs (the consumer has stored them). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            stop = getattr(self._gen, "close", None)  # a generator: run its finally blocks
            if stop is not None:
                stop()
            self._release()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> ComponentIterator:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:  # a consumer that forgot close() does not leak a decoder
        with contextlib.suppress(Exception):
            self.close()

    def temp_path(self, suffix: str) -> str:
        """A fresh path for a media output file, deleted by :meth:`close`."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="pxlite-iter-")
        fd, path = tempfile.mkstemp(suffix=suffix, dir=self._tmpdir)
        os.close(fd)
        return path

    def input_path(self) -> str:
        """The input value as a local file path (media inputs), or a clear error."""
        v = self.value
        if not isinstance(v, (str, os.PathLike)):
            raise SchemaError(f"{self.short_name()}(): expected a local file path for its "
                              f"{self.input_type.name} input, got {type(v).__name__}")
        path = os.fspath(v)
        if path.startswith("file://"):
            path = str(file_path(path))
        if not os.path.isfile(path):
            raise SchemaError(f"{self.short_name()}(): {path!r} is not a file")
        return path

    @classmethod
    def short_name(cls) -> str:
        return cls.name.rpartition(".")[2]

    @classmethod
    def check_installed(cls) -> None:
        for module, extra in cls.requires:
            require(module, extra, f"{cls.short_name()}()")


def register_iterator(cls: type[ComponentIterator]) -> type[ComponentIterator]:
    """Make an iterator findable by its qualified name (a class decorator)."""
    with _lock:
        _registry[cls.name] = cls
    return cls


def lookup_iterator(name: str) -> type[ComponentIterator]:
    """The iterator registered under a qualified name. Only pxlite's own modules are imported
    to find one: a database file naming a module never makes pxlite run its code."""
    cls = _registry.get(name)
    if cls is None and name.startswith("pxlite."):
        module = name.rpartition(".")[0]
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
        cls = _registry.get(name)
    if cls is None:
        raise NotFoundError(f"iterator {name!r} cannot be found: it is not one of pxlite's "
                            "iterators (frame_iterator, video_splitter, audio_splitter, "
                            "document_splitter, tile_iterator, string_splitter)")
    return cls


def check_number(fn: str, name: str, v: Any, *, minimum: float = 0.0, strict: bool = True,
                 integer: bool = False, none: bool = True) -> Any:
    """An argument that must be a number above ``minimum`` (or at least it, when not
    ``strict``), an int when ``integer``, or None when ``none``; returned as float (or int)."""
    import numbers

    if v is None and none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(v, bool) or not isinstance(v, kind) or (
            v <= minimum if strict else v < minimum):
        what = "an integer" if integer else "a number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise SchemaError(f"{fn}(): {name} must be {what} {bound}, got {v!r}")
    return int(v) if integer else float(v)  # type: ignore[call-overload]


def check_keys(fn: str, args: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Unknown argument names are an error naming the ones the iterator takes."""
    unknown = [k for k in args if k not in allowed]
    if unknown:
        raise SchemaError(f"{fn}(): unexpected argument {unknown[0]!r}; it takes "
                          f"{', '.join(allowed)}")
