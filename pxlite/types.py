"""Column types and how their values map to SQLite.

A type is a small immutable object (``pxl.Int``, ``pxl.Image``...) with a ``nullable`` flag;
``pxl.Required[pxl.Int]`` is the non-nullable variant. Each type validates Python values
(:meth:`ColumnType.to_sql`, raising :class:`SchemaError` with a message that names what was
expected) and turns stored values back into Python values (:meth:`ColumnType.from_sql`). Media
types store a URI string; the bytes live in storage.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import numbers
import re
from collections.abc import Callable
from typing import Any, ClassVar

from . import vectors
from .errors import SchemaError

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class ColumnType:
    """Base of all column types. Instances are immutable; compare by name and nullability."""

    name: ClassVar[str] = "?"
    sql_type: ClassVar[str] = "ANY"
    is_media: ClassVar[bool] = False
    python_type: ClassVar[type | tuple[type, ...]] = object

    def __init__(self, nullable: bool = True) -> None:
        self.nullable = nullable

    def __repr__(self) -> str:
        return self.name if self.nullable else f"Required[{self.name}]"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ColumnType)
            and other.name == self.name
            and other.nullable == self.nullable
        )

    def __hash__(self) -> int:
        return hash((self.name, self.nullable))

    def with_nullable(self, nullable: bool) -> ColumnType:
        return type(self)(nullable=nullable)

    def same_kind(self, other: ColumnType) -> bool:
        return self.name == other.name

    # values
    def to_sql(self, value: Any) -> Any:
        """Validate a non-None Python value and return what SQLite stores."""
        raise NotImplementedError

    def from_sql(self, value: Any) -> Any:
        """The Python value for a stored value (never called with None)."""
        return value

    #: What SQLite hands back for a value of this type that pxlite stored.
    stored_as: ClassVar[tuple[type, ...]] = (object,)

    def load(self, value: Any) -> Any:
        """:meth:`from_sql` for a value read from a file pxlite may not have written (damaged,
        or crafted by someone else): anything but a value of this type is a SchemaError, never
        an exception of another kind (a bad timestamp, invalid or too deeply nested JSON, text
        in an Int column)."""
        if not isinstance(value, self.stored_as):
            raise SchemaError(f"the stored value {_shown(value)} is not {self.expect()} (a "
                              "damaged or crafted database file?); fix or delete the row")
        try:
            return self.from_sql(value)
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            raise SchemaError(f"the stored value {_shown(value)} cannot be read as "
                              f"{self.expect()}: {type(e).__name__} (a damaged or crafted "
                              "database file?); fix or delete the row") from None

    def expect(self) -> str:
        return f"a {self.name} value"

    def _bad(self, value: Any) -> SchemaError:
        return SchemaError(f"expected {self.expect()}, got {type(value).__name__} "
                           f"{_shown(value)}")


class IntType(ColumnType):
    name = "Int"
    sql_type = "INTEGER"
    stored_as = (int,)

    def to_sql(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self._bad(value)
        v = int(value)
        if not _INT_MIN <= v <= _INT_MAX:
            raise SchemaError(f"integer {v} does not fit in 64 bits (Int holds -2**63 .. 2**63-1)")
        return v

    def expect(self) -> str:
        return "an integer"


class FloatType(ColumnType):
    name = "Float"
    sql_type = "REAL"
    stored_as = (float, int)

    def to_sql(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self._bad(value)
        try:
            v = float(value)
        except OverflowError:
            raise SchemaError(f"{str(value)[:40]} does not fit in a Float (64-bit, up to about "
                              "1.8e308)") from None
        if math.isnan(v):
            # SQLite stores NaN as NULL, which would silently change the value.
            raise SchemaError(
                "NaN cannot be stored in a Float column; use None for a missing value")
        return v

    def expect(self) -> str:
        return "a number"


class StringType(ColumnType):
    name = "String"
    sql_type = "TEXT"
    stored_as = (str,)

    def to_sql(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._bad(value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise SchemaError(
                f"string is not valid Unicode text (lone surrogate at position {e.start}); "
                "encode it properly or store it as Json/bytes"
            ) from None
        return value

    def expect(self) -> str:
        return "a string"


class BoolType(ColumnType):
    name = "Bool"
    sql_type = "INTEGER"
    stored_as = (int,)

    def to_sql(self, value: Any) -> int:
        if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_ too
            return int(bool(value))
        raise self._bad(value)

    def from_sql(self, value: Any) -> bool:
        return bool(value)

    def expect(self) -> str:
        return "True or False"


class TimestampType(ColumnType):
    """Stored as fixed-width ISO 8601 text; aware values are normalised to UTC so text order is
    time order. Naive values stay naive."""

    name = "Timestamp"
    sql_type = "TEXT"
    stored_as = (str,)

    def to_sql(self, value: Any) -> str:
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value)
            except ValueError:
                raise self._bad(value) from None
        if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
            value = _dt.datetime(value.year, value.month, value.day)
        if not isinstance(value, _dt.datetime):
            raise self._bad(value)
        if value.tzinfo is not None:
            try:
                value = value.astimezone(_dt.UTC)
            except OverflowError:
                raise SchemaError(f"{value!r} is outside years 1..9999 once converted to UTC"
                                  ) from None
        return value.isoformat(timespec="microseconds")

    def from_sql(self, value: Any) -> _dt.datetime:
        return _dt.datetime.fromisoformat(value)

    def expect(self) -> str:
        return "a datetime (or an ISO 8601 string)"


class DateType(ColumnType):
    """A calendar date (Pixeltable's ``Date``), stored as ISO 8601 text ``YYYY-MM-DD``, so text
    order is date order. A ``datetime`` is taken only at midnight (a time of day would be lost:
    pass ``.date()``, or use a Timestamp column)."""

    name = "Date"
    sql_type = "TEXT"
    stored_as = (str,)

    def to_sql(self, value: Any) -> str:
        if isinstance(value, str):
            try:
                value = _dt.date.fromisoformat(value)
            except ValueError:
                raise self._bad(value) from None
        if isinstance(value, _dt.datetime):
            if value.time() != _dt.time() or value.tzinfo is not None:
                raise SchemaError(
                    f"expected a date, got the datetime {value.isoformat()}: a Date column keeps "
                    "no time of day; pass value.date(), or use a Timestamp column")
            value = value.date()
        if not isinstance(value, _dt.date):
            raise self._bad(value)
        return value.isoformat()

    def from_sql(self, value: Any) -> _dt.date:
        return _dt.date.fromisoformat(value)

    def expect(self) -> str:
        return "a date (or an ISO 8601 string such as '2024-05-31')"


class JsonType(ColumnType):
    name = "Json"
    sql_type = "TEXT"
    stored_as = (str,)

    def to_sql(self, value: Any) -> str:
        _check_json_keys(value)
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            text.encode("utf-8")  # a lone surrogate cannot be stored (UnicodeEncodeError)
            return text
        except RecursionError:
            raise SchemaError("value is nested too deeply to store as Json") from None
        except (TypeError, ValueError) as e:
            raise SchemaError(
                f"value is not JSON-serializable ({e}); use dicts, lists, str, int, finite float, "
                "bool and None"
            ) from None

    def from_sql(self, value: Any) -> Any:
        return json.loads(value)


def _check_json_keys(value: Any) -> None:
    """Every dict key must be a string: json.dumps would turn 1 into "1" (reading back a
    different value) and {1: a, "1": b} would silently lose a. Iterative, cycle-safe."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if id(v) in seen:
                continue
            seen.add(id(v))
            for k in v:
                if not isinstance(k, str):
                    raise SchemaError(f"Json object keys must be strings, got {type(k).__name__} "
                                      f"{k!r}; convert the keys with str() first")
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            if id(v) in seen:
                continue
            seen.add(id(v))
            stack.extend(v)


class MediaType(ColumnType):
    """A file reference: the stored value is a URI. Subclasses differ in what a valid file is."""

    sql_type = "TEXT"
    stored_as = (str,)
    is_media = True
    #: header sniffing family used by media.validate (None: any file is accepted)
    kind: ClassVar[str] = "file"

    def to_sql(self, value: Any) -> str:  # the insert path resolves media before this
        if not isinstance(value, str):
            raise self._bad(value)
        return value

    def expect(self) -> str:
        return f"a {self.name.lower()} file path, URL or bytes"


class ImageType(MediaType):
    name = "Image"
    kind = "image"

    def expect(self) -> str:
        return "an image: a file path, URL, PIL.Image or encoded bytes"


class VideoType(MediaType):
    name = "Video"
    kind = "video"


class AudioType(MediaType):
    name = "Audio"
    kind = "audio"


class DocumentType(MediaType):
    name = "Document"
    kind = "document"


class ArrayType(ColumnType):
    """A numpy array of a fixed element type (``dtype``) and shape (a ``None`` dimension is
    free; ``shape=None``: any shape), stored as a compact BLOB (see :mod:`pxlite.vectors`).
    ``pxl.Array[(512,), pxl.Float]`` is a 512-float32 vector, Pixeltable's spelling."""

    name = "Array"
    sql_type = "BLOB"
    stored_as = (bytes,)

    def __init__(self, shape: Any = None, dtype: Any = "float32", nullable: bool = True) -> None:
        super().__init__(nullable)
        self.shape = vectors.check_shape(shape)
        self.dtype = vectors.check_dtype(_ARRAY_DTYPES.get(id(dtype), dtype))

    def __repr__(self) -> str:
        base = f"Array[{vectors.shape_text(self.shape)}, {self.dtype}]"
        return base if self.nullable else f"Required[{base}]"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ArrayType) and other.nullable == self.nullable
                and other.shape == self.shape and other.dtype == self.dtype)

    def __hash__(self) -> int:
        return hash((self.name, self.nullable, self.shape, self.dtype))

    def with_nullable(self, nullable: bool) -> ColumnType:
        return ArrayType(self.shape, self.dtype, nullable)

    def same_kind(self, other: ColumnType) -> bool:
        return isinstance(other, ArrayType) and (other.shape, other.dtype) == (self.shape,
                                                                                 self.dtype)

    def to_sql(self, value: Any) -> bytes:
        return vectors.encode(value, self.shape, self.dtype, self._expected)

    def from_sql(self, value: Any) -> Any:
        return vectors.decode(value, self.shape, self.dtype)

    @functools.cached_property
    def _expected(self) -> str:
        """:meth:`expect`, for errors: made once per type (at its first value), not per value."""
        return self.expect()

    def stored_cast_from(self, source: ColumnType) -> Callable[[list[Any]], list[Any]] | None:
        """Stored values of ``source`` to stored values of this type, many at once, where that
        is a plain element conversion of one fixed shape (see :func:`vectors.stored_cast`)."""
        if not isinstance(source, ArrayType) or source.shape != self.shape:
            return None
        return vectors.stored_cast(self.shape, source.dtype, self.dtype)

    def expect(self) -> str:
        shape = "any shape" if self.shape is None else f"shape {vectors.shape_text(self.shape)}"
        return f"an array of {shape} and dtype {self.dtype} ({self!r})"


class _ArrayFactory:
    """``pxl.Array[(512,), pxl.Float]``, ``pxl.Array[(None, 3), pxl.Int]``,
    ``pxl.Array[pxl.Float]`` (any shape): an Array column type."""

    def __getitem__(self, spec: Any) -> ArrayType:
        if isinstance(spec, tuple) and len(spec) == 2 and \
                not isinstance(spec[1], (int, type(None))):
            return ArrayType(spec[0], spec[1])
        if isinstance(spec, (tuple, int)):
            raise SchemaError(f"Array[{spec!r}]: give a shape and an element type, e.g. "
                              "pxl.Array[(512,), pxl.Float]")
        return ArrayType(None, spec)

    def __repr__(self) -> str:
        return "Array"


Array = _ArrayFactory()


_ALL: dict[str, type[ColumnType]] = {
    c.name: c
    for c in (IntType, FloatType, StringType, BoolType, TimestampType, DateType, JsonType,
              ImageType, VideoType, AudioType, DocumentType)
}

Int = IntType()
Float = FloatType()
String = StringType()
Bool = BoolType()
Timestamp = TimestampType()
Date = DateType()
Json = JsonType()
Image = ImageType()
Video = VideoType()
Audio = AudioType()
Document = DocumentType()

#: pxl.Float, pxl.Int and pxl.Bool as an Array's element type (by identity: they are instances).
_ARRAY_DTYPES: dict[int, str] = {id(Float): "float32", id(Int): "int64", id(Bool): "bool",
                                 id(FloatType): "float32", id(IntType): "int64",
                                 id(BoolType): "bool", id(float): "float32", id(int): "int64",
                                 id(bool): "bool"}


class _RequiredFactory:
    """``Required[pxl.Int]``: the non-nullable variant of a type."""

    def __getitem__(self, t: Any) -> ColumnType:
        return as_type(t).with_nullable(False)

    def __repr__(self) -> str:
        return "Required"


Required = _RequiredFactory()

_PY_TYPES: dict[Any, ColumnType] = {int: Int, float: Float, str: String, bool: Bool,
                                    dict: Json, list: Json, _dt.datetime: Timestamp,
                                    _dt.date: Date}


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def as_type(t: Any) -> ColumnType:
    """Turn what a user wrote in a schema (``pxl.Int``, ``int``, ``'Required[Image]'``) into a
    type."""
    if isinstance(t, ColumnType):
        return t
    if t is Array:
        raise SchemaError("pxl.Array needs a shape and an element type, e.g. "
                          "pxl.Array[(512,), pxl.Float]")
    if isinstance(t, type) and issubclass(t, ColumnType) and t in _ALL.values():
        return t()
    if isinstance(t, str):
        return parse_type(t)
    if t in _PY_TYPES:
        return _PY_TYPES[t]
    if getattr(t, "__module__", "").startswith("PIL") and getattr(t, "__name__", "") == "Image":
        return Image
    raise SchemaError(
        f"{t!r} is not a column type; use one of {', '.join('pxl.' + n for n in _ALL)} "
        "(or pxl.Required[...])"
    )


def parse_type(s: str) -> ColumnType:
    """Parse the catalog's text form of a type: ``'Int'`` or ``'Required[Image]'``."""
    s = s.strip()
    if s.startswith("Required[") and s.endswith("]"):
        return parse_type(s[len("Required["):-1]).with_nullable(False)
    if s.startswith("Array[") and s.endswith("]"):
        return _parse_array(s)
    cls = _ALL.get(s)
    if cls is None:
        raise SchemaError(f"unknown column type {s!r}; known types: {', '.join(_ALL)}")
    return cls()


_ARRAY_TEXT = re.compile(r"Array\[(None|\((?:\s*(?:None|\d+)\s*,)*\s*(?:None|\d+)?\s*\)),"
                         r"\s*([a-z0-9]+)\]\Z")


def _parse_array(s: str) -> ArrayType:
    """``'Array[(512,), float32]'`` (the catalog's text of an Array type) back into the type."""
    m = _ARRAY_TEXT.match(s)
    if m is None:
        raise SchemaError(f"unknown column type {s!r}; an Array type reads like "
                          "'Array[(512,), float32]'")
    dims = m.group(1)
    shape = None if dims == "None" else tuple(
        None if d.strip() == "None" else int(d) for d in dims[1:-1].split(",") if d.strip())
    return ArrayType(shape, m.group(2))


def type_of_value(value: Any) -> ColumnType:
    """The column type a Python literal would have (used for literals in expressions)."""
    for py, t in _PY_TYPES.items():
        if type(value) is py:
            return t
    if isinstance(value, bool):
        return Bool
    if isinstance(value, _dt.datetime):  # subclasses (pandas.Timestamp) too
        return Timestamp
    if isinstance(value, _dt.date):
        return Date
    if isinstance(value, numbers.Integral):
        return Int
    if isinstance(value, numbers.Real):
        return Float
    if isinstance(value, (dict, list, tuple)) or value is None:
        return Json
    if is_pil_image(value):
        return Image
    raise SchemaError(f"cannot use a {type(value).__name__} value in an expression")


def is_pil_image(value: object) -> bool:
    """True for a Pillow image, tested without importing Pillow (``import pxlite`` stays cheap)."""
    return type(value).__module__.startswith("PIL")
