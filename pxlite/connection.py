"""The public database handle returned by ``pxl.connect``: directories, tables, settings, the
database's own media folder, and the deferred deletion of files rows no longer name."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from . import catalog, media, storage, writes
from . import config as _config
from .db import Database
from .errors import AlreadyExistsError, BusyError, NotFoundError, SchemaError, check_choice
from .io import keys, tables
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


class Connection:
    """One pxlite database file and its media folder (``<file>.media/`` beside it)."""

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None,
                 media_dir: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.config = dict(config or {})
        _config.resolve(self.config)  # a typo in config= fails here, not at first use
        self.db = Database(path, create=create)
        self.path = self.db.path
        self.media_dir = Path(media_dir).expanduser().absolute() if media_dir else \
            self.path.with_name(self.path.name + ".media")
        self.media_folder = media.MediaFolder(storage.to_uri(self.media_dir).rstrip("/") + "/")
        self._dest_cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self.db.busy_hint = self._busy_hint
        try:
            self.ownership = self._establish_identity()
            # Optional at connect time: with another process writing, the deletes wait for a
            # later open (or check(fix=True)) rather than this open waiting for the lock.
            with contextlib.suppress(BusyError), self.db.nowait():
                writes.finish_pending(self, local_only=True)
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
            try:
                with db.nowait(), db.transaction():
                    known = {k: catalog.get_meta(db, k) for k in _IDENTITY_KEYS}  # locked now
                    change = _identity_change(known, here, here_file, media_file)
                    if change is not None:
                        known.update(change)
                        self._adopt(change, known)
            except BusyError:
                # Another process is writing: this connection reads, but owns nothing (it
                # cannot prove who it is) until a later open records its identity.
                return catalog.NO_OWNERSHIP
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

    def _busy_hint(self) -> str:
        """For a BusyError: the long operations the catalog says are running."""
        running = catalog.jobs(self.db)
        if not running:
            return ""
        names = {r[0]: r[1] for r in self.db.query("SELECT id, path FROM px_tables")}
        return "; running: " + ", ".join(
            f"{j.kind} on {names.get(j.table_id, '?')!r} (pid {j.pid} on {j.host}, since "
            f"{time.strftime('%H:%M:%S', time.localtime(j.started_at))}, {j.progress()} rows)"
            for j in running)

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
        if not prefix.startswith("file:"):
            return prefix
        real = os.path.realpath(storage.file_path(prefix))
        known = [self.resolve(p) for p in catalog.locations(self.db, table_uid)]
        for where in [self.media_folder.prefix, *known]:
            if where != prefix and where.startswith("file:") and \
                    os.path.realpath(storage.file_path(where)) == real:
                return where
        return prefix

    def stored(self, uri: str) -> str:
        """The form a row stores for ``uri`` (relative inside the media folder)."""
        return self.media_folder.stored(uri)

    def resolve(self, stored: str) -> str:
        """The absolute URI of a stored reference."""
        return self.media_folder.uri(stored)

    def canonical_dest(self, dest: str | os.PathLike[str]) -> str:
        """The canonical prefix URI of a destination (form checked; no network)."""
        key = os.fspath(dest)
        with self._lock:
            if key not in self._dest_cache:
                self._dest_cache[key] = storage.canonical_prefix(key, self.settings())
            return self._dest_cache[key]

    def validate_dest(self, dest: str | os.PathLike[str]) -> str:
        """Check a destination fully (form, bucket, write access) and return its prefix URI."""
        return storage.validate_destination(os.fspath(dest), self.settings())

    # ---- directories -----------------------------------------------------------------------------
    def create_dir(self, path: str, *, if_exists: str = "error") -> None:
        """Create a directory (dotted path; the parent must exist)."""
        check_choice(if_exists, "if_exists", ("error", "ignore"))
        with self.db.transaction():
            if if_exists == "ignore" and catalog.path_kind(self.db, path) == "directory":
                return
            catalog.create_dir(self.db, path)

    def drop_dir(self, path: str, *, force: bool = False, if_not_exists: str = "error") -> None:
        """Drop a directory; with ``force=True`` also everything in it (tables and their files)."""
        check_choice(if_not_exists, "if_not_exists", ("error", "ignore"))
        catalog.check_path(path, "directory")
        with self.db.transaction():
            if catalog.path_kind(self.db, path) != "directory":
                if if_not_exists == "ignore" or force:  # force: make sure it is gone
                    return
                raise NotFoundError(f"directory {path!r} does not exist; list_dirs() shows the "
                                    "directories there are")
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

    # ---- tables ----------------------------------------------------------------------------------
    def create_table(self, path: str, schema: dict[str, Any] | None = None, *,
                     if_exists: str = "error", primary_key: str | list[str] | None = None,
                     source: Any = None, source_format: str | None = None,
                     schema_overrides: dict[str, Any] | None = None, on_error: str = "abort",
                     extra_args: dict[str, Any] | None = None) -> Table:
        """Create a table from ``{name: type}``; ``if_exists='error'|'ignore'|'replace'``.

        ``primary_key``: a column name or a list of them; SQLite enforces it (a unique index),
        its columns become Required. ``source``: a CSV, Parquet or JSON file (or folder of
        Parquet files), a pandas DataFrame or a list of dicts; the table gets its columns,
        types inferred from every value (``schema_overrides={'img': pxl.Image}`` sets some,
        e.g. to make a column of paths or URLs a media column), and its rows, in one
        transaction (see :mod:`pxlite.io`). ``source_format`` ('csv', 'parquet', 'json')
        when the file's suffix does not say; ``extra_args`` the reader's options
        (``delimiter``, ``lines``)."""
        if source is not None:
            if schema is not None:
                raise SchemaError("create_table() takes a schema or a source, not both")
            return tables.create_from_source(
                self, path, source, source_format=source_format,
                schema_overrides=schema_overrides, primary_key=primary_key,
                if_exists=if_exists, on_error=on_error, extra_args=extra_args,
                check_name=check_column_name)
        if source_format is not None or schema_overrides is not None or extra_args is not None:
            raise SchemaError("source_format, schema_overrides and extra_args go with source=")
        check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
        if schema is not None and not isinstance(schema, dict):
            raise SchemaError(f"the schema must be a dict of {{name: type}}, "
                              f"got {type(schema).__name__}")
        cols = [(check_column_name(n), as_type(t)) for n, t in (schema or {}).items()]
        key = keys.normalize(primary_key)
        if key:
            cols = keys.key_schema(path, cols, key)
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
            keys.declare(self.db, catalog.create_table(self.db, path, cols), key)
        return Table(self, path)

    def get_table(self, path: str) -> Table:
        """The table at ``path``; NotFoundError when there is none."""
        catalog.check_path(path)
        catalog.load_table(self.db, path)
        return Table(self, path)

    def list_tables(self, dir: str | None = None) -> list[str]:
        """The tables (of a directory and its subdirectories, when ``dir`` is given)."""
        if dir is not None:
            catalog.check_path(dir, "directory")
            if catalog.path_kind(self.db, dir) != "directory":
                raise NotFoundError(f"directory {dir!r} does not exist; list_dirs() shows the "
                                    "directories there are")
        return catalog.list_tables(self.db, dir)

    def drop_table(self, path: str | Table, *, if_not_exists: str = "error") -> None:
        """Drop a table; files pxlite wrote for it that no other table names are deleted after
        the commit."""
        check_choice(if_not_exists, "if_not_exists", ("error", "ignore"))
        if isinstance(path, Table):
            path = path.path
        catalog.check_path(path)
        try:
            meta = catalog.load_table(self.db, path)
        except NotFoundError:
            if if_not_exists == "ignore":
                return
            raise
        with writes.operation(self, meta) as op:
            # The table as it is now, under the lock: another connection may have dropped it,
            # or some of its columns, since it was loaded.
            meta = writes.current_table(self, meta)
            named = {c.col_id: writes.named_files(self.db, meta, c) for c in meta.media_columns}
            prefixes = catalog.owned_prefixes(self.db, meta.uid, self.ownership)
            catalog.drop_table_rows(self.db, meta)
            # After the rows are gone: what another table still names is kept (the same rule
            # as delete()).
            for col_id, uris in named.items():
                op.release(col_id, uris)
            # Locations of the dropped table stay recorded until its prefixes are swept, so a
            # crash before the sweep leaves files check() still recognises as orphans.
            op.after_commit(lambda: writes.sweep_dropped(self, meta.uid, prefixes))

