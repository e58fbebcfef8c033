"""THE write operation: every change to a table's rows and files goes through here.

The data-safety rules of DESIGN.md in one place, in this order:

1. **Locations before files.** :meth:`Operation.prepare` commits that a table's files go under a
   prefix before the first file lands there, so a crash leaves files ``check()`` recognises.
2. **One brief write transaction** (``BEGIN IMMEDIATE``) that re-checks the table first (another
   connection may have dropped or changed it since the operation was planned).
3. **Files before rows, durable before referenced.** Files are written (content-addressed)
   before the rows naming them; local ones are synced, with their folders, before COMMIT.
4. **Undo on error.** Whatever fails, in the transaction or at COMMIT, the files the operation
   created (its ledger; for a cloud service that cannot refuse writing an existing key, every
   object it PUT) are deleted through the one gate below, under the write lock: unless a
   committed row names them (identical content may have been named by another writer
   meanwhile: content addressing) or they lie outside the locations this database owns.
5. **Deletes after commit.** Files rows no longer name are listed durably in
   ``px_pending_deletes`` in the same transaction and deleted after it commits, by the one gate
   :func:`delete_unreferenced`, which also serves the undo, a dropped table's sweep and
   ``check(fix=True)``.

Use::

    with writes.operation(conn, meta, prefixes=[...], recheck=table.recheck) as op:
        ...write files with op.write_bytes / op.upload, rows with SQL, op.release(old files)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalog, faults, media, plan, storage
from .catalog import ColumnMeta, TableMeta
from .errors import NotFoundError, PxliteError, StorageError

if TYPE_CHECKING:
    from .config import Settings
    from .connection import Connection
    from .db import Database

#: ``pool_map(fn, items)`` yields ``(item, result, exception)`` as each call finishes.
PoolMap = Callable[[Callable[[Any], Any], Iterable[Any]],
                   Iterable[tuple[Any, Any, BaseException | None]]]


class Operation:
    """One write operation on one table: where its files go, the files it created, the files
    it releases. Enter it with ``with``; a failure before its commit undoes its files."""

    def __init__(self, conn: Connection, meta: TableMeta, settings: Settings | None = None) -> None:
        self.conn, self.meta = conn, meta
        self.settings = settings if settings is not None else conn.settings()
        self.created: list[str] = []   # files this operation created (absolute URIs)
        self.local: list[str] = []     # every local file its rows will name (synced at commit)
        self._after: list[Callable[[], None]] | None = None
        self._prepared: set[str] = set()

    def __enter__(self) -> Operation:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        media.settle_cache_fills()  # the outputs it uploaded are in the cache when it returns
        if exc_type is not None:
            self.undo()  # the files of what never committed (each commit settles its own)

    # ---- where files go --------------------------------------------------------------------------
    def input_prefix(self) -> str:
        """Where inserted media files go: ``input_media_dest``, else the media folder."""
        return self._prefix_of(self.settings.get("input_media_dest"))

    def output_prefix(self, destination: str | None) -> str:
        """Where a computed column's files go: its destination > output_media_dest > default."""
        if destination == catalog.MEDIA_LOCATION:
            return self.conn.media_prefix  # set explicitly to the database's own media folder
        return self._prefix_of(destination or self.settings.get("output_media_dest"))

    def _prefix_of(self, dest: str | None) -> str:
        """The prefix of a destination as given (None or "": the media folder), spelled as
        this table already records its folder."""
        if not dest:
            return self.conn.media_prefix
        return self.conn.known_spelling(self.meta.uid, self.conn.canonical_dest(dest))

    def prepare(self, prefix: str) -> str:
        """Record (and commit) that this table's files go under ``prefix``, before any lands.

        Runs before the operation's write transaction: a crash after a file is written but
        before its row commits then leaves a file check() can still find and sweep. Worker
        threads never touch the catalog; they only check the prefix was prepared.
        """
        if prefix not in self._prepared:
            stored = self.conn.stored(prefix)
            db = self.conn.db
            if stored not in catalog.locations(db, self.meta.uid):
                with db.transaction():
                    catalog.record_location(db, self.meta.uid, stored,
                                            self.conn.ownership.db_id)
                    if stored == catalog.MEDIA_LOCATION:
                        self.conn.note_media_folder()
            self._prepared.add(prefix)
        return prefix

    def prepare_for(self, cols: Iterable[ColumnMeta]) -> None:
        """Prepare every prefix the given columns may write to (see :meth:`prepare`)."""
        for c in cols:
            if c.type.is_media:
                self.prepare(self.output_prefix(c.destination) if c.is_computed
                             else self.input_prefix())

    # ---- files ---------------------------------------------------------------------------------
    def write_bytes(self, data: bytes, ext: str, col: ColumnMeta, prefix: str) -> str:
        """Store encoded bytes under a prepared prefix (content-addressed); return the URI."""
        return self._store(prefix, media.write_file, data, ext, prefix, self.meta.uid,
                           col.col_id, self.settings)

    def upload(self, path: str | os.PathLike[str], ext: str, col: ColumnMeta, prefix: str) -> str:
        """Copy a local file under a prepared prefix (content-addressed); return the URI."""
        return self._store(prefix, media.upload_file, Path(path), ext, prefix, self.meta.uid,
                           col.col_id, self.settings)

    def track(self, uri: str, created: bool) -> str:
        """Count a file stored for this operation (by one of the methods above, or a copy made
        by move_media): undone on failure when ``created``, synced at commit when local."""
        faults.point("file_written")
        if created:
            self.created.append(uri)
        if uri.startswith("file:"):
            self.local.append(uri)
        return uri

    def _store(self, prefix: str, store: Callable[..., tuple[str, bool]], *args: Any) -> str:
        if prefix not in self._prepared:
            raise AssertionError(f"internal error: destination {prefix} was not prepared")
        uri, created = store(*args)
        return self.track(uri, created)

    def make_durable(self) -> None:
        """Before the commit that names them: sync the local files this operation stored (and
        their folders up to the destination root) and confirm each still exists; a destination
        removed meanwhile fails the operation instead of committing rows naming missing files."""
        if self.local:
            # The local backend, like every backend, is loaded through the registry on use.
            from .storage.local import make_durable

            make_durable(self.local, [p for p in self._prepared if p.startswith("file:")])

    # ---- the transaction -------------------------------------------------------------------------
    @contextlib.contextmanager
    def committing(self, recheck: Callable[[TableMeta], object] | None = None
                   ) -> Iterator[Operation]:
        """The operation's write transaction. Inside: re-check the table, write rows, release
        old files. Its own changes sit in a savepoint, so even inside an enclosing transaction a
        failure takes back exactly its rows before its files are undone."""
        db = self.conn.db
        with db.transaction() as after:
            self._after = after
            try:
                with db.savepoint():
                    if recheck is not None:
                        recheck(self.meta)
                    yield self
                    self.make_durable()
            finally:
                self._after = None
            after.insert(0, self._mark_committed)  # the first thing run after COMMIT

    def _mark_committed(self) -> None:
        # The committed rows name these files now; an operation that commits in batches
        # starts the next batch with nothing to undo.
        self.created, self.local = [], []

    def release(self, col_id: int, uris: Iterable[Any]) -> None:
        """Inside :meth:`committing`, after the rows that named ``uris`` (stored forms) changed
        or went: schedule deletion of the files among them this database wrote for the column,
        in a location it owns, that no row of any table names any more (durably, in
        px_pending_deletes), to run after the commit."""
        if self._after is None:
            raise AssertionError("internal error: release() outside the operation's transaction")
        release(self.conn, self.meta, col_id, uris, self._after)

    def drop_column(self, col: ColumnMeta, meta: TableMeta | None = None) -> None:
        """Inside :meth:`committing`: drop a column of the table (``meta``: as loaded now, by
        default the operation's), then release the files its cells named."""
        meta = meta if meta is not None else self.meta
        uris = named_files(self.conn.db, meta, col)
        catalog.drop_column(self.conn.db, meta, col)
        self.release(col.col_id, uris)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Inside :meth:`committing`: run ``fn`` once the (outermost) transaction committed."""
        if self._after is None:
            raise AssertionError("internal error: after_commit() outside the transaction")
        self._after.append(fn)

    def discard(self, uris: Iterable[str]) -> None:
        """Delete files this operation stored but did not commit (a row it meant to write was
        changed or deleted meanwhile), unless a row names them: see :meth:`undo`."""
        doomed = list(uris)
        gone = set(doomed)
        self.local = [u for u in self.local if u not in gone]
        self._delete_unnamed(doomed)

    def undo(self) -> None:
        """Delete the files this operation created that no committed row names.

        Runs after the failed transaction rolled back (or, nested, after its savepoint did),
        under the write lock again: another writer may meanwhile have committed a row naming
        identical content (content addressing), and that file stays.
        """
        created, self.created = self.created, []
        self.local = []  # nothing of what failed will be committed: nothing to sync either
        self._delete_unnamed(created)

    def _delete_unnamed(self, uris: list[str]) -> None:
        """Through the one delete gate (:func:`delete_unreferenced`), under the write lock: a
        file is kept when a committed row names it, or when it lies outside the locations this
        database owns. The second matters since ``created`` may hold objects that were there
        before (a cloud service that cannot refuse a write of an existing key: one plain PUT,
        counted as created): a copy of this database computing into its original's bucket
        writes the same keys, and its undo must not delete the original's files. Best effort:
        the gate stops asking a backend that failed retryably; what is left is an orphan
        check(fix=True) removes."""
        if not uris:
            return
        conn = self.conn
        with contextlib.suppress(Exception), conn.db.transaction():
            delete_unreferenced(conn, [conn.stored(u) for u in uris], self.settings)


@contextlib.contextmanager
def operation(conn: Connection, meta: TableMeta, *, prefixes: Iterable[str] = (),
              columns: Iterable[ColumnMeta] = (), settings: Settings | None = None,
              recheck: Callable[[TableMeta], object] | None = None) -> Iterator[Operation]:
    """One write operation: prepare the destinations (``prefixes``, and those ``columns``
    write to), then the write transaction (see :class:`Operation`)."""
    with Operation(conn, meta, settings) as op:
        for p in prefixes:
            op.prepare(p)
        op.prepare_for(columns)
        with op.committing(recheck):
            yield op


def current_table(conn: Connection, meta: TableMeta) -> TableMeta:
    """Inside an operation's transaction (or a read snapshot): the table ``meta`` describes as
    it is now. Another connection may have dropped it since ``meta`` was loaded (NotFoundError
    naming the table), or dropped it and created another under its name: never touch that one.
    Pass ``lambda m: current_table(conn, m)`` as an operation's ``recheck``."""
    current = catalog.load_table(conn.db, meta.path)  # NotFoundError naming the table if gone
    if current.uid != meta.uid:
        raise NotFoundError(
            f"table {meta.path!r} was dropped (and created again) by another connection while "
            "this operation ran; get_table() it again and retry")
    return current


# ---- releasing and deleting files -----------------------------------------------------------
def named_files(db: Database, meta: TableMeta, col: ColumnMeta, rows: plan.Rows = plan.ALL
                ) -> list[Any]:
    """The distinct values (stored URIs) a media column's cells hold among ``rows``: the files
    they name, to release when those cells go. None for a column that holds no files."""
    if not (col.type.is_media and col.stored):
        return []
    return [r[0] for r in db.query(*plan.distinct_values(meta, col, rows))]


def release(conn: Connection, meta: TableMeta, col_id: int, uris: Iterable[Any],
            after: list[Callable[[], None]]) -> None:
    """See :meth:`Operation.release`; ``after`` is the transaction's after-commit list."""
    prefixes = tuple(catalog.owned_prefixes(conn.db, meta.uid, conn.ownership, col_id))
    owned = [u for u in set(uris) if isinstance(u, str) and u.startswith(prefixes)]
    if owned:
        still = catalog.named_by_rows(conn.db, owned)
        owned = [u for u in owned if u not in still]
    if not owned:
        return
    catalog.add_pending_deletes(conn.db, owned)
    after.append(lambda: finish_deletes(conn, owned))


def owned_location_test(conn: Connection) -> Callable[[str], str | None]:
    """A function: the owned location (stored prefix) a stored URI was written under by this
    database, or None when it is not a file this database wrote and may delete.

    The URI must lie under a location this database owns, in pxlite's object-key shape
    (media.key_owner), for the uid that location was recorded for. Every automatic delete
    passes through this test, so neither a crafted catalog (a shared or downloaded database
    file) nor a copy of a database can direct deletions at files it did not write: a
    pending-delete row or a location row alone proves nothing.
    """
    owned_locations = [(uid, p) for uid, p, owner in catalog.all_locations(conn.db)
                       if conn.ownership.owns(p, owner)]

    def location(uri: str) -> str | None:
        for uid, prefix in owned_locations:
            if uri.startswith(prefix) and media.key_owner(uri[len(prefix):]) == uid:
                return prefix
        return None

    return location


class DeleteOutcome:
    """What :func:`delete_unreferenced` did with each stored URI."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.named: list[str] = []                    # a row names it: kept
        self.refused: list[tuple[str, str]] = []      # not ours to delete: kept, with why
        self.failed: list[tuple[str, PxliteError]] = []


def delete_unreferenced(conn: Connection, stored: Iterable[str], settings: Settings,
                        pool_map: PoolMap | None = None) -> DeleteOutcome:
    """Inside a write transaction: delete the files among ``stored`` (stored forms) that this
    database wrote, in a location it owns, and that no row of any table names.

    The one gate every automatic delete passes (pending deletes, a dropped table's sweep,
    ``check(fix=True)``). It keeps a file when a row names it (under any spelling of its
    folder); when it is not in pxlite's key shape under an owned location (a copy's original,
    a crafted catalog); when a local file's real folder lies outside its location (a symlink
    out of it); or when a local file's bytes do not hash to its name. ``pool_map`` may run the
    deletes in parallel.
    """
    uris = sorted({u for u in stored if isinstance(u, str)})
    out = DeleteOutcome()
    named = catalog.named_by_rows(conn.db, uris)
    location = owned_location_test(conn)
    doomed: list[tuple[str, str]] = []
    for u in uris:
        if u in named:
            out.named.append(u)
            continue
        loc = location(u)
        if loc is None:
            out.refused.append((u, "not a file this database wrote in a location it owns"))
            continue
        uri = conn.resolve(u)
        if storage.is_local(uri):
            why = media.local_delete_refusal(uri, conn.resolve(loc))
            if why is not None:
                out.refused.append((u, why))
                continue
        doomed.append((u, uri))
    aliased = _named_under_another_spelling(conn, [d for d in doomed if d[1].startswith("file:")])
    for u in aliased:
        out.refused.append((u, "a row names the same file under another spelling of its folder"))
    doomed = [d for d in doomed if d[0] not in aliased]

    # A backend that failed retryably (down, or hanging until the timeout) is not asked again
    # for the other files: each try could cost the full timeout times the retries. Those files
    # stay pending (or orphans) for a later open or check(fix=True).
    unreachable: dict[int, str] = {}  # id(backend) -> the file whose delete failed

    def delete(item: tuple[str, str]) -> None:
        faults.point("before_file_delete")
        backend = storage.get_backend(item[1], settings)
        if id(backend) in unreachable:
            raise StorageError(f"{item[1]}: not tried, the delete of {unreachable[id(backend)]} "
                               "on the same storage failed first; check(fix=True) retries it",
                               uri=item[1], retryable=True)
        try:
            backend.delete(item[1])
        except StorageError as e:
            if e.retryable:
                unreachable.setdefault(id(backend), item[1])
            raise

    results = (pool_map or _serial)(delete, doomed)
    for (u, _), _, exc in results:
        if exc is None:
            out.deleted.append(u)
        elif isinstance(exc, PxliteError):
            out.failed.append((u, exc))
        else:
            raise exc
    return out


def _serial(fn: Callable[[Any], Any], items: Iterable[Any]
            ) -> Iterator[tuple[Any, Any, BaseException | None]]:
    for item in items:
        try:
            yield item, fn(item), None
        except Exception as e:
            yield item, None, e


def _named_under_another_spelling(conn: Connection, local: list[tuple[str, str]]) -> set[str]:
    """Of ``(stored, absolute)`` local files about to be deleted, those a row names under
    another spelling of the same folder (two location rows for one real folder)."""
    roots: dict[str, list[str]] = {}
    for _, p, _ in catalog.all_locations(conn.db):
        where = conn.resolve(p)
        if where.startswith("file:"):
            roots.setdefault(os.path.realpath(storage.file_path(where)), []).append(where)
    if all(len(v) < 2 for v in roots.values()):
        return set()
    alternatives: dict[str, str] = {}
    for u, uri in local:
        real = os.path.realpath(storage.file_path(uri))
        for root, spellings in roots.items():
            if len(spellings) > 1 and real.startswith(root.rstrip(os.sep) + os.sep):
                rel = os.path.relpath(real, root)
                for sp in spellings:
                    alt = conn.stored(storage.join(sp, rel))
                    if alt != u:
                        alternatives[alt] = u
    return {alternatives[a] for a in catalog.named_by_rows(conn.db, alternatives)}


def finish_deletes(conn: Connection, uris: Iterable[str]) -> None:
    """Delete released files whose rows are gone, holding the write lock.

    Content addressing lets another operation reuse a file (identical content) between the
    releasing commit and this delete; it writes and commits inside its own write transaction,
    so under the lock its rows are seen and the file is kept. A file that is no longer pending
    was handled by someone else (check(fix=True), another process). A file that fails to delete
    stays pending: check(fix=True) or the next open retries it.
    """
    settings = conn.settings()
    with conn.db.transaction():
        pending = set(catalog.pending_deletes(conn.db)) & set(uris)
        out = delete_unreferenced(conn, pending, settings)
        catalog.clear_pending_deletes(conn.db, out.deleted + out.named
                                      + [u for u, _ in out.refused])


def sweep_dropped(conn: Connection, uid: str, prefixes: list[str]) -> None:
    """After a drop committed: delete the dropped table's remaining files, then forget its
    locations once nothing of it is left (a file another table still names keeps them)."""
    settings = conn.settings()
    try:
        listed: list[str] = []
        for prefix in prefixes:
            where = conn.resolve(prefix)
            listed += [conn.stored(u) for u in storage.get_backend(where, settings).list(where)]
    except PxliteError:
        return  # the locations stay recorded; check(fix=True) sweeps them later
    with conn.db.transaction():
        out = delete_unreferenced(conn, listed, settings)
        if not (out.failed or out.named or out.refused):
            catalog.forget_locations(conn.db, uid)


def finish_pending(conn: Connection, local_only: bool) -> None:
    """Finish deletes a crash left pending (local ones at open: no network at connect time)."""
    if conn.db.read_only:
        return
    pending = catalog.pending_deletes(conn.db)
    if local_only:
        pending = [u for u in pending if u.startswith(("file://", catalog.MEDIA_LOCATION))]
    if pending:
        finish_deletes(conn, pending)
