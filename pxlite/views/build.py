"""Building a new view over its base's existing rows: a resumable long operation.

The view's rows are made in base-rowid order, in batches computed outside the write lock (a
where() evaluated in Python, an iterator run: each video decoded once, front to back, its frames
encoded once into the view's destination) and committed in brief transactions, each recording
how far it got (``px_jobs``, kind ``create_view``). Interrupted (an error, Ctrl-C, a killed
process), the view stays *being built*: queries refuse it, and running the same create_view
again sweeps the files the lost batch stored and goes on after the last committed base row. A
where() SQLite can evaluate needs no batch computing: each commit is one INSERT ... SELECT.

Base rows written meanwhile are safe: a batch's rows are committed only while the base rows'
inputs are what they were made from (others are made again under the lock); base rows the
build has done follow later writes like any view's (sync.py); rows beyond are the build's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from .. import catalog, jobs, media, plan, progress, writes
from ..compute import BATCH_SECONDS, Interrupted, workers
from ..errors import NotFoundError, SchemaError
from ..plan import Rows
from ..results import UpdateStatus
from . import model, rows
from .model import View

#: Base rows a where() SQLite evaluates takes per commit.
SQL_CHUNK = 20_000


def _job(db: Any, view_id: int) -> catalog.Job | None:
    return next((j for j in catalog.jobs(db, view_id) if j.kind == "create_view"), None)


def start(db: Any, view: View, spec: dict[str, Any]) -> catalog.Job:
    """Inside the transaction creating the view: its build's job record."""
    total = db.query(*plan.count(view.base))[0][0]
    return catalog.start_job(db, view.id, "create_view", spec, total, os.getpid(), jobs.host())


def claim(db: Any, view: View) -> catalog.Job:
    """An interrupted build to resume (its process is gone), or a clear error."""
    job = _job(db, view.id)
    if job is not None and jobs.alive_elsewhere(job):
        raise SchemaError(f"view {view.path!r} is being built by another process (pid "
                          f"{job.pid} on {job.host}, {job.progress()} base rows done); wait "
                          "for it")
    with db.transaction():
        total = db.query(*plan.count(view.base))[0][0]
        if job is None:  # the record went (a crafted file): start over after the last row
            last = db.query(f"SELECT coalesce(max(_base), -9223372036854775808) FROM "
                            f"{view.meta.store}")[0][0]
            job = catalog.start_job(db, view.id, "create_view", {}, total, os.getpid(),
                                    jobs.host())
            catalog.advance_job(db, job, last, 0)
        else:
            catalog.claim_job(db, job, max(job.total_rows, total), os.getpid(), jobs.host())
    return job


def hint(path: str) -> str:
    return (f"view {path!r} is being built ({{}} base rows done); run the same create_view "
            "again to finish it, or drop it")


def build(places: Any, view: View, job: catalog.Job, *, resumed: bool) -> UpdateStatus:
    """Make the view's rows for every base row after ``job.done_upto`` (see the module
    docstring); the view is built when this returns."""
    t0 = time.perf_counter()
    db = places.db
    with writes.Operation(places, view.meta, kind="create_view") as op:
        maker = _Maker(op, view, job)
        if resumed:
            for c in view.output_columns():
                if c.stored and c.type.is_media:
                    jobs.sweep_uncommitted(op, c)  # files of the batch a kill kept from commit
        stop = _on_ctrl_c()
        bar = progress.bar(lambda: max(job.total_rows, job.done_rows),
                           f"{view.meta.name}: building", op.settings, initial=job.done_rows)
        try:
            while not stop.is_set():
                before = job.done_rows
                if not maker.batch():
                    break
                if bar is not None:
                    bar.update(job.done_rows - before)
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
        if stop.is_set():
            raise Interrupted(f"interrupted: {hint(view.path).format(job.progress())}")
        with op.committing(maker.recheck):
            maker.rest()  # rows added since the last batch, under the lock: then it is built
            model.set_built(db, view.id)
            catalog.end_job(db, job)
    return UpdateStatus("Added", maker.added, 0, time.perf_counter() - t0, "view row")


class _Stop(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.previous: Any = None

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _on_ctrl_c() -> _Stop:
    """Ctrl-C stops the build after the batch being made is committed."""
    stop = _Stop()
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: Any) -> None:
            stop.set()
            signal.signal(signal.SIGINT, stop.previous or signal.default_int_handler)

        stop.previous = signal.signal(signal.SIGINT, handler)
    return stop


class _Maker:
    """One build's batches: what to read, how to make the rows, the guarded commit."""

    def __init__(self, op: writes.Operation, view: View, job: catalog.Job) -> None:
        self.op, self.view, self.job, self.db = op, view, job, op.db
        self.filter = rows.Filter(view) if view.call is None else None
        self.outputs = rows.Outputs(op, view) if view.call is not None else None
        self.sql_only = self.filter is not None and not self.filter.python
        base = view.base
        self.keys = [base.column_by_id(i) for i in sorted(view.key_columns)
                     if base.column_by_id(i).stored]
        self.size = workers()
        self.added = 0
        self.resolver = media.Resolver(op.settings, op.places.media_folder)

    def recheck(self, meta: Any) -> None:
        """Inside each commit: the view is still there and this build is still its job."""
        writes.current_table(self.db, meta)
        if not any(j.id == self.job.id for j in catalog.jobs(self.db, self.view.id)):
            raise NotFoundError(f"the build of view {self.view.path!r} was cancelled by "
                                "another connection (the view was dropped)")

    def _next_ids(self, limit: int) -> list[int]:
        with self.db.read():
            return [r[0] for r in self.db.query(
                f"SELECT _rowid FROM {self.view.base.sql} WHERE _rowid > ? ORDER BY _rowid "
                "LIMIT ?", (self.job.done_upto, limit))]

    def batch(self) -> bool:
        """Make and commit one batch; False when no base row is left."""
        if self.sql_only:
            ids = self._next_ids(SQL_CHUNK)
            if not ids:
                return False
            with self.op.committing(self.recheck):
                assert self.filter is not None
                self.added += rows.insert_matching(self.op, self.view, self.filter, Rows.matching(
                    "_rowid > ? AND _rowid <= ?", [self.job.done_upto, ids[-1]]))
                catalog.advance_job(self.db, self.job, ids[-1], len(ids))
            return True
        ids = self._next_ids(self.size)
        if not ids:
            return False
        t0 = time.perf_counter()
        seen = self._keys(ids)
        made = self._make(ids)
        spent = time.perf_counter() - t0
        with self.op.committing(self.recheck):
            now = self._keys(ids)
            stale = [i for i in ids if seen.get(i) != now.get(i)]
            if stale:  # changed or deleted meanwhile: made again from what is there now
                made = self._replace(made, stale)
            self._write(made)
            catalog.advance_job(self.db, self.job, ids[-1], len(ids))
        per_row = spent / len(ids)
        self.size = max(workers(), min(1024, int(BATCH_SECONDS / per_row) if per_row else 1024))
        return True

    def _keys(self, ids: list[int]) -> dict[int, tuple]:
        """The base rows' key cells (what decides their view rows), by rowid."""
        found = self.db.query(*plan.select(self.view.base, self.keys, Rows.ids(ids), cells=True))
        return {r[0]: tuple(r[1:]) for r in found}

    def _make(self, ids: list[int]) -> Any:
        if self.outputs is not None:
            return self.outputs.run(self.outputs.inputs(self.db, Rows.ids(ids)))
        assert self.filter is not None
        return self.filter.passing(self.db, Rows.ids(ids), self.resolver)

    def _replace(self, made: Any, stale: list[int]) -> Any:
        """``made`` with the stale base rows' part made again (inside the commit)."""
        gone = set(stale)
        again = self._make(stale)
        if self.outputs is None:
            return sorted([i for i in made if i not in gone] + list(again))
        old = [u for b, outs in made if b in gone for u in self._files(outs)]
        fresh = sorted([m for m in made if m[0] not in gone] + list(again))
        keep = {u for _, outs in fresh for u in self._files(outs)}
        self.op.after_commit(lambda: self.op.discard(
            self.op.places.resolve(u) for u in old if u not in keep))
        return fresh

    def _files(self, outs: list[list[Any]]) -> list[str]:
        assert self.outputs is not None
        slots = [k for k, c in enumerate(self.outputs.columns) if c.type.is_media]
        return [o[k] for o in outs for k in slots if o[k] is not None]

    def _write(self, made: Any) -> None:
        if self.outputs is not None:
            self.added += len(rows.insert_outputs(self.op, self.view, made,
                                                  self.outputs.columns))
        else:
            rows.insert_members(self.op, self.view, made)
            self.added += len(made)

    def rest(self) -> None:
        """Inside the last commit: the base rows added since the last batch."""
        while True:
            ids = [r[0] for r in self.db.query(
                f"SELECT _rowid FROM {self.view.base.sql} WHERE _rowid > ? ORDER BY _rowid "
                "LIMIT ?", (self.job.done_upto, SQL_CHUNK))]
            if not ids:
                return
            self._write(self._make(ids))
            catalog.advance_job(self.db, self.job, ids[-1], len(ids))

