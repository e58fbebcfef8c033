"""Tabular sources into tables: a new table whose schema is inferred from the source
(``create_table(path, source=...)``), or an existing one (rows inserted, or upserted by primary
key with ``on_conflict=``).

An import is one write transaction, filled batch by batch through the table's own insert path
(and batch_update for upserts): memory stays bounded by a batch, and a failure (a value that
does not fit its column, a duplicate key) leaves nothing behind: no table, no rows. Readers see
the table as it was until the import commits; other writers wait for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import apsw

from .. import catalog, plan, types, writes
from ..catalog import MAX_NAME_LENGTH
from ..errors import (
    AlreadyExistsError,
    ComputeError,
    NotFoundError,
    SchemaError,
    check_choice,
    check_on_error,
)
from ..progress import bar as progress_bar
from ..results import UpdateStatus
from ..types import ColumnType
from . import keys
from .readers import open_source
from .sources import Source, Widen

if TYPE_CHECKING:
    from ..connection import Connection
    from ..table import Table

#: What an import into a table with a primary key does with a row whose key is there already:
#: 'error' (nothing is imported), 'ignore' (the row is skipped), 'update' (the row is updated,
#: its dependents recomputed: re-importing an edited file updates rather than duplicates).
ON_CONFLICT = ("error", "ignore", "update")

_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]+")


def column_names(raw: list[str], check: Callable[[str], object]) -> dict[str, str]:
    """A usable column name for each source column name: characters other than ASCII letters,
    digits and ``_`` become ``_``, a leading digit gets ``c_``, a name ``check`` refuses (a
    Table method such as ``count`` or ``select``) gets a trailing ``_``, and repeats a number."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in raw:
        base = _NOT_IDENT.sub("_", name).strip("_") or "column"
        if base[0].isdigit():
            base = "c_" + base
        base = base[:MAX_NAME_LENGTH - 4]
        if not _usable(base, check):
            base += "_"
        candidate, k = base, 2
        while candidate in used or not _usable(candidate, check):
            candidate, k = f"{base}_{k}", k + 1
        used.add(candidate)
        out[name] = candidate
    return out


def _usable(name: str, check: Callable[[str], object]) -> bool:
    try:
        check(name)
    except SchemaError:
        return False
    return True


def _overrides(src: Source, schema_overrides: dict[str, Any] | None) -> dict[str, ColumnType]:
    """``schema_overrides`` keyed by source column name, as ColumnTypes."""
    out: dict[str, ColumnType] = {}
    for name, t in (schema_overrides or {}).items():
        if name not in src.names:
            raise NotFoundError(f"schema_overrides names {name!r}, which is not a column of "
                                f"{src.label}; its columns: {', '.join(src.names)}")
        out[name] = types.as_type(t)
    return out


def create_from_source(conn: Connection, path: str, source: Any, *, source_format: str | None,
                       schema_overrides: dict[str, Any] | None, primary_key: Any,
                       if_exists: str, on_error: str, extra_args: dict[str, Any] | None,
                       check_name: Callable[[str], object],
                       versioning: dict[str, Any] | None = None) -> Table:
    """``create_table(path, source=...)``: a new table with the source's columns (names made
    usable, types inferred from every value or given by ``schema_overrides``), filled with its
    rows, in one transaction. ``versioning``: create_table's versioned= and retention
    options, as given."""
    check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
    check_on_error(on_error)
    if if_exists == "ignore" and catalog.path_kind(conn.db, catalog.check_path(path)) == "table":
        return conn.get_table(path)
    src = open_source(source, source_format, dict(extra_args or {}))
    overrides = _overrides(src, schema_overrides)
    names = column_names(src.names, check_name)
    key = [names.get(k, k) for k in keys.normalize(primary_key)]
    src.widening = True
    for _ in range(3 * len(src.names) + 1):  # each column widens at most twice
        schema = {names[n]: overrides.get(n) or src.types[n] or types.String for n in src.names}
        read_as = {n: schema[names[n]] for n in src.names}
        try:
            with conn.db.transaction():
                t = conn.create_table(path, schema, if_exists=if_exists, primary_key=key or None,
                                      **(versioning or {}))
                _load(conn, t, src, names, read_as, "error", on_error)
            return t
        except Widen as w:  # rolled back: no table, no rows; again with the column widened
            src.widen(w.column)
    raise AssertionError("internal error: a column kept widening")


def import_into(conn: Connection, t: Table, source: Any, *, source_format: str | None,
                schema_overrides: dict[str, Any] | None, on_conflict: str, on_error: str,
                extra_args: dict[str, Any] | None) -> Any:
    """Import a source into the existing table ``t``: its columns go to the table's input
    columns of the same name (or the same name made usable); ``on_conflict`` says what a row
    whose primary key is present does. One transaction. Returns the UpdateStatus."""
    check_choice(on_conflict, "on_conflict", ON_CONFLICT)
    check_on_error(on_error)
    meta = catalog.load_table(conn.db, t._path)
    if on_conflict != "error" and not meta.primary_key:
        raise SchemaError(f"on_conflict={on_conflict!r} matches rows by primary key, and table "
                          f"{t._path!r} has none; import with on_conflict='error' (the default)")
    src = open_source(source, source_format, dict(extra_args or {}))
    overrides = _overrides(src, schema_overrides)
    inputs = {c.name: c for c in meta.columns if not c.is_computed}
    computed = {c.name for c in meta.columns if c.is_computed}
    names: dict[str, str] = {}
    unknown = []
    for n in src.names:
        # the name as create_table(source=) would have made it ('count' -> 'count_' too)
        made = column_names([n], lambda _: None)[n]
        target = next((c for c in (n, made, made + "_") if c in inputs), None)
        if target is None:
            unknown.append(n)
        else:
            names[n] = target
    if unknown:
        what = "computed columns" if set(unknown) <= computed else "not input columns"
        raise SchemaError(f"{src.label}: column(s) {unknown} are {what} of table {t._path!r} "
                          f"(its input columns: {', '.join(inputs)}); remove or rename them")
    read_as = {n: overrides.get(n) or inputs[names[n]].type for n in src.names}
    with conn.db.transaction():
        return _load(conn, t, src, names, read_as, on_conflict, on_error)


def _load(conn: Connection, t: Table, src: Source, names: dict[str, str],
          read_as: dict[str, ColumnType], on_conflict: str, on_error: str) -> Any:
    """Every batch of ``src`` into ``t`` (inside the caller's transaction)."""
    meta = catalog.load_table(conn.db, t._path)
    cols = [names[n] for n in src.names]
    targets = [meta.column(n) for n in cols]
    required = [j for j, c in enumerate(targets) if not c.type.nullable]

    def check(first: int, columns: list[list[Any]]) -> None:
        for j in required:  # before SQLite sees them: name the row
            if None in columns[j]:
                n = first + columns[j].index(None)
                key = " (part of the primary key)" if targets[j].col_id in meta.primary_key else ""
                raise SchemaError(f"{src.where(n)}: column {src.names[j]!r} is empty, but "
                                  f"{t._path}.{cols[j]} is Required{key}")

    total = UpdateStatus("Updated or inserted" if on_conflict == "update" else "Inserted", 0)
    # Values pyarrow already converted to their stored form go straight to SQLite when no
    # computed column needs computing, no media value needs checking or storing and no key
    # needs matching (insert() would convert each value again, in Python).
    direct = (src.stores and on_conflict == "error" and not any(c.type.is_media for c in targets)
              and not any(c.is_computed and c.stored for c in meta.columns))
    bar = progress_bar(lambda: None, f"{t._name}: import", conn.settings(), unit="row")
    try:
        if direct:
            total.num_rows = _load_stored(conn, meta, targets, src, read_as, check, bar)
            return total
        for first, columns in src.batches(read_as):
            check(first, columns)
            rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*columns, strict=True)]
            status = _write(conn, t, meta, rows, src, names, first, on_conflict, on_error)
            total.num_rows += status.num_rows
            total.num_errors += status.num_errors
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
    return total


def _load_stored(conn: Connection, meta: Any, targets: list[Any], src: Source,
                 read_as: dict[str, ColumnType], check: Callable[[int, list[list[Any]]], None],
                 bar: Any) -> int:
    """The stored-form batches of ``src``, as insert()'s plain path writes rows: executemany
    in one operation (one re-check, one savepoint for the lot); a repeated primary key names
    its row. Returns the number of rows."""
    db = conn.db
    sql = plan.insert(meta, targets)
    done = 0
    with writes.operation(conn.places, meta, kind="insert", capture="new_rows",
                          recheck=lambda m: writes.current_table(conn.db, m)):
        base = db.query(f"SELECT coalesce(max(_rowid), 0) + 1 FROM {meta.sql}")[0][0]
        for first, columns in src.stored_batches(read_as):
            check(first, columns)
            n = len(columns[0]) if columns else 0
            params = zip(range(base, base + n), *columns, strict=True)
            if not meta.primary_key:
                db.executemany(sql, params)
            else:
                tracked = keys.Tracked(params)
                try:
                    db.executemany(sql, tracked)
                except apsw.ConstraintError as e:
                    dup = keys.duplicate_error(meta, targets, tracked)
                    raise AlreadyExistsError(
                        f"{src.where(first + tracked.count - 1)}: {dup}; or import with "
                        "on_conflict='update' or 'ignore'") from e
            base, done = base + n, done + n
            if bar is not None:
                bar.update(n)
    return done


def _write(conn: Connection, t: Table, meta: Any, rows: list[dict[str, Any]], src: Source,
           names: dict[str, str], first: int, on_conflict: str, on_error: str) -> Any:
    """One batch: inserted, or upserted; an error names the source's row and column."""
    try:
        if on_conflict == "update":
            return t.batch_update(rows, if_not_exists="insert", on_error=on_error)
        if on_conflict == "ignore":
            rows = _new_rows(conn, meta, rows)
        return t.insert(rows, on_error=on_error)
    except ComputeError as e:
        if e.row is None:
            raise
        column = next((n for n, c in names.items() if c == e.column), e.column)
        cause = e.__cause__ if e.__cause__ is not None else e
        raise SchemaError(f"{src.where(first + e.row)}, column {column!r}: {cause}") from e
    except AlreadyExistsError as e:
        row = getattr(e, "row", None)
        if row is None:
            raise
        raise AlreadyExistsError(f"{src.where(first + row)}: {e}; or import with "
                                 "on_conflict='update' or 'ignore'") from e


def _new_rows(conn: Connection, meta: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose primary key is not in the table yet (the first of repeats)."""
    seen: set[tuple[Any, ...]] = set()
    stored = []
    for n, r in enumerate(rows):
        k = keys.stored_key(meta, r, n)
        stored.append(k)
    present = keys.existing_rowids(conn.db, meta, list(set(stored)))
    out = []
    for r, k in zip(rows, stored, strict=True):
        if k not in present and k not in seen:
            seen.add(k)
            out.append(r)
    return out
