"""The executor for computed columns.

Rows stream through in batches ordered by rowid (memory stays bounded however large the table
is); each row's cells are computed in a thread pool sized to the cores (Pillow releases the GIL
while decoding, transforming and encoding, so threads scale); media results are encoded and
written to their destination *before* the batch's cells are written. It runs inside the caller's
write operation (writes.py), which owns the transaction, the undo of files on error and the
release of replaced files. It never imports the table layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import media, plan, storage
from .catalog import ColumnMeta, TableMeta
from .errors import ComputeError, PxliteError, SchemaError, cell_error
from .exprs import Expr, RowContext, from_json
from .plan import Rows
from .results import UpdateStatus
from .types import is_pil_image
from .writes import Operation

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .config import Settings

BATCH_ROWS = 256
#: Threads that download inputs and store outputs: network waits, not CPU, so more than cores.
IO_THREADS = 16


def workers() -> int:
    """Threads for compute: one per core (the machines this targets have few)."""
    return max(1, os.cpu_count() or 1)


class _Target:
    """One computed column being filled: its expression, destination and format."""

    def __init__(self, meta: TableMeta, col: ColumnMeta, op: Operation):
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
                 op: Operation, on_error: str, io: ThreadPoolExecutor,
                 read_later: set[int]) -> list[Any]:
    """Compute one row's cells; returns ``[v1, et1, em1, v2, ...]`` for the UPDATE.

    A media result is encoded here (CPU, in this compute thread) and handed to the I/O pool to
    store; its slot holds that Future until :func:`_settle` resolves it, unless a later target
    of this same row reads the column's URI (``read_later``), which then waits for it.
    """
    out: list[Any] = []
    for t in targets:
        try:
            v = t.expr.eval(rc)
            rc._cache[t.col.col_id] = v  # later targets reading this column reuse the value
            if v is None:
                out += [None, None, None]
                continue
            if t.is_media:
                if not is_pil_image(v):
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
            out += [None, *cell_error(e)]
    return out


def _settle(res: list[Any], raw: dict[int, Any], targets: list[_Target], meta: TableMeta,
            on_error: str) -> list[Any]:
    """Replace the Futures of stored files in a row's result by their URIs (or cell errors).
    Runs in the main thread, so compute threads never wait for uploads."""
    from concurrent.futures import Future

    for k, t in enumerate(targets):
        fut = res[3 * k]
        if isinstance(fut, Future):
            try:
                res[3 * k] = fut.result()
            except Exception as e:
                if on_error == "abort":
                    raise _abort_error(t, raw, res[-1], meta, e) from e
                res[3 * k:3 * k + 3] = [None, *cell_error(e)]
    return res


def compute_rows(op: Operation, cols: list[ColumnMeta], rows: Rows, *, on_error: str = "abort",
                 release_old: bool = False) -> UpdateStatus:
    """Fill ``cols`` (computed, in dependency order) for ``rows``, inside ``op``'s write
    transaction. Old media values that get replaced are released (deleted after the commit)
    when ``release_old``."""
    # Imported here, not at module level: ``import pxlite`` stays cheap (concurrent.futures
    # costs milliseconds and only computing needs it).
    from concurrent.futures import ThreadPoolExecutor, wait

    t0 = time.perf_counter()
    conn, meta, settings = op.conn, op.meta, op.settings
    db = conn.db
    cols = sorted(cols, key=lambda c: c.position)
    targets = [_Target(meta, c, op) for c in cols]
    target_ids = {c.col_id for c in cols}
    needed: set[int] = set()
    for t in targets:
        needed |= t.expr.columns()
    inputs = [c for c in meta.columns if c.col_id in needed and c.col_id not in target_ids]
    old_media = [c for c in cols if c.type.is_media] if release_old else []
    read_cols = inputs + old_media
    update_sql = plan.update_cells(meta, cols)
    resolver = media.Resolver(settings, conn.media_folder)
    stored = conn.stored
    media_slots = [3 * k for k, t in enumerate(targets) if t.is_media]
    errors = 0
    done = 0
    replaced: dict[int, list[str]] = {}

    def batches() -> Iterator[list[tuple]]:
        if rows.rowids is not None:
            for part in rows.chunks(BATCH_ROWS):
                yield db.query(*plan.select(meta, read_cols, part))
            return
        last = -(2**63)
        while True:
            batch = db.query(*plan.select(meta, read_cols, rows, after=last, limit=BATCH_ROWS))
            if not batch:
                return
            last = batch[-1][0]
            yield batch

    bar = _progress(lambda: db.query(*plan.count(meta, rows))[0][0],
                    f"{meta.name}: {', '.join(c.name for c in cols)}", settings)
    read_later = {cid for t in targets for cid in t.expr.columns()} & {
        t.col.col_id for t in targets if t.is_media}
    media_inputs = [i for i, c in enumerate(inputs) if c.type.is_media]

    def prefetch(batch: list[tuple] | None) -> list[Future]:
        """Start downloading a batch's remote inputs into the cache (errors surface later,
        when the row is computed and reads the file)."""
        if not batch:
            return []
        uris = {r[1 + i] for r in batch for i in media_inputs}
        remote = [u for u in (conn.resolve(x) for x in uris if isinstance(x, str))
                  if not storage.is_local(u)]
        if remote and not cache_op:
            from .cache import get_cache  # here, not at import: it loads diskcache

            # The cache is only opened once a remote input shows up: all-local runs skip it.
            cache_op.append(stack.enter_context(get_cache(settings).operation()))
        return [io.submit(media.fetch_local, u, settings) for u in remote]

    cache_op: list[Any] = []
    with ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="pxlite-compute") as pool, \
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="pxlite-io") as io, \
            contextlib.ExitStack() as stack:
        it = batches()
        nxt = next(it, None)
        pending = prefetch(nxt)
        while nxt is not None:
            batch, ready = nxt, pending
            nxt = next(it, None)
            pending = prefetch(nxt)  # the next batch downloads while this one computes
            wait(ready)

            def one(r: tuple) -> tuple[list[Any], dict[int, Any]]:
                rc = RowContext({c.col_id: r[1 + i] for i, c in enumerate(inputs)}, None, resolver)
                res = _compute_row(rc, r[0], targets, meta, op, on_error, io, read_later)
                return [*res, r[0]], rc.raw  # the raw values (URIs), not the decoded images

            results = [_settle(res, raw, targets, meta, on_error)
                       for res, raw in pool.map(one, batch)]
            for res in results:  # rows store files in the media folder relative to it
                for k in media_slots:
                    if res[k] is not None:
                        res[k] = stored(res[k])
            db.executemany(update_sql, results)
            for r, res in zip(batch, results, strict=True):
                errors += sum(1 for k in range(1, len(res) - 1, 3) if res[k] is not None)
                for j, c in enumerate(old_media):
                    old = r[1 + len(inputs) + j]
                    new = res[3 * cols.index(c)]
                    if old is not None and old != new:
                        replaced.setdefault(c.col_id, []).append(old)
            done += len(batch)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    for col_id, uris in replaced.items():
        op.release(col_id, uris)
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
