"""The readers of tabular sources: CSV, Parquet, JSON (records or lines), a pandas DataFrame, a
list of dicts, each streamed in batches with its column names and inferred column types (see
:mod:`pxlite.io.sources`); :func:`open_source` picks one.

A source is read twice when its types are not written in it and pyarrow is not there to infer
them (JSON, CSV through the ``csv`` module): once to infer the types from every value, once to
load. Both passes stream, so memory stays bounded by one batch whatever the file's size.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import types
from ..errors import NotFoundError, SchemaError
from ..types import ColumnType
from . import sources
from .sources import (
    BATCH_ROWS,
    FORMATS,
    Source,
    Widen,
    arrow_read_type,
    arrow_reason,
    arrow_type,
    empty_columns,
    header_names,
    kind_of,
    merge_kinds,
    parse_text,
    python_values,
    require,
    stored_values,
    text_kind,
    type_named,
)

#: Bytes pyarrow's CSV reader parses per block (its threads work on blocks in parallel; a
#: block is a batch, so this bounds the Python values held at once too).
CSV_BLOCK_BYTES = 1 << 20
#: Characters read at a time from a JSON file holding one array of records.
JSON_CHUNK_CHARS = 1 << 20


# ---- CSV -----------------------------------------------------------------------------------------
class CsvSource(Source):
    """A CSV file with a header row. pyarrow reads it when installed (C++ threads, types
    inferred from every block), else the ``csv`` module."""

    format = "csv"

    def __init__(self, path: Path, delimiter: str = ",", use_pyarrow: bool | None = None) -> None:
        super().__init__(str(path))
        self.path, self.delimiter = path, delimiter
        self.arrow = sources.pyarrow_installed() if use_pyarrow is None else use_pyarrow
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
            self.names = header_names(next(reader, None), self.label)
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
            first, cols = 1, empty_columns(len(self.names))
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
                    first, cols = n + 1, empty_columns(len(self.names))
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
                raise SchemaError(f"{self.label}: {arrow_reason(e)}") from None
            self.widen(name)
            return
        except OSError as e:
            raise NotFoundError(f"cannot read {self.label}: {e}") from None
        schema = reader.schema
        reader.close()
        self.names = header_names(schema.names, self.label)
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
        names = _csvheader_names(self.path, self.delimiter)
        j = int(m.group(1))
        return names[j] if j < len(names) else None

    def _arrow_batches(self, overrides: dict[str, ColumnType]
                       ) -> Iterator[tuple[int, list[list[Any]]]]:
        import pyarrow as pa

        column_types = self._column_types(overrides)
        first = 1
        try:
            for batch in self._open_arrow(column_types):
                cols = [python_values(batch.column(j), overrides.get(n), self, first, n)
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
                types_[n] = arrow_read_type(t.name)
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
        return SchemaError(f"{self.label}: {arrow_reason(e)}")


def _csvheader_names(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f, delimiter=delimiter), [])


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
        self.names = header_names(schema.names, self.label)
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
                yield first, [python_values(batch.column(j), overrides.get(n), self, first, n)
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
        first, cols = 1, empty_columns(len(self.names))
        for n, rec in self._records():
            for j, name in enumerate(self.names):
                cols[j].append(rec.get(name))
            if len(cols[0]) >= BATCH_ROWS:
                yield first, cols
                first, cols = n + 1, empty_columns(len(self.names))
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
        self.names = header_names([str(c) for c in df.columns], self.label)
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
