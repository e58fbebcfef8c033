"""Which rows, and the SQL that reads or writes them: plans to inspect without running them.

:class:`Rows` is the one way pxlite says "which rows of a table": a SQL predicate with its
parameters, optionally narrowed to an explicit set of rowids (when Python had to decide, for a
condition SQLite cannot evaluate). The statement builders below return ``(sql, params)`` and run
nothing, so a test can look at a plan (as sqlite-utils' ``*_sql`` twins do). Every identifier in
them comes from integer ids (``t_<id>``, ``c<id>``): no user string reaches SQL text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .catalog import ColumnMeta, TableMeta

#: A statement and its parameters, ready for ``Database.execute``.
Statement = tuple[str, list[Any]]


class Rows(NamedTuple):
    """Which rows of a table: ``predicate`` (SQL over the table's columns, with ``params``),
    and, when not None, only the rows whose ``_rowid`` is in ``rowids``. (A NamedTuple: as
    immutable as a frozen dataclass, and cheaper to define at import.)"""

    predicate: str = "1"
    params: tuple[Any, ...] = ()
    rowids: tuple[int, ...] | None = None

    @classmethod
    def all(cls) -> Rows:
        return ALL

    @classmethod
    def matching(cls, predicate: str, params: Sequence[Any] = ()) -> Rows:
        """The rows a SQL condition selects (an expression's ``sql()``)."""
        return cls(predicate, tuple(params))

    @classmethod
    def ids(cls, rowids: Iterable[int]) -> Rows:
        """Exactly these rows (those that still exist)."""
        return cls(rowids=tuple(rowids))

    def where(self, predicate: str, params: Sequence[Any] = ()) -> Rows:
        """These rows, narrowed by one more SQL condition."""
        if self.predicate == "1":
            return Rows(predicate, tuple(params), self.rowids)
        return Rows(f"({self.predicate}) AND ({predicate})", self.params + tuple(params),
                    self.rowids)

    def chunks(self, size: int) -> Iterable[Rows]:
        """An explicit rowid set split into parts of at most ``size`` rows (for batches)."""
        assert self.rowids is not None
        for i in range(0, len(self.rowids), size):
            yield Rows(self.predicate, self.params, self.rowids[i:i + size])

    def condition(self) -> Statement:
        """The SQL condition (for a WHERE clause) and its parameters."""
        if self.rowids is None:
            return self.predicate, list(self.params)
        ids = "_rowid IN (SELECT value FROM json_each(?))"
        if self.predicate == "1":
            return ids, [json.dumps(list(self.rowids))]
        return f"{ids} AND ({self.predicate})", [json.dumps(list(self.rowids)), *self.params]


#: Every row of the table (the default "which rows"; a Rows is immutable, so one is shared).
ALL = Rows()


# ---- cells ---------------------------------------------------------------------------------------
def cell_columns(col: ColumnMeta) -> str:
    """The three SQL columns of one cell: its value, errortype and errormsg."""
    return f"{col.sql}, {col.sql_et}, {col.sql_em}"


def cell_sets(cols: Iterable[ColumnMeta]) -> str:
    """``SET`` assignments for cells: each column's value, errortype and errormsg."""
    return ", ".join(f"{c.sql} = ?, {c.sql_et} = ?, {c.sql_em} = ?" for c in cols)


def update_cells(meta: TableMeta, cols: Sequence[ColumnMeta]) -> str:
    """One row's cells: parameters ``[v1, et1, em1, v2, ..., rowid]`` (for executemany)."""
    return f"UPDATE {meta.store} SET {cell_sets(cols)} WHERE _rowid = ?"


def update_cells_unchanged(meta: TableMeta, cols: Sequence[ColumnMeta],
                           inputs: Sequence[ColumnMeta]) -> str:
    """:func:`update_cells`, only while the row's ``inputs`` still hold the values given after
    the rowid (parameters ``[v1, et1, em1, ..., rowid, input1, ...]``): a long operation's cell
    is not written over a row another writer changed meanwhile. A view's inputs may be its
    bases' columns, read through its SQL view."""
    sql = update_cells(meta, cols)
    if not inputs:
        return sql
    if meta.sql == meta.store:
        return sql + " AND " + " AND ".join(f"{c.sql} IS ?" for c in inputs)
    same = " AND ".join(f"g.{c.sql} IS ?" for c in inputs)
    return (sql + f" AND EXISTS (SELECT 1 FROM {meta.sql} AS g WHERE g._rowid = "
            f"{meta.store}._rowid AND {same})")


def set_cell_errors(meta: TableMeta, col: ColumnMeta) -> str:
    """One cell's errortype and errormsg: parameters ``[errortype, errormsg, rowid]``."""
    return f"UPDATE {meta.store} SET {col.sql_et} = ?, {col.sql_em} = ? WHERE _rowid = ?"


# ---- statements ------------------------------------------------------------------------------
def insert(meta: TableMeta, cols: Sequence[ColumnMeta],
           cells: Sequence[ColumnMeta] = ()) -> str:
    """A row with an explicit ``_rowid`` and the given columns (for executemany), then the
    cells of ``cells`` (value, errortype, errormsg each): parameters
    ``[rowid, c1, ..., v1, et1, em1, ...]``. A new row's computed cells go in with it, in one
    write of its page, rather than by an UPDATE after it."""
    names = ", ".join(["_rowid"] + [c.sql for c in cols] + [cell_columns(c) for c in cells])
    count = 1 + len(cols) + 3 * len(cells)
    return f"INSERT INTO {meta.store} ({names}) VALUES ({', '.join('?' * count)})"


def select(meta: TableMeta, cols: Sequence[ColumnMeta], rows: Rows, *, cells: bool = False,
           after: int | None = None, limit: int | None = None,
           errors_of: Sequence[ColumnMeta] = ()) -> Statement:
    """``_rowid`` and the given columns (with errortype/errormsg when ``cells``) of ``rows``,
    then the errortype and errormsg of ``errors_of``, in rowid order; ``after``: only rowids
    above it (keyset batches); ``limit``: at most that."""
    cond, params = rows.condition()
    what = ", ".join(["_rowid"] + [cell_columns(c) if cells else c.sql for c in cols]
                     + [f"{c.sql_et}, {c.sql_em}" for c in errors_of])
    if after is not None:
        cond, params = f"_rowid > ? AND ({cond})", [after, *params]
    sql = f"SELECT {what} FROM {meta.sql} WHERE {cond} ORDER BY _rowid"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    return sql, params


def distinct_values(meta: TableMeta, col: ColumnMeta, rows: Rows = ALL) -> Statement:
    """The distinct non-NULL values of one column among ``rows`` (e.g. the files they name)."""
    cond, params = rows.condition()
    return (f"SELECT DISTINCT {col.sql} FROM {meta.sql} WHERE ({cond}) AND {col.sql} IS NOT NULL",
            params)


def any_file_under(meta: TableMeta, col: ColumnMeta, prefix: str) -> Statement:
    """One row, if any, whose ``col`` names a file under ``prefix`` (stored form): does the
    column have files there?"""
    return (f"SELECT 1 FROM {meta.sql} WHERE substr({col.sql}, 1, ?) = ? LIMIT 1",
            [len(prefix), prefix])


def next_rowid(meta: TableMeta) -> str:
    """The first rowid of rows inserted now: above every rowid the table has now and every one
    a kept version gave out (pxlite/versions.py: a rowid is never reused, so a row above a
    version's high-water mark did not exist at that version)."""
    return (f"SELECT max(coalesce((SELECT max(_rowid) FROM {meta.sql}), 0), coalesce((SELECT "
            f"high_water FROM px_versions WHERE table_id = {int(meta.id)} ORDER BY version DESC "
            "LIMIT 1), 0)) + 1")


def count(meta: TableMeta, rows: Rows = ALL) -> Statement:
    cond, params = rows.condition()
    return f"SELECT count(*) FROM {meta.sql} WHERE {cond}", params


def delete(meta: TableMeta, rows: Rows) -> Statement:
    cond, params = rows.condition()
    return f"DELETE FROM {meta.store} WHERE {cond}", params


def first_local_file(meta: TableMeta, cols: Sequence[ColumnMeta], rows: Rows = ALL
                     ) -> Statement:
    """``_rowid`` and the values of ``cols`` of one row among ``rows`` where one of ``cols``
    names a local file (a ``file:`` URI, or ``media:`` in the database's own media folder):
    what a cluster on other machines could not read."""
    where_sql = " OR ".join(f"{c.sql} LIKE 'file:%' OR {c.sql} LIKE 'media:%'" for c in cols)
    cond, params = rows.condition()
    names = ", ".join(c.sql for c in cols)
    return (f"SELECT _rowid, {names} FROM {meta.sql} WHERE ({cond}) AND ({where_sql}) LIMIT 1",
            params)
