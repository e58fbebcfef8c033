"""Computing the cells of computed columns.

Rows stream through in batches ordered by rowid (memory stays bounded however large the table
is). By default each row's cells are computed in this process, on a thread pool sized to the
cores (Pillow releases the GIL while decoding, transforming and encoding, so threads scale);
media results are encoded and written to their destination *before* the batch's cells are
written. Given a pool (:mod:`pxlite.executors`: worker processes, a Dask cluster), batches go
out as tasks (:func:`run_task`) that run this same computation on a worker and send back cells
and the files they stored; this process keeps the catalog and commits. It runs inside the
caller's write operation (writes.py), which owns the transaction, the undo of files on error
and the release of replaced files. It never imports the table layer.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import catalog, config, executors, media, plan, progress, storage
from .catalog import ColumnMeta, TableMeta
from .errors import ComputeError, PxliteError, SchemaError, failed_cell
from .executors import Pool
from .exprs import Expr, RowContext, column_expr
from .plan import Rows
from .redact import redact
from .results import UpdateStatus
from .storage.base import adopt_condition_verdicts
from .types import is_pil_image
from .udf import Function
from .writes import Operation

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .config import Settings

BATCH_ROWS = 256
#: Threads that download inputs: network waits, not CPU, so more than cores. Uploads of outputs
#: have a pool of their own, sized by what their destination's server takes (a backend's
#: ``parallel_requests``).
IO_THREADS = 16
#: The most rows one future of the compute threads takes (see Computation.submit).
RUN_ROWS = 16
#: A computation times its first rows (at most PROBE_ROWS: the first may pay for imports and
#: warm-up) one by one in the calling thread: once one takes less than INLINE_ROW_S (a float16
#: copy, a string or JSON function), every row is computed there, since on threads their
#: Python would only contend for the GIL (a row then costs several times as much). If none
#: does (Pillow, which releases the GIL; a model), the rest go to the compute threads.
PROBE_ROWS = 2
INLINE_ROW_S = 250e-6


def workers() -> int:
    """Threads for compute: one per core (the machines this targets have few)."""
    return max(1, os.cpu_count() or 1)


class _Target:
    """One computed column being filled: its expression, destination and format."""

    def __init__(self, meta: TableMeta, col: ColumnMeta, settings: Settings,
                 prefix: str | None) -> None:
        assert col.expr is not None
        self.col = col
        self.expr = column_expr(meta, col, settings)
        self.reads = self.expr.columns()
        self.is_media = col.type.is_media
        self.prefix = prefix if self.is_media else None
        # A local write is quick and CPU-bound: done in the compute thread. Network stores go
        # to the upload pool so compute threads never wait on the network.
        self.local = self.prefix is not None and self.prefix.startswith("file://")
        #: Uploads to this target's server worth having in flight (0: none, a local target).
        self.parallel = (storage.get_backend(self.prefix, settings).parallel_requests
                         if self.prefix is not None and not self.local else 0)


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
    inputs = redact(_describe_inputs(raw, meta, t.expr))  # an input URL may carry a token
    return ComputeError(
        f"computing column {t.col.name!r} of {meta.path!r} failed for row {rowid} "
        f"({inputs}): {type(e).__name__}: {e}",
        table=meta.path, row=rowid, column=t.col.name, value=inputs, errortype=type(e).__name__,
        retryable=bool(getattr(e, "retryable", False)),
    )


def _compute_row(rc: RowContext, rowid: int, targets: list[_Target], meta: TableMeta,
                 store: Store, on_error: str, uploads: _Recording,
                 read_later: set[int], done: dict[int, Any]) -> list[Any]:
    """Compute one row's cells; returns ``[v1, et1, em1, v2, ...]`` for the UPDATE.

    A media result is encoded here (CPU, in this compute thread) and handed to the I/O pool to
    store; its slot holds that Future until :func:`_settle` resolves it, unless a later target
    of this same row reads the column's URI (``read_later``), which then waits for it. ``done``
    holds the stored values of cells computed for the whole batch already (see _batched).
    """
    out: list[Any] = []
    for t in targets:
        if t.col.col_id in done:
            rc.raw[t.col.col_id] = done[t.col.col_id]
            out += [done[t.col.col_id], None, None]
            continue
        upstream = next((cid for cid in t.reads if cid in rc.errors), None)
        if upstream is not None:
            # Computed from a cell that failed: this cell fails too (counted, kept), never a
            # silent None. It is the input's error, not a new one: on_error does not abort here.
            et, em = rc.errors[upstream]
            name = next((c.name for c in meta.columns if c.col_id == upstream), str(upstream))
            out += _failed(rc, t.col, [None, et, f"input column {name!r} has an error: {em}"])
            continue
        try:
            v = t.expr.eval(rc)
            rc._cache[t.col.col_id] = v  # later targets reading this column reuse the value
            if v is None:
                out += [None, None, None]
                continue
            if t.is_media:
                if t.col.type.name != "Image":  # a file a function made (extract_audio...)
                    data, ext = media.output_file(v, t.col.type.kind,  # type: ignore[attr-defined]
                                                  repr(t.expr))
                elif not is_pil_image(v):
                    raise SchemaError(f"expected an image from {t.expr!r}, got {type(v).__name__}")
                else:
                    data, ext = media.encode_image(v, t.col.format)
                assert t.prefix is not None
                if t.local:
                    sv: Any = store(data, ext, t.col, t.prefix)
                else:
                    sv = uploads.submit(store, data, ext, t.col, t.prefix)
                    if t.col.col_id in read_later:
                        sv = sv.result()
            else:
                sv = t.col.type.to_sql(v)
            rc.raw[t.col.col_id] = sv
            out += [sv, None, None]
        except Exception as e:  # a UDF may raise anything; it is the cell's error
            out += _failed(rc, t.col,
                           failed_cell(on_error, e, _abort_error(t, rc.raw, rowid, meta, e)))
    return out


def _failed(rc: RowContext, col: ColumnMeta, cell: list[Any]) -> list[Any]:
    """Record a failed cell ``[None, errortype, errormsg]`` in the row, so the columns computed
    from it fail too (and read None); returns the cell."""
    rc.errors[col.col_id] = (cell[1], cell[2])
    rc._cache[col.col_id] = None
    rc.raw[col.col_id] = None
    return cell


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
                res[3 * k:3 * k + 3] = failed_cell(
                    on_error, e, _abort_error(t, raw, res[-1], meta, e))
    return res


#: Stores encoded bytes for a column under a prefix; returns the stored file's URI.
Store = Callable[[bytes, str, ColumnMeta, str], str]


class Site(Protocol):
    """Where a computation runs and stores: the write operation (``writes.Operation``) in the
    process that owns the database, or a task's :class:`_WorkerSite` on a worker."""

    meta: TableMeta
    settings: Settings

    @property
    def places(self) -> Any: ...  # media_folder, resolve(stored), stored(uri)
    def output_prefix(self, destination: str | None) -> str: ...
    def write_bytes(self, data: bytes, ext: str, col: ColumnMeta, prefix: str) -> str: ...
    def track(self, uri: str, created: bool) -> str: ...


class Computation:
    """Computes the cells of computed columns for rows.

    By default here, on a compute pool (one thread per core: Pillow releases the GIL) and an
    I/O pool (downloads of remote inputs, uploads of outputs). Given a ``pool``
    (:mod:`pxlite.executors`: worker processes or a Dask cluster), rows are sent there as
    tasks instead, each computed by this same class on the worker.

    It reads no table and writes no row: rows come in as ``(rowid, {col_id: stored value})``
    and go out as cells ``[v1, et1, em1, v2, ...]`` with media values in stored form, so the
    same computation serves an insert (before its brief commit), a batched long operation
    (computing outside the write lock) and an update (inside its transaction).
    """

    class _Resolver(media.Resolver):
        """The rows' media access, which knows the downloads this computation started: a row
        reading a file whose download failed gets that download's exception (the cell's error,
        under the row's on_error) instead of trying again, which would cost a deadline twice."""

        def __init__(self, settings: Settings, folder: media.MediaFolder,
                     downloads: dict[str, Future]) -> None:
            super().__init__(settings, folder)
            self._downloads = downloads

        def _failed(self, stored: str) -> None:
            fut = self._downloads.get(self.folder.uri(stored))
            # _one waited for the row's downloads, so a future here is done; a pending one
            # (not this row's input) is left alone.
            if fut is not None and fut.done():
                e = fut.exception()
                if e is not None:
                    raise e

        def value(self, col: ColumnMeta, uri: str) -> Any:
            self._failed(uri)
            return super().value(col, uri)

        def localpath(self, uri: str) -> str:
            self._failed(uri)
            return super().localpath(uri)

    def __init__(self, op: Site, cols: list[ColumnMeta], *, on_error: str,
                 bar: Any = None, pool: Pool | None = None, threads: int | None = None,
                 io_threads: int = IO_THREADS, keep_threads: bool = False) -> None:
        self.op, self.on_error, self.bar, self.pool = op, on_error, bar, pool
        self.cols = sorted(cols, key=lambda c: c.position)
        self.targets = [_Target(op.meta, c, op.settings, op.output_prefix(c.destination)
                                if c.type.is_media else None) for c in self.cols]
        ids = {c.col_id for c in self.cols}
        needed: set[int] = set()
        for t in self.targets:
            needed |= t.expr.columns()
        #: The columns a row must bring (the targets' inputs), in table order.
        self.inputs = [c for c in op.meta.columns if c.col_id in needed and c.col_id not in ids]
        self._read_later = needed & {t.col.col_id for t in self.targets if t.is_media}
        self._media_inputs = [c.col_id for c in self.inputs if c.type.is_media]
        #: (target, input col_id, function): the targets computed a batch at a time from one
        #: stored input (Expr.stored_batch) that is not itself computed with them.
        self._batches = [(t, *b) for t in self.targets if not t.is_media
                         and (b := t.expr.stored_batch()) is not None and b[0] not in ids]
        #: Some cell may hold a Future of a stored file (see _settle).
        self._uploading = any(t.is_media for t in self.targets)
        self.media_slots = [3 * k for k, t in enumerate(self.targets) if t.is_media]
        self._downloads: dict[str, Future] = {}
        self._resolver = self._Resolver(op.settings, op.places.media_folder, self._downloads)
        self._stack = contextlib.ExitStack()
        self._cache_open = False
        self.errors = 0
        if pool is not None:
            #: What every task of this computation carries besides its rows (see _Task).
            self._task = _task_base(self)
            return
        self._threads = threads or workers()
        #: Rows computed in the calling thread (None: not yet timed; see INLINE_ROW_S).
        self._inline: bool | None = None
        self._probed = 0
        sizes = (self._threads, io_threads,
                 min(io_threads, max([1, *(t.parallel for t in self.targets)])))
        if keep_threads:
            pools = _kept_pools(sizes)
        else:
            pools = _new_pools(sizes, "pxlite")
            for p in pools:
                self._stack.enter_context(p)
        #: Every future this computation started, waited for when it ends (shared pools are
        #: not shut down: a failure must still know every file its uploads stored).
        self._started: list[Future] = []
        self._pool, self._io, self._uploads = (_Recording(p, self._started) for p in pools)

    def __enter__(self) -> Computation:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is None:
            from concurrent.futures import wait

            seen = 0
            while seen < len(self._started):  # a running compute future may add uploads
                upto = len(self._started)
                wait(self._started[seen:upto])
                seen = upto
        self._stack.close()
        if self.bar is not None:
            self.bar.close()

    @property
    def batch_rows(self) -> int:
        """The most rows a long operation hands over at once: enough to keep every slot of a
        pool busy for a while, BATCH_ROWS for this process's own threads."""
        return BATCH_ROWS if self.pool is None else max(BATCH_ROWS, 16 * self.pool.slots)

    def submit(self, rows: list[Row]) -> list[Future]:
        """Start computing ``rows`` (rowid, stored inputs, the inputs' cell errors) on this
        process's threads (their remote inputs already downloading: :meth:`_download`)."""
        # In runs of rows, several per thread: a future costs tens of microseconds, more than
        # a cheap column takes per row; runs of at most RUN_ROWS keep slow rows (Pillow)
        # spread evenly over the threads.
        size = max(1, min(RUN_ROWS, len(rows) // (4 * self._threads)))
        return [self._pool.submit(self._run, rows[i:i + size])
                for i in range(0, len(rows), size)]

    def _download(self, rows: list[Row]) -> None:
        """Start downloading the remote inputs of ``rows`` (each once)."""
        places = self.op.places
        for _, raw, _ in rows:
            for cid in self._media_inputs:
                v = raw.get(cid)
                if isinstance(v, str):
                    uri = places.resolve(v)
                    if uri not in self._downloads and not storage.is_local(uri):
                        self._open_cache()
                        self._downloads[uri] = self._io.submit(
                            media.fetch_local, uri, self.op.settings)

    def _run(self, rows: list[Row]) -> list[tuple[list[Any], dict[int, Any]]]:
        done = self._batched(rows)
        every = len(self.targets)
        return [([x for t in self.targets for x in (done[k][t.col.col_id], None, None)], raw)
                if len(done[k]) == every else self._one(rowid, raw, errors, done[k])
                for k, (rowid, raw, errors) in enumerate(rows)]

    def _batched(self, rows: list[Row]) -> list[dict[int, Any]]:
        """Per row, the cells of the targets computed a batch at a time (``_batches``): each
        such target converts the stored input of every row that has one (not NULL, no error)
        in one call. Should that call fail (a damaged value), those cells are left to the row
        by row evaluation, which reports the value that failed."""
        done: list[dict[int, Any]] = [{} for _ in rows]
        for t, cid, fn in self._batches:
            which = [k for k, (_, raw, errors) in enumerate(rows)
                     if cid not in errors and raw.get(cid) is not None]
            try:
                values = fn([rows[k][1][cid] for k in which])
            except Exception:  # row by row, each value's error is its own cell's
                continue
            for k, v in zip(which, values, strict=True):
                done[k][t.col.col_id] = v
        return done

    def _open_cache(self) -> None:
        if not self._cache_open:  # only once a remote input shows up: all-local runs skip it
            from .cache import get_cache  # here, not at import: it loads diskcache

            self._stack.enter_context(get_cache(self.op.settings).operation())
            self._cache_open = True

    def _one(self, rowid: int, raw: dict[int, Any], errors: dict[int, tuple[Any, Any]],
             done: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
        from concurrent.futures import wait

        waiting = [self._downloads[u] for u in (
            self.op.places.resolve(raw[c]) for c in self._media_inputs
            if isinstance(raw.get(c), str)) if u in self._downloads]
        if waiting:
            wait(waiting)  # a failed download is the cell's error when the row reads the file
            # (self._resolver raises it again rather than downloading a second time)
        rc = RowContext(dict(raw), dict(errors), self._resolver, rowid=rowid)
        try:
            res = _compute_row(rc, rowid, self.targets, self.op.meta, self.op.write_bytes,
                               self.on_error, self._uploads, self._read_later, done)
        finally:
            rc.close_opened()  # inputs read only for their header hold no open file
        return res, rc.raw

    def collect(self, futures: list[Future], rowids: list[int]) -> list[list[Any]]:
        """The cells of submitted rows, in order (waiting for their uploads); the progress bar
        advances per row."""
        out: list[list[Any]] = []
        ids = iter(rowids)
        for fut in futures:
            try:
                run = fut.result()
            except PxliteError as e:  # a cell's error: the compute thread's frames add nothing
                raise e.with_traceback(None) from e.__cause__
            self._settled(run, ids, out)
        return out

    def _settled(self, run: list[tuple[list[Any], dict[int, Any]]], ids: Iterator[int],
                 out: list[list[Any]]) -> None:
        for res, raw in run:
            rowid = next(ids)
            if self._uploading:
                res = _settle([*res, rowid], raw, self.targets, self.op.meta,
                              self.on_error)[:-1]
            out.append(self._finish(res))

    def _here(self, rows: list[Row]) -> list[list[Any]]:
        """The cells of ``rows`` computed in this thread, in order."""
        out: list[list[Any]] = []
        self._settled(self._run(rows), iter([r[0] for r in rows]), out)
        return out

    def _finish(self, res: list[Any]) -> list[Any]:
        """One row's cells as stored (media values relative in the media folder), counted."""
        stored = self.op.places.stored
        for k in self.media_slots:
            if res[k] is not None:
                res[k] = stored(res[k])  # files in the media folder are stored relative
        self.errors += sum(1 for k in range(1, len(res), 3) if res[k] is not None)
        if self.bar is not None:
            self.bar.update(1)
        return res

    def compute(self, rows: list[Row]) -> list[list[Any]]:
        """The cells of ``rows``, in order: computed here, or as tasks on the pool."""
        if self.pool is not None:
            return self.finish(self.start(rows))
        self._download(rows)  # every row's remote inputs start downloading at once
        out: list[list[Any]] = []
        while self._inline is None and rows:  # time the first rows here (see INLINE_ROW_S)
            t0 = time.perf_counter()
            out += self._here(rows[:1])
            rows = rows[1:]
            self._probed += 1
            if time.perf_counter() - t0 < INLINE_ROW_S:
                self._inline = True
            elif self._probed >= PROBE_ROWS:
                self._inline = False
        if not rows:
            return out
        if self._inline:
            return out + self._here(rows)
        return out + self.collect(self.submit(rows), [r[0] for r in rows])

    def start(self, rows: list[Row]) -> Any:
        """Send ``rows`` to the pool in about two tasks per slot; returns what :meth:`finish`
        takes. (A long operation starts the next batch before it commits this one, so the
        workers never wait for a commit.)"""
        pool = self.pool
        assert pool is not None
        if not rows:
            return None
        n = max(1, min(len(rows), 2 * pool.slots))
        size = -(-len(rows) // n)
        return pool.submit(run_task, [self._task.with_rows(rows[i:i + size])
                                      for i in range(0, len(rows), size)])

    def finish(self, handle: Any) -> list[list[Any]]:
        """The cells of a started batch, in order. The files its tasks stored count as this
        operation's first (undone if it fails, synced at commit when local); then ``on_error``
        applies to what the workers report."""
        if handle is None:
            return []
        assert self.pool is not None
        results: list[_TaskResult] = self.pool.gather(handle)
        self._track(results)
        for res in results:
            if res.failure is not None:
                raise ComputeError(res.failure.pop("message"), **res.failure)
        return [self._finish(cells) for res in results for cells in res.cells]

    def drain(self, handle: Any) -> None:
        """A started batch that will not be committed (the operation stopped or failed): wait
        for its tasks and count their files as this operation's, so they are undone. When the
        pool itself is gone, they stay for ``check(fix=True)``."""
        if handle is None or self.pool is None:
            return
        with contextlib.suppress(Exception):
            self._track(self.pool.gather(handle))

    def _track(self, results: list[_TaskResult]) -> None:
        for res in results:
            created = set(res.created)
            for uri in res.stored:
                self.op.track(uri, uri in created)


class _Recording:
    """A thread pool as one computation sees it: what it submits is remembered."""

    def __init__(self, pool: ThreadPoolExecutor, started: list[Future]) -> None:
        self._pool, self._started = pool, started

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        fut = self._pool.submit(fn, *args)
        self._started.append(fut)  # list.append is atomic: compute threads submit uploads
        return fut


#: A worker's thread pools by size (compute, downloads, uploads), kept for the process's life.
_KEPT_POOLS: dict[tuple[int, int, int], tuple[ThreadPoolExecutor, ...]] = {}
_KEPT_POOLS_LOCK = threading.Lock()


def _kept_pools(sizes: tuple[int, int, int]) -> tuple[ThreadPoolExecutor, ...]:
    """Thread pools a worker process keeps and its tasks share. Pools made and shut down per
    task deadlocked a Dask worker (CPython 3.11): a thread ending needs the interpreter's
    thread-list lock, which Dask's sampling profiler (``sys._current_frames``) held while its
    garbage collection closed a dead thread's sqlite3 connection (the download cache's) and
    waited for the GIL, which the ending thread held. Threads that live as long as the process
    neither end nor leave connections behind during a run."""
    with _KEPT_POOLS_LOCK:
        pools = _KEPT_POOLS.get(sizes)
        if pools is None:
            pools = _KEPT_POOLS[sizes] = _new_pools(sizes, "pxlite-worker")
        return pools


def _new_pools(sizes: tuple[int, int, int], prefix: str) -> tuple[ThreadPoolExecutor, ...]:
    """Thread pools of these sizes for compute, downloads and uploads (thread names say which)."""
    from concurrent.futures import ThreadPoolExecutor

    return tuple(ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"{prefix}-{name}")
                 for n, name in zip(sizes, ("compute", "io", "upload"), strict=True))


def _task_base(comp: Computation) -> _Task:
    """The parts of a task every batch of ``comp`` shares: definitions, prefixes, settings."""
    functions: dict[str, str] = {}
    for t in comp.targets:
        for node in t.expr.walk():
            fn = getattr(node, "fn", None)
            if isinstance(fn, Function) and not fn.fn.__module__.startswith("pxlite."):
                functions[fn.name] = fn.fn.__module__
    assert comp.pool is not None
    # Verified here once per destination (a probe, unless known), so workers never probe.
    verdicts = [v for t in comp.targets if t.prefix is not None and not t.local
                for v in [storage.get_backend(t.prefix, comp.op.settings).condition_verdict(
                    t.prefix + "x")] if v is not None]
    return _Task(
        meta=comp.op.meta, col_ids=[c.col_id for c in comp.cols],
        prefixes={c.destination: t.prefix for c, t in zip(comp.cols, comp.targets, strict=True)
                  if t.prefix is not None},
        media_prefix=comp.op.places.media_folder.prefix,
        settings=executors.travelling_settings(comp.op.settings),
        functions=sorted(functions.items()), on_error=comp.on_error, rows=[],
        verdicts=verdicts)


@dataclass(frozen=True)
class _Task:
    """What a worker needs to compute some rows: plain data (pickled to the worker), no code
    and no credentials. Expressions travel as the JSON the catalog keeps; UDFs by name."""

    meta: TableMeta
    col_ids: list[int]
    prefixes: dict[str | None, str]       # a column's destination -> where its files go
    media_prefix: str                      # the database's media folder (media:<key> inputs)
    settings: dict[str, Any]               # executors.travelling_settings: no credentials
    functions: list[tuple[str, str]]       # UDFs called: (qualified name, module)
    on_error: str
    rows: list[Row]
    verdicts: list[tuple[Any, bool]]       # conditional creates verified here (see storage)

    def with_rows(self, rows: list[Row]) -> _Task:
        return dataclasses.replace(self, rows=rows)


@dataclass
class _TaskResult:
    """A task's cells (media values as absolute URIs), every file it stored, those it created,
    and the first cell error under ``on_error='abort'`` (then ``cells`` is empty)."""

    cells: list[list[Any]]
    stored: list[str]
    created: list[str]
    failure: dict[str, Any] | None = None


class _WorkerSite:
    """A task's stand-in for the write operation, on a worker: stores files straight in the
    destination and remembers them; knows the database's media folder only to read inputs."""

    def __init__(self, task: _Task, settings: Settings) -> None:
        self.meta, self.settings, self._prefixes = task.meta, settings, task.prefixes
        self.media_folder = media.MediaFolder(task.media_prefix)
        self.stored_uris: list[str] = []
        self.created: list[str] = []

    @property
    def places(self) -> _WorkerSite:
        return self

    def resolve(self, stored: str) -> str:
        return self.media_folder.uri(stored)

    def stored(self, uri: str) -> str:
        return uri  # absolute: the process owning the database decides what it stores

    def output_prefix(self, destination: str | None) -> str:
        return self._prefixes[destination]

    def write_bytes(self, data: bytes, ext: str, col: ColumnMeta, prefix: str) -> str:
        uri, created = media.write_file(data, ext, prefix, self.meta.uid, col.col_id,
                                        self.settings)
        return self.track(uri, created)

    def track(self, uri: str, created: bool) -> str:
        self.stored_uris.append(uri)  # list.append is atomic: I/O threads call this at once
        if created:
            self.created.append(uri)
        return uri


def run_task(task: _Task) -> _TaskResult:
    """On a worker (a process of the pool, a Dask worker): compute a task's rows with this
    module's own threads, storing outputs straight to their destination. Settings are the
    worker's own configuration with the task's travelling (non-secret) settings on top."""
    settings = config.resolve(db_config=task.settings)
    adopt_condition_verdicts(task.verdicts)
    executors.import_functions(task.functions)  # a missing UDF names itself and the worker
    site = _WorkerSite(task, settings)
    cols = [task.meta.column_by_id(i) for i in task.col_ids]
    try:
        # One compute thread: the pool runs one task per core (its slots) at once.
        with Computation(site, cols, on_error=task.on_error, threads=1, io_threads=4,
                         keep_threads=True) as comp:
            cells = comp.compute(task.rows)
    except ComputeError as e:
        # Named: a worker lacking what this one has (credentials, a module) is the usual cause.
        failure = {"message": f"{e} (computed on {executors.worker_name()})",
                   "table": e.table, "row": e.row, "column": e.column,
                   "value": e.value, "errortype": e.errortype, "retryable": e.retryable}
        return _TaskResult([], site.stored_uris, site.created, failure)
    finally:
        media.settle_cache_fills()  # this worker's cache holds what it uploaded
    return _TaskResult(cells, site.stored_uris, site.created)


#: A row to compute: its rowid, its inputs' stored values and their cell errors.
Row = tuple[int, dict[int, Any], dict[int, tuple[Any, Any]]]


def _row(comp: Computation, r: tuple, n_read: int) -> Row:
    """A row read as ``_rowid, <read columns>..., <inputs' errortype, errormsg>...``."""
    raw = {c.col_id: r[1 + i] for i, c in enumerate(comp.inputs)}
    base = 1 + n_read
    errors = {c.col_id: (r[base + 2 * i], r[base + 2 * i + 1])
              for i, c in enumerate(comp.inputs) if r[base + 2 * i] is not None}
    return r[0], raw, errors


def compute_rows(op: Operation, cols: list[ColumnMeta], rows: Rows, *, on_error: str = "abort",
                 release_old: bool = False) -> UpdateStatus:
    """Fill ``cols`` (computed, in dependency order) for ``rows``, inside ``op``'s write
    transaction (an update's dependents, the last rows of a long operation). Old media values
    that get replaced are released (deleted after the commit) when ``release_old``."""
    t0 = time.perf_counter()
    db, meta = op.db, op.meta
    with Computation(op, cols, on_error=on_error) as comp:
        old_media = [c for c in comp.cols if c.type.is_media] if release_old else []
        read_cols = comp.inputs + old_media
        update_sql = plan.update_cells(meta, comp.cols)
        done = 0
        replaced: dict[int, list[str]] = {}
        for batch in _batches(db, meta, read_cols, rows, errors_of=comp.inputs):
            cells = comp.compute([_row(comp, r, len(read_cols)) for r in batch])
            db.executemany(update_sql, [[*c, r[0]] for c, r in zip(cells, batch, strict=True)])
            _note_replaced(replaced, comp, old_media, batch, cells)
            done += len(batch)
        for col_id, uris in replaced.items():
            op.release(col_id, uris)
    return UpdateStatus("Added", done * len(cols), comp.errors, time.perf_counter() - t0,
                        "column value")


def _batches(db: Any, meta: TableMeta, cols: list[ColumnMeta], rows: Rows,
             size: int = BATCH_ROWS, errors_of: list[ColumnMeta] | None = None
             ) -> Iterator[list[tuple]]:
    """``rows`` in rowid order, ``size`` at a time (keyset batches: memory stays bounded)."""
    errs = errors_of or []
    if rows.rowids is not None:
        for part in rows.chunks(size):
            yield db.query(*plan.select(meta, cols, part, errors_of=errs))
        return
    last = -(2**63)
    while True:
        batch = db.query(*plan.select(meta, cols, rows, after=last, limit=size, errors_of=errs))
        if not batch:
            return
        last = batch[-1][0]
        yield batch


def _note_replaced(replaced: dict[int, list[str]], comp: Computation,
                   old_media: list[ColumnMeta], batch: list[tuple], cells: list[list[Any]]
                   ) -> None:
    """Old media values the new cells replace (to release after the commit)."""
    n_in = len(comp.inputs)
    for r, res in zip(batch, cells, strict=True):
        for j, c in enumerate(old_media):
            old, new = r[1 + n_in + j], res[3 * comp.cols.index(c)]
            if old is not None and old != new:
                replaced.setdefault(c.col_id, []).append(old)


# ---- long operations: compute outside the lock, commit briefly, resume -------------------------
#: A batch aims at about this much computing before its brief commit (and holds at most
#: BATCH_ROWS rows): other connections wait at most one commit, and progress is saved often.
BATCH_SECONDS = 1.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a long operation: it stopped after the batch in progress was committed."""


def run_batches(op: Operation, cols: list[ColumnMeta], rows: Rows, job: catalog.Job, *,
                on_error: str, release_old: bool, recheck: Callable[[], None],
                resume_hint: str, desc: str, pool: Pool | None = None) -> UpdateStatus:
    """Compute ``cols`` for ``rows`` beyond ``job.done_upto`` in batches: read and compute
    without the write lock, then commit each batch in a brief transaction that records the
    job's progress. A cell is written only if its row's inputs are what was computed from
    (another writer may have changed or deleted the row meanwhile: it computed the cell
    itself). Returns when no row is left beyond the job's mark (the caller finishes under the
    lock); raises on failure with the job left resumable. Ctrl-C stops after the current batch.
    """
    import signal
    import threading

    t0 = time.perf_counter()
    meta, db = op.meta, op.db
    stop: list[int] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum: int, frame: Any) -> None:
            stop.append(signum)
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, on_sigint)
    bar = progress.bar(lambda: max(job.total_rows, job.done_rows), desc, op.settings,
                       initial=job.done_rows)
    try:
        with Computation(op, cols, on_error=on_error, bar=bar, pool=pool) as comp:
            old_media = [c for c in comp.cols if c.type.is_media] if release_old else []
            read_cols = comp.inputs + old_media
            update_sql = plan.update_cells_unchanged(meta, comp.cols, comp.inputs)
            size, done = (16 if pool is None else max(16, 2 * pool.slots)), 0
            # With a pool, the next batch is already computing while this one commits (its
            # files are counted only when it is finished, after this commit).
            depth = 1 if pool is None else 2
            started: collections.deque[tuple[list[tuple], Any]] = collections.deque()
            after, exhausted, t_last = job.done_upto, False, time.perf_counter()
            try:
                while not stop:
                    while len(started) < depth and not exhausted:
                        with db.read():
                            batch = db.query(*plan.select(meta, read_cols, rows, after=after,
                                                          limit=size, errors_of=comp.inputs))
                        if not batch:
                            exhausted = True
                            break
                        after = batch[-1][0]
                        rows_in = [_row(comp, r, len(read_cols)) for r in batch]
                        started.append((batch, rows_in if pool is None else
                                        comp.start(rows_in)))
                    if not started:
                        break
                    batch, work = started.popleft()
                    cells = comp.compute(work) if pool is None else comp.finish(work)
                    spent, t_last = time.perf_counter() - t_last, time.perf_counter()
                    _commit_batch(op, comp, job, batch, cells, old_media, update_sql, recheck)
                    done += len(batch)
                    # Next batch: about BATCH_SECONDS of work, at most comp.batch_rows rows.
                    per_row = spent / len(batch)
                    most = comp.batch_rows
                    size = max(1, min(most, int(BATCH_SECONDS / per_row) if per_row else most))
            finally:
                for _, work in started:  # started, never to be committed: their files go
                    comp.drain(work)
            errors = comp.errors
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if stop:
        raise Interrupted(f"interrupted: {resume_hint}")
    return UpdateStatus("Added", done * len(cols), errors, time.perf_counter() - t0,
                        "column value")


def _commit_batch(op: Operation, comp: Computation, job: catalog.Job, batch: list[tuple],
                  cells: list[list[Any]], old_media: list[ColumnMeta], update_sql: str,
                  recheck: Callable[[], None]) -> None:
    """One brief transaction: the batch's cells (each only if its row's inputs are still what
    was computed from), the files they replace released, the job's progress recorded."""
    db = op.db
    params = [[*c, r[0], *r[1:1 + len(comp.inputs)]] for c, r in zip(cells, batch, strict=True)]
    stored_now = set(op.created)
    with op.committing(lambda _meta: recheck()):
        written = _write_guarded(db, update_sql, params)
        kept = [(r, c) for (r, c), ok in zip(zip(batch, cells, strict=True), written,
                                              strict=True) if ok]
        skipped = [c for c, ok in zip(cells, written, strict=True) if not ok]
        replaced: dict[int, list[str]] = {}
        _note_replaced(replaced, comp, old_media, [r for r, _ in kept], [c for _, c in kept])
        for col_id, uris in replaced.items():
            op.release(col_id, uris)
        catalog.advance_job(db, job, batch[-1][0], len(batch))
    if skipped:  # their rows changed meanwhile: the files computed for them go
        op.discard(u for u in (op.places.resolve(c[k]) for c in skipped
                               for k in comp.media_slots if c[k] is not None)
                   if u in stored_now)


def _write_guarded(db: Any, sql: str, params: list[list[Any]]) -> list[bool]:
    """Run a guarded UPDATE per row; which rows it changed (False: changed or deleted)."""
    out = []
    for p in params:
        db.execute(sql, p)
        out.append(db.changes() > 0)
    return out
