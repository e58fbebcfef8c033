"""What a user asks of a table's versions: revert, listings, retention, snapshots, pruning.

The versions themselves are made by every write transaction (pxlite/versions.py, called by
writes.Operation.committing); this room runs the requests about them through that same one write
operation, so a revert is a version like any change, and pruning releases files through the one
delete gate.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from . import catalog, indexing, jobs, versions, writes
from .catalog import TableMeta
from .errors import AlreadyExistsError, SchemaError, VersionError, check_choice
from .results import ResultSet, UpdateStatus
from .types import Int, String, Timestamp

if TYPE_CHECKING:
    from .places import Places


def revert(places: Places, meta: TableMeta, to: int | None = None) -> UpdateStatus:
    """Bring a table back to version ``to`` (default: the version before the change its
    current content came from) in one transaction, recorded as a new version (so a revert can
    be reverted). Rows, columns and the files they name come back as they were."""
    t0 = time.perf_counter()
    db = places.db
    if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
        raise SchemaError(f"revert(to=...) takes a version number (see get_versions()), got "
                          f"{type(to).__name__} {to!r}")
    if not versions.is_versioned(db, meta.id):
        raise versions.unversioned(db, meta, "earlier versions to revert to")
    with writes.operation(places, meta, kind="revert", capture="statements",
                          recheck=lambda m: writes.current_table(db, m)) as op:
        current = writes.current_table(db, op.meta)
        _settle_jobs(db, current)
        target = versions.revert_target(db, current) if to is None else to
        versions.revert(db, current, target)
        indexing.settle(db, catalog.load_table(db, meta.path))  # indexes follow their vectors
    rec = db.query("SELECT inserts + updates + deletes FROM px_versions WHERE table_id = ? AND "
                   "version = ?", (meta.id, op.version)) if op.version is not None else []
    return UpdateStatus("Reverted", rec[0][0] if rec else 0, 0, time.perf_counter() - t0)


def _settle_jobs(db: Any, meta: TableMeta) -> None:
    """Before a revert, under the lock: a long operation running (in another process, or in
    another thread of this one) must finish first; an interrupted recompute_columns ends here
    (its committed batches are in the versions the revert goes past). A pending column is
    refused by versions.revert."""
    here = {w.kind for w in writes.live_writers(db)
            if w.pid == os.getpid() and w.table_uid in (meta.uids or (meta.uid,))}
    for job in catalog.jobs(db, meta.id):
        if jobs.alive_elsewhere(job) or (job.pid == os.getpid() and job.kind in here):
            raise VersionError(
                f"cannot revert table {meta.path!r} while {job.kind} runs (pid {job.pid} on "
                f"{job.host}, {job.progress()} rows); wait for it to finish")
        if job.kind == "recompute_columns":
            catalog.end_job(db, job)


def get_versions(db: Any, meta: TableMeta, n: int | None = None
                 ) -> list[versions.VersionMetadata]:
    """The versions kept of a table, most recent first (at most ``n``); [] for a table
    created with ``versioned=False``."""
    return versions.history(db, meta.id, n)


#: The columns of :func:`history_table`, in order, with their types.
HISTORY_COLUMNS = (("version", Int), ("created_at", Timestamp), ("kind", String),
                   ("change_type", String), ("inserts", Int), ("updates", Int),
                   ("deletes", Int), ("schema_change", String), ("reverted_to", Int))


def history_table(db: Any, meta: TableMeta, n: int | None = None) -> Any:
    """:func:`get_versions` as a readable table: a pandas DataFrame when pandas is installed
    (as Pixeltable's), else a ResultSet with the same columns."""
    found = get_versions(db, meta, n)
    names = [name for name, _ in HISTORY_COLUMNS]
    try:
        import pandas as pd
    except ImportError:
        return ResultSet(names, [t for _, t in HISTORY_COLUMNS],
                         [tuple(v[k] for k in names) for v in found])  # type: ignore[literal-required]
    frame = pd.DataFrame([[v[k] for k in names] for v in found],  # type: ignore[literal-required]
                         columns=names)
    frame["reverted_to"] = frame["reverted_to"].astype("Int64")  # None stays None, not NaN
    return frame


def _check_days(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise SchemaError(f"version_retention_days takes a number of days >= 0 (or None for the "
                          f"database's setting), got {value!r}")
    return float(value)


def _check_count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SchemaError(f"version_retention_count takes a whole number >= 1 (or None for the "
                          f"database's setting), got {value!r}")
    return value


def policy_of(versioned: object, days: object, count: object) -> versions.Policy:
    """A table's versioning as given to ``create_table`` (checked)."""
    if not isinstance(versioned, bool):
        raise SchemaError(f"versioned= takes True or False, got {versioned!r}")
    if not versioned and (days is not None or count is not None):
        raise SchemaError("version_retention_days/version_retention_count apply to a versioned "
                          "table; drop them, or leave versioned=True")
    return versions.Policy(versioned, _check_days(days), _check_count(count))


def set_retention(places: Places, meta: TableMeta, days: float | None,
                  count: int | None) -> None:
    """Give a versioned table its own retention (None: the database's setting), and prune
    what it no longer keeps now."""
    db = places.db
    p = versions.Policy(True, _check_days(days), _check_count(count))
    with db.transaction():
        current = writes.current_table(db, meta)
        if not versions.is_versioned(db, current.id):
            raise versions.unversioned(db, current, "versions to retain")
        versions.set_policy(db, current.id, p)
    prune(places, meta)


def prune(places: Places, meta: TableMeta) -> None:
    """Forget the versions of a table beyond its retention now (as every write does at its
    end), releasing the files only they named through the delete gate."""
    if not versions.is_versioned(places.db, meta.id):
        return
    with writes.operation(places, meta, kind="prune",
                          recheck=lambda m: writes.current_table(places.db, m)):
        pass


def prune_all(places: Places) -> None:
    """:func:`prune` every table (``check(fix=True)``: versions expire with time too)."""
    for meta in catalog.live_tables(places.db):
        prune(places, meta)


# ---- snapshots ---------------------------------------------------------------------------------
def create_snapshot(places: Places, path: str, meta: TableMeta, version: int | None,
                    if_exists: str = "error") -> None:
    """Name ``version`` (default: the current one) of a table ``path``: O(1), no rows or files
    copied; the version, the history after it and their files are kept until it is dropped."""
    check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
    catalog.check_path(path, "snapshot")
    db = places.db
    with db.transaction():
        current = writes.current_table(db, meta)
        if version is None:
            last = versions.latest(db, current.id)
            if last is None:
                raise versions.unversioned(db, current, "versions to snapshot")
            version = last.version
        versions.require(db, current, version)
        kind = catalog.path_kind(db, path)
        if kind == "snapshot" and if_exists == "ignore":
            return
        if kind == "snapshot" and if_exists == "replace":
            catalog.drop_snapshot_row(db, path)
        elif kind is not None:
            raise AlreadyExistsError(
                f"a {kind} named {path!r} exists already; pass if_exists='ignore'"
                + (" or 'replace'" if kind == "snapshot" else " or choose another name"))
        catalog.create_snapshot(db, path, current.id, version)


def drop_snapshot(places: Places, path: str) -> None:
    """Drop a snapshot; the versions only it kept are pruned now (and their files released)."""
    db = places.db
    with db.transaction():
        table_path, _ = catalog.load_snapshot(db, path)
        catalog.drop_snapshot_row(db, path)
    prune(places, catalog.load_table(db, table_path))
