"""What tabular sources share: the Source interface, type inference over values and text, and
the pyarrow conversions (arrow types to column types, arrow columns to stored values). The
readers of each format are in :mod:`pxlite.io.readers`.

pyarrow (the ``pxlite[parquet]`` extra) reads CSV in C++ threads when installed; without it
the ``csv`` module reads it. Parquet needs pyarrow; DataFrames need pandas. Each is imported
only when a source needs it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import re
from collections.abc import Iterator
from typing import Any

from .. import types
from ..errors import ConfigError, SchemaError
from ..types import ColumnType

#: Rows per batch handed to the loader (one executemany per batch).
BATCH_ROWS = 20_000

FORMATS = ("csv", "parquet", "json", "pandas", "rows")

_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|nan)\Z",
                    re.IGNORECASE)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
                        r"(Z|[+-]\d{2}(:?\d{2})?)?)?\Z")
_BOOLS = {"true": True, "false": False}


def pyarrow_installed() -> bool:
    """Is pyarrow importable (without importing it: that costs ~100 ms)?"""
    return importlib.util.find_spec("pyarrow") is not None


def require(module: str, extra: str, what: str) -> None:
    """A ConfigError naming the extra to install when ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs {module}: pip install 'pxlite[{extra}]'")


class Widen(Exception):
    """A value of ``column`` does not fit the type inferred from the file's first block: the
    import (of a new table) starts again with the column widened (``CsvSource.widen``)."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


class Source:
    """One tabular source: ``names`` (its column names, in order), ``types`` (a ColumnType per
    name, nullable; None where every value was null), and :meth:`batches`. A source read by
    pyarrow also has ``stored_batches`` (``stores`` is True)."""

    @property
    def stores(self) -> bool:
        """Can this source give batches already in SQLite's stored form?"""
        return False

    def stored_batches(self, read_as: dict[str, ColumnType]
                       ) -> Iterator[tuple[int, list[list[Any]]]]:
        raise NotImplementedError

    #: 'csv', 'parquet', 'json', 'pandas' or 'rows'
    format = ""

    def __init__(self, label: str) -> None:
        self.label = label
        #: An import into a new table may widen columns (see :class:`Widen`).
        self.widening = False
        self.names: list[str] = []
        self.types: dict[str, ColumnType | None] = {}

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        """``(first row number, columns)`` per batch: each column a list of Python values of
        its type (``overrides``: the types to read some columns as). Row numbers start at 1."""
        raise NotImplementedError

    def where(self, row: int) -> str:
        """Where data row ``row`` (1-based) is in the source, for messages."""
        return f"{self.label}, row {row}"

    def widen(self, name: str) -> None:
        """Read column ``name`` as a wider type (only sources that raise Widen can)."""
        raise AssertionError(f"internal error: {type(self).__name__} cannot widen {name!r}")


# ---- type inference over Python values -----------------------------------------------------------
def kind_of(value: Any) -> str | None:
    """The column type name a parsed value (JSON, a DataFrame cell) suggests; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int"
    if isinstance(value, float):
        return None if value != value else "Float"  # NaN is pandas' null
    if isinstance(value, str):
        return "Timestamp" if _TIMESTAMP.match(value) and _iso(value) is not None else "String"
    if isinstance(value, (_dt.datetime, _dt.date)):
        return "Timestamp"
    if isinstance(value, (dict, list, tuple)):
        return "Json"
    return "?" + type(value).__name__


def merge_kinds(a: str | None, b: str | None, *, text: bool) -> str | None:
    """The type of a column holding values of kinds ``a`` and ``b``: Int and Float make Float;
    other mixes make String for text sources (CSV) and Json for parsed ones (JSON), where a
    Timestamp-looking string mixed with other strings is a String."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if {a, b} == {"Int", "Float"}:
        return "Float"
    if {a, b} == {"String", "Timestamp"}:
        return "String"
    return "String" if text else "Json"


def _iso(text: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def text_kind(s: str) -> str | None:
    """The type a CSV cell's text suggests ('' is null)."""
    if not s:
        return None
    if _INT.match(s):
        return "Int"
    if _FLOAT.match(s):
        return "Float"
    if s.lower() in _BOOLS:
        return "Bool"
    if _TIMESTAMP.match(s) and _iso(s) is not None:
        return "Timestamp"
    return "String"


def type_named(kind: str | None, label: str, column: str) -> ColumnType | None:
    """The (nullable) ColumnType of an inferred kind; an unusable kind is a SchemaError."""
    if kind is None:
        return None
    if kind.startswith("?"):
        raise SchemaError(f"{label}: column {column!r} holds {kind[1:]} values, which pxlite "
                          "cannot store; give it a type with schema_overrides={...}")
    return types.as_type(getattr(types, kind))


def parse_text(text: str, t: ColumnType) -> Any:
    """A CSV cell's text as a value of type ``t`` ('' is None); ValueError when it is not."""
    if text == "":
        return None
    name = t.name
    if name == "Int":
        if not _INT.match(text):
            raise ValueError(f"{text!r} is not a whole number")
        return int(text)
    if name == "Float":
        return float(text)
    if name == "Bool":
        b = _BOOLS.get(text.lower())
        if b is None:
            raise ValueError(f"{text!r} is not true or false")
        return b
    if name == "Timestamp":
        value = _iso(text)
        if value is None:
            raise ValueError(f"{text!r} is not an ISO 8601 timestamp")
        return value
    if name == "Json":
        return json.loads(text)
    return text


# ---- pyarrow helpers -----------------------------------------------------------------------------
def header_names(names: list[str] | None, label: str) -> list[str]:
    """A source's column names, checked: some, and none twice."""
    if not names:
        raise SchemaError(f"{label} is empty: expected a header row naming the columns")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(f"{label}: the header names column(s) {dup} more than once")
    return list(names)


def arrow_reason(e: Exception) -> str:
    """The first line of a pyarrow error (the rest repeats context)."""
    return str(e).split("\n")[0]


def python_values(array: Any, override: ColumnType | None, src: Source, first: int, name: str
            ) -> list[Any]:
    """An arrow column as Python values; Json overrides of text are parsed (errors name the
    row and the column)."""
    values = array.to_pylist()
    if override is not None and override.name == "Json":
        for i, v in enumerate(values):
            if isinstance(v, str):
                try:
                    values[i] = json.loads(v)
                except ValueError as e:
                    raise SchemaError(f"{src.where(first + i)}, column {name!r}: expected "
                                      f"JSON text: {e}") from None
    return values


def stored_values(array: Any, t: ColumnType, src: Source, first: int, name: str) -> list[Any]:
    """An arrow column as the values SQLite stores for type ``t`` (what ``t.to_sql`` gives),
    converted by pyarrow where it can: Timestamps as ISO 8601 text (UTC with ``+00:00`` when
    the column has a time zone), Bools as 0/1. Values pyarrow cannot convert go through
    ``t.to_sql`` one by one; a value that does not fit names its row and column."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if pt.is_dictionary(array.type):
        array = array.dictionary_decode()
    at, kind = array.type, t.name
    if kind == "Timestamp" and (pt.is_timestamp(at) or pt.is_date(at)):
        # A cast to text ("2024-01-01 12:00:00.000000", "Z" after a UTC one) is several
        # times as fast as pc.strftime; then the separator and the offset as isoformat has them.
        aware = pt.is_timestamp(at) and at.tz is not None
        text = array.cast(pa.timestamp("us", tz="UTC") if aware else pa.timestamp("us"))
        text = pc.replace_substring(text.cast(pa.string()), " ", "T", max_replacements=1)
        if aware:
            text = pc.replace_substring(text, "Z", "+00:00", max_replacements=1)
        return text.to_pylist()
    if kind == "Bool" and pt.is_boolean(at):
        return array.cast(pa.int64()).to_pylist()
    if kind == "Int" and pt.is_integer(at) and not pt.is_uint64(at):
        return array.to_pylist()
    if kind == "Float" and (pt.is_floating(at) or pt.is_integer(at)):
        if pt.is_floating(at) and pc.any(pc.is_nan(array)).as_py():
            n = first + pc.index(pc.is_nan(array), True).as_py()
            raise SchemaError(f"{src.where(n)}, column {name!r}: NaN cannot be stored in a Float "
                              "column; leave the value empty for a missing one")
        return array.cast(pa.float64()).to_pylist()
    if kind == "String" and (pt.is_string(at) or pt.is_large_string(at)):
        return array.to_pylist()
    values = python_values(array, t, src, first, name)
    out = []
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else t.to_sql(v))
        except SchemaError as e:
            raise SchemaError(f"{src.where(first + i)}, column {name!r}: {e}") from None
    return out


def arrow_read_type(name: str) -> Any:
    """How pyarrow reads a column given type ``name`` in schema_overrides (media and Json:
    their text)."""
    import pyarrow as pa

    return {"Int": pa.int64(), "Float": pa.float64(), "Bool": pa.bool_(),
            "Timestamp": pa.timestamp("us")}.get(name, pa.string())


def empty_columns(n: int) -> list[list[Any]]:
    """``n`` empty column lists (a batch being filled)."""
    return [[] for _ in range(n)]


def arrow_type(field: Any, label: str) -> ColumnType | None:
    """The ColumnType of an arrow field: its pxlite type when pxlite wrote the file (field
    metadata), else by its arrow type; None for a column of nulls only."""
    import pyarrow.types as pt

    meta = field.metadata or {}
    written = meta.get(b"pxlite_type")
    if written:
        return types.parse_type(written.decode())
    t = field.type
    if pt.is_dictionary(t):
        t = t.value_type
    if pt.is_null(t):
        return None
    if pt.is_boolean(t):
        return types.Bool
    if pt.is_integer(t):
        return types.Int
    if pt.is_floating(t) or pt.is_decimal(t):
        return types.Float
    if pt.is_string(t) or pt.is_large_string(t):
        return types.String
    if pt.is_timestamp(t) or pt.is_date(t):
        return types.Timestamp
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_struct(t) or pt.is_map(t):
        return types.Json
    raise SchemaError(f"{label}: column {field.name!r} has type {t}, which pxlite cannot store; "
                      "give it a type with schema_overrides={...} or leave it out")
