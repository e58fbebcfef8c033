"""Data in and out (Pixeltable's ``pixeltable.io`` names).

- :func:`import_files`: a local folder or a bucket prefix becomes rows of a media column (no
  downloads, idempotent, resumable, constant memory);
- :func:`import_csv`, :func:`import_parquet`, :func:`import_pandas`, :func:`import_json`,
  :func:`import_rows`: a tabular source becomes a new table (``create_table(path, source=...)``)
  or goes into an existing one (upserts by primary key with ``on_conflict=``);
- :func:`export_parquet`, :func:`export_csv`, :func:`export_json`: a table or a query becomes a
  file, streamed.

The functions taking a table path work on the default database unless ``db=`` names another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError
from . import files, keys, tables
from .export import export_csv, export_json, export_parquet

if TYPE_CHECKING:
    from ..connection import Connection
    from ..results import UpdateStatus
    from ..table import Table

__all__ = ["export_csv", "export_json", "export_parquet", "import_csv", "import_files",
           "import_json", "import_pandas", "import_parquet", "import_rows", "keys"]

#: The default database, as pxlite's top level opens it (this room sits below the connection:
#: pxlite/__init__ hands the opener over when it is imported).
_default_database: Callable[[], Connection] | None = None


def use_default_database(opener: Callable[[], Connection]) -> None:
    """Called once by ``pxlite/__init__``: how to reach the default database."""
    global _default_database
    _default_database = opener


def database(db: Connection | None) -> Connection:
    """``db``, or the default database."""
    if db is not None:
        return db
    if _default_database is None:
        raise AssertionError("internal error: pxlite.io is used before pxlite was imported")
    return _default_database()


def connection_of(t: Table) -> Connection:
    """The database a Table handle belongs to."""
    return t._conn


def _import(table: str | Table, source: Any, fmt: str | None, *, schema_overrides: Any,
            primary_key: Any, on_conflict: str, on_error: str, if_exists: str,
            db: Connection | None, extra: dict[str, Any]) -> Table:
    if isinstance(table, str):
        return database(db).create_table(
            table, source=source, source_format=fmt, schema_overrides=schema_overrides,
            primary_key=primary_key, if_exists=if_exists, on_error=on_error, extra_args=extra)
    if not hasattr(table, "batch_update"):
        raise SchemaError(f"expected a table path or a Table, got {type(table).__name__}")
    if primary_key is not None:
        raise SchemaError(f"table {table._path!r} exists: its primary key was set when it was "
                          "created; leave primary_key= out")
    tables.import_into(connection_of(table), table, source, source_format=fmt,
                       schema_overrides=schema_overrides, on_conflict=on_conflict,
                       on_error=on_error, extra_args=extra)
    return table


def import_csv(table: str | Table, filepath: Any, schema_overrides: dict[str, Any] | None = None,
               primary_key: str | list[str] | None = None, *, on_conflict: str = "error",
               on_error: str = "abort", if_exists: str = "error", db: Connection | None = None,
               **kwargs: Any) -> Table:
    """A CSV file (header row first) into a new table at path ``table`` (types inferred from
    every value: Int, Float, Bool, Timestamp, else String; ``schema_overrides`` sets some, e.g.
    ``{'img': pxl.Image}`` for a column of paths or URLs) or into an existing Table
    (``on_conflict='error'|'ignore'|'update'`` for rows whose primary key is there already).
    ``kwargs``: ``delimiter``. One transaction; bounded memory. Returns the table."""
    return _import(table, filepath, "csv", schema_overrides=schema_overrides,
                   primary_key=primary_key, on_conflict=on_conflict, on_error=on_error,
                   if_exists=if_exists, db=db, extra=kwargs)


def import_parquet(table: str | Table, *, parquet_path: Any,
                   schema_overrides: dict[str, Any] | None = None,
                   primary_key: str | list[str] | None = None, on_conflict: str = "error",
                   on_error: str = "abort", if_exists: str = "error",
                   db: Connection | None = None) -> Table:
    """A Parquet file, or a folder of them, into a new or existing table (see
    :func:`import_csv`); a file pxlite exported keeps its column types (media included).
    Needs pyarrow (``pxlite[parquet]``)."""
    return _import(table, parquet_path, "parquet", schema_overrides=schema_overrides,
                   primary_key=primary_key, on_conflict=on_conflict, on_error=on_error,
                   if_exists=if_exists, db=db, extra={})


def import_pandas(table: str | Table, df: Any, *, schema_overrides: dict[str, Any] | None = None,
                  primary_key: str | list[str] | None = None, on_conflict: str = "error",
                  on_error: str = "abort", if_exists: str = "error",
                  db: Connection | None = None) -> Table:
    """A pandas DataFrame into a new or existing table (see :func:`import_csv`); its dtypes
    give the types (object columns are inferred from their values)."""
    return _import(table, df, "pandas", schema_overrides=schema_overrides,
                   primary_key=primary_key, on_conflict=on_conflict, on_error=on_error,
                   if_exists=if_exists, db=db, extra={})


def import_json(table: str | Table, filepath: Any, *,
                schema_overrides: dict[str, Any] | None = None,
                primary_key: str | list[str] | None = None, on_conflict: str = "error",
                on_error: str = "abort", if_exists: str = "error", db: Connection | None = None,
                **kwargs: Any) -> Table:
    """A JSON file holding an array of records, or JSON lines (``.jsonl``, or ``lines=True``),
    into a new or existing table (see :func:`import_csv`); nested values become Json
    columns, ISO 8601 strings Timestamps. Streamed either way."""
    return _import(table, filepath, "json", schema_overrides=schema_overrides,
                   primary_key=primary_key, on_conflict=on_conflict, on_error=on_error,
                   if_exists=if_exists, db=db, extra=kwargs)


def import_rows(table: str | Table, rows: list[dict[str, Any]], *,
                schema_overrides: dict[str, Any] | None = None,
                primary_key: str | list[str] | None = None, on_conflict: str = "error",
                on_error: str = "abort", if_exists: str = "error",
                db: Connection | None = None) -> Table:
    """A list of dicts into a new or existing table, types inferred from the values."""
    return _import(table, rows, "rows", schema_overrides=schema_overrides,
                   primary_key=primary_key, on_conflict=on_conflict, on_error=on_error,
                   if_exists=if_exists, db=db, extra={})


def import_files(t: str | Table, source: str, *, column: str = "image", glob: str | None = None,
                 media_type: Any = None, on_error: str = "abort", db: Connection | None = None
                 ) -> UpdateStatus:
    """A local folder or a bucket prefix (``file://``, ``s3://``, ``gs://``, ``az://``,
    ``r2://``, ``b2://``, ``tigris://``) becomes rows: one per file matching ``glob`` (e.g.
    ``'**/*.jpg'``; all files without it). See :func:`pxlite.io.files.import_files`."""
    if isinstance(t, str):
        return files.import_files(database(db), t, source, column=column, glob=glob,
                                  media_type=media_type, on_error=on_error)
    return files.import_files(connection_of(t), t._path, source, column=column, glob=glob,
                              media_type=media_type, on_error=on_error, existing=True)
