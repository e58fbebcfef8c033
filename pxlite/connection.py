"""The public database handle returned by ``pxl.connect``: directories, tables, settings, the
database's own media folder, and the deferred deletion of files rows no longer name."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalog, faults
from . import config as _config
from .catalog import TableMeta
from .db import Database
from .errors import AlreadyExistsError, NotFoundError, PxliteError, SchemaError
from .table import Table, check_column_name
from .types import as_type


_IDENTITY_KEYS = ("db_id", "opened_path", "opened_file", "media_dir", "media_shared")


def _file_id(path: Path) -> str:
    """``device:inode`` of a file or folder (following symlinks: the real one), '' if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def _identity_change(known: dict[str, str | None], here: str, here_file: str,
                     media_file: str) -> dict[str, str] | None:
    """What to record so the catalog names this file as itself; None when it already does."""
    db_id, opened = known.get("db_id"), known.get("opened_path")
    shared = known.get("media_shared") or ""
    if db_id and opened == here and known.get("opened_file") == here_file:
        return None
    if db_id and (known.get("opened_file") == here_file
                  or (opened and opened != here and not os.path.lexists(opened))):
        # The same file under another path, or the file it was last opened as is gone (moved
        # to another filesystem): the same database, now here.
        change = {"opened_path": here, "opened_file": here_file}
        if media_file and media_file != shared:
            change["media_dir"] = media_file
        return change
    # A new catalog, or a copy of one whose original still exists: a new identity.
    change = {"db_id": secrets.token_hex(16), "opened_path": here, "opened_file": here_file,
              "media_shared": ""}
    if db_id and media_file and media_file in (known.get("media_dir"), shared):
        change["media_shared"] = media_file  # physically the original's media folder
    elif media_file:
        change["media_dir"] = media_file
    return change


def _check_if_exists(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SchemaError(f"if_exists must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


class Connection:
    """One pxlite database file and its media folder (``<file>.media/`` beside it)."""

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None,
                 media_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = dict(config or {})
        _config.resolve(self.config)  # a typo in config= fails here, not at first use
        self.db = Database(path)
        self.path = self.db.path
        self.media_dir = Path(media_dir).expanduser().absolute() if media_dir else \
            self.path.with_name(self.path.name + ".media")
        from . import media, storage

        self.media_folder = media.MediaFolder(storage.to_uri(self.media_dir).rstrip("/") + "/")
        self._dest_cache: dict[str, str] = {}
        self._lock = threading.Lock()
        try:
            self.ownership = self._establish_identity()
            self._finish_pending(local_only=True)
        except BaseException:
            self.db.close()
            raise

    def __repr__(self) -> str:
        return f"<pxlite database {str(self.path)!r}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ---- settings and destinations --------------------------------------------------------------
    def settings(self) -> _config.Settings:
        """Effective settings now: this database's config= over configure() over env over file."""
        return _config.resolve(self.config)

    @property
    def media_prefix(self) -> str:
        """The default destination: this database's own media folder, as a file:// prefix."""
        self.media_dir.mkdir(parents=True, exist_ok=True)
        return self.media_folder.prefix

    # ---- identity and ownership -----------------------------------------------------------------
    def _establish_identity(self) -> catalog.Ownership:
        """Who this database file is, and which media locations it may clean.

        The catalog records a random ``db_id`` and the path and device:inode the file was last
        opened at. Opened as the same file (or the same file under another path: renamed,
        moved), it is the same database. Opened as another file while the file it was last
        opened as still exists, it is a *copy* (``cp``, a backup, a restore beside the live
        one): it takes a new ``db_id``, so every location its original recorded stays the
        original's: the copy reads those files but never deletes or "fixes" them. Its media
        folder is its own (references there are relative) unless it is physically the
        original's folder (a symlink, or the same ``media_dir``). Nothing here takes the write
        lock unless the identity changes.
        """
        db = self.db
        here, here_file, media_file = str(self.path), _file_id(self.path), _file_id(self.media_dir)
        with db.read():
            known = {k: catalog.get_meta(db, k) for k in _IDENTITY_KEYS}
        change = _identity_change(known, here, here_file, media_file)
        if change is not None and not db.read_only:
            with db.transaction():
                known = {k: catalog.get_meta(db, k) for k in _IDENTITY_KEYS}  # under the lock
                change = _identity_change(known, here, here_file, media_file)
                if change is not None:
                    known.update(change)
                    self._adopt(change, known)
        elif change is not None:  # read-only and unproven: it may read, it cannot delete anyway
            return catalog.NO_OWNERSHIP
        shared = known.get("media_shared") or ""
        return catalog.Ownership(known.get("db_id") or "",
                                 not (shared and media_file == shared))

    def _adopt(self, change: dict[str, str], known: dict[str, str | None]) -> None:
        """Write an identity change (inside the write transaction)."""
        db = self.db
        catalog.set_meta(db, {k: v for k, v in change.items() if v is not None})
        if "db_id" in change and db.migrated_from == 1:
            # A catalog from before identities: it could not tell copies apart, so it keeps
            # owning what it recorded (as before), and its media-folder references become
            # relative so the pair is portable from now on.
            db.execute("UPDATE px_media_locations SET owner = ?", (change["db_id"],))
            self._relativize_legacy()

    def _relativize_legacy(self) -> None:
        db, prefix = self.db, self.media_folder.prefix
        n = len(prefix)
        for meta in catalog.live_tables(db):
            for c in meta.media_columns:
                db.execute(f"UPDATE {meta.sql} SET {c.sql} = ? || substr({c.sql}, ?) "
                           f"WHERE substr({c.sql}, 1, ?) = ?",
                           (catalog.MEDIA_LOCATION, n + 1, n, prefix))
        db.execute("UPDATE OR IGNORE px_media_locations SET prefix = ? WHERE prefix = ?",
                   (catalog.MEDIA_LOCATION, prefix))
        db.execute("UPDATE OR IGNORE px_pending_deletes SET uri = ? || substr(uri, ?) "
                   "WHERE substr(uri, 1, ?) = ?", (catalog.MEDIA_LOCATION, n + 1, n, prefix))

    def note_media_folder(self) -> None:
        """Inside a write transaction that records the media folder as a location: remember the
        folder's device:inode, so a copy of this database can tell whether it shares it."""
        current = _file_id(self.media_dir)
        if current and catalog.get_meta(self.db, "media_dir") != current:
            catalog.set_meta(self.db, {"media_dir": current})

    def known_spelling(self, table_uid: str, prefix: str) -> str:
        """A local destination prefix as the table already knows it: when ``prefix`` is
        another spelling (a symlink, ``//``) of a folder recorded as one of the table's
        locations (or of the media folder), that recorded spelling. One folder is then never
        two locations, so no file is ever seen twice, once as an orphan."""
        from . import storage

        if not prefix.startswith("file:"):
            return prefix
        real = os.path.realpath(storage.local_path(prefix))
        known = [self.resolve(p) for p in catalog.locations(self.db, table_uid)]
        for where in [self.media_folder.prefix, *known]:
            if where != prefix and where.startswith("file:") and \
                    os.path.realpath(storage.local_path(where)) == real:
                return where
        return prefix

    def _aliases_named(self, local: list[tuple[str, str]]) -> set[str]:
        """Of ``(stored, absolute)`` local files about to be deleted, those a row names under
        another spelling of the same folder (a second location row for one real folder)."""
        from . import storage

        roots: dict[str, list[str]] = {}
        for _, p, _ in catalog.all_locations(self.db):
            where = self.resolve(p)
            if where.startswith("file:"):
                roots.setdefault(os.path.realpath(storage.local_path(where)), []).append(where)
        if all(len(v) < 2 for v in roots.values()):
            return set()
        alternatives: dict[str, str] = {}
        for u, uri in local:
            real = os.path.realpath(storage.local_path(uri))
            for root, spellings in roots.items():
                if len(spellings) > 1 and real.startswith(root.rstrip(os.sep) + os.sep):
                    rel = os.path.relpath(real, root)
                    for sp in spellings:
                        alt = self.stored(storage.join(sp, rel))
                        if alt != u:
                            alternatives[alt] = u
        named = catalog.named_by_rows(self.db, alternatives)
        return {alternatives[a] for a in named}

    def stored(self, uri: str) -> str:
        """The form a row stores for ``uri`` (relative inside the media folder)."""
        return self.media_folder.stored(uri)

    def resolve(self, stored: str) -> str:
        """The absolute URI of a stored reference."""
        return self.media_folder.uri(stored)

    def canonical_dest(self, dest: str | os.PathLike[str]) -> str:
        """The canonical prefix URI of a destination (form checked; no network)."""
        from . import storage

        key = os.fspath(dest)
        with self._lock:
            if key not in self._dest_cache:
                self._dest_cache[key] = storage.canonical_prefix(key, self.settings())
            return self._dest_cache[key]

    def validate_dest(self, dest: str | os.PathLike[str]) -> str:
        """Check a destination fully (form, bucket, write access) and return its prefix URI."""
        from . import storage

        return storage.validate_destination(os.fspath(dest), self.settings())

    # ---- directories ------------------------------------------------------------------------------
    def create_dir(self, path: str, *, if_exists: str = "error") -> None:
        """Create a directory (dotted path; the parent must exist)."""
        _check_if_exists(if_exists, ("error", "ignore"))
        with self.db.transaction():
            if if_exists == "ignore" and catalog.path_kind(self.db, path) == "directory":
                return
            catalog.create_dir(self.db, path)

    def drop_dir(self, path: str, *, force: bool = False, if_not_exists: str = "error") -> None:
        """Drop a directory; with ``force=True`` also everything in it (tables and their files)."""
        catalog.check_path(path, "directory")
        with self.db.transaction():
            if catalog.path_kind(self.db, path) != "directory":
                if if_not_exists == "ignore":
                    return
                raise NotFoundError(f"directory {path!r} does not exist")
            dirs, tables = catalog.dir_contents(self.db, path)
            if (dirs or tables) and not force:
                raise SchemaError(
                    f"directory {path!r} is not empty ({len(tables)} table(s), {len(dirs)} "
                    "dir(s)); drop them first or pass force=True"
                )
            for t in tables:
                self.drop_table(t)
            for d in sorted(dirs, key=len, reverse=True):
                catalog.drop_dir_row(self.db, d)
            catalog.drop_dir_row(self.db, path)

    def list_dirs(self) -> list[str]:
        return catalog.list_dirs(self.db)

    # ---- tables -----------------------------------------------------------------------------------
    def create_table(self, path: str, schema: dict[str, Any] | None = None, *,
                     if_exists: str = "error") -> Table:
        """Create a table from ``{name: type}``; ``if_exists='error'|'ignore'|'replace'``."""
        _check_if_exists(if_exists, ("error", "ignore", "replace"))
        if schema is not None and not isinstance(schema, dict):
            raise SchemaError(f"the schema must be a dict of {{name: type}}, got {type(schema).__name__}")
        cols = [(check_column_name(n), as_type(t)) for n, t in (schema or {}).items()]
        with self.db.transaction():
            kind = catalog.path_kind(self.db, catalog.check_path(path))
            if kind == "table" and if_exists == "ignore":
                return Table(self, path)
            if kind == "table" and if_exists == "replace":
                self.drop_table(path)
            elif kind is not None:
                raise AlreadyExistsError(
                    f"a {kind} named {path!r} exists already; pass if_exists='ignore'"
                    + (" or 'replace'" if kind == "table" else "")
                )
            catalog.create_table(self.db, path, cols)
        return Table(self, path)

    def get_table(self, path: str) -> Table:
        """The table at ``path``; NotFoundError when there is none."""
        catalog.check_path(path)
        catalog.load_table(self.db, path)
        return Table(self, path)

    def list_tables(self, dir: str | None = None) -> list[str]:
        if dir is not None:
            catalog.check_path(dir, "directory")
        return catalog.list_tables(self.db, dir)

    def drop_table(self, path: str | Table, *, if_not_exists: str = "error") -> None:
        """Drop a table; files pxlite wrote for it that no other table names are deleted after
        the commit."""
        if isinstance(path, Table):
            path = path.path
        catalog.check_path(path)
        with self.db.transaction() as after:
            try:
                meta = catalog.load_table(self.db, path)
            except NotFoundError:
                if if_not_exists == "ignore":
                    return
                raise
            named = {c.col_id: [r[0] for r in self.db.query(
                f"SELECT DISTINCT {c.sql} FROM {meta.sql} WHERE {c.sql} IS NOT NULL")]
                for c in meta.media_columns}
            prefixes = catalog.owned_prefixes(self.db, meta.uid, self.ownership)
            catalog.drop_table_rows(self.db, meta)
            # After the rows are gone: what another table still names is kept (the same rule
            # as delete()).
            for col_id, uris in named.items():
                self.release(meta, col_id, uris, after)
            # Locations of the dropped table stay recorded until its prefixes are swept, so a
            # crash before the sweep leaves files check() still recognises as orphans.
            after.append(lambda: self._sweep_dropped(meta.uid, prefixes))

    # ---- deferred file deletion -------------------------------------------------------------------
    def release(self, meta: TableMeta, col_id: int, uris: list[str],
                after: list[Callable[[], None]]) -> None:
        """Inside a write transaction, after the rows that named ``uris`` (stored forms) are
        changed or gone: schedule deletion of the files among them that this database wrote for
        the column, in a location it owns, and that no row of any table names any more (durably,
        in px_pending_deletes). They are deleted after the commit by :meth:`_delete_files`,
        which checks again under the write lock."""
        if not uris:
            return
        prefixes = tuple(catalog.owned_prefixes(self.db, meta.uid, self.ownership, col_id))
        owned = [u for u in set(uris) if isinstance(u, str) and u.startswith(prefixes)]
        if owned:
            still = catalog.named_by_rows(self.db, owned)
            owned = [u for u in owned if u not in still]
        if not owned:
            return
        catalog.add_pending_deletes(self.db, owned)
        after.append(lambda: self._delete_files(owned))

    def delete_unreferenced(self, stored: Iterable[str], settings: _config.Settings,
                            pool_map: Callable[..., Iterable[Any]] | None = None) -> DeleteOutcome:
        """Inside a write transaction: delete the files among ``stored`` (stored forms) that
        this database wrote, in a location it owns, and that no row of any table names.

        The one gate every automatic delete passes (pending deletes, a dropped table's sweep,
        ``check(fix=True)``). It keeps a file when a row names it; when it is not in pxlite's
        key shape under an owned location (a copy's original, a crafted catalog); when a local
        file's real folder lies outside its location (a symlink out of it); or when a local
        file's bytes do not hash to its name. ``pool_map(fn, items)`` may run the deletes in
        parallel (it yields ``(item, result, exception)``).
        """
        from . import media, storage

        uris = sorted({u for u in stored if isinstance(u, str)})
        out = DeleteOutcome()
        named = catalog.named_by_rows(self.db, uris)
        location = catalog.owned_location_test(self.db, self.ownership)
        doomed: list[tuple[str, str]] = []
        for u in uris:
            if u in named:
                out.named.append(u)
                continue
            loc = location(u)
            if loc is None:
                out.refused.append((u, "not a file this database wrote in a location it owns"))
                continue
            uri = self.resolve(u)
            if storage.is_local(uri):
                why = media.local_delete_refusal(uri, self.resolve(loc))
                if why is not None:
                    out.refused.append((u, why))
                    continue
            doomed.append((u, uri))
        aliased = self._aliases_named([d for d in doomed if d[1].startswith("file:")])
        for u in aliased:
            out.refused.append((u, "a row names the same file under another spelling of its "
                                   "folder"))
        doomed = [d for d in doomed if d[0] not in aliased]

        def delete(item: tuple[str, str]) -> None:
            faults.point("before_file_delete")
            storage.get_backend(item[1], settings).delete(item[1])

        if pool_map is None:
            results: Iterable[tuple[tuple[str, str], Any, BaseException | None]] = (
                (item, None, _call(delete, item)) for item in doomed)
        else:
            results = pool_map(delete, doomed)
        for (u, _), _, exc in results:
            if exc is None:
                out.deleted.append(u)
            elif isinstance(exc, PxliteError):
                out.failed.append((u, exc))
            else:
                raise exc
        return out

    def _delete_files(self, uris: list[str]) -> None:
        """Delete files whose rows are gone, holding the write lock.

        Content addressing lets another operation reuse a file (identical content) between our
        commit and this delete; it writes and commits inside its own write transaction, so under
        the lock we see its rows and keep any file a row names again. A file that is no longer
        pending was handled by someone else (check(fix=True), another process). A file that
        fails to delete stays pending: check(fix=True) or the next open retries it.
        """
        settings = self.settings()
        with self.db.transaction():
            pending = set(catalog.pending_deletes(self.db)) & set(uris)
            out = self.delete_unreferenced(pending, settings)
            catalog.clear_pending_deletes(self.db, out.deleted + out.named
                                          + [u for u, _ in out.refused])

    def _sweep_dropped(self, uid: str, prefixes: list[str]) -> None:
        """After a drop committed: delete the dropped table's remaining files, then forget its
        locations once nothing of it is left (a file another table still names keeps them)."""
        from . import storage

        settings = self.settings()
        try:
            listed: list[str] = []
            for prefix in prefixes:
                where = self.resolve(prefix)
                listed += [self.stored(u) for u in storage.get_backend(where, settings).list(where)]
        except PxliteError:
            return  # the locations stay recorded; check(fix=True) sweeps them later
        with self.db.transaction():
            out = self.delete_unreferenced(listed, settings)
            if not (out.failed or out.named or out.refused):
                self.db.execute("DELETE FROM px_media_locations WHERE table_uid = ?", (uid,))

    def _finish_pending(self, local_only: bool) -> None:
        if self.db.read_only:
            return
        pending = catalog.pending_deletes(self.db)
        if local_only:
            pending = [u for u in pending if u.startswith(("file://", catalog.MEDIA_LOCATION))]
        if pending:
            self._delete_files(pending)


def _call(fn: Callable[[Any], Any], item: Any) -> BaseException | None:
    try:
        fn(item)
    except Exception as e:
        return e
    return None


@dataclass
class DeleteOutcome:
    """What :meth:`Connection.delete_unreferenced` did with each stored URI."""

    deleted: list[str] = field(default_factory=list)
    named: list[str] = field(default_factory=list)     # a row names it: kept
    refused: list[tuple[str, str]] = field(default_factory=list)  # not ours to delete: kept
    failed: list[tuple[str, PxliteError]] = field(default_factory=list)
