"""Maintenance: :func:`check` compares the catalog with the stored files both ways (and can
remove orphans); :func:`move_media` relocates the files pxlite wrote for one column.

Both keep DESIGN.md's data-safety rules:

* A file is *pxlite-owned* iff it lies under ``<location><table uid>/`` for a location recorded in
  ``px_media_locations``. Anything else a row names (a user's ``file://`` original, a web URL, a
  bucket object the user inserted) is a reference: it is checked, never deleted or moved.
* ``check(fix=True)`` deletes only files no row of any table names, and decides that while holding
  the write lock. pxlite writes files only inside a write transaction (or, for
  :func:`move_media`, re-checks its copies inside the transaction that makes rows name them), so
  a file another writer is about to commit can never be mistaken for an orphan and deleted.
* :func:`move_media` copies first, switches every reference in one transaction, and deletes the
  old copies only after that commits (durably listed in ``px_pending_deletes``). Interrupted at
  any point, every row names a readable file; leftovers are orphans ``check(fix=True)`` removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import catalog, history, media, storage, writes
from . import config as _config
from .errors import (
    DatabaseError,
    ObjectNotFoundError,
    PxliteError,
    SchemaError,
    StorageError,
)
from .results import UpdateStatus

if TYPE_CHECKING:
    from concurrent.futures import Future

    from .catalog import TableMeta
    from .config import Settings
    from .db import Database
    from .places import Location, Places

__all__ = ["CheckReport", "MissingFile", "MoveStatus", "check", "move_media"]

#: Parallel storage calls (listings, existence probes, deletes, copies).
IO_WORKERS = 16
#: How many examples of each kind ``str(CheckReport)`` shows.
EXAMPLES = 10
#: Why a file pxlite wrote in a location this database does not own is kept.
ANOTHER_DATABASE = "another database may name it"

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = IO_WORKERS,
              stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[T, R | None,
                                                                           BaseException | None]]:
    """Run ``fn`` over ``items`` in a bounded thread pool; yield ``(item, result, exception)``
    as each finishes. At most ``2 * workers`` calls are queued at once (memory stays bounded);
    once ``stop()`` is true no new call starts, and the running ones are waited for."""
    # Imported here: ``import pxlite`` must stay cheap, and only maintenance needs a pool.
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pxlite-maint") as pool:
        inflight: dict[Future[R], T] = {}

        def fill() -> None:
            while not stop() and len(inflight) < 2 * workers:
                try:
                    item = next(it)
                except StopIteration:
                    return
                inflight[pool.submit(fn, item)] = item

        fill()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for f in done:
                item = inflight.pop(f)
                exc = f.exception()
                yield item, (None if exc is not None else f.result()), exc
            fill()


# ---------------------------------------------------------------------------------------------
# check()


class MissingFile(NamedTuple):
    """A row naming a file that does not exist. ``owned``: pxlite wrote it (else a reference);
    ``computed``: the cell is a stored computed column's (recomputing it writes the file again)."""

    table: str
    column: str
    rowid: int
    uri: str
    owned: bool = True
    computed: bool = False


@dataclass
class CheckReport:
    """What :func:`check` found (and, with ``fix=True``, removed).

    ``missing``: rows naming files that do not exist (pxlite's own files and local or bucket
    references; plain web URLs are not probed). ``orphans``: URIs of files under pxlite-owned
    prefixes that no row names (including every file of a dropped table and unfinished pending
    deletes). ``integrity``: SQLite's integrity_check messages (empty when sound). ``fixed``:
    orphans deleted by ``fix=True``. ``errors``: storage problems that kept part of the check from
    running (one location failing does not stop the rest). ``pending``: entries found in the
    pending-deletes list. ``ok`` is true when nothing is missing, the database is sound, every
    location could be checked, and no orphan is left.
    """

    database: str = ""
    fix: bool = False
    missing: list[MissingFile] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    unowned: list[str] = field(default_factory=list)
    unclaimed_from: str = ""
    pending_cleared: int = 0
    swept_locations: list[str] = field(default_factory=list)
    tables: int = 0
    references: int = 0
    checked: int = 0
    unchecked: int = 0

    @property
    def remaining_orphans(self) -> list[str]:
        fixed = set(self.fixed)
        return [u for u in self.orphans if u not in fixed]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.integrity or self.errors or self.remaining_orphans
                    or self.kept)

    def __str__(self) -> str:
        n_orph = len(self.orphans)
        lines = [
            f"pxlite check of {self.database}: " + ("OK" if self.ok else "PROBLEMS FOUND"),
            f"  tables: {self.tables:,}; distinct media references: {self.references:,} "
            f"({self.checked:,} checked, {self.unchecked:,} web URLs not probed)",
            f"  missing files: {len(self.missing):,} "
            f"({sum(1 for m in self.missing if m.owned):,} written by pxlite, "
            f"{sum(1 for m in self.missing if not m.owned):,} references)",
            f"  orphan files: {n_orph:,}" + (f" (removed {len(self.fixed):,})" if self.fix else ""),
            f"  pending deletes: {len(self.pending):,}"
            + (f" (cleared {self.pending_cleared:,})" if self.fix else ""),
        ]
        if self.kept:
            reasons: dict[str, int] = {}
            for _, why in self.kept:
                reasons[why] = reasons.get(why, 0) + 1
            lines.append(f"  kept files (written by pxlite, named by no row here): "
                         f"{len(self.kept):,} ("
                         + "; ".join(f"{why}: {n:,}" for why, n in reasons.items()) + ")")
        if self.swept_locations:
            lines.append(f"  dropped-table locations swept: {len(self.swept_locations):,}")
        lines.append("  database integrity: " + ("ok" if not self.integrity
                                                 else f"{len(self.integrity):,} problem(s)"))
        lines.append(f"  storage errors: {len(self.errors):,}")

        def section(title: str, items: list[str]) -> None:
            if items:
                more = f", first {EXAMPLES}" if len(items) > EXAMPLES else ""
                lines.append(f"{title} ({len(items):,}{more}):")
                lines.extend(f"  {s}" for s in items[:EXAMPLES])

        section("missing files", [
            f"{m.table} column {m.column!r} row {m.rowid}: {m.uri}"
            + ("" if m.owned else " (a reference)") for m in self.missing])
        section("orphan files", [u + (" (removed)" if u in set(self.fixed) else "")
                                 for u in self.orphans[:EXAMPLES]] + self.orphans[EXAMPLES:])
        section("kept files", [f"{u} ({why})" for u, why in self.kept])
        section("integrity problems", self.integrity)
        section("storage errors", self.errors)
        if self.remaining_orphans and not self.fix:
            lines.append("run `pxlite check --fix` (or pxl.check(fix=True)) to remove the orphans")
        if self.unowned:
            how = (f"it was last opened as {self.unclaimed_from}, which it could not see: moved "
                   "or copied" if self.unclaimed_from else "it is a copy of another database")
            lines.append(
                f"this database reads but never cleans {len(self.unowned):,} place(s) recorded "
                f"before it took its own identity ({how}): {', '.join(self.unowned[:3])}"
                + (" ..." if len(self.unowned) > 3 else ""))
            lines.append("if it was moved, not copied (no other database uses them), claim them: "
                         f"pxlite claim --db {self.database} (or db.claim_locations())")
        lost = sorted({(m.table, m.column) for m in self.missing if m.owned and m.computed})
        if lost:
            # check --fix cannot bring these back; computing them again can.
            lines.append("missing files of a computed column are written again by recomputing "
                         "it, e.g. in Python:")
            # The home database by its path would get another media folder: pxl.get_table.
            home = str(_config.pxlite_home().absolute() / "pxlite.db")
            db = "pxl" if self.database == home else f"pxl.connect({self.database!r})"
            lines.extend(f"  {db}.get_table({t!r}).recompute_columns({c!r})"
                         for t, c in lost[:EXAMPLES])
        if any(not (m.owned and m.computed) for m in self.missing):
            lines.append(f"{'other ' if lost else ''}missing files (inserted media, references) "
                         "must be restored from a backup, or their rows deleted")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython (a notebook, its shell) shows the report itself, which names the database,
        rather than the one-line repr."""
        p.text(str(self))

    def __repr__(self) -> str:
        return (f"<CheckReport of {self.database!r}: ok={self.ok} missing={len(self.missing)} "
                f"orphans={len(self.orphans)} kept={len(self.kept)} fixed={len(self.fixed)} "
                f"integrity={len(self.integrity)} errors={len(self.errors)}>")


def check(places: Places, fix: bool = False, *, remote_refs: bool = True) -> CheckReport:
    """Compare the catalog with the stored files, both ways, and run SQLite's integrity check.

    Set algebra over one snapshot, as phases (storage is touched only at the edges):

    * **named**: every distinct media reference of every live table, now and in the versions
      it keeps (the undo log, hidden columns: pxlite/versions.py);
    * **listed**: the files in pxlite's key shape under every recorded location (owned or
      not) and uid folder, listed in parallel;
    * **orphans** = listed files in owned locations that no row names (and pending deletes
      whose file is still there), except those another live operation may be about to name;
    * **kept** = files pxlite wrote that no row names but that are not this database's to
      remove: in locations recorded by the database it was copied or moved from (another
      database may name them; ``claim`` takes them back), or waiting for a live operation;
    * **missing** = named files that do not exist (pxlite's own, local references, bucket
      references when ``remote_refs``; never plain web URLs; of the references only kept
      versions name, only pxlite's own files: a user's original deleted after its row is theirs).

    With ``fix=True`` the versions beyond their retention are pruned first; then the orphans
    are deleted through the one delete gate, under the write lock; unfinished pending deletes
    are finished and a dropped table's locations forgotten once empty; rows and referenced
    files are never touched. A storage error for one location
    is reported in ``errors``, not raised. ``ok`` never holds while a file pxlite wrote is
    unreferenced (an orphan or kept).
    """
    db, settings = places.db, places.settings()
    report = CheckReport(database=str(db.path), fix=fix)
    report.integrity = db.integrity_check()
    if fix:
        history.prune_all(places)  # versions expire with time, writes or not
    snap = _snapshot(places)
    report.tables, report.references = snap.tables, len(snap.named)
    report.pending = [places.resolve(u) for u in snap.pending]
    report.unowned = places.unowned()
    report.unclaimed_from = places.unclaimed_from()
    listed = _list_locations(places, settings, snap.locations, report)
    orphans, kept, gone_pending = _unreferenced(places, settings, snap, listed, report)
    report.orphans = [places.resolve(u) for u in orphans]
    report.kept = [(places.resolve(u), why) for u, why in kept]
    report.missing = _missing(places, settings, snap, listed, report, remote_refs)
    if fix and (orphans or snap.pending or snap.dropped):
        _fix(places, report, snap, listed, gone_pending, settings, orphans)
    return report


class _Snapshot(NamedTuple):
    """What check() reads from the catalog, in one consistent read."""

    tables: int
    named: set[str]                 # every distinct media reference (stored forms)
    only_kept: set[str]             # ...of those, the ones only kept versions name
    locations: list[Location]
    pending: list[str]
    busy: set[str]                  # uids another live operation writes into
    busy_why: str                   # which operations, for the report
    dropped: set[str]               # uids of locations whose table is gone


def _snapshot(places: Places) -> _Snapshot:
    db = places.db
    named: set[str] = set()
    kept: set[str] = set()
    with db.read():
        tables = catalog.live_tables(db)
        for meta in tables:
            now = {c.sql for c in meta.media_columns}
            for sql_table, sql_col in catalog.media_cells(db, meta):
                found = {u for (u,) in db.execute(
                    f"SELECT DISTINCT {sql_col} FROM {sql_table} WHERE {sql_col} IS NOT NULL")
                    if isinstance(u, str)}
                (named if sql_table == meta.sql and sql_col in now else kept).update(found)
        locations = places.locations()
        pending = catalog.pending_deletes(db)
        busy = writes.busy_uids(db)
        who = "; ".join(f"{w.kind} by pid {w.pid} on {w.host}" for w in writes.live_writers(db))
    live = {u for m in tables for u in m.uids}
    return _Snapshot(len(tables), named | kept, kept - named, locations, pending, busy, who,
                     {loc.uid for loc in locations} - live)


def _list_locations(places: Places, settings: Settings, locations: list[Location],
                    report: CheckReport) -> dict[str, set[str]]:
    """Every location's uid folder -> the files in pxlite's shape there (stored forms). A
    location that cannot be listed is reported, not fatal."""
    folders = {loc.folder(): loc for loc in locations}

    def list_folder(folder: str) -> set[str]:
        where = places.resolve(folder)
        found = {places.stored(u) for u in storage.get_backend(where, settings).list(where)}
        return {u for u in found if folders[folder].holds(u)}

    listed: dict[str, set[str]] = {}
    for folder, files, exc in _parallel(list_folder, sorted(folders), workers=8):
        if exc is None:
            assert files is not None
            listed[folder] = files
        elif isinstance(exc, Exception):  # any failure of one location is reported, not fatal
            report.errors.append(f"cannot list {places.resolve(folder)}: {exc}")
        else:
            raise exc
    return listed


def _unreferenced(places: Places, settings: Settings, snap: _Snapshot,
                  listed: dict[str, set[str]], report: CheckReport
                  ) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    """(orphans, kept with why, pending deletes whose file is gone) from the listings."""
    owned = {loc.folder(): loc for loc in snap.locations if loc.owned}
    orphans: list[str] = []
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for loc in snap.locations:
        for u in sorted(listed.get(loc.folder(), set()) - snap.named - seen):
            seen.add(u)
            if not loc.owned:
                kept.append((u, ANOTHER_DATABASE))
            elif loc.uid in snap.busy:
                kept.append((u, f"{writes.IN_FLIGHT} ({snap.busy_why})"))
            else:
                orphans.append(u)
    gone: set[str] = set()       # pending deletes whose file is known to be gone
    probe: list[str] = []
    owner = places.owner_test()
    for u in snap.pending:
        if u in snap.named or u in seen:
            continue
        held = owner(u)
        if held is None:
            gone.add(u)  # not a file pxlite writes: the entry is cleared, nothing deleted
        elif held.folder() in listed and held.folder() in owned:
            gone.add(u)  # listed folders: a file still there was seen above
        else:
            probe.append(u)
    for u, found, exc in _parallel(lambda u: _exists(places, settings, u), probe):
        if exc is not None:
            report.errors.append(f"cannot check pending delete {places.resolve(u)}: {exc}")
        elif found:
            orphans.append(u)
        else:
            gone.add(u)
    return orphans, kept, gone


def _exists(places: Places, settings: Settings, stored: str) -> bool:
    where = places.resolve(stored)
    return storage.get_backend(where, settings).exists(where)


def _missing(places: Places, settings: Settings, snap: _Snapshot, listed: dict[str, set[str]],
             report: CheckReport, remote_refs: bool) -> list[MissingFile]:
    """Named files that do not exist: pxlite's own files absent from their folder's listing
    (confirmed by a probe: a file committed after the listing is not missing), local references
    absent from disk, bucket references whose object does not exist."""
    by_folder = {loc.folder(): loc for loc in snap.locations}
    suspects: dict[str, bool] = {}  # stored uri -> written by pxlite
    probe: list[str] = []
    for u in snap.named:
        folder = next((f for f, loc in by_folder.items() if f in listed and loc.holds(u)), None)
        if folder is not None:
            report.checked += 1
            if u not in listed[folder]:
                suspects[u] = True
            continue
        if u in snap.only_kept:
            continue  # a reference only a kept version names: not pxlite's to vouch for
        try:
            where = places.resolve(u)
            scheme = storage.scheme_of(where)
            if scheme == "file":
                report.checked += 1
                if not storage.file_path(where).is_file():
                    suspects[u] = False
            elif scheme == "http" or not remote_refs:
                report.unchecked += 1
            else:
                probe.append(u)
        except PxliteError as e:
            report.errors.append(f"cannot check {u}: {e}")
    for u, found, exc in _parallel(lambda u: _exists(places, settings, u), probe):
        if exc is not None:
            report.errors.append(f"cannot check {places.resolve(u)}: {exc}")
            continue
        report.checked += 1
        if not found:
            suspects[u] = False
    confirm = [u for u, is_owned in suspects.items() if is_owned]
    for u, found, exc in _parallel(lambda u: _exists(places, settings, u), confirm):
        if exc is None and found:
            del suspects[u]
    return _rows_naming(places.db, suspects, places.resolve) if suspects else []


def _rows_naming(db: Database, suspects: dict[str, bool],
                 resolve: Callable[[str], str]) -> list[MissingFile]:
    """The rows naming ``suspects``, from a fresh read (rows deleted meanwhile drop out); a
    row only a kept version has is reported as the table's "(kept versions)"."""
    out: list[MissingFile] = []
    arg = json.dumps(sorted(suspects))
    with db.read():
        for meta in catalog.live_tables(db):
            cols = {c.sql: (c, True) for c in meta.columns}
            cols.update({c.sql: (c, False) for c in catalog.dropped_columns(db, meta.id)})
            for sql_table, sql_col in catalog.media_cells(db, meta):
                c, now = cols[sql_col]
                table = meta.path if now and sql_table == meta.sql else \
                    f"{meta.path} (kept versions)"
                for rowid, u in db.query(
                        f"SELECT DISTINCT _rowid, {sql_col} FROM {sql_table} WHERE {sql_col} IN "
                        "(SELECT value FROM json_each(?)) ORDER BY _rowid", (arg,)):
                    out.append(MissingFile(table, c.name, rowid, resolve(u), suspects[u],
                                           c.is_computed))
    return out


def _fix(places: Places, report: CheckReport, snap: _Snapshot, listed: dict[str, set[str]],
         gone_pending: set[str], settings: Settings, orphans: list[str]) -> None:
    """Decide and delete under the write lock, so no writer can be between writing a file and
    committing the row that names it unseen (it is registered as writing: its files wait)."""
    db, resolve = places.db, places.resolve
    with db.transaction():
        out = writes.delete_unreferenced(places, orphans, settings, pool_map=_parallel)
        for u, why in out.refused:
            report.errors.append(f"not deleted: {resolve(u)}: {why}")
        for u, exc in out.failed:
            report.errors.append(f"cannot delete orphan {resolve(u)}: {exc}")
        report.kept += [(resolve(u), writes.IN_FLIGHT) for u in out.deferred]
        deleted = set(out.deleted)
        report.fixed = [resolve(u) for u in orphans if u in deleted]
        still = set(out.named) | catalog.named_by_rows(db, snap.pending)
        clear = [u for u in snap.pending if u in still or u in deleted or u in gone_pending]
        catalog.clear_pending_deletes(db, clear)
        report.pending_cleared = len(clear)
        # A dropped table's locations are forgotten once every file under them is gone (all
        # listed, all deleted) and nobody writes there; until then they keep marking those
        # files as pxlite's own.
        if out.deferred or writes.busy_uids(db):
            return
        for uid in snap.dropped:
            folders = [loc.folder() for loc in snap.locations if loc.uid == uid and loc.owned]
            if folders and all(f in listed and listed[f] <= deleted for f in folders):
                catalog.forget_locations(db, uid)
                report.swept_locations.extend(resolve(f) for f in folders)


# ---------------------------------------------------------------------------------------------
# move_media()


@dataclass(repr=False)
class MoveStatus(UpdateStatus):
    """An :class:`UpdateStatus` for ``move_media``; ``num_skipped`` counts values left where they
    are: references pxlite did not write, and files already at the destination. ``message``
    says why nothing moved (e.g. the destination is the files' own folder under another name)."""

    num_skipped: int = 0
    message: str = ""

    def __str__(self) -> str:
        return super().__str__() + (f"; {self.message}" if self.message else "")


def _object_identity(uri: str) -> tuple[str, ...]:
    """What names one stored object whatever the spelling: the real path of a local file (its
    folder resolved through symlinks), bucket and key for buckets, container and blob for Azure
    (endpoint and account are left out: two spellings that might be one place count as one)."""
    scheme = storage.scheme_of(uri)
    if scheme == "file":
        path = storage.file_path(uri)
        return ("file", os.path.join(os.path.realpath(path.parent), path.name))
    if scheme in (*storage.S3_FAMILY, "gs"):
        b = storage.parse_bucket_uri(uri)
        return ("bucket", b.bucket, b.key)
    if scheme == "azure":
        a = storage.parse_azure_uri(uri)
        return ("azure", a.container, a.blob)
    return ("uri", uri)


def _same_object(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` may be one object (another spelling, a symlinked folder, a
    hard link): moving one onto the other must not release the original."""
    if _object_identity(a) == _object_identity(b):
        return True
    if storage.is_local(a) and storage.is_local(b):
        try:
            return os.path.samefile(storage.file_path(a), storage.file_path(b))
        except OSError:
            return False
    return False


def _verify_copy(old: str, new: str, settings: Settings) -> None:
    """Before the original may be released: the copy is another object, complete (same size)."""
    # Checked on its own (not through the planning's _same_object): the last word before an
    # original is released.
    if storage.is_local(old) and storage.is_local(new):
        try:
            same = os.path.samefile(storage.file_path(old), storage.file_path(new))
        except OSError:
            same = False
    else:
        same = _object_identity(old) == _object_identity(new)
    if same:
        raise StorageError(f"move_media: {new} is the same file as {old} (another spelling of "
                           "the same place); nothing was released", uri=new)
    size_old = storage.get_backend(old, settings).stat(old).size
    size_new = storage.get_backend(new, settings).stat(new).size
    if size_old != size_new:
        raise StorageError(f"move_media: the copy {new} has {size_new} bytes, the original {old} "
                           f"{size_old}; the copy is incomplete, nothing was released", uri=new)


def _copy(old: str, new: str, settings: Settings, created: list[str]) -> None:
    """Copy one stored file to ``new`` (unless it is there already: keys are content hashes),
    streaming through a local temp file when neither side is local."""
    dst = storage.get_backend(new, settings)
    if dst.exists(new):
        return
    ctype = media.content_type(new.rsplit(".", 1)[-1])
    if storage.is_local(old):
        path = storage.file_path(old)
        if not path.is_file():
            raise ObjectNotFoundError(f"no file at {old}", uri=old)
        dst.put_file(path, new, ctype)
    elif storage.is_local(new):
        # get_file writes a temp file beside the target and os.replace()s it: atomic.
        storage.get_backend(old, settings).get_file(old, storage.file_path(new))
    else:
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="pxlite-move-")
        os.close(fd)
        try:
            storage.get_backend(old, settings).get_file(old, tmp)
            dst.put_file(tmp, new, ctype)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    created.append(new)


def move_media(places: Places, meta: TableMeta, column: str, destination: str) -> MoveStatus:
    """Move the files pxlite wrote for ``column`` to ``destination``, keeping their keys.

    Each pxlite-owned file is copied to ``<destination><table uid>/<col id>/<xx>/<hash>.<ext>``
    (bounded thread pool, streamed through a temp file); each copy is verified to be another,
    complete object; then one transaction switches every row to the copies, sets a computed
    column's destination (so future files go there too) and lists the old files for deletion
    after the commit. A destination that is the files' own folder under another spelling (a
    symlink, ``//``, another URI form) is a no-op that says so. References pxlite did not write
    stay untouched (``num_skipped``). A copy failure aborts the move: the copies made so far
    are removed and the table is unchanged. Rows naming a file that no longer exists stay as
    they are and count as errors. Unknown column: NotFoundError; not a media column:
    SchemaError; bad destination: the ConfigError from validating it, before anything is copied.
    """
    t0 = time.perf_counter()
    db = places.db
    col = meta.column(column)
    if not col.type.is_media:
        raise SchemaError(f"column {column!r} of {meta.path!r} holds {col.type.name} values, not "
                          "files; move_media() takes a media column (Image, Video, Audio, "
                          "Document)")
    if db.read_only:
        raise DatabaseError(f"database {db.path} is read-only; make it writable to move media")
    new_prefix = places.known_spelling(meta, places.validate_dest(destination))
    settings = places.settings()

    with db.read():
        writes.current_table(db, meta)  # dropped since it was loaded: NotFoundError
        locs = places.locations(meta.uids or (meta.uid,))
        uris = writes.named_files(db, meta, col)
    moves: list[tuple[str, str]] = []   # (stored old, absolute new)
    skipped = same_place = 0
    for u in uris:
        loc = max((loc for loc in locs if isinstance(u, str)
                   and u.startswith(loc.folder(col.col_id)) and loc.holds(u)),
                  key=lambda loc: len(loc.prefix), default=None)
        if loc is None:
            skipped += 1  # a reference pxlite did not write: never moved
            continue
        # Moved into the table's current key space (a file written under an earlier uid, before
        # this database took a new identity, lands where this database owns it).
        key = u[len(loc.folder(col.col_id)):]
        if storage.is_local(places.resolve(loc.prefix)):
            key = urllib.parse.unquote(key)
        new = storage.join(new_prefix, media.key_folder(meta.uid, col.col_id) + key)
        if places.stored(new) == u or _same_object(places.resolve(u), new):
            skipped += 1  # already there (perhaps under another spelling of the same place)
            same_place += 1
            continue
        moves.append((u, new))
    if not moves and same_place:
        return MoveStatus("Moved", 0, 0, time.perf_counter() - t0, "file",
                          num_skipped=skipped,
                          message=f"{destination!r} is where the files of column {column!r} "
                                  "already are (the same folder or bucket under another name); "
                                  "nothing was moved")

    with writes.Operation(places, meta, settings, kind="move_media") as op:
        if moves:
            op.prepare(new_prefix)  # committed before the first copy lands: check() sees leftovers
        lock = threading.Lock()

        def copy_one(item: tuple[str, str]) -> None:
            mine: list[str] = []
            old = places.resolve(item[0])
            try:
                _copy(old, item[1], settings, mine)
            finally:
                with lock:  # tracked even when the copy failed half-way: undone on failure
                    for new in mine:
                        op.track(new, created=True)
            if not mine:
                op.track(item[1], created=False)
            _verify_copy(old, item[1], settings)

        def copy_all(items: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
            """Copy ``items``; return (copied, messages for missing sources); raise on the first
            other failure once the running copies have finished."""
            done: list[tuple[str, str]] = []
            missing: list[str] = []
            fatal: list[tuple[tuple[str, str], BaseException]] = []
            for item, _, exc in _parallel(copy_one, items, stop=lambda: bool(fatal)):
                if exc is None:
                    done.append(item)
                elif isinstance(exc, ObjectNotFoundError) and exc.uri == places.resolve(item[0]):
                    missing.append(f"{meta.path} column {column!r}: cannot move "
                                   f"{places.resolve(item[0])}: the file does not exist (run "
                                   "pxlite check)")
                else:
                    fatal.append((item, exc))
            if fatal:
                (old, new), exc = fatal[0]
                if not isinstance(exc, PxliteError):
                    raise exc
                raise StorageError(
                    f"move_media: copying {places.resolve(old)} to {new} for {meta.path} column "
                    f"{column!r} failed: {exc}; the table is unchanged (copies made so far were "
                    "removed)", uri=places.resolve(old),
                    retryable=getattr(exc, "retryable", False)) from exc
            return done, missing

        moved, missing = copy_all(moves)
        with op.committing(lambda m: writes.current_table(db, m)):
            ccol = catalog.load_table(db, meta.path).column_by_id(col.col_id)
            if moved:
                # A concurrent check(fix=True) may have removed copies no row named yet; it
                # cannot now (we hold the write lock), so re-copy any that went missing.
                dst = storage.get_backend(new_prefix, settings)
                present = set(dst.list(storage.join(new_prefix,
                                                    media.key_folder(meta.uid, col.col_id))))
                lost = [m for m in moved if m[1] not in present]
                if lost:
                    again, gone = copy_all(lost)
                    if gone:
                        bad = {m[0] for m in lost} - {m[0] for m in again}
                        moved = [m for m in moved if m[0] not in bad]
                        missing += gone
                db.execute("CREATE TEMP TABLE IF NOT EXISTS px_move_map "
                           "(old TEXT PRIMARY KEY, new TEXT NOT NULL)")
                db.execute("DELETE FROM temp.px_move_map")
                db.executemany("INSERT INTO temp.px_move_map(old, new) VALUES (?, ?)",
                               [(old, places.stored(new)) for old, new in moved])
                # One pass over the table with an indexed lookup per row (an UPDATE per file
                # would scan the table once per file).
                db.execute(
                    f"UPDATE {meta.sql} SET {ccol.sql} = (SELECT new FROM temp.px_move_map "
                    f"WHERE old = {ccol.sql}) WHERE {ccol.sql} IN (SELECT old FROM "
                    "temp.px_move_map)")
                db.execute("DROP TABLE temp.px_move_map")
            if ccol.is_computed:
                catalog.set_column_destination(db, meta, ccol, places.stored(new_prefix))
            op.release(ccol.col_id, [old for old, _ in moved])
    return MoveStatus("Moved", len(moved), len(missing), time.perf_counter() - t0, "file",
                      errors=missing[:10], num_skipped=skipped)
