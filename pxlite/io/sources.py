"""Tabular sources read in batches: CSV, Parquet, JSON (records or lines), a pandas DataFrame,
a list of dicts; each with its column names and inferred column types.

A source is read twice when its types are not written in it (CSV, JSON): once to infer the
types from every value (a column is Int only if every value is), once to load. Both passes
stream, so memory stays bounded by one batch whatever the file's size. pyarrow (the
``pxlite[parquet]`` extra) reads CSV in C++ threads when installed; without it the ``csv``
module reads it. Parquet needs pyarrow; DataFrames need pandas.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import types
from ..errors import ConfigError, NotFoundError, SchemaError
from ..types import ColumnType

#: Rows per batch handed to the loader (one executemany per batch).
BATCH_ROWS = 20_000
#: Bytes pyarrow's CSV reader parses per block (its threads work on blocks in parallel; a
#: block is a batch, so this bounds the Python values held at once too).
CSV_BLOCK_BYTES = 1 << 20
#: Characters read at a time from a JSON file holding one array of records.
JSON_CHUNK_CHARS = 1 << 20

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


# ---- CSV -----------------------------------------------------------------------------------------
class CsvSource(Source):
    """A CSV file with a header row. pyarrow reads it when installed (C++ threads, types
    inferred from every block), else the ``csv`` module."""

    format = "csv"

    def __init__(self, path: Path, delimiter: str = ",", use_pyarrow: bool | None = None) -> None:
        super().__init__(str(path))
        self.path, self.delimiter = path, delimiter
        self.arrow = pyarrow_installed() if use_pyarrow is None else use_pyarrow
        self._arrow_types: dict[str, Any] = {}
        self._fixed: dict[str, Any] = {}   # columns widened after a value did not fit
        (self._infer_arrow if self.arrow else self._infer_text)()

    def where(self, row: int) -> str:
        return f"{self.label}, row {row} (line {row + 1})"

    # -- the csv module -------------------------------------------------------------------------
    def _reader(self, f: Any) -> Any:
        return csv.reader(f, delimiter=self.delimiter)

    def _infer_text(self) -> None:
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = self._reader(f)
            self.names = _header(next(reader, None), self.label)
            kinds: list[str | None] = [None] * len(self.names)
            open_cols = list(range(len(self.names)))  # columns not yet known to be String
            for n, row in enumerate(reader, 1):
                if len(row) != len(self.names):
                    raise SchemaError(f"{self.where(n)}: {len(row)} fields, but the header "
                                      f"has {len(self.names)}")
                for j in open_cols:
                    kinds[j] = merge_kinds(kinds[j], text_kind(row[j]), text=True)
                if any(k == "String" for k in kinds):
                    open_cols = [j for j in open_cols if kinds[j] != "String"]
        self.types = {n: type_named(k, self.label, n)
                      for n, k in zip(self.names, kinds, strict=True)}

    def _text_batches(self, overrides: dict[str, ColumnType]
                      ) -> Iterator[tuple[int, list[list[Any]]]]:
        target = [overrides.get(n) or self.types[n] or types.String for n in self.names]
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = self._reader(f)
            next(reader, None)
            first, cols = 1, _empty(len(self.names))
            for n, row in enumerate(reader, 1):
                if len(row) != len(self.names):
                    raise SchemaError(f"{self.where(n)}: {len(row)} fields, but the header "
                                      f"has {len(self.names)}")
                for j, text in enumerate(row):
                    try:
                        cols[j].append(parse_text(text, target[j]))
                    except ValueError as e:
                        raise SchemaError(f"{self.where(n)}, column {self.names[j]!r}: expected "
                                          f"{target[j].name}: {e}") from None
                if len(cols[0]) >= BATCH_ROWS:
                    yield first, cols
                    first, cols = n + 1, _empty(len(self.names))
            if cols and cols[0]:
                yield first, cols

    # -- pyarrow ----------------------------------------------------------------------------------
    def _open_arrow(self, column_types: dict[str, Any]) -> Any:
        import pyarrow.csv as pacsv

        return pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types, strings_can_be_null=True,
                true_values=["true", "True", "TRUE"], false_values=["false", "False", "FALSE"]))

    def _infer_arrow(self) -> None:
        """Types from the first block (pyarrow's inference); a later value that does not fit
        raises :class:`Widen` while :attr:`widening` (a new table), and the caller widens the
        column and imports again. So the file is parsed once, not twice, in the usual case
        where the first block is typical."""
        import pyarrow as pa

        try:
            reader = self._open_arrow(self._fixed)
        except pa.ArrowInvalid as e:  # the first block itself does not fit a fixed type
            name = self._failed_column(e)
            if name is None or self._fixed.get(name) == pa.string():
                raise SchemaError(f"{self.label}: {_arrow_reason(e)}") from None
            self.widen(name)
            return
        except OSError as e:
            raise NotFoundError(f"cannot read {self.label}: {e}") from None
        schema = reader.schema
        reader.close()
        self.names = _header(schema.names, self.label)
        self._arrow_types = {f.name: f.type for f in schema}
        self.types = {f.name: arrow_type(f, self.label) for f in schema}

    def widen(self, name: str) -> None:
        """A value of column ``name`` did not fit the type inferred for it: read it as Float
        when it was a whole number column, else as text; infer again."""
        import pyarrow as pa
        import pyarrow.types as pt

        was = self._fixed.get(name, self._arrow_types.get(name))
        self._fixed[name] = pa.float64() if was is not None and pt.is_integer(was) \
            else pa.string()
        self._infer_arrow()

    def _failed_column(self, e: Exception) -> str | None:
        """The column a pyarrow conversion error names (by number), or None."""
        m = re.search(r"In CSV column #(\d+)", str(e))
        if m is None:
            return None
        names = _csv_header(self.path, self.delimiter)
        j = int(m.group(1))
        return names[j] if j < len(names) else None

    def _arrow_batches(self, overrides: dict[str, ColumnType]
                       ) -> Iterator[tuple[int, list[list[Any]]]]:
        import pyarrow as pa

        column_types = self._column_types(overrides)
        first = 1
        try:
            for batch in self._open_arrow(column_types):
                cols = [_pylist(batch.column(j), overrides.get(n), self, first, n)
                        for j, n in enumerate(self.names)]
                yield first, cols
                first += batch.num_rows
        except pa.ArrowInvalid as e:
            raise self._conversion_error(e, overrides) from None

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        return (self._arrow_batches if self.arrow else self._text_batches)(overrides)

    @property
    def stores(self) -> bool:
        return self.arrow

    def stored_batches(self, read_as: dict[str, ColumnType]
                       ) -> Iterator[tuple[int, list[list[Any]]]]:
        """Batches in the form SQLite stores (see :func:`stored_values`): converted by pyarrow,
        column by column, instead of value by value in Python."""
        import pyarrow as pa

        column_types = self._column_types(read_as)
        first = 1
        try:
            for batch in self._open_arrow(column_types):
                yield first, [stored_values(batch.column(j), read_as[n], self, first, n)
                              for j, n in enumerate(self.names)]
                first += batch.num_rows
        except pa.ArrowInvalid as e:
            raise self._conversion_error(e, read_as) from None

    def _column_types(self, wanted: dict[str, ColumnType]) -> dict[str, Any]:
        """The arrow types to read the columns as: what inference found, unless a column is
        wanted as another pxlite type (then that type's arrow form)."""
        types_ = dict(self._arrow_types)
        for n, t in wanted.items():
            found = self.types.get(n)
            if found is None or found.name != t.name:
                types_[n] = _arrow_read_type(t.name)
        return types_

    def _conversion_error(self, e: Exception, wanted: dict[str, ColumnType]) -> Exception:
        """pyarrow could not convert a value to the type asked: a column whose type was only
        inferred is widened (:class:`Widen`); else find the value (the csv module reads the
        column again, on this error path only) to name its row and column."""
        name = self._failed_column(e)
        found = self.types.get(name) if name is not None else None
        if (self.widening and name is not None and found is not None
                and wanted.get(name) == found):
            return Widen(name)
        if name is not None and name in wanted:
            j, t = self.names.index(name), wanted[name]
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = self._reader(f)
                next(reader, None)
                for n, row in enumerate(reader, 1):
                    try:
                        parse_text(row[j] if j < len(row) else "", t)
                    except ValueError as err:
                        return SchemaError(f"{self.where(n)}, column {name!r}: expected "
                                           f"{t.name}: {err}")
        return SchemaError(f"{self.label}: {_arrow_reason(e)}")


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f, delimiter=delimiter), [])


def _header(names: list[str] | None, label: str) -> list[str]:
    if not names:
        raise SchemaError(f"{label} is empty: expected a header row naming the columns")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(f"{label}: the header names column(s) {dup} more than once")
    return list(names)


def _arrow_reason(e: Exception) -> str:
    return str(e).split("\n")[0]


def _pylist(array: Any, override: ColumnType | None, src: Source, first: int, name: str
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
    values = _pylist(array, t, src, first, name)
    out = []
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else t.to_sql(v))
        except SchemaError as e:
            raise SchemaError(f"{src.where(first + i)}, column {name!r}: {e}") from None
    return out


def _arrow_read_type(name: str) -> Any:
    """How pyarrow reads a column given type ``name`` in schema_overrides (media and Json:
    their text)."""
    import pyarrow as pa

    return {"Int": pa.int64(), "Float": pa.float64(), "Bool": pa.bool_(),
            "Timestamp": pa.timestamp("us")}.get(name, pa.string())


def _empty(n: int) -> list[list[Any]]:
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


# ---- Parquet -------------------------------------------------------------------------------------
class ParquetSource(Source):
    """A Parquet file, or a folder of them (read in name order, one schema)."""

    format = "parquet"

    def __init__(self, path: Path) -> None:
        require("pyarrow", "parquet", "reading Parquet")
        import pyarrow.parquet as pq

        super().__init__(str(path))
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".pq"))
            if not self.files:
                raise NotFoundError(f"the folder {path} holds no .parquet files")
        else:
            self.files = [path]
        try:
            schema = pq.read_schema(self.files[0])
        except OSError as e:
            raise SchemaError(f"cannot read {self.files[0]} as Parquet: {e}") from None
        self.names = _header(schema.names, self.label)
        self.types = {f.name: arrow_type(f, self.label) for f in schema}

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        import pyarrow.parquet as pq

        first = 1
        for path in self.files:
            f = pq.ParquetFile(path)
            if f.schema_arrow.names != self.names:
                raise SchemaError(f"{path}: its columns {f.schema_arrow.names} differ from those "
                                  f"of {self.files[0].name} {self.names}")
            for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=self.names):
                yield first, [_pylist(batch.column(j), overrides.get(n), self, first, n)
                              for j, n in enumerate(self.names)]
                first += batch.num_rows

    @property
    def stores(self) -> bool:
        return True

    def stored_batches(self, read_as: dict[str, ColumnType]
                       ) -> Iterator[tuple[int, list[list[Any]]]]:
        """Batches in the form SQLite stores (see :func:`stored_values`)."""
        import pyarrow.parquet as pq

        first = 1
        for path in self.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS,
                                                           columns=self.names):
                yield first, [stored_values(batch.column(j), read_as[n], self, first, n)
                              for j, n in enumerate(self.names)]
                first += batch.num_rows


# ---- JSON ----------------------------------------------------------------------------------------
class JsonSource(Source):
    """A JSON file holding an array of records (objects), or JSON lines (one object per line):
    streamed either way. Columns are the union of the records' keys, in order of appearance."""

    format = "json"

    def __init__(self, path: Path, lines: bool | None = None) -> None:
        super().__init__(str(path))
        self.path = path
        self.lines = self._is_lines(path) if lines is None else lines
        kinds: dict[str, str | None] = {}
        for _, rec in self._records():
            for k, v in rec.items():
                kinds[k] = merge_kinds(kinds.get(k), kind_of(v), text=False)
        if not kinds:
            raise SchemaError(f"{self.label} holds no records")
        self.names = list(kinds)
        self.types = {k: type_named(v, self.label, k) for k, v in kinds.items()}

    def where(self, row: int) -> str:
        return f"{self.label}, {'line' if self.lines else 'record'} {row}"

    @staticmethod
    def _is_lines(path: Path) -> bool:
        with open(path, encoding="utf-8") as f:
            while True:
                c = f.read(1)
                if not c or not c.isspace():
                    return c != "["

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        rows = _json_lines(self.path) if self.lines else _json_array(self.path)
        for n, rec in rows:
            if not isinstance(rec, dict):
                raise SchemaError(f"{self.where(n)}: expected an object of column values, got "
                                  f"{type(rec).__name__}")
            yield n, rec

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        first, cols = 1, _empty(len(self.names))
        for n, rec in self._records():
            for j, name in enumerate(self.names):
                cols[j].append(rec.get(name))
            if len(cols[0]) >= BATCH_ROWS:
                yield first, cols
                first, cols = n + 1, _empty(len(self.names))
        if cols[0]:
            yield first, cols


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except ValueError as e:
                    raise SchemaError(f"{path}, line {n}: not JSON: {e}") from None


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """The elements of a top-level JSON array, one at a time (JSONDecoder.raw_decode over a
    sliding buffer: a file of any size in bounded memory)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as f:
        buf, pos, eof, n, line = "", 0, False, 0, 1

        def more() -> bool:
            nonlocal buf, pos, eof, line
            chunk = f.read(JSON_CHUNK_CHARS)
            line += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + chunk, 0
            eof = not chunk
            return bool(chunk)

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos].isspace():
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos] if pos < len(buf) else ""

        if skip_ws() != "[":
            raise SchemaError(f"{path}: expected a JSON array of records (or JSON lines)")
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    if end == len(buf) and not eof:  # a number may go on in the next chunk
                        raise ValueError("at the end of the buffer")
                    break
                except ValueError as e:
                    if not more():
                        where = line + buf.count("\n", 0, pos)
                        raise SchemaError(f"{path}, record {n + 1} (line {where}): not JSON: "
                                          f"{e}") from None
            n += 1
            pos = end
            yield n, value
            c = skip_ws()
            if c == "]":
                return
            if c != ",":
                raise SchemaError(f"{path}, after record {n}: expected ',' or ']', got "
                                  f"{c or 'the end of the file'!r}")
            pos += 1
            skip_ws()


# ---- pandas and plain rows -----------------------------------------------------------------------
class PandasSource(Source):
    """A pandas DataFrame: its dtypes give the types (object columns are inferred from their
    values); read in slices."""

    format = "pandas"

    def __init__(self, df: Any) -> None:
        super().__init__("the DataFrame")
        self.df = df
        self.names = _header([str(c) for c in df.columns], self.label)
        self.types = {}
        for name, col in zip(self.names, df.columns, strict=True):
            self.types[name] = self._dtype(name, df[col])

    def _dtype(self, name: str, series: Any) -> ColumnType | None:
        kind = series.dtype.kind
        if kind == "b":
            return types.Bool
        if kind in "iu":
            return types.Int
        if kind == "f":
            return types.Float
        if kind == "M":
            return types.Timestamp
        found: str | None = None
        for v in series:
            found = merge_kinds(found, kind_of(None if _is_na(v) else v), text=False)
        return type_named(found, self.label, name)

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        df = self.df
        for start in range(0, len(df), BATCH_ROWS):
            part = df.iloc[start:start + BATCH_ROWS]
            cols = []
            for col in df.columns:
                series = part[col]
                if series.dtype.kind == "M":
                    values = [None if _is_na(v) else v.to_pydatetime() for v in series]
                else:
                    values = [None if _is_na(v) else v for v in series.tolist()]
                cols.append(values)
            yield start + 1, cols


def _is_na(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    try:
        import pandas as pd

        return bool(pd.isna(v)) if not isinstance(v, (list, dict, tuple, str)) else False
    except (TypeError, ValueError):
        return False


class RowsSource(Source):
    """A list of dicts (Pixeltable's ``source=[{...}, ...]``)."""

    format = "rows"

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__("the rows given")
        kinds: dict[str, str | None] = {}
        for n, rec in enumerate(rows, 1):
            if not isinstance(rec, dict):
                raise SchemaError(f"row {n}: expected a dict of column values, got "
                                  f"{type(rec).__name__}")
            for k, v in rec.items():
                kinds[k] = merge_kinds(kinds.get(k), kind_of(v), text=False)
        if not kinds:
            raise SchemaError("the rows given are empty: there are no columns to create")
        self.rows = rows
        self.names = [str(k) for k in kinds]
        self.types = {k: type_named(v, self.label, k) for k, v in kinds.items()}

    def batches(self, overrides: dict[str, ColumnType]) -> Iterator[tuple[int, list[list[Any]]]]:
        for start in range(0, len(self.rows), BATCH_ROWS):
            part = self.rows[start:start + BATCH_ROWS]
            yield start + 1, [[r.get(n) for r in part] for n in self.names]


# ---- choosing a reader ---------------------------------------------------------------------------
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
             ".json": "json", ".jsonl": "json", ".ndjson": "json"}


def open_source(source: Any, source_format: str | None, extra: dict[str, Any]) -> Source:
    """The Source reading ``source`` (a path, a DataFrame, a list of dicts), in
    ``source_format`` or the format its suffix or type says. ``extra``: the reader's options
    (CSV: ``delimiter``; JSON: ``lines``)."""
    if source_format is not None and source_format not in FORMATS:
        raise SchemaError(f"source_format must be one of {', '.join(map(repr, FORMATS))}, got "
                          f"{source_format!r}")
    if isinstance(source, list):
        _no_options(extra, "rows")
        return RowsSource(source)
    if type(source).__name__ == "DataFrame" and hasattr(source, "iloc"):
        _no_options(extra, "pandas")
        return PandasSource(source)
    if not isinstance(source, (str, os.PathLike)):
        raise SchemaError(f"source must be a file path, a pandas DataFrame or a list of dicts; "
                          f"got {type(source).__name__}")
    path = Path(os.path.expanduser(os.fspath(source)))
    if not path.exists():
        raise NotFoundError(f"no file or folder at {path}; check the path")
    fmt = source_format or ("parquet" if path.is_dir() else _SUFFIXES.get(path.suffix.lower()))
    if fmt is None:
        raise SchemaError(f"cannot tell the format of {path} from its name; pass "
                          "source_format='csv', 'parquet' or 'json'")
    if fmt == "csv":
        delimiter = extra.pop("delimiter", "\t" if path.suffix.lower() == ".tsv" else ",")
        _no_options(extra, "csv")
        return CsvSource(path, delimiter)
    if fmt == "parquet":
        _no_options(extra, "parquet")
        return ParquetSource(path)
    if fmt == "json":
        lines = extra.pop("lines", True if path.suffix.lower() in (".jsonl", ".ndjson") else None)
        _no_options(extra, "json")
        return JsonSource(path, lines)
    raise SchemaError(f"source_format={fmt!r} needs a {'DataFrame' if fmt == 'pandas' else 'list'}"
                      f" as source, got a path")


def _no_options(extra: dict[str, Any], fmt: str) -> None:
    if extra:
        known = {"csv": "delimiter", "json": "lines"}.get(fmt, "none")
        raise SchemaError(f"unknown option(s) {sorted(extra)} for reading {fmt}; known: {known}")
