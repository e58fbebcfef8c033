"""Exports: a table or a query as Parquet, CSV or JSON lines, streamed in batches.

Media cells are written as the URIs pxlite names their files by (``file://``, ``s3://``,
``gs://``, ``az://``, ``https://...``: what an import reads back as the same files), or, for
Parquet with ``inline_images=True``, as the files' bytes. Each file is
written to a temp file beside the target and renamed into place: a failed export leaves no
half-written file. A Parquet file records each column's pxlite type in its field metadata, so
``import_parquet`` of it gives back the same columns, media included.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import catalog, media, plan
from ..errors import SchemaError
from ..plan import Rows
from ..storage.base import atomic_target
from ..types import ColumnType
from .sources import require

if TYPE_CHECKING:
    from ..connection import Connection

#: Rows read (and written) per batch.
EXPORT_ROWS = 10_000


class _Rows:
    """The rows to export: ``names``, ``types`` and :meth:`batches` of Python values (media as
    URLs, or the files' bytes when ``inline``)."""

    def __init__(self, what: Any, inline: bool) -> None:
        self.inline = inline
        if hasattr(what, "batch_update"):  # a Table: its stored columns, read in keyset batches
            self.conn: Connection = what._conn
            self.meta = catalog.load_table(self.conn.db, what._path)
            self.cols = [c for c in self.meta.columns if c.stored and not (c.pending or c.hidden)]
            self.names = [c.name for c in self.cols]
            self.types: list[ColumnType] = [c.type for c in self.cols]
            self.query = None
        elif hasattr(what, "collect") and hasattr(what, "_source"):  # a Query
            self.query = what
            self.names, self.types = [], []
        else:
            raise SchemaError(f"export takes a Table or a Query, got {type(what).__name__}")
        # a Table's connection, or what a Query knows of its first table's (query.Source)
        source = what._source if self.query is not None else self.conn
        self.settings = source.settings()
        self.resolve = source.resolve

    def batches(self) -> Iterator[list[list[Any]]]:
        if self.query is not None:
            yield from self._query_batches()
            return
        db, meta = self.conn.db, self.meta
        last = None
        while True:
            with db.read():
                raw = db.query(*plan.select(meta, self.cols, Rows.all(), after=last,
                                            limit=EXPORT_ROWS))
            if not raw:
                return
            last = raw[-1][0]
            yield [[self._value(t, v, stored=True) for t, v in zip(self.types, r[1:], strict=True)]
                   for r in raw]

    def _query_batches(self) -> Iterator[list[list[Any]]]:
        # A Query's rows as collect() gives them: Python values, but media references as
        # stored (the result keeps them until a cell is read), turned into URIs here.
        result = self.query.collect()  # type: ignore[union-attr]
        self.names, self.types = list(result.names), list(result.types)
        rows = result._rows
        for start in range(0, len(rows), EXPORT_ROWS):
            yield [[self._value(t, v, stored=False) for t, v in zip(self.types, r, strict=True)]
                   for r in rows[start:start + EXPORT_ROWS]]

    def _value(self, t: ColumnType, v: Any, *, stored: bool) -> Any:
        """One cell for a file: media as its URI (or bytes), other stored values as Python
        values (``stored``: read from SQLite; else already converted by the query)."""
        if v is None:
            return None
        if t.is_media:
            if not isinstance(v, str):
                return v  # a computed media value of a query (a PIL image): as it is
            uri = self.resolve(v)
            if self.inline and t.name == "Image":
                return Path(media.fetch_local(uri, self.settings)).read_bytes()
            return uri
        return t.from_sql(v) if stored else v


@contextlib.contextmanager
def _target(path: Any) -> Iterator[Path]:
    """A temp file beside ``path``, renamed onto it when the block succeeds."""
    target = Path(os.path.expanduser(os.fspath(path))).absolute()
    if target.is_dir():
        raise SchemaError(f"{target} is a folder; pass the path of the file to write")
    if not target.parent.is_dir():
        raise SchemaError(f"cannot write {target}: the folder {target.parent} does not exist")
    with atomic_target(target, durable=False) as tmp:
        yield tmp


def _text(t: ColumnType, v: Any) -> Any:
    """A value as text-format exports write it (timestamps ISO 8601, Json as JSON text)."""
    if v is None:
        return None
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if t.name == "Json":
        return json.dumps(v, ensure_ascii=False)
    return v


def export_csv(table_or_query: Any, file_path: str | os.PathLike[str], *,
               delimiter: str = ",") -> None:
    """Write a table (its stored columns) or a query's result as CSV: a header row, then one
    row per row; None as an empty field, timestamps ISO 8601, Bools ``true``/``false``, Json
    as JSON text, media as their URLs. Streamed in batches."""
    rows = _Rows(table_or_query, inline=False)
    with _target(file_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        header = False
        for batch in rows.batches():
            if not header:
                writer.writerow(rows.names)
                header = True
            writer.writerows([_csv_cell(t, v) for t, v in zip(rows.types, r, strict=True)]
                             for r in batch)
        if not header:
            writer.writerow(rows.names)


def _csv_cell(t: ColumnType, v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if t.name == "Json":
        return "" if v is None else json.dumps(v, ensure_ascii=False)
    return _text(t, v)


def export_json(table_or_query: Any, file_path: str | os.PathLike[str]) -> None:
    """Write a table or a query's result as JSON lines (one object per row): Json values as
    they are, timestamps ISO 8601, media as their URLs. Streamed in batches."""
    rows = _Rows(table_or_query, inline=False)
    with _target(file_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for batch in rows.batches():
            _write_lines(f, rows, batch)


def _write_lines(f: TextIO, rows: _Rows, batch: list[list[Any]]) -> None:
    for r in batch:
        rec = {n: (v if t.name == "Json" else _text(t, v))
               for n, t, v in zip(rows.names, rows.types, r, strict=True)}
        f.write(json.dumps(rec, ensure_ascii=False))
        f.write("\n")


def export_parquet(table_or_query: Any, parquet_path: str | os.PathLike[str], *,
                   inline_images: bool = False) -> None:
    """Write a table or a query's result as one Parquet file, in row groups of a batch each.
    Media columns hold their URLs, or with ``inline_images=True`` the files' bytes (which
    import_parquet stores as new files). Each field records its pxlite type, so
    import_parquet gives the same columns back. Needs pyarrow (``pxlite[parquet]``)."""
    require("pyarrow", "parquet", "export_parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _Rows(table_or_query, inline=bool(inline_images))
    with _target(parquet_path) as tmp:
        writer = None
        try:
            for batch in rows.batches():
                columns = list(zip(*batch, strict=True)) if batch else []
                if writer is None:
                    schema = pa.schema([_field(n, t, col, rows.inline) for n, t, col in
                                        zip(rows.names, rows.types, columns, strict=True)])
                    writer = pq.ParquetWriter(tmp, schema)
                arrays = [_array(n, t, col, f.type) for n, t, col, f in
                          zip(rows.names, rows.types, columns, schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            if writer is None:  # no rows: the columns still
                schema = pa.schema([_field(n, t, [], rows.inline)
                                    for n, t in zip(rows.names, rows.types, strict=True)])
                writer = pq.ParquetWriter(tmp, schema)
        finally:
            if writer is not None:
                writer.close()


def _field(name: str, t: ColumnType, values: Any, inline: bool) -> Any:
    """The Parquet field of a column, its pxlite type in the metadata."""
    import pyarrow as pa

    kind = t.name
    if t.is_media:
        arrow = pa.binary() if inline and kind == "Image" else pa.string()
    elif kind == "Timestamp":
        aware = next((v.tzinfo is not None for v in values if v is not None), True)
        arrow = pa.timestamp("us", tz="UTC" if aware else None)
    else:
        arrow = {"Int": pa.int64(), "Float": pa.float64(), "Bool": pa.bool_()}.get(kind,
                                                                                   pa.string())
    return pa.field(name, arrow, metadata={b"pxlite_type": repr(t).encode()})


def _array(name: str, t: ColumnType, values: Any, arrow_type: Any) -> Any:
    import pyarrow as pa

    if t.name == "Json":
        values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise SchemaError(f"cannot write column {name!r} ({t.name}) to Parquet: {e}") from e
