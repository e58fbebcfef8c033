"""The ``where()`` of a similarity search, evaluated by numpy over columns held in memory.

A filtered search first needs the rowids its ``where()`` selects. SQLite finds them by reading
every row's values (from a wide table's scan index, :mod:`pxlite.scanindex`): about 20 ns a
row, 2-3 ms for 100,000 rows, as long as the search that follows. numpy compares a column held
in memory in a tenth of that. So, as the index's vectors are (:mod:`pxlite.vecsearch`), the
columns a search's conditions name are read once per connection and then kept current from
the index's change log (every insert, update and delete of the table appends its rowid there,
in the writer's transaction): after a change only the rows it touched are read again.

Only what numpy evaluates exactly as SQLite does is taken here: comparisons (``==``, ``!=``,
``<``, ``<=``, ``>``, ``>=``) of an Int, Float, Bool or String column of the searched table
with a literal, ``isin`` of such a column, ``== None`` / ``!= None``, and ``&``, ``|``, ``~`` of
those, with SQL's three-valued logic (a NULL cell makes a comparison unknown, and an unknown row
is not selected). Literals are converted by the column's type as the SQL path binds them;
numbers compare exactly (int64 with int64, float64 with float64); a String column is held as
codes into its sorted distinct values (at most ``_MAX_DISTINCT``), and Python orders strings by
code point as SQLite's BINARY collation orders their UTF-8 bytes, so a comparison is a range of
codes. Anything else (another table, an expression or function, a Timestamp, Date or Json
column, a view or an old version, a write in progress) returns None, and the caller asks
SQLite.
"""

from __future__ import annotations

import bisect
import json
import threading
import weakref
from typing import TYPE_CHECKING, Any

from . import catalog, vecsearch
from .catalog import ColumnMeta, TableMeta
from .errors import SchemaError
from .exprs import And, ColumnRef, Compare, Expr, IsIn, IsNull, Literal, Not, Or
from .vectors import numpy

if TYPE_CHECKING:
    from .db import Database
    from .queryplan import Clauses

#: The column types evaluated here, and the numpy type of their values (a String's: codes).
_KINDS = {"Int": "int64", "Bool": "int64", "Float": "float64", "String": "int64"}
#: A String column with more distinct values than this is left to SQLite.
_MAX_DISTINCT = 65_536
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class _Columns:
    """One table's rowids (sorted) and, for each column read so far (by SQL name), its values
    and which are not NULL, as of change-log entry ``seq``."""

    def __init__(self, rowids: Any, seq: int, schema: int) -> None:
        self.rowids, self.seq, self.schema = rowids, seq, schema
        self.values: dict[str, tuple[Any, Any]] = {}
        self.meta: dict[str, ColumnMeta] = {}
        #: A String column's distinct values, sorted: its codes index this list.
        self.strings: dict[str, list[str]] = {}


_CACHES: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], _Columns]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def matching(db: Database, clauses: Clauses, index_id: int) -> Any:
    """The sorted rowids (int64 array) of the rows the where() of ``clauses`` selects, or None
    when it is not one this module evaluates (see the module docstring). ``index_id``: the
    embedding index the search uses (its change log ``x_<id>`` keeps the columns current).
    Inside the caller's read transaction."""
    meta = clauses.tables[0].meta
    if clauses.where is None or len(clauses.tables) != 1 or clauses.sample is not None or \
            meta.sql != meta.store or db.in_write_transaction():
        return None
    needed: dict[str, ColumnMeta] = {}
    if not _plan(clauses.where, meta, needed):
        return None
    cols = _columns(db, meta, catalog.vector_log_of(index_id), needed)
    if cols is None:
        return None
    true, _ = _eval(numpy(), clauses.where, cols)
    return cols.rowids[true]


def _column(e: Expr, meta: TableMeta) -> ColumnMeta | None:
    if not isinstance(e, ColumnRef) or e.table.id != meta.id:
        return None
    c = e.col
    if c.type.name not in _KINDS or not c.stored or c.pending or c.base_table is not None:
        return None
    return c


def _literal(col: ColumnMeta, value: Any) -> Any:
    """The value a literal is compared as (the column type's conversion, as the SQL path binds
    it); None when it cannot be."""
    if value is None:
        return None
    try:
        return col.type.to_sql(value)
    except SchemaError:
        return None


def _plan(e: Expr, meta: TableMeta, needed: dict[str, ColumnMeta]) -> bool:
    """Can ``e`` be evaluated here? Collects the columns it reads into ``needed``."""
    if isinstance(e, (And, Or)):
        return _plan(e.left, meta, needed) and _plan(e.right, meta, needed)
    if isinstance(e, Not):
        return _plan(e.arg, meta, needed)
    if isinstance(e, IsNull):
        col = _column(e.arg, meta)
    elif isinstance(e, IsIn):
        col = _column(e.arg, meta)
        if col is not None and any(_literal(col, v) is None for v in e.values):
            return False
    elif isinstance(e, Compare):
        ref, lit = (e.left, e.right) if isinstance(e.right, Literal) else (e.right, e.left)
        col = _column(ref, meta) if isinstance(lit, Literal) else None
        if col is not None and _literal(col, lit.value) is None:
            return False
    else:
        return False
    if col is None:
        return False
    needed[col.sql] = col
    return True


def _eval(np: Any, e: Expr, cols: _Columns) -> tuple[Any, Any]:
    """``e`` over every row: (where it is true, where it is false); neither: unknown (NULL)."""
    if isinstance(e, And):
        (t1, f1), (t2, f2) = _eval(np, e.left, cols), _eval(np, e.right, cols)
        return t1 & t2, f1 | f2
    if isinstance(e, Or):
        (t1, f1), (t2, f2) = _eval(np, e.left, cols), _eval(np, e.right, cols)
        return t1 | t2, f1 & f2
    if isinstance(e, Not):
        t, f = _eval(np, e.arg, cols)
        return f, t
    if isinstance(e, IsNull):
        _, valid = cols.values[e.arg.col.sql]
        return ~valid, valid.copy()
    if isinstance(e, IsIn):
        col = e.arg.col
        values, valid = cols.values[col.sql]
        wanted = [_literal(col, v) for v in e.values]
        if not wanted:  # SQL's (0): false, for NULL cells too
            return np.zeros(len(valid), bool), np.ones(len(valid), bool)
        strings = cols.strings.get(col.sql)
        if strings is not None:  # the codes of the values present
            wanted = [i for i in (_code(strings, v) for v in wanted) if i is not None]
        hit = valid & np.isin(values, np.array(wanted, dtype=values.dtype))
        return hit, valid & ~hit
    assert isinstance(e, Compare)
    ref: Expr = e.left
    lit: Expr = e.right
    op = e.op
    if not isinstance(lit, Literal):
        ref, lit, op = e.right, e.left, _FLIP[e.op]
    col = ref.col
    values, valid = cols.values[col.sql]
    v = _literal(col, lit.value)
    strings = cols.strings.get(col.sql)
    if strings is not None:  # the codes of the values equal to v are [first, after)
        first, after = bisect.bisect_left(strings, v), bisect.bisect_right(strings, v)
        res = {"==": (values >= first) & (values < after),
               "!=": (values < first) | (values >= after), "<": values < first,
               "<=": values < after, ">": values >= after, ">=": values >= first}[op]
        return valid & res, valid & ~res
    with np.errstate(invalid="ignore"):
        res = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
               ">": np.greater, ">=": np.greater_equal}[op](values, v)
    return valid & res, valid & ~res


def _code(strings: list[str], v: str) -> int | None:
    """The code of ``v`` in a sorted list of distinct strings (None: not there)."""
    i = bisect.bisect_left(strings, v)
    return i if i < len(strings) and strings[i] == v else None


def _read(np: Any, col: ColumnMeta, rows: list[tuple[Any, ...]], i: int
          ) -> tuple[Any, Any, list[str] | None] | None:
    """Column ``i`` of ``rows`` as (values, not-NULL mask, a String's sorted distinct values,
    which its values are codes into); None when a cell is not of the column's stored type, or
    a String has too many distinct values (then SQLite decides)."""
    kind = _KINDS[col.type.name]
    want = {"Float": float, "String": str}.get(col.type.name, int)
    cells = [r[i] for r in rows]
    if any(c is not None and type(c) is not want for c in cells):
        return None
    valid = np.fromiter((c is not None for c in cells), dtype=bool, count=len(cells))
    if want is not str:
        values = np.fromiter((0 if c is None else c for c in cells), dtype=kind,
                             count=len(cells))
        return values, valid, None
    strings = sorted({c for c in cells if c is not None})
    if len(strings) > _MAX_DISTINCT:
        return None
    at = {v: k for k, v in enumerate(strings)}
    codes = np.fromiter((-1 if c is None else at[c] for c in cells), dtype=np.int64,
                        count=len(cells))
    return codes, valid, strings


def _columns(db: Database, meta: TableMeta, log: str, needed: dict[str, ColumnMeta]
             ) -> _Columns | None:
    """The table's rowids and the ``needed`` columns, current with the read transaction."""
    np = numpy()
    now = vecsearch.log_mark(db, log)
    key = (meta.store, log)
    with _LOCK:
        per_db = _CACHES.setdefault(db, {})
        cached = per_db.get(key)
        if cached is not None:
            changed = vecsearch.changed_since(db, log, cached.seq, cached.schema, now,
                                              len(cached.rowids))
            if changed is None or (changed and not _apply(db, np, meta, cached, changed)):
                cached = None
            else:
                cached.seq = now.hi
        if cached is None:
            rowids = np.fromiter((r[0] for r in db.query(
                f"SELECT _rowid FROM {meta.store} ORDER BY _rowid")), dtype=np.int64)
            cached = _Columns(rowids, now.hi, now.schema)
        for sql_name, col in needed.items():
            if sql_name in cached.values:
                continue
            rows = db.query(f"SELECT _rowid, {col.sql} FROM {meta.store} ORDER BY _rowid")
            got = _read(np, col, rows, 1)
            if got is None or len(rows) != len(cached.rowids) or not np.array_equal(
                    np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                    cached.rowids):
                per_db.pop(key, None)
                return None
            cached.values[sql_name], cached.meta[sql_name] = got[:2], col
            if got[2] is not None:
                cached.strings[sql_name] = got[2]
        per_db[key] = cached
        return cached


def _apply(db: Database, np: Any, meta: TableMeta, cols: _Columns, changed: list[int]) -> bool:
    """Read the ``changed`` rows (gone, changed or new) into ``cols``; False, with ``cols``
    untouched, when that cannot be done (a cell of another type, too many distinct strings)."""
    ids_changed = np.array(sorted(changed), dtype=np.int64)
    names = list(cols.values)
    what = ", ".join(["_rowid", *names])
    rows = db.query(f"SELECT {what} FROM {meta.store} WHERE _rowid IN "
                    "(SELECT value FROM json_each(?)) ORDER BY _rowid",
                    (json.dumps(ids_changed.tolist()),))
    keep = ~np.isin(cols.rowids, ids_changed)
    ids = np.concatenate([cols.rowids[keep], np.fromiter(
        (r[0] for r in rows), dtype=np.int64, count=len(rows))])
    order = np.argsort(ids, kind="stable")
    values: dict[str, tuple[Any, Any]] = {}
    strings: dict[str, list[str]] = {}
    for i, name in enumerate(names, start=1):
        got = _read(np, cols.meta[name], rows, i)
        if got is None:
            return False
        v, ok, new_strings = got
        old_v, old_ok = cols.values[name]
        old_v = old_v[keep]
        if new_strings is not None:  # both sides as codes into the union of their values
            merged = _merged(np, cols.strings[name], new_strings)
            if merged is None:
                return False
            strings[name], old_map, new_map = merged
            old_v, v = old_map[old_v], new_map[v]
        values[name] = (np.concatenate([old_v, v])[order],
                        np.concatenate([old_ok[keep], ok])[order])
    cols.rowids = ids[order]
    cols.values.update(values)
    cols.strings.update(strings)
    return True


def _merged(np: Any, old: list[str], new: list[str]) -> tuple[list[str], Any, Any] | None:
    """The sorted union of two sorted lists of distinct strings, and for each list the array
    mapping its codes to the union's (index -1, a NULL, maps to -1); None past _MAX_DISTINCT."""
    union = old if set(new) <= set(old) else sorted(set(old) | set(new))
    if len(union) > _MAX_DISTINCT:
        return None
    at = {v: k for k, v in enumerate(union)}
    old_map = np.array([*range(len(old)), -1] if union is old else [at[v] for v in old] + [-1],
                       dtype=np.int64)
    new_map = np.array([at[v] for v in new] + [-1], dtype=np.int64)
    return union, old_map, new_map
