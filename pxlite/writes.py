"""THE write operation: every change to a table's rows and files goes through here.

The data-safety rules of DESIGN.md in one place, in this order:

1. **Locations and writers before files.** :meth:`Operation.prepare` commits that a table's files
   go under a prefix before the first file lands there (a crash leaves files ``check()``
   recognises), and registers the operation as writing into the table's key space
   (``px_writers``) until it ends.
2. **One brief write transaction** (``BEGIN IMMEDIATE``) that re-checks the table first (another
   connection may have dropped or changed it since the operation was planned).
3. **Files before rows, durable before referenced.** Files are written (content-addressed)
   before the rows naming them; local ones are synced, with their folders, before COMMIT.
4. **Undo on error.** Whatever fails, in the transaction or at COMMIT, the files the operation
   created (its ledger; for a cloud service that cannot refuse writing an existing key, every
   object it PUT) go through the one gate below, under the write lock.
5. **Deletes after commit.** Files rows no longer name are listed durably in
   ``px_pending_deletes`` in the same transaction and deleted after it commits.
6. **Every change a version.** Each transaction of a versioned table starts the table's next
   version and records it at its end (pxlite/versions.py: SQLite captures the old rows itself),
   then prunes the versions beyond the table's retention, releasing what only they named.

**The one delete gate** (:func:`delete_unreferenced`) serves all of them (pending deletes, an
undo, a dropped table's sweep, ``check(fix=True)``): a database deletes a file only when it
can prove no committed row of any database that may name it does. It keeps a file a row
names, now or in a version the database keeps (``catalog.named_by_rows``); a file outside
the locations this database owns (a copy's original may name it: copies write under uids of
their own, places.py); and a file in the key space of a table another
live operation is writing right now: content addressing means that operation may have found
the file already there and be about to commit a row naming it (two inserts of the same
picture, an abort beside an insert of the same content). Such a delete waits in
``px_pending_deletes``; the last writer of that table, or ``check(fix=True)``, finishes it.

Use::

    with writes.operation(places, meta, prefixes=[...], recheck=table.recheck) as op:
        ...write files with op.write_bytes / op.upload, rows with SQL, op.release(old files)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import catalog, faults, media, plan, storage, versions
from .catalog import ColumnMeta, TableMeta
from .errors import NotFoundError, PxliteError, SchemaError, StorageError, VersionError

if TYPE_CHECKING:
    from .config import Settings
    from .db import Database
    from .places import Places

#: ``pool_map(fn, items)`` yields ``(item, result, exception)`` as each call finishes.
PoolMap = Callable[[Callable[[Any], Any], Iterable[Any]],
                   Iterable[tuple[Any, Any, BaseException | None]]]

class Dependents(Protocol):
    """What keeps the tables that depend on a table's rows (its views: pxlite/views.py) in
    step with it: :meth:`prepare` before an operation's transaction (where the dependents'
    files go, committed before any lands), :meth:`maintaining` around its changes inside the
    transaction (the dependents' rows change in the same commit)."""

    def prepare(self, op: Operation) -> None: ...
    def maintaining(self, op: Operation) -> contextlib.AbstractContextManager[object]: ...


_dependents: list[Dependents] = []


def keep_dependents(hook: Dependents) -> None:
    """Install ``hook`` for every write operation (once per hook)."""
    if hook not in _dependents:
        _dependents.append(hook)


#: A writer registered by a process on another machine (a database on a network share) is
#: taken for dead this long after it started: its pid cannot be asked.
FOREIGN_WRITER_TTL_S = 6 * 3600


class Operation:
    """One write operation on one table: where its files go, the files it created, the files
    it releases. Enter it with ``with``; a failure before its commit undoes its files."""

    def __init__(self, places: Places, meta: TableMeta, settings: Settings | None = None, *,
                 kind: str = "write", capture: str = "triggers") -> None:
        if meta.version is not None:
            raise VersionError(
                f"{meta.path}:{meta.version} is version {meta.version} of table {meta.path!r}, "
                f"read-only: change the table itself (pxl.get_table({meta.path!r})), or bring "
                f"this version back with .revert(to={meta.version})")
        self.places, self.db = places, places.db
        if places.ensure():  # a copy opened while another process wrote: its uids are new now
            meta = catalog.load_table(self.db, meta.path)
        self.meta, self.kind = meta, kind
        #: How its changes to existing rows reach the table's versions (versions.CAPTURE).
        self.capture = capture
        self.settings = settings if settings is not None else places.settings()
        self.created: list[str] = []   # files this operation created (absolute URIs)
        self.local: list[str] = []     # every local file its rows will name (synced at commit)
        self._after: list[Callable[[], None]] | None = None
        self._prepared: set[str] = set()
        self.writer: int | None = None  # its px_writers row, once it prepared a destination
        #: Storage whose delete failed retryably during this operation: not asked again by its
        #: later deletes (each try could cost the whole timeout); see delete_unreferenced.
        self.unreachable: dict[int, str] = {}
        #: Operations on other tables inside this one's transactions (the views it keeps in
        #: step, by table id): they commit and undo with it, and end when it ends.
        self.children: dict[int, Operation] = {}
        #: The table version this operation recorded (an operation committing in batches goes
        #: on with it while no other version came after it).
        self.version: int | None = None

    def __enter__(self) -> Operation:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        media.settle_cache_fills()  # the outputs it uploaded are in the cache when it returns
        try:
            if exc_type is not None:
                self.undo()  # the files of what never committed (each commit settles its own)
        finally:
            self._end_writing()

    # ---- where files go --------------------------------------------------------------------------
    def input_prefix(self) -> str:
        """Where inserted media files go: ``input_media_dest``, else the media folder."""
        return self.places.input_prefix(self.meta, self.settings)

    def output_prefix(self, destination: str | None) -> str:
        """Where a computed column's files go: its destination > output_media_dest > default."""
        return self.places.output_prefix(self.meta, destination, self.settings)

    def prepare(self, prefix: str) -> str:
        """Record (and commit) that this table's files go under ``prefix``, and that this
        operation writes into the table's key space, before any file lands.

        Runs before the operation's write transaction: a crash after a file is written but
        before its row commits then leaves a file check() can still find and sweep, and no
        delete of another operation takes away a file this one may come to name. Worker
        threads never touch the catalog; they only check the prefix was prepared.
        """
        if prefix not in self._prepared:
            known = self.places.stored(prefix) in catalog.locations(self.db, self.meta.uid)
            if self.writer is None or not known:
                with self.db.transaction(durable=known):
                    self.places.record_location(self.meta, prefix)
                    if self.writer is None:
                        self.writer = register_writer(self.db, self.meta.uid, self.kind)
            self._prepared.add(prefix)
        return prefix

    def prepare_for(self, cols: Iterable[ColumnMeta]) -> None:
        """Prepare every prefix the given columns may write to (see :meth:`prepare`)."""
        for c in cols:
            if c.type.is_media:
                self.prepare(self.output_prefix(c.destination) if c.is_computed
                             else self.input_prefix())

    def child(self, meta: TableMeta, kind: str) -> Operation:
        """The operation on another table (``meta``, as loaded now) that writes inside this
        one's transactions: a view kept in step with this table's rows. One per table."""
        op = self.children.get(meta.id)
        if op is None:
            op = self.children[meta.id] = Operation(self.places, meta, self.settings, kind=kind)
        op.meta = meta
        return op

    def _end_writing(self) -> None:
        """The operation is over: unregister it, then finish the deletes in its table's key
        space that waited for it (when no other operation writes there any more). Best effort:
        what is left stays pending for the next writer, open or check(fix=True)."""
        children, self.children = list(self.children.values()), {}
        for c in children:
            c._end_writing()
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        _ACTIVE.discard(writer)  # for this process it has ended, whatever happens below
        try:
            with self.db.transaction(durable=False):
                catalog.remove_writers(self.db, [writer])
                waiting = catalog.pending_deletes(self.db, self.meta.uids or (self.meta.uid,))
                if waiting:
                    out = delete_unreferenced(self.places, waiting, self.settings,
                                              unreachable=self.unreachable)
                    catalog.clear_pending_deletes(self.db, out.settled)
        except PxliteError:
            _UNREGISTER_LATER.append(writer)

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
        failure takes back exactly its rows before its files are undone. It is (part of) one
        version of a versioned table: begun before the changes, recorded after them, then the
        versions beyond the retention are pruned and the files only they named released.

        The savepoint is taken only inside an enclosing transaction: alone, the operation's
        transaction is rolled back whole on failure (before its files are undone) anyway, and
        under an open savepoint SQLite journals the pages each statement changes so that it
        could roll back to it. Measured: inserting 10,000 rows into a table whose writes also
        fill an index and a change log took 1.24x the time without those under the savepoint,
        1.09x without it; an update or a delete of 1% of 1,000,000 rows a fifth less time.
        """
        db = self.db
        nested = db.in_write_transaction()
        if not nested:
            for hook in _dependents:  # their destinations recorded before any file lands
                hook.prepare(self)
        with db.transaction() as after:
            self._after = after
            try:
                with db.savepoint() if nested else contextlib.nullcontext():
                    if recheck is not None:
                        recheck(self.meta)
                    log = versions.begin(db, self.meta.id, self.version, self.capture)
                    try:
                        with contextlib.ExitStack() as stack:
                            for hook in _dependents:  # dependents follow in the same commit
                                stack.enter_context(hook.maintaining(self))
                            yield self
                        if log is not None:
                            self._record_version(log)
                    finally:
                        if log is not None:
                            versions.abandon(db, log)
                    self.make_durable()
            finally:
                self._after = None
            after.insert(0, self._mark_committed)  # the first thing run after COMMIT

    def _record_version(self, log: versions.Log) -> None:
        s = self.settings
        done = versions.finish(self.db, log, self.kind, s.get("version_retention_days"),
                               s.get("version_retention_count"))
        if done.version is not None:
            self.version = done.version
        for col_id, uris in done.freed.items():
            self.release(col_id, uris)

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
        release(self.places, self.meta, col_id, uris, self._after, self.writer,
                self.unreachable)

    def drop_column(self, col: ColumnMeta, meta: TableMeta | None = None) -> None:
        """Inside :meth:`committing`: drop a column of the table (``meta``: as loaded now, by
        default the operation's), then release the files its cells named."""
        meta = meta if meta is not None else self.meta
        if versions.hides(self.db, meta, col):  # kept (cells and files) for the versions
            versions.drop_column(self.db, meta, col)
            return
        uris = named_files(self.db, meta, col) + versions.drop_column(self.db, meta, col)
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
        under the write lock again, through the one gate: a file a committed row names stays
        (identical content committed by another writer meanwhile), and so does, until that
        operation ends, a file another operation writing this table may be about to name.
        """
        created, self.created = self.created, []
        self.local = []  # nothing of what failed will be committed: nothing to sync either
        self._delete_unnamed(created)
        for c in self.children.values():
            c.undo()

    def _delete_unnamed(self, uris: list[str]) -> None:
        """Through the one delete gate (:func:`delete_unreferenced`), under the write lock. The
        gate refuses files outside the locations this database owns, which matters since
        ``created`` may hold objects that were there before (a cloud service that cannot refuse
        a write of an existing key: one plain PUT, counted as created). Best effort: the gate
        stops asking a backend that failed retryably; what is left is an orphan
        check(fix=True) removes."""
        if not uris:
            return
        places = self.places
        with contextlib.suppress(Exception), self.db.transaction():
            delete_unreferenced(places, [places.stored(u) for u in uris], self.settings,
                                writer=self.writer, unreachable=self.unreachable)


@contextlib.contextmanager
def operation(places: Places, meta: TableMeta, *, prefixes: Iterable[str] = (),
              columns: Iterable[ColumnMeta] = (), settings: Settings | None = None,
              recheck: Callable[[TableMeta], object] | None = None,
              kind: str = "write", capture: str = "triggers") -> Iterator[Operation]:
    """One write operation: prepare the destinations (``prefixes``, and those ``columns``
    write to), then the write transaction (see :class:`Operation`)."""
    with Operation(places, meta, settings, kind=kind, capture=capture) as op:
        for p in prefixes:
            op.prepare(p)
        op.prepare_for(columns)
        with op.committing(recheck):
            yield op


def current_table(db: Database, meta: TableMeta) -> TableMeta:
    """Inside an operation's transaction (or a read snapshot): the table ``meta`` describes as
    it is now. Another connection may have dropped it since ``meta`` was loaded (NotFoundError
    naming the table), or dropped it and created another under its name: never touch that one.
    Pass ``lambda m: current_table(db, m)`` as an operation's ``recheck``."""
    current = catalog.load_table(db, meta.path)  # NotFoundError naming the table if gone
    if current.id != meta.id:
        raise NotFoundError(
            f"table {meta.path!r} was dropped (and created again) by another connection while "
            "this operation ran; get_table() it again and retry")
    return current


def current_columns(db: Database, meta: TableMeta) -> TableMeta:
    """:func:`current_table`, which must still have every column ``meta`` has: another
    connection may have dropped one while this operation ran (SchemaError: retry)."""
    current = current_table(db, meta)
    if not {c.col_id for c in meta.columns} <= {c.col_id for c in current.columns}:
        raise SchemaError(
            f"the columns of table {meta.path!r} were changed by another connection while this "
            "operation ran; retry it")
    return current


# ---- who is writing now -----------------------------------------------------------------------
def _host() -> str:
    """This machine's name (os.uname: no socket module to import)."""
    return os.uname().nodename


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from /proc), '' where unknown: a
    pid reused by another process then does not pass for the one that registered."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:].split()[19].decode()
    except (OSError, ValueError, IndexError):
        return ""


#: Writer rows this process could not remove when its operation ended (the lock was busy): they
#: go with the next registration, so a live process never holds back deletes for nothing.
_UNREGISTER_LATER: list[int] = []
#: The writer rows of this process's operations that are running now: a row of this pid that
#: is not here belongs to an operation that ended (or died with an exception) in this process.
_ACTIVE: set[int] = set()


def register_writer(db: Database, table_uid: str, kind: str) -> int:
    """Inside a write transaction: record that this process writes files into ``table_uid``'s
    key space until :meth:`Operation._end_writing` removes the row."""
    if _UNREGISTER_LATER:
        catalog.remove_writers(db, _UNREGISTER_LATER)
        _UNREGISTER_LATER.clear()
    pid = os.getpid()
    writer = catalog.add_writer(db, table_uid, pid, _host(), process_start(pid), kind)
    _ACTIVE.add(writer)
    return writer


@contextlib.contextmanager
def deletes_held(places: Places, kind: str) -> Iterator[None]:
    """While inside, no file of this database's tables is deleted: each table counts as being
    written by a live operation (its deletes wait in px_pending_deletes), for a reader that
    must find every file a snapshot of the catalog names (a backup copying them). Afterwards
    the deletes that waited are finished (best effort: what is left stays pending)."""
    db = places.db
    if db.read_only:  # nothing deletes files of a read-only database (its deletes are refused)
        yield
        return
    with db.transaction(durable=False):
        uids = sorted({u for m in catalog.live_tables(db) for u in (m.uids or (m.uid,))})
        held = [register_writer(db, u, kind) for u in uids]
    try:
        yield
    finally:
        _ACTIVE.difference_update(held)
        try:
            with db.transaction(durable=False):
                catalog.remove_writers(db, held)
            finish_pending(places, local_only=False)
        except PxliteError:
            _UNREGISTER_LATER.extend(held)


def alive(w: catalog.Writer) -> bool:
    """Is the process that registered ``w`` still running? (On another machine it cannot be
    asked: alive until FOREIGN_WRITER_TTL_S after it started.)"""
    if w.host != _host():
        return time.time() - w.started_at < FOREIGN_WRITER_TTL_S
    if w.pid == os.getpid():
        return w.id in _ACTIVE
    try:
        os.kill(w.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not w.proc_start or process_start(w.pid) in ("", w.proc_start)


def live_writers(db: Database, exclude: int | None = None) -> list[catalog.Writer]:
    """The operations writing files now, other than ``exclude``. Inside a write transaction,
    the rows of writers that died are removed on the way."""
    found = catalog.writers(db)
    dead = [w.id for w in found if w.id != exclude and not alive(w)]
    if dead and db.in_write_transaction():
        catalog.remove_writers(db, dead)
    return [w for w in found if w.id != exclude and w.id not in dead]


def busy_uids(db: Database, exclude: int | None = None) -> set[str]:
    """The table uids (each busy table's every uid) another live operation writes into."""
    live = live_writers(db, exclude)
    if not live:
        return set()
    uids = catalog.table_uids(db)
    tables = {uids[w.table_uid] for w in live if w.table_uid in uids}
    return {w.table_uid for w in live} | {u for u, t in uids.items() if t in tables}


# ---- releasing and deleting files -----------------------------------------------------------
def named_files(db: Database, meta: TableMeta, col: ColumnMeta, rows: plan.Rows = plan.ALL
                ) -> list[Any]:
    """The distinct values (stored URIs) a media column's cells hold among ``rows``: the files
    they name, to release when those cells go. None for a column that holds no files."""
    if not (col.type.is_media and col.stored):
        return []
    return [r[0] for r in db.query(*plan.distinct_values(meta, col, rows))]


def release(places: Places, meta: TableMeta, col_id: int, uris: Iterable[Any],
            after: list[Callable[[], None]], writer: int | None = None,
            unreachable: dict[int, str] | None = None) -> None:
    """See :meth:`Operation.release`; ``after`` is the transaction's after-commit list."""
    prefixes = tuple(places.owned_folders(meta, col_id))
    owned = [u for u in set(uris) if isinstance(u, str) and u.startswith(prefixes)]
    if owned:
        still = catalog.named_by_rows(places.db, owned)
        owned = [u for u in owned if u not in still]
    if not owned:
        return
    catalog.add_pending_deletes(places.db, owned)
    after.append(lambda: finish_deletes(places, owned, writer, unreachable))


class DeleteOutcome:
    """What :func:`delete_unreferenced` did with each stored URI."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.named: list[str] = []                    # a row names it: kept
        self.refused: list[tuple[str, str]] = []      # not ours to delete: kept, with why
        self.deferred: list[str] = []                 # another operation may name it: waits
        self.failed: list[tuple[str, PxliteError]] = []

    @property
    def settled(self) -> list[str]:
        """The URIs whose pending delete is over (deleted, or never to be deleted)."""
        return self.deleted + self.named + [u for u, _ in self.refused]


#: Why a file waits instead of being deleted.
IN_FLIGHT = "an operation in progress may name it"


def delete_unreferenced(places: Places, stored: Iterable[str], settings: Settings,
                        pool_map: PoolMap | None = None, *, writer: int | None = None,
                        unreachable: dict[int, str] | None = None) -> DeleteOutcome:
    """Inside a write transaction: delete the files among ``stored`` (stored forms) that this
    database wrote, in a location it owns, that no row of any table names, and that no other
    live operation (``writer`` is the caller's own) may be about to name.

    The one gate every automatic delete passes (see the module docstring). It keeps a file when
    a row names it (under any spelling of its folder); when it is not in pxlite's key shape
    under an owned location (a copy's original, a crafted catalog); when a local file's real
    folder lies outside its location (a symlink out of it), or its bytes do not hash to its
    name. A file in the key space of a table another live operation writes is *deferred*: it
    is listed in ``px_pending_deletes`` and deleted by the last writer or check(fix=True).
    ``pool_map`` may run the deletes in parallel. ``unreachable`` (an operation's own, shared by
    its deletes) remembers the storage whose delete failed retryably: it is not asked again.
    """
    db = places.db
    uris = sorted({u for u in stored if isinstance(u, str)})
    out = DeleteOutcome()
    named = catalog.named_by_rows(db, uris)
    location = places.owner_test()
    busy = busy_uids(db, writer)
    doomed: list[tuple[str, str]] = []
    for u in uris:
        if u in named:
            out.named.append(u)
            continue
        loc = location(u)
        if loc is None:
            out.refused.append((u, "not a file this database wrote in a location it owns"))
            continue
        if loc.uid in busy:
            out.deferred.append(u)
            continue
        uri = places.resolve(u)
        if storage.is_local(uri):
            why = media.local_delete_refusal(uri, places.resolve(loc.prefix))
            if why is not None:
                out.refused.append((u, why))
                continue
        doomed.append((u, uri))
    if out.deferred:
        catalog.add_pending_deletes(db, out.deferred)
    aliased = _named_under_another_spelling(places, [d for d in doomed
                                                     if d[1].startswith("file:")])
    for u in aliased:
        out.refused.append((u, "a row names the same file under another spelling of its folder"))
    doomed = [d for d in doomed if d[0] not in aliased]

    # A backend that failed retryably (down, or hanging until the timeout) is not asked again
    # for the other files: each try could cost the full timeout times the retries. Those files
    # stay pending (or orphans) for a later open or check(fix=True).
    if unreachable is None:
        unreachable = {}  # id(backend) -> the file whose delete failed

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


def _named_under_another_spelling(places: Places, local: list[tuple[str, str]]) -> set[str]:
    """Of ``(stored, absolute)`` local files about to be deleted, those a row names under
    another spelling of the same folder (two location rows for one real folder)."""
    roots: dict[str, list[str]] = {}
    for _, p, _ in catalog.all_locations(places.db):
        where = places.resolve(p)
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
                    alt = places.stored(storage.join(sp, rel))
                    if alt != u:
                        alternatives[alt] = u
    return {alternatives[a] for a in catalog.named_by_rows(places.db, alternatives)}


def finish_deletes(places: Places, uris: Iterable[str], writer: int | None = None,
                   unreachable: dict[int, str] | None = None) -> None:
    """Delete released files whose rows are gone, holding the write lock.

    Content addressing lets another operation reuse a file (identical content) between the
    releasing commit and this delete; it registers as a writer before it stores anything and
    commits inside its own write transaction, so under the lock either its rows are seen (the
    file is kept) or it is seen writing (the file waits for it). A file that is no longer
    pending was handled by someone else (check(fix=True), another process). A file that fails
    to delete stays pending: check(fix=True) or the next open retries it.
    """
    settings = places.settings()
    with places.db.transaction():
        pending = set(catalog.pending_deletes(places.db)) & set(uris)
        out = delete_unreferenced(places, pending, settings, writer=writer,
                                  unreachable=unreachable)
        catalog.clear_pending_deletes(places.db, out.settled)


def sweep_dropped(places: Places, uid_prefixes: list[str]) -> None:
    """After a drop committed: delete the dropped table's remaining files (``uid_prefixes``:
    its owned ``<location><uid>/`` folders, stored form), then forget its locations once
    nothing of it is left (a file another table still names, or one that waits for another
    operation writing the table, keeps them)."""
    settings = places.settings()
    try:
        listed: list[str] = []
        for prefix in uid_prefixes:
            where = places.resolve(prefix)
            listed += [places.stored(u) for u in storage.get_backend(where, settings).list(where)]
    except PxliteError:
        return  # the locations stay recorded; check(fix=True) sweeps them later
    with places.db.transaction():
        out = delete_unreferenced(places, listed, settings)
        if not (out.failed or out.named or out.refused or out.deferred):
            for loc in places.locations():
                if loc.folder() in uid_prefixes:
                    catalog.forget_locations(places.db, loc.uid)


def finish_pending(places: Places, local_only: bool) -> None:
    """Finish deletes a crash left pending (local ones at open: no network at connect time)."""
    if places.db.read_only:
        return
    pending = catalog.pending_deletes(places.db)
    if local_only:
        pending = [u for u in pending if u.startswith(("file://", catalog.MEDIA_LOCATION))]
    if pending:
        finish_deletes(places, pending)
