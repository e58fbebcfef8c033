"""Making a view's rows from its base's: which base rows a ``where()`` keeps, the outputs an
iterator gives for a base row (media outputs stored once, through a write operation on the
view), and the writes that add, remove or recompute a view's rows.

Everything here runs inside a write operation on the view (``writes.Operation``): the one that
builds it (outside the write lock, then brief commits) or the one that keeps it in step with a
write on its base (inside that write's transaction). Frames and other media outputs are written
content-addressed under the view's own key space, before the rows naming them commit.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import jobs, media, plan, queryplan, storage, writes
from ..catalog import ColumnMeta
from ..compute import INLINE_ROW_S, PROBE_ROWS, compute_rows, workers
from ..errors import ComputeError, PxliteError, useful_cause
from ..exprs import Expr, RowContext, column_expr, split_conjuncts
from ..plan import Rows
from ..redact import redact
from ..types import is_pil_image
from .model import POS_COLUMN, View

#: Base rows evaluated (a where() in Python) or read at a time.
BATCH = 256


# ---- where() -------------------------------------------------------------------------------------
class Filter:
    """A view's ``where()``: the conjuncts SQLite evaluates, as a row condition, and those that
    need Python (an image's width, a UDF), evaluated on the rows SQLite keeps."""

    def __init__(self, view: View) -> None:
        self.view = view
        sql: list[str] = []
        params: list[Any] = []
        self.python: list[Expr] = []
        pred = view.predicate
        for p in split_conjuncts(pred) if pred is not None else []:
            s = p.sql()
            if s is None:
                self.python.append(p)
            else:
                sql.append(f"({s[0]})")
                params += s[1]
        self.sql = " AND ".join(sql) or "1"
        self.params = params
        self.cells = [c for _, c in queryplan.stored_cells(self.python)]

    def narrowed(self, rows: Rows) -> Rows:
        """``rows`` with the SQL part of the condition."""
        return rows if self.sql == "1" else rows.where(self.sql, self.params)

    def passing(self, db: Any, rows: Rows, resolver: media.Resolver) -> list[int]:
        """The rowids among ``rows`` of the base that the condition keeps, in order. A
        condition that fails in Python (a UDF raised) is a ComputeError naming the row."""
        base = self.view.base
        narrowed = self.narrowed(rows)
        if not self.python:
            return [r[0] for r in db.query(*plan.select(base, [], narrowed))]
        found = db.query(*plan.select(base, self.cells, narrowed, cells=True))
        keep = parallel(lambda r: r[0] if self._holds(r, resolver) else None, found,
                        len(found) > 1)
        return [k for k in keep if k is not None]

    def _holds(self, r: tuple, resolver: media.Resolver) -> bool:
        rc = _context(r, self.cells, resolver)
        try:
            return all(p.eval(rc) is True for p in self.python)
        except PxliteError:
            raise
        except Exception as e:
            raise _failed(self.view, "evaluating its where()", r[0], e) from useful_cause(e)
        finally:
            rc.close_opened()


def _context(r: tuple, cells: Sequence[ColumnMeta], resolver: media.Resolver) -> RowContext:
    """A base row read as ``_rowid, (value, errortype, errormsg)...`` for ``cells``."""
    raw = {c.col_id: r[1 + 3 * i] for i, c in enumerate(cells)}
    errors = {c.col_id: (r[2 + 3 * i], r[3 + 3 * i]) for i, c in enumerate(cells)
              if r[2 + 3 * i] is not None}
    return RowContext(raw, errors, resolver, rowid=r[0])


def _failed(view: View, doing: str, rowid: int, e: BaseException) -> ComputeError:
    return ComputeError(
        f"view {view.path!r}: {doing} failed for row {rowid} of {view.base.path!r}: "
        f"{type(e).__name__}: {redact(str(e))}; fix or delete that row of "
        f"{view.base.path!r}, then try again",
        table=view.path, row=rowid, errortype=type(e).__name__,
        retryable=bool(getattr(e, "retryable", False)))


def parallel(fn: Callable[[Any], Any], items: Sequence[Any], threads: bool) -> list[Any]:
    """``fn`` over ``items``, in order: on a thread per core when ``threads`` (decoding
    releases the GIL), a batch at a time. The first items are timed here, as a computed
    column's are (compute.INLINE_ROW_S): items that take microseconds (a condition in Python,
    a string splitter) are all done in this thread, where threads would only add a future per
    item and contend for the GIL (a filtered view of 200,000 rows spent 3 s so)."""
    if not threads or len(items) < 2:
        return [fn(x) for x in items]
    out: list[Any] = []
    for x in items[:PROBE_ROWS]:
        t0 = time.perf_counter()
        out.append(fn(x))
        if time.perf_counter() - t0 < INLINE_ROW_S:
            return out + [fn(y) for y in items[len(out):]]
    rest = items[len(out):]
    if not rest:
        return out
    with ThreadPoolExecutor(max_workers=min(workers(), len(rest)),
                            thread_name_prefix="pxlite-view") as pool:
        it = iter(rest)
        while batch := list(itertools.islice(it, BATCH)):
            try:
                out += pool.map(fn, batch)
            except PxliteError as e:  # the worker thread's frames add nothing to it
                raise e.with_traceback(None) from e.__cause__
    return out


# ---- iterator outputs ----------------------------------------------------------------------------
class Outputs:
    """Runs a view's iterator on base rows and stores what it gives: one list of stored values
    per output row (``pos`` and the stored output columns, :attr:`columns`), media outputs
    written through ``op`` (an Image encoded once: JPEG quality 90, PNG with alpha; a segment
    file copied) before any row names them."""

    def __init__(self, op: writes.Operation, view: View) -> None:
        assert view.call is not None
        self.op, self.view, self.call = op, view, view.call
        self.columns = [c for c in view.output_columns() if c.stored]
        self.cells = [c for _, c in queryplan.stored_cells([self.call.input])]
        self.prefixes = {c.col_id: op.output_prefix(c.destination)
                         for c in self.columns if c.type.is_media}
        for p in self.prefixes.values():
            op.prepare(p)

    def inputs(self, db: Any, rows: Rows) -> list[tuple]:
        """The base rows' input cells (``_rowid, (value, errortype, errormsg)...``)."""
        return db.query(*plan.select(self.view.base, self.cells, rows, cells=True))

    def remote(self, found: list[tuple]) -> bool:
        """Does one of these rows' inputs name a file elsewhere (read through the cache)?"""
        places = self.op.places
        return any(isinstance(r[1 + 3 * i], str) and not storage.is_local(
            places.resolve(r[1 + 3 * i])) for r in found
            for i, c in enumerate(self.cells) if c.type.is_media)

    def run(self, found: list[tuple]) -> list[tuple[int, list[list[Any]]]]:
        """Each base row's output rows, in rowid order; base rows run side by side (each
        decodes its own input once, front to back)."""
        resolver = media.Resolver(self.op.settings, self.op.places.media_folder)
        if not found:
            return []
        if self.remote(found):
            from ..cache import get_cache  # here, not at import: it loads diskcache

            with get_cache(self.op.settings).operation():
                return parallel(lambda r: (r[0], self._one(r, resolver)), found, True)
        return parallel(lambda r: (r[0], self._one(r, resolver)), found, True)

    def _one(self, r: tuple, resolver: media.Resolver) -> list[list[Any]]:
        rc = _context(r, self.cells, resolver)
        out: list[list[Any]] = []
        try:
            value = self.call.input.eval(rc)
            if value is None:
                return out
            with self.call.open(value) as it:
                for pos, row in enumerate(it):
                    out.append([self._stored(c, pos if c.name == POS_COLUMN else row.get(c.name))
                                for c in self.columns])
        except PxliteError as e:
            if isinstance(e, ComputeError) and e.table == self.view.path:
                raise
            raise _failed(self.view, f"{self.call!r}", r[0], e) from e
        except Exception as e:
            raise _failed(self.view, f"{self.call!r}", r[0], e) from useful_cause(e)
        finally:
            rc.close_opened()
        return out

    def _stored(self, col: ColumnMeta, v: Any) -> Any:
        if v is None:
            return None
        if not col.type.is_media:
            return col.type.to_sql(v)
        prefix = self.prefixes[col.col_id]
        if col.type.name == "Image":
            if not is_pil_image(v):
                raise TypeError(f"the iterator gave {type(v).__name__} for the Image output "
                                f"{col.name!r}")
            data, ext = media.encode_image(v, col.format)
            return self.op.places.stored(self.op.write_bytes(data, ext, col, prefix))
        path = Path(v)  # a file the iterator wrote (a segment): copied, then its own to delete
        ext = media.check_local_file(path, col.type.kind)  # type: ignore[attr-defined]
        return self.op.places.stored(self.op.upload(path, ext, col, prefix))


def insert_outputs(op: writes.Operation, view: View, produced: list[tuple[int, list[list[Any]]]],
                   columns: list[ColumnMeta]) -> list[int]:
    """Inside ``op``'s transaction: the output rows, each base row's in order; their rowids."""
    meta, db = view.meta, op.db
    start = db.query(f"SELECT coalesce(max(_rowid), 0) + 1 FROM {meta.store}")[0][0]
    names = ", ".join(["_rowid", "_base"] + [c.sql for c in columns])
    sql = (f"INSERT INTO {meta.store} ({names}) VALUES "
           f"({', '.join('?' * (len(columns) + 2))})")
    rowid = start
    params: list[list[Any]] = []
    for base_row, rows in produced:
        for values in rows:
            params.append([rowid, base_row, *values])
            rowid += 1
    if params:
        db.executemany(sql, params)
    return list(range(start, rowid))


# ---- the view's rows -----------------------------------------------------------------------------
def insert_members(op: writes.Operation, view: View, ids: Sequence[int]) -> None:
    """Inside ``op``'s transaction: a filtered view's rows for these base rows (same rowid)."""
    if ids:
        op.db.executemany(f"INSERT INTO {view.meta.store} (_rowid, _base) VALUES (?, ?)",
                          [(i, i) for i in ids])


def insert_matching(op: writes.Operation, view: View, flt: Filter, rows: Rows) -> int:
    """Inside ``op``'s transaction: a filtered view's rows for the base rows among ``rows``
    its (SQL-only) condition keeps, in one statement; how many."""
    cond, params = flt.narrowed(rows).condition()
    op.db.execute(f"INSERT INTO {view.meta.store} (_rowid, _base) SELECT _rowid, _rowid FROM "
                  f"{view.base.sql} WHERE {cond}", params)
    return op.db.changes()


def delete_rows(op: writes.Operation, view: View, rows: Rows) -> int:
    """Inside ``op``'s transaction: delete view rows (``rows`` over its data table's own
    columns: ``_rowid``, ``_base``); the files they named are released (deleted after the
    commit unless another row names them)."""
    db, meta = op.db, view.meta
    cond, params = rows.condition()
    # from the data table: their base rows may be gone already (a delete on the base)
    named = {c.col_id: [r[0] for r in db.query(
        f"SELECT DISTINCT {c.sql} FROM {meta.store} WHERE ({cond}) AND {c.sql} IS NOT NULL",
        params)] for c in meta.media_columns if c.stored}
    db.execute(*plan.delete(meta, rows))
    n = db.changes()
    for col_id, uris in named.items():
        op.release(col_id, uris)
    return n


def of_base_rows(ids: Iterable[int]) -> Rows:
    """The view rows that come from these base rows."""
    wanted = sorted(set(ids))
    return Rows.matching("_base IN (SELECT value FROM json_each(?))", [json.dumps(wanted)])


def compute_new(op: writes.Operation, view: View, rowids: Sequence[int]) -> int:
    """Inside ``op``'s transaction: the view's stored computed columns for new rows, those
    still being added too (a filtered view's new row may have a rowid the column's job has
    passed already); returns the number of cell errors. A column added with
    ``on_error='abort'`` makes a failure the write's error."""
    cols = view.computed(pending=True)
    if not cols or not rowids:
        return 0
    op.prepare_for(cols)
    return compute_rows(op, cols, Rows.ids(rowids), on_error=_on_error(cols)).num_errors


def recompute(op: writes.Operation, view: View, changed: set[int], rows: Rows) -> int:
    """Inside ``op``'s transaction: the view's stored computed columns that read ``changed``
    (base columns whose values changed), for ``rows``; the files they replace are released."""
    deps = [d for d in jobs.dependents(view.meta, *changed) if d.base_table is None and d.stored]
    if not deps:
        return 0
    op.prepare_for(deps)
    return compute_rows(op, deps, rows, on_error=_on_error(deps), release_old=True).num_errors


def _on_error(cols: list[ColumnMeta]) -> str:
    return "abort" if any(c.on_error == "abort" for c in cols) else "ignore"


def reads(view: View) -> set[int]:
    """The base columns the view's stored computed columns read (directly or through others)."""
    meta = view.meta
    own = {c.col_id for c in meta.own_columns}
    found: set[int] = set()
    for c in view.computed(pending=True):
        found |= column_expr(meta, c).columns() - own
    return found

