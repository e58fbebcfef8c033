"""Resumable long operations: ``add_computed_column`` and ``recompute_columns`` as jobs.

A job is a row of ``px_jobs`` (what was asked, how far it got, which process runs it) beside,
for an add, the *pending* column it fills. Its lifecycle lives here, in one place:

* **start or resume**: the same call again finds its pending column and job and resumes after
  the last committed row; another expression under the same name is an error saying how to go
  on; a job whose process is alive on this machine is "being computed by another process";
  one whose process is gone (or is on another machine) is taken over;
* **run**: rows are computed outside the write lock and committed in brief batches
  (:func:`pxlite.compute.run_batches`), the job's progress recorded with each;
* **finish**: the last rows and the switch (pending -> complete, or the old column replaced)
  in one brief transaction; on ``on_error='abort'`` nothing of it remains;
* **progress** for ``describe()`` and for the errors that name a pending column.

The :class:`~pxlite.table.Table` facade validates names and expressions and delegates here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import catalog, executors, media, plan, storage, writes
from .catalog import ColumnMeta, TableMeta
from .compute import Interrupted, compute_rows, run_batches
from .errors import (
    AlreadyExistsError,
    ComputeError,
    NotFoundError,
    PxliteError,
    SchemaError,
    check_choice,
    check_on_error,
)
from .exprs import Expr, column_expr
from .plan import Rows
from .results import UpdateStatus
from .types import ColumnType

if TYPE_CHECKING:
    from .places import Places


# ---- which columns depend on which -------------------------------------------------------------
def dependents(meta: TableMeta, *col_ids: int) -> list[ColumnMeta]:
    """Computed columns that read any of ``col_ids``, directly or through another computed one
    (a column whose function cannot be found still depends on what it reads)."""
    reads = {c.col_id: column_expr(meta, c).columns()
             for c in meta.columns if c.expr is not None}
    found: list[ColumnMeta] = []
    frontier = set(col_ids)
    changed = True
    while changed:
        changed = False
        for c in meta.columns:
            if c.is_computed and c not in found and reads[c.col_id] & frontier:
                found.append(c)
                frontier.add(c.col_id)
                changed = True
    return found


def check_replaceable(meta: TableMeta, name: str) -> None:
    """May ``if_exists='replace'`` replace this column? Not while others depend on it: then a
    SchemaError says which."""
    old = meta.column(name)
    deps = [d for d in dependents(meta, old.col_id)
            if d.col_id != old.col_id and d.name != f"_pxl_new_{name}"]
    if deps:
        raise SchemaError(
            f"cannot replace column {name!r} of {meta.path!r}: computed column(s) "
            f"{', '.join(repr(d.name) for d in deps)} depend on it; drop them first")


def keep_existing(meta: TableMeta, name: str, if_exists: str) -> bool:
    """A column ``name`` exists already: keep it (``if_exists='ignore'``: True) or replace it
    ('replace': False); 'error' raises AlreadyExistsError saying how to go on."""
    if if_exists == "error":
        raise AlreadyExistsError(f"table {meta.path!r} already has a column named {name!r}; "
                                 "pass if_exists='replace' or 'ignore'")
    return if_exists == "ignore"


# ---- job records ---------------------------------------------------------------------------------
def host() -> str:
    """This machine's name, for job records (os.uname: no socket module to import)."""
    return os.uname().nodename


def alive_elsewhere(job: catalog.Job) -> bool:
    """Is another live process on this machine running ``job``? (One on another machine cannot
    be asked: its job is taken over.)"""
    if job.pid == os.getpid() or job.host != host():
        return False
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_of(db: Any, meta: TableMeta, col: ColumnMeta) -> catalog.Job | None:
    """The add_computed_column job filling a pending column, if its record is there."""
    return next((j for j in catalog.jobs(db, meta.id)
                 if j.kind == "add_computed_column" and j.spec.get("col_id") == col.col_id),
                None)


def pending_state(db: Any, meta: TableMeta, col: ColumnMeta) -> str:
    """``'pending 5,120/10,000'`` for describe() and messages."""
    job = job_of(db, meta, col)
    return f"pending {job.progress()}" if job is not None else "pending"


def pending_message(db: Any, meta: TableMeta, col: ColumnMeta) -> str:
    """Why a pending column cannot be used yet, and what to do."""
    return (f"column {col.name!r} of {meta.path!r} is not complete yet "
            f"({pending_state(db, meta, col)}): an add_computed_column is running or was "
            f"interrupted; run the same add_computed_column({col.name}=...) again to finish "
            f"it, or drop it with t.drop_column({col.name!r})")


def _being_computed(meta: TableMeta, name: str, job: catalog.Job) -> SchemaError:
    return SchemaError(
        f"column {name!r} of {meta.path!r} is being computed by another process (pid "
        f"{job.pid} on {job.host}, {job.progress()} rows done); wait for it")


def end_jobs_of_column(db: Any, meta: TableMeta, col: ColumnMeta) -> None:
    """Inside a write transaction, before ``col`` is dropped: its jobs cannot resume now."""
    for job in catalog.jobs(db, meta.id):
        if job.spec.get("col_id") == col.col_id or col.col_id in job.spec.get("cols", ()):
            catalog.end_job(db, job)


def drop_pending(op: writes.Operation, col: ColumnMeta) -> None:
    """Inside ``op``'s transaction: drop a pending column, its job and its files."""
    db = op.db
    meta = op.meta if any(c.col_id == col.col_id for c in op.meta.columns) else \
        catalog.load_table(db, op.meta.path)
    col = meta.column_by_id(col.col_id)
    end_jobs_of_column(db, meta, col)
    op.drop_column(col, meta)


def _check_job(db: Any, meta: TableMeta, job: catalog.Job) -> None:
    """Inside a batch's transaction: the job was not cancelled meanwhile (its column dropped by
    another connection)."""
    if not any(j.id == job.id for j in catalog.jobs(db, meta.id)):
        raise NotFoundError(f"the {job.kind} on {meta.path!r} was cancelled by another "
                            "connection (its column was dropped or replaced)")


# ---- where a job computes ------------------------------------------------------------------------
def first_local(db: Any, meta: TableMeta, cols: list[ColumnMeta]) -> str | None:
    """Where one of ``cols`` (media columns among them) names a local file in a row, as text
    for a message; None when none does."""
    media_cols = [c for c in cols if c.type.is_media and c.stored]
    if not media_cols:
        return None
    found = db.query(*plan.first_local_file(meta, media_cols))
    if not found:
        return None
    rowid, *values = found[0]
    name = next(c.name for c, v in zip(media_cols, values, strict=True)
                if isinstance(v, str) and v.startswith(("file:", "media:")))
    return f"column {name!r} of row {rowid}"


def pool_for(places: Places, executor: Any, meta: TableMeta, cols: list[ColumnMeta],
             local_input: Callable[[], str | None]
             ) -> contextlib.AbstractContextManager[executors.Pool | None]:
    """The pool computing ``cols`` (None: this process's threads), refused up front when its
    workers could not reach the columns' destinations or the local inputs."""
    settings = places.settings()
    media_cols = [(c.name, c.destination) for c in cols if c.type.is_media]

    def outputs() -> list[tuple[str, str]]:
        return [(n, places.output_prefix(meta, d, settings)) for n, d in media_cols]

    return executors.opened(executor, settings, outputs=outputs, local_input=local_input)


def sweep_uncommitted(op: writes.Operation, col: ColumnMeta) -> None:
    """Before resuming: delete the files a killed batch stored for ``col`` without committing
    them (in pxlite's key shape under this column's folder, named by no row)."""
    if not col.type.is_media:
        return
    where = storage.join(op.output_prefix(col.destination),
                         media.key_folder(op.meta.uid, col.col_id))
    places = op.places
    try:
        listed = [places.stored(u) for u in storage.get_backend(where, op.settings).list(where)]
    except PxliteError:
        return  # check(fix=True) sweeps them later
    if listed:
        with op.db.transaction():
            writes.delete_unreferenced(places, listed, op.settings, writer=op.writer)


def _run(op: writes.Operation, cols: list[ColumnMeta], rows: Rows, job: catalog.Job,
         on_error: str, hint: str, pool: executors.Pool | None) -> UpdateStatus:
    def recheck() -> None:
        writes.current_columns(op.db, op.meta)
        _check_job(op.db, op.meta, job)

    try:
        return run_batches(op, cols, rows, job, on_error=on_error, release_old=True,
                           recheck=recheck, resume_hint=hint.format(job.progress()),
                           desc=f"{op.meta.name}: {', '.join(c.name for c in cols)}",
                           pool=pool)
    except Interrupted as e:
        raise Interrupted(f"interrupted: {hint.format(job.progress())}") from e


# ---- add_computed_column ----------------------------------------------------------------------
def add_computed_column(places: Places, meta: TableMeta, name: str, expr: Expr, *,
                        destination: Any, on_error: str, format: str | None, if_exists: str,
                        stored: bool, executor: Any) -> UpdateStatus:
    """See :meth:`pxlite.table.Table.add_computed_column` (``name`` is checked, ``expr`` is an
    expression of ``meta``'s columns)."""
    t0 = time.perf_counter()
    check_on_error(on_error)
    check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
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
    if destination is not None and not isinstance(destination, (str, os.PathLike)):
        raise SchemaError(f"column {name!r}: destination= takes a folder path or a storage "
                          f"URI (e.g. 's3://bucket/prefix/'), got {type(destination).__name__} "
                          f"{destination!r}")
    if not stored:
        if executor is not None:
            raise SchemaError(f"column {name!r} is computed when read (stored=False), by the "
                              "query reading it: executor= does not apply")
        if destination is not None or fmt is not None:
            raise SchemaError(f"column {name!r} is computed when read (stored=False): nothing "
                              "is written, so destination= and format= do not apply")
        return _add_on_read(places, meta, name, expr, ctype, on_error, if_exists, t0)
    # The database's own media folder is stored as such ('media:'), so a copy of the database
    # writes into its own media folder, never into its original's.
    dest = places.stored(places.validate_dest(destination)) if destination is not None else None
    spec: dict[str, Any] = {"name": name, "expr": json.dumps(expr.to_json()),
                            "destination": dest, "format": fmt, "on_error": on_error}
    existing = next((c for c in meta.columns if c.name == name), None)
    replacing = existing is not None and not existing.pending
    if replacing:
        if keep_existing(meta, name, if_exists):
            return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")
        check_replaceable(meta, name)
    spec["replace"] = replacing
    work_name = f"_pxl_new_{name}" if replacing else name
    col, job = _resumable(places, meta, work_name, spec, replace=if_exists == "replace")
    meta = catalog.load_table(places.db, meta.path)
    reads = [c for c in meta.columns if c.col_id in expr.columns()]
    add = _Add(places, meta, name, work_name, ctype, spec, replacing)
    target = ColumnMeta(col.col_id if col else 0, name, 0, ctype, spec["expr"], dest)
    with pool_for(places, executor, meta, [target],
                  lambda: first_local(places.db, meta, reads)) as pool, \
            writes.Operation(places, meta, kind="add_computed_column") as op:
        status = add.run(op, col, job, on_error, pool)
    status.elapsed_s = time.perf_counter() - t0
    return status


class _Add:
    """One add_computed_column being run: start or resume its pending column, fill it in
    batches, then make it complete (or replace the old column) in one brief commit."""

    def __init__(self, places: Places, meta: TableMeta, name: str, work_name: str,
                 ctype: ColumnType, spec: dict[str, Any], replacing: bool) -> None:
        self.places, self.meta, self.name, self.work_name = places, meta, name, work_name
        self.ctype, self.spec, self.replacing = ctype, spec, replacing

    def _start(self, op: writes.Operation) -> tuple[ColumnMeta, catalog.Job]:
        """A new pending column and its job, in one brief commit. Under the lock the name is
        checked again: another process may have started the same add meanwhile."""
        db = op.db
        with op.committing():
            current = writes.current_columns(db, op.meta)
            other = next((c for c in current.columns if c.name == self.work_name), None)
            if other is not None:
                job = job_of(db, current, other) if other.pending else None
                if job is not None:
                    raise _being_computed(current, self.name, job)
                raise AlreadyExistsError(
                    f"column {self.work_name!r} of {current.path!r} was added by another "
                    "connection while this call started; run it again to resume or ignore it")
            col = catalog.add_column(db, current, self.work_name, self.ctype,
                                     expr=self.spec["expr"],
                                     destination=self.spec["destination"],
                                     format=self.spec["format"],
                                     on_error=self.spec["on_error"], pending=True)
            total = db.query(*plan.count(current))[0][0]
            job = catalog.start_job(db, current.id, "add_computed_column",
                                    {**self.spec, "col_id": col.col_id}, total, os.getpid(),
                                    host())
        op.meta = catalog.load_table(db, op.meta.path)
        return op.meta.column_by_id(col.col_id), job

    def run(self, op: writes.Operation, col: ColumnMeta | None, job: catalog.Job | None,
            on_error: str, pool: executors.Pool | None) -> UpdateStatus:
        db, name = op.db, self.name
        if self.ctype.is_media:
            op.prepare(op.output_prefix(self.spec["destination"]))
        if col is None:
            col, job = self._start(op)
        else:
            sweep_uncommitted(op, col)  # files of a batch a crash kept from commit
        assert job is not None
        hint = (f"column {name!r} of {op.meta.path!r} is pending ({{}} rows done); run the "
                f"same add_computed_column({name}=...) again to finish it")
        try:
            status = _run(op, [col], Rows.all(), job, on_error, hint, pool)
            with op.committing(lambda m: writes.current_columns(db, m)):
                _check_job(db, op.meta, job)  # brief: the last rows, then it is complete
                tail = compute_rows(op, [col], Rows.matching("_rowid > ?", [job.done_upto]),
                                    on_error=on_error, release_old=True)
                if self.replacing:
                    check_replaceable(catalog.load_table(db, op.meta.path), name)
                    old = op.meta.column(name)
                    op.drop_column(old)
                    catalog.rename_column(db, op.meta, col, name)
                    catalog.set_column_position(db, op.meta, col, old.position)
                catalog.set_column_ready(db, op.meta, col)
                catalog.end_job(db, job)
        except ComputeError:
            if on_error == "abort":  # nothing of the operation remains
                op.undo()  # the files of the batch that failed, then the committed ones
                with contextlib.suppress(NotFoundError), \
                        op.committing(lambda m: writes.current_columns(db, m)):
                    drop_pending(op, col)
            raise
        status.num_rows += tail.num_rows
        status.num_errors += tail.num_errors
        return status


def _add_on_read(places: Places, meta: TableMeta, name: str, expr: Expr, ctype: ColumnType,
                 on_error: str, if_exists: str, t0: float) -> UpdateStatus:
    """add_computed_column(..., stored=False): a column defined now, computed when read."""
    with writes.operation(places, meta, recheck=lambda m: writes.current_columns(places.db, m)
                          ) as op:
        if any(c.name == name for c in op.meta.columns):
            if keep_existing(op.meta, name, if_exists):
                return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")
            check_replaceable(op.meta, name)
            op.drop_column(op.meta.column(name))
        catalog.add_column(places.db, op.meta, name, ctype, expr=json.dumps(expr.to_json()),
                           on_error=on_error, stored=False)
    return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")


def _resumable(places: Places, meta: TableMeta, work_name: str, spec: dict[str, Any], *,
               replace: bool) -> tuple[ColumnMeta | None, catalog.Job | None]:
    """A pending column left by an interrupted call: the one to resume when ``spec`` is what
    it was started with; else an error saying what is pending and how to go on (``replace``:
    it is dropped and the call starts afresh)."""
    db = places.db
    pending = next((c for c in meta.columns if c.name == work_name and c.pending), None)
    if pending is None:
        return None, None
    job = job_of(db, meta, pending)
    if job is not None and alive_elsewhere(job):
        raise _being_computed(meta, spec["name"], job)
    if job is not None and {k: job.spec.get(k) for k in spec} == spec:
        with db.transaction():
            total = db.query(*plan.count(meta))[0][0]
            catalog.claim_job(db, job, max(job.total_rows, total), os.getpid(), host())
        return pending, job
    if not replace:
        raise SchemaError(
            f"column {spec['name']!r} of {meta.path!r} is pending from an interrupted "
            f"add_computed_column of another expression ({pending_state(db, meta, pending)}"
            f"); run that call again to finish it, pass if_exists='replace' to start this one "
            f"instead, or drop it with t.drop_column({pending.name!r})")
    with writes.operation(places, meta, recheck=lambda m: writes.current_columns(db, m)) as op:
        drop_pending(op, pending)
    return None, None


# ---- recompute_columns ------------------------------------------------------------------------
def recompute_columns(places: Places, meta: TableMeta, cols: list[ColumnMeta], rows: Rows,
                      spec: dict[str, Any], *, errors_only: bool, executor: Any
                      ) -> UpdateStatus:
    """See :meth:`pxlite.table.Table.recompute_columns`: ``cols`` are the computed columns
    to recompute (their stored dependents included), ``rows`` the rows ``where`` selects."""
    t0 = time.perf_counter()
    db = places.db
    read_ids = set().union(*(column_expr(meta, d).columns() for d in cols))
    reads = [c for c in meta.columns if c.col_id in read_ids]
    with pool_for(places, executor, meta, cols, lambda: first_local(db, meta, reads)) as pool, \
            writes.Operation(places, meta, kind="recompute_columns") as op:
        op.prepare_for(cols)
        with op.committing(lambda m: writes.current_columns(db, m)):
            job = None
            for j in catalog.jobs(db, meta.id):
                if j.kind != "recompute_columns":
                    continue
                if alive_elsewhere(j):
                    raise SchemaError(
                        f"another process is recomputing columns of {meta.path!r} (pid "
                        f"{j.pid} on {j.host}, {j.progress()} rows done); wait for it")
                if j.spec == spec and job is None:
                    job = j  # the same call, interrupted: resume it
                else:
                    catalog.end_job(db, j)
            if errors_only:
                rows = rows.where(" OR ".join(f"{c.sql_et} IS NOT NULL" for c in cols))
            total = db.query(*plan.count(meta, rows))[0][0]
            if job is None:
                job = catalog.start_job(db, meta.id, "recompute_columns", spec, total,
                                        os.getpid(), host())
            else:
                catalog.claim_job(db, job, job.done_rows + total, os.getpid(), host())
        hint = (f"recompute_columns of {meta.path!r} stopped after {{}} rows; run the same "
                "call again to continue")
        status = _run(op, cols, rows, job, "ignore", hint, pool)
        with op.committing(lambda m: writes.current_columns(db, m)):
            catalog.end_job(db, job)
    status.verb, status.noun = "Recomputed", "row"
    status.num_rows //= max(1, len(cols))  # rows, not cells (one per recomputed column)
    status.elapsed_s = time.perf_counter() - t0
    return status
