"""Primary keys: declaring them, naming a duplicate, and updating rows by key (batch_update,
the upserts of imports).

A primary key is recorded in the catalog (``px_tables.primary_key``) and enforced by SQLite
through a unique index on the data table, so no writer, in this process or another, can add a
second row with the same key. Its columns are Required (a key of None would not be unique to
SQLite) and of a type whose stored value compares exactly (Int, String, Bool, Timestamp,
Float).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import apsw

from .. import catalog, plan, writes
from ..catalog import ColumnMeta, TableMeta
from ..compute import compute_rows
from ..errors import (
    AlreadyExistsError,
    NotFoundError,
    PxliteError,
    SchemaError,
    check_choice,
    check_on_error,
)
from ..ingest import INPUT_ERRORS, MediaInput, failed_input
from ..plan import Rows
from ..results import UpdateStatus
from ..types import ColumnType

if TYPE_CHECKING:
    from ..places import Places

#: The column types a primary key may use: their stored values compare exactly.
KEY_TYPES = ("Int", "String", "Bool", "Timestamp", "Float")

#: Rows looked up (and updated) per statement batch.
LOOKUP_ROWS = 2_000

#: batch_update's choices for a row whose key is not in the table.
IF_NOT_EXISTS = ("error", "ignore", "insert")


def normalize(primary_key: object) -> list[str]:
    """``primary_key=`` as a list of column names: None, one name, or a list of names."""
    if primary_key is None:
        return []
    if isinstance(primary_key, str):
        return [primary_key]
    if (isinstance(primary_key, (list, tuple)) and primary_key
            and all(isinstance(n, str) for n in primary_key)):
        if len(set(primary_key)) != len(primary_key):
            raise SchemaError(f"primary_key names a column twice: {list(primary_key)!r}")
        return list(primary_key)
    raise SchemaError("primary_key takes a column name or a list of column names, e.g. "
                      f"primary_key=['id']; got {primary_key!r}")


def key_schema(path: str, cols: list[tuple[str, ColumnType]], names: list[str]
               ) -> list[tuple[str, ColumnType]]:
    """The columns of a new table with primary key ``names``: each key column must exist and
    have a key type; it becomes Required (SQLite's unique index lets NULLs repeat)."""
    by_name = dict(cols)
    for n in names:
        if n not in by_name:
            raise NotFoundError(f"primary key column {n!r} is not a column of {path!r}; its "
                                f"columns: {', '.join(by_name) or '(none)'}")
        t = by_name[n]
        if t.name not in KEY_TYPES:
            raise SchemaError(f"column {n!r} of {path!r} is {t.name}: a primary key column must "
                              f"be one of {', '.join(KEY_TYPES)}")
    return [(n, t.with_nullable(False) if n in names else t) for n, t in cols]


def declare(db: Any, meta: TableMeta, names: list[str]) -> None:
    """Make ``names`` the primary key of a new table (inside its creating transaction)."""
    if names:
        catalog.set_primary_key(db, meta, [meta.column(n) for n in names])


def describe_key(cols: Sequence[ColumnMeta], values: Sequence[Any]) -> str:
    """``id=5`` or ``(city='Oslo', year=2020)``: a key as messages show it."""
    parts = [f"{c.name}={v!r}" for c, v in zip(cols, values, strict=True)]
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


class Tracked:
    """An iterator that remembers the last item it handed out: the row an ``executemany``
    was writing when SQLite refused it."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._it = iter(items)
        self.last: Any = None
        self.count = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self.last = next(self._it)
        self.count += 1
        return self.last


def executemany(db: Any, sql: str, params: Iterable[Any], keyed: bool,
                duplicate: Callable[[Tracked], PxliteError]) -> None:
    """``db.executemany(sql, params)``; when ``keyed`` (the statement writes a primary key), a
    row SQLite refuses on a unique constraint raises ``duplicate(tracked)``: the error that
    names the row (``tracked.last``) and its key."""
    if not keyed:
        db.executemany(sql, params)
        return
    tracked = Tracked(params)
    try:
        db.executemany(sql, tracked)
    except apsw.ConstraintError as e:
        raise duplicate(tracked) from e


def duplicate_error(meta: TableMeta, inputs: Sequence[ColumnMeta], tracked: Tracked
                    ) -> AlreadyExistsError:
    """The error for an insert SQLite refused on the primary key: names the row and its key.
    ``tracked`` handed out the parameter rows ``(rowid, v1, ...)`` in ``inputs`` order."""
    key_cols = meta.key_columns
    row = tracked.last
    pos = {c.col_id: 1 + j for j, c in enumerate(inputs)}
    values = [row[pos[c.col_id]] if row is not None and c.col_id in pos else None
              for c in key_cols]
    err = AlreadyExistsError(
        f"row {tracked.count - 1}: a row with primary key {describe_key(key_cols, values)} "
        f"already exists in table {meta.path!r} (or the rows given repeat it); nothing was "
        "inserted. To update existing rows by key, use t.batch_update(rows, "
        "if_not_exists='insert')")
    err.row = tracked.count - 1  # type: ignore[attr-defined]  # for importers: which row
    return err


# ---- updating rows by key -----------------------------------------------------------------------
class KeyedWrite:
    """What batch_update needs from the table facade: its database's places and path, the stored
    computed columns depending on given columns, the re-check of an operation, and insert()
    (for keys not yet present, ``if_not_exists='insert'``)."""

    def __init__(self, places: Places, path: str,
                 dependents: Callable[[TableMeta, list[int]], list[ColumnMeta]],
                 recheck: Callable[[TableMeta], object],
                 insert: Callable[[list[dict[str, Any]], str], UpdateStatus]) -> None:
        self.places, self.path = places, path
        self.dependents, self.recheck, self.insert = dependents, recheck, insert


def batch_update(w: KeyedWrite, rows: Iterable[dict[str, Any]], *, if_not_exists: str = "error",
                 on_error: str = "abort") -> UpdateStatus:
    """Update rows by primary key: each dict holds the key columns and the columns to set.
    The computed columns depending on what changed are recomputed; a key not in the table is
    an error, skipped or inserted (``if_not_exists``). One write operation: all or nothing."""
    t0 = time.perf_counter()
    check_choice(if_not_exists, "if_not_exists", IF_NOT_EXISTS)
    check_on_error(on_error)
    if isinstance(rows, dict):
        rows = [rows]
    meta = catalog.load_table(w.places.db, w.path)
    if not meta.primary_key:
        raise SchemaError(f"table {w.path!r} has no primary key, so rows cannot be matched by "
                          "key; create it with primary_key=[...] (or use update(values, "
                          "where=...))")
    updated = inserted = errors = 0
    with writes.operation(w.places, meta, columns=meta.columns, recheck=w.recheck) as op:
        for chunk in _chunks(_checked(meta, rows), LOOKUP_ROWS):
            found, missing = _lookup(op, meta, chunk)
            if missing and if_not_exists == "error":
                n, row = missing[0]
                raise NotFoundError(
                    f"row {n}: no row of {w.path!r} has primary key "
                    f"{describe_key(meta.key_columns, _key_of(meta, row))}; pass "
                    "if_not_exists='insert' to insert such rows or 'ignore' to skip them")
            u, e = _update_found(w, op, meta, found, on_error)
            updated, errors = updated + u, errors + e
            if missing and if_not_exists == "insert":
                status = w.insert([r for _, r in missing], on_error)
                inserted += status.num_rows
                errors += status.num_errors
    return UpdateStatus("Updated or inserted" if inserted else "Updated", updated + inserted,
                        errors, time.perf_counter() - t0)


def _checked(meta: TableMeta, rows: Iterable[Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows, numbered, each checked: a dict naming every key column (not None) and
    otherwise only input columns."""
    inputs = {c.name for c in meta.columns if not c.is_computed}
    computed = {c.name for c in meta.columns if c.is_computed}
    key_names = [c.name for c in meta.key_columns]
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SchemaError(f"row {n}: expected a dict of column values, got "
                              f"{type(row).__name__}")
        missing = [k for k in key_names if row.get(k) is None]
        if missing:
            raise SchemaError(f"row {n}: the primary key column(s) {missing} of {meta.path!r} "
                              "need a value: rows are matched by key")
        bad = row.keys() - inputs
        if bad:
            what = "computed" if bad <= computed else "not columns of the table"
            raise SchemaError(f"row {n}: {sorted(bad)} are {what} of {meta.path!r}; give the "
                              "key and the input columns to set")
        yield n, row


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key_of(meta: TableMeta, row: dict[str, Any]) -> list[Any]:
    return [row[c.name] for c in meta.key_columns]


def stored_key(meta: TableMeta, row: dict[str, Any], n: int) -> tuple[Any, ...]:
    """A row's key as SQLite stores it (Timestamps as text, Bools as 0/1); a value that is
    not of its column's type is a SchemaError naming row, column and value."""
    out = []
    for c in meta.key_columns:
        try:
            out.append(c.type.to_sql(row[c.name]))
        except INPUT_ERRORS as e:
            raise SchemaError(f"row {n}: primary key column {c.name!r} of {meta.path!r}: "
                              f"{e}") from e
    return tuple(out)


def existing_rowids(db: Any, meta: TableMeta, keys: Sequence[tuple[Any, ...]]
                    ) -> dict[tuple[Any, ...], int]:
    """Which of ``keys`` (stored form) the table holds: ``{key: rowid}``, by the primary
    key's unique index (one statement for the lot, never a scan)."""
    if not keys:
        return {}
    cols = meta.key_columns
    names = ", ".join(c.sql for c in cols)
    if len(cols) == 1:
        c = cols[0]
        sql = (f"SELECT _rowid, {names} FROM {meta.sql} WHERE {c.sql} IN "
               "(SELECT value FROM json_each(?))")
        arg = json.dumps([k[0] for k in keys])
    else:  # row values: (c1, c2) IN (the keys' elements)
        what = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(cols)))
        sql = (f"SELECT _rowid, {names} FROM {meta.sql} WHERE ({names}) IN "
               f"(SELECT {what} FROM json_each(?))")
        arg = json.dumps([list(k) for k in keys])
    return {tuple(r[1:]): r[0] for r in db.query(sql, (arg,))}


def _lookup(op: writes.Operation, meta: TableMeta, chunk: list[tuple[int, dict[str, Any]]]
            ) -> tuple[list[tuple[int, int, dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
    """Split a chunk into rows whose key exists ``(n, rowid, row)`` and rows whose key does
    not ``(n, row)``. A key given twice is one row: the later values win."""
    merged: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    for n, row in chunk:
        k = stored_key(meta, row, n)
        if k in merged:
            merged[k] = (n, {**merged[k][1], **row})
        else:
            merged[k] = (n, row)
    present = existing_rowids(op.db, meta, list(merged))
    found = [(n, present[k], row) for k, (n, row) in merged.items() if k in present]
    missing = [(n, row) for k, (n, row) in merged.items() if k not in present]
    return found, missing


def _update_found(w: KeyedWrite, op: writes.Operation, meta: TableMeta,
                  found: list[tuple[int, int, dict[str, Any]]], on_error: str) -> tuple[int, int]:
    """Set the given columns of rows found by key (grouped by which columns they set), then
    recompute what depends on them. Returns (rows updated, cell errors)."""
    db = op.db
    key_ids = set(meta.primary_key)
    groups: dict[tuple[int, ...], list[tuple[int, int, dict[str, Any]]]] = {}
    for n, rowid, row in found:
        ids = tuple(c.col_id for c in meta.columns if c.name in row and c.col_id not in key_ids)
        groups.setdefault(ids, []).append((n, rowid, row))
    media_input = MediaInput(op)
    errors = 0
    for col_ids, members in groups.items():
        cols = [meta.column_by_id(i) for i in col_ids]
        if not cols:
            continue
        rowids = [rowid for _, rowid, _ in members]
        old = _old_media(db, meta, cols, rowids)
        params = []
        for n, rowid, row in members:
            cells: list[Any] = []
            for c in cols:
                cell, failed = _cell(w.path, c, row[c.name], n, on_error, media_input)
                cells += cell
                errors += failed
            params.append([*cells, rowid])
        db.executemany(plan.update_cells(meta, cols), params)
        for c in cols:
            if c.type.is_media:
                new = {p[-1]: p[3 * cols.index(c)] for p in params}
                op.release(c.col_id, [u for rid, u in old.get(c.col_id, {}).items()
                                      if u is not None and u != new.get(rid)])
        deps = w.dependents(meta, list(col_ids))
        if deps:
            errors += compute_rows(op, deps, Rows.ids(rowids), on_error=on_error,
                                   release_old=True).num_errors
    return len(found), errors


def _cell(path: str, c: ColumnMeta, value: Any, n: int, on_error: str,
          media_input: MediaInput) -> tuple[list[Any], int]:
    """One new cell ``[value, errortype, errormsg]`` and whether it failed (under
    on_error='ignore'; 'abort' raises naming row, column and cause)."""
    try:
        if value is None:
            if not c.type.nullable:
                raise SchemaError(f"column {c.name!r} is Required")
            return [None, None, None], 0
        stored = media_input(value, c) if c.type.is_media else c.type.to_sql(value)
        return [stored, None, None], 0
    except INPUT_ERRORS as e:
        return failed_input(on_error, e, path, n, c, value), 1


def _old_media(db: Any, meta: TableMeta, cols: list[ColumnMeta], rowids: list[int]
               ) -> dict[int, dict[int, Any]]:
    """The current values of the media columns among ``cols`` for ``rowids``:
    ``{col_id: {rowid: stored reference}}`` (the files an update may release)."""
    media_cols = [c for c in cols if c.type.is_media]
    if not media_cols:
        return {}
    out: dict[int, dict[int, Any]] = {c.col_id: {} for c in media_cols}
    for r in db.query(*plan.select(meta, media_cols, Rows.ids(rowids))):
        for j, c in enumerate(media_cols):
            out[c.col_id][r[0]] = r[1 + j]
    return out
