"""The executor for computed columns.

Rows stream through in batches ordered by rowid (memory stays bounded however large the table
is); each row's cells are computed in a thread pool sized to the cores (Pillow releases the GIL
while decoding, transforming and encoding, so threads scale); media results are encoded and
written to their destination *before* the batch's cells are written; a whole operation runs in
one transaction so ``on_error='abort'`` can roll it back and delete the files it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from . import catalog
from .catalog import ColumnMeta, TableMeta
from .errors import ComputeError, PxliteError, SchemaError
from .exprs import Expr, RowContext, from_json
from .results import UpdateStatus

if TYPE_CHECKING:
    from .config import Settings
    from .connection import Connection
    from .table import FileOp, Table

BATCH_ROWS = 256
#: Threads that download inputs and store outputs: network waits, not CPU, so more than cores.
IO_THREADS = 16


def workers() -> int:
    """Threads for compute: one per core (the machines this targets have few)."""
    return max(1, os.cpu_count() or 1)


class _Target:
    """One computed column being filled: its expression, destination and format."""

    def __init__(self, meta: TableMeta, col: ColumnMeta, op: FileOp):
        assert col.expr is not None
        self.col = col
        self.expr = from_json(json.loads(col.expr), meta, col.type)
        self.is_media = col.type.is_media
        self.prefix = op.output_prefix(col.destination) if self.is_media else None
        # A local write is quick and CPU-bound: done in the compute thread. Network stores go
        # to the I/O pool so compute threads never wait on the network.
        self.local = self.prefix is not None and self.prefix.startswith("file://")


def _describe_inputs(raw: dict[int, Any], meta: TableMeta, expr: Expr) -> str:
    parts = []
    for cid in sorted(expr.columns()):
        try:
            c = meta.column_by_id(cid)
        except PxliteError:
            continue
        v = raw.get(cid)
        if not c.is_computed or c.type.is_media:
            parts.append(f"{c.name}={str(v)[:80]!r}")
    return ", ".join(parts)


def _abort_error(t: _Target, raw: dict[int, Any], rowid: int, meta: TableMeta,
                 e: BaseException) -> ComputeError:
    inputs = _describe_inputs(raw, meta, t.expr)
    return ComputeError(
        f"computing column {t.col.name!r} of {meta.path!r} failed for row {rowid} "
        f"({inputs}): {type(e).__name__}: {e}",
        table=meta.path, row=rowid, column=t.col.name, value=inputs, errortype=type(e).__name__,
        retryable=bool(getattr(e, "retryable", False)),
    )


def _compute_row(rc: RowContext, rowid: int, targets: list[_Target], meta: TableMeta,
                 op: FileOp, on_error: str, io: ThreadPoolExecutor,
                 read_later: set[int]) -> list[Any]:
    """Compute one row's cells; returns ``[v1, et1, em1, v2, ...]`` for the UPDATE.

    A media result is encoded here (CPU, in this compute thread) and handed to the I/O pool to
    store; its slot holds that Future until :func:`_settle` resolves it, unless a later target
    of this same row reads the column's URI (``read_later``), which then waits for it.
    """
    from . import media

    out: list[Any] = []
    for t in targets:
        try:
            v = t.expr.eval(rc)
            rc._cache[t.col.col_id] = v  # later targets reading this column reuse the value
            if v is None:
                out += [None, None, None]
                continue
            if t.is_media:
                if not type(v).__module__.startswith("PIL"):
                    raise SchemaError(f"expected an image from {t.expr!r}, got {type(v).__name__}")
                data, ext = media.encode_image(v, t.col.format)
                assert t.prefix is not None
                if t.local:
                    sv: Any = op.write_bytes(data, ext, t.col, t.prefix)
                else:
                    sv = io.submit(op.write_bytes, data, ext, t.col, t.prefix)
                    if t.col.col_id in read_later:
                        sv = sv.result()
            else:
                sv = t.col.type.to_sql(v)
            rc.raw[t.col.col_id] = sv
            out += [sv, None, None]
        except Exception as e:  # a UDF may raise anything; it is the cell's error
            if on_error == "abort":
                raise _abort_error(t, rc.raw, rowid, meta, e) from e
            rc._cache[t.col.col_id] = None
            rc.raw[t.col.col_id] = None
            out += [None, type(e).__name__, str(e) or repr(e)]
    return out


def _settle(res: list[Any], raw: dict[int, Any], targets: list[_Target], meta: TableMeta,
            on_error: str) -> list[Any]:
    """Replace the Futures of stored files in a row's result by their URIs (or cell errors).
    Runs in the main thread, so compute threads never wait for uploads."""
    for k, t in enumerate(targets):
        fut = res[3 * k]
        if isinstance(fut, Future):
            try:
                res[3 * k] = fut.result()
            except Exception as e:
                if on_error == "abort":
                    raise _abort_error(t, raw, res[-1], meta, e) from e
                res[3 * k:3 * k + 3] = [None, type(e).__name__, str(e) or repr(e)]
    return res


def compute_rows(conn: Connection, meta: TableMeta, cols: list[ColumnMeta],
                 where: tuple[str, list[Any]] | None, op: FileOp, settings: Settings,
                 rowids: list[int] | None, *, on_error: str = "abort",
                 release_old: list[Any] | None = None) -> UpdateStatus:
    """Fill ``cols`` (computed, in dependency order) for the rows that ``where`` (SQL and its
    parameters) selects, among ``rowids`` when given (all rows otherwise). Must run inside the
    caller's write transaction. Old media values that get replaced are released (deleted after
    commit) when ``release_old`` is the transaction's after list."""
    from .table import Resolver

    t0 = time.perf_counter()
    db = conn.db
    cols = sorted(cols, key=lambda c: c.position)
    targets = [_Target(meta, c, op) for c in cols]
    target_ids = {c.col_id for c in cols}
    needed: set[int] = set()
    for t in targets:
        needed |= t.expr.columns()
    inputs = [c for c in meta.columns if c.col_id in needed and c.col_id not in target_ids]
    old_media = [c for c in cols if c.type.is_media] if release_old is not None else []
    select = ", ".join(["_rowid"] + [c.sql for c in inputs] + [c.sql for c in old_media])
    sets = ", ".join(f"{c.sql} = ?, {c.sql_et} = ?, {c.sql_em} = ?" for c in cols)
    update_sql = f"UPDATE {meta.sql} SET {sets} WHERE _rowid = ?"
    resolver = Resolver(settings, conn.media_folder)
    stored = conn.stored
    media_slots = [3 * k for k, t in enumerate(targets) if t.is_media]
    errors = 0
    done = 0
    replaced: dict[int, list[str]] = {}

    where_sql, cond_params = (where[0], list(where[1])) if where else ("", [])
    cond = f" AND ({where_sql})" if where_sql else ""

    def batches() -> Iterator[list[tuple]]:
        if rowids is not None:
            for i in range(0, len(rowids), BATCH_ROWS):
                chunk = rowids[i:i + BATCH_ROWS]
                yield db.query(f"SELECT {select} FROM {meta.sql} WHERE _rowid IN "
                               f"(SELECT value FROM json_each(?)){cond} ORDER BY _rowid",
                               [json.dumps(chunk), *cond_params])
            return
        last = -(2**63)
        while True:
            rows = db.query(f"SELECT {select} FROM {meta.sql} WHERE _rowid > ?{cond} "
                            f"ORDER BY _rowid LIMIT {BATCH_ROWS}", [last, *cond_params])
            if not rows:
                return
            last = rows[-1][0]
            yield rows

    def count() -> int:
        if rowids is not None and not where:
            return len(rowids)
        if rowids is not None:
            return db.query(f"SELECT count(*) FROM {meta.sql} WHERE _rowid IN "
                            f"(SELECT value FROM json_each(?)){cond}",
                            [json.dumps(rowids), *cond_params])[0][0]
        return db.query(f"SELECT count(*) FROM {meta.sql} WHERE 1{cond}", cond_params)[0][0]

    bar = _progress(count, f"{meta.name}: {', '.join(c.name for c in cols)}", settings)
    from .cache import get_cache

    read_later = {cid for t in targets for cid in t.expr.columns()} & {
        t.col.col_id for t in targets if t.is_media}
    media_inputs = [i for i, c in enumerate(inputs) if c.type.is_media]

    def prefetch(rows: list[tuple] | None) -> list[Future]:
        """Start downloading a batch's remote inputs into the cache (errors surface later,
        when the row is computed and reads the file)."""
        from . import media, storage

        if not rows:
            return []
        uris = {r[1 + i] for r in rows for i in media_inputs}
        remote = [u for u in (conn.resolve(x) for x in uris if isinstance(x, str))
                  if not storage.is_local(u)]
        if remote and not cache_op:
            # The cache is only opened once a remote input shows up: all-local runs skip it.
            cache_op.append(stack.enter_context(get_cache(settings).operation()))
        return [io.submit(media.localpath, u, settings) for u in remote]

    cache_op: list[Any] = []
    with ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="pxlite-compute") as pool, \
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="pxlite-io") as io, \
            contextlib.ExitStack() as stack:
        it = batches()
        nxt = next(it, None)
        pending = prefetch(nxt)
        while nxt is not None:
            rows, ready = nxt, pending
            nxt = next(it, None)
            pending = prefetch(nxt)  # the next batch downloads while this one computes
            wait(ready)

            def one(r: tuple) -> tuple[list[Any], dict[int, Any]]:
                rc = RowContext({c.col_id: r[1 + i] for i, c in enumerate(inputs)}, None, resolver)
                res = _compute_row(rc, r[0], targets, meta, op, on_error, io, read_later)
                return res + [r[0]], rc.raw  # the raw values (URIs), not the decoded images

            results = [_settle(res, raw, targets, meta, on_error)
                       for res, raw in pool.map(one, rows)]
            for res in results:  # rows store files in the media folder relative to it
                for k in media_slots:
                    if res[k] is not None:
                        res[k] = stored(res[k])
            db.executemany(update_sql, results)
            for r, res in zip(rows, results):
                errors += sum(1 for k in range(1, len(res) - 1, 3) if res[k] is not None)
                for j, c in enumerate(old_media):
                    old = r[1 + len(inputs) + j]
                    new = res[3 * cols.index(c)]
                    if old is not None and old != new:
                        replaced.setdefault(c.col_id, []).append(old)
            done += len(rows)
            if bar is not None:
                bar.update(len(rows))
    if bar is not None:
        bar.close()
    if release_old is not None:
        for col_id, uris in replaced.items():
            conn.release(meta, col_id, uris, release_old)
    return UpdateStatus("Added", done * len(cols), errors, time.perf_counter() - t0,
                        "column value")


def _progress(count: Callable[[], int], desc: str, settings: Settings) -> Any:
    """A tqdm bar that appears only after a second of work, only on a terminal or notebook.
    ``count`` gives the number of rows; it is only asked (a query) when a bar can show."""
    if not settings.get("progress", True) or not _interactive():
        return None
    total = count()
    if total < 2:
        return None
    from tqdm.auto import tqdm  # only now: importing it costs ~45 ms

    return tqdm(total=total, desc=desc, unit="row", delay=1.0, leave=False)


def _interactive() -> bool:
    """A terminal on stderr, or a Jupyter kernel: somewhere a person watches a bar."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def add_computed_column(table: Table, column: dict[str, Any], *, destination: str | None,
                        on_error: str, format: str | None, if_exists: str) -> UpdateStatus:
    """See :meth:`pxlite.Table.add_computed_column`."""
    from . import media
    from .table import FileOp, _check_on_error

    t0 = time.perf_counter()
    _check_on_error(on_error)
    if len(column) != 1:
        raise SchemaError("add_computed_column() takes exactly one name=expression, e.g. "
                          "add_computed_column(rot=t.image.rotate(90))")
    ((name, expr),) = column.items()
    from .table import check_column_name

    check_column_name(name)
    if if_exists not in ("error", "ignore", "replace"):
        raise SchemaError(f"if_exists must be 'error', 'ignore' or 'replace', got {if_exists!r}")
    if not isinstance(expr, Expr):
        raise SchemaError(f"column {name!r}: expected an expression of the table's columns "
                          f"(e.g. t.image.rotate(90)), got {type(expr).__name__} {expr!r}")
    expr = table._expr(expr)
    if not expr.columns():
        raise SchemaError(f"column {name!r}: the expression {expr!r} reads no column")
    ctype = expr.type.with_nullable(True)
    fmt = media.check_format(format)
    if not ctype.is_media and (destination is not None or fmt is not None):
        what = "destination" if destination is not None else "format"
        raise SchemaError(f"column {name!r} computes {ctype.name} values, not files: "
                          f"{what}= applies to image results only")
    if fmt is not None and ctype.name != "Image":
        raise SchemaError(f"column {name!r}: format= applies to Image results only")
    conn = table._conn
    # The database's own media folder is stored as such ('media:'), so a copy of the database
    # writes into its own media folder, never into its original's.
    dest = conn.stored(conn.validate_dest(destination)) if destination is not None else None
    settings = conn.settings()
    meta = table._meta()
    old: ColumnMeta | None = None
    if any(c.name == name for c in meta.columns):
        if if_exists == "ignore":
            return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")
        if if_exists == "replace":
            old = _replaceable(table, meta, name)
    op = FileOp(conn, meta, settings)
    if ctype.is_media:
        op.prepare(op.output_prefix(dest))
    with conn.db.transaction() as after, op.undo_on_error():
        table._recheck(meta)
        if old is not None:
            _replaceable(table, table._meta(), name)  # again, under the write lock
            old = meta.column(name)
        # A replacement is computed beside the old column under a temporary name and takes its
        # place in the same transaction: if computing fails, the old column and its files stay.
        col = catalog.add_column(conn.db, meta, name if old is None else f"_pxl_new_{name}",
                                 ctype, expr=json.dumps(expr.to_json()), destination=dest,
                                 format=fmt, on_error=on_error)
        status = compute_rows(conn, meta, [col], None, op, settings, None, on_error=on_error)
        if old is not None:
            uris = [r[0] for r in conn.db.query(
                f"SELECT DISTINCT {old.sql} FROM {meta.sql} WHERE {old.sql} IS NOT NULL")
            ] if old.type.is_media else []
            catalog.drop_column(conn.db, meta, old)
            catalog.rename_column(conn.db, meta, col, name)
            catalog.set_column_position(conn.db, meta, col, old.position)
            conn.release(meta, old.col_id, uris, after)
    status.elapsed_s = time.perf_counter() - t0
    return status


def _replaceable(table: Table, meta: TableMeta, name: str) -> ColumnMeta:
    """The column ``if_exists='replace'`` would replace; refused while others depend on it."""
    from .table import _dependents

    old = meta.column(name)
    deps = [d for d in _dependents(meta, old.col_id) if d.col_id != old.col_id]
    if deps:
        raise SchemaError(
            f"cannot replace column {name!r} of {table.path!r}: computed column(s) "
            f"{', '.join(repr(d.name) for d in deps)} depend on it; drop them first")
    return old


def recompute_columns(table: Table, names: list[str], *, where: Expr | None,
                      errors_only: bool) -> UpdateStatus:
    """See :meth:`pxlite.Table.recompute_columns`."""
    from .table import FileOp, _dependents

    t0 = time.perf_counter()
    if not names:
        raise SchemaError("recompute_columns() needs at least one computed column name")
    conn = table._conn
    meta = table._meta()
    cols = []
    for n in names:
        c = meta.column(n)
        if not c.is_computed:
            raise SchemaError(f"column {n!r} of {table.path!r} is not computed; nothing to recompute")
        cols.append(c)
    for d in _dependents(meta, *(c.col_id for c in cols)):
        if d not in cols:
            cols.append(d)
    settings = conn.settings()
    op = FileOp(conn, meta, settings)
    op.prepare_for(cols)
    with conn.db.transaction() as after, op.undo_on_error():
        table._recheck(meta)
        match = table._matching_rowids(meta, where)
        rowids = match if isinstance(match, list) else None
        where_sql, params = ("1", []) if isinstance(match, list) else match
        if errors_only:
            cond = " OR ".join(f"{c.sql_et} IS NOT NULL" for c in cols)
            where_sql = f"({where_sql}) AND ({cond})"
        status = compute_rows(conn, meta, cols, (where_sql, params), op, settings, rowids,
                              on_error="ignore", release_old=after)
    status.verb = "Recomputed"
    status.elapsed_s = time.perf_counter() - t0
    return status


