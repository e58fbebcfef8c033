"""The public database handle returned by ``pxl.connect``: directories, tables, settings, the
database's own media folder, and the deferred deletion of files rows no longer name."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import catalog, faults
from . import config as _config
from .catalog import TableMeta
from .db import Database
from .errors import AlreadyExistsError, NotFoundError, PxliteError, SchemaError
from .table import Table
from .types import as_type


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
        self.media_dir = Path(media_dir) if media_dir else self.path.with_name(self.path.name + ".media")
        self._dest_cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self._finish_pending(local_only=True)

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
        from . import storage

        self.media_dir.mkdir(parents=True, exist_ok=True)
        return storage.to_uri(self.media_dir).rstrip("/") + "/"

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
        cols = [(catalog.check_name(n), as_type(t)) for n, t in (schema or {}).items()]
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
        """Drop a table; files pxlite wrote for it are deleted after the commit."""
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
            for c in meta.columns:
                if c.type.is_media:
                    uris = [r[0] for r in self.db.query(
                        f"SELECT DISTINCT {c.sql} FROM {meta.sql} WHERE {c.sql} IS NOT NULL")]
                    self.release(meta, c.col_id, uris, after, check_refs=False)
            prefixes = catalog.owned_prefixes(self.db, meta.uid)
            catalog.drop_table_rows(self.db, meta)
            # Locations of the dropped table stay recorded until its prefixes are swept, so a
            # crash before the sweep leaves files check() still recognises as orphans.
            after.append(lambda: self._sweep_dropped(meta.uid, prefixes))

    # ---- deferred file deletion -------------------------------------------------------------------
    def release(self, meta: TableMeta, col_id: int, uris: list[str],
                after: list[Callable[[], None]], *, check_refs: bool = True) -> None:
        """Inside a write transaction: schedule deletion of the pxlite-owned files among ``uris``
        that no row names any more (durably, in px_pending_deletes); they are deleted after
        the commit by :meth:`_delete_files`, which checks again under the write lock."""
        if not uris:
            return
        prefixes = catalog.owned_prefixes(self.db, meta.uid, col_id)
        owned = [u for u in set(uris) if any(u.startswith(p) for p in prefixes)]
        if owned and check_refs:
            still = catalog.named_by_rows(self.db, owned)
            owned = [u for u in owned if u not in still]
        if not owned:
            return
        catalog.add_pending_deletes(self.db, owned)
        after.append(lambda: self._delete_files(owned))

    def _delete_files(self, uris: list[str]) -> None:
        """Delete files whose rows are gone, holding the write lock.

        Content addressing lets another operation reuse a file (identical content) between our
        commit and this delete; it writes and commits inside its own write transaction, so under
        the lock we see its rows and keep any file a row names again. A file that is no longer
        pending was handled by someone else (check(fix=True), another process).
        """
        from . import media, storage

        settings = self.settings()
        with self.db.transaction():
            pending = set(catalog.pending_deletes(self.db)) & set(uris)
            named = catalog.named_by_rows(self.db, pending)
            owned = catalog.owned_file_test(self.db)
            # named again: not ours to delete any more; not pxlite's shape or content (a crafted
            # catalog): never deleted. Either way the entry is done.
            done = sorted(named) + [u for u in pending - named
                                    if not owned(u) or not media.content_matches_name(u)]
            for uri in sorted(pending - named - set(done)):
                faults.point("before_file_delete")
                try:
                    storage.get_backend(uri, settings).delete(uri)
                    done.append(uri)
                except PxliteError:
                    pass  # stays pending; check(fix=True) or the next open retries it
            catalog.clear_pending_deletes(self.db, done)

    def _sweep_dropped(self, uid: str, prefixes: list[str]) -> None:
        from . import media, storage

        settings = self.settings()
        owned = catalog.owned_file_test(self.db)
        try:
            for prefix in prefixes:
                backend = storage.get_backend(prefix, settings)
                for uri in list(backend.list(prefix)):
                    if owned(uri) and media.content_matches_name(uri):
                        backend.delete(uri)
        except PxliteError:
            return  # the locations stay recorded; check(fix=True) sweeps them later
        with self.db.transaction():
            self.db.execute("DELETE FROM px_media_locations WHERE table_uid = ?", (uid,))

    def _finish_pending(self, local_only: bool) -> None:
        if self.db.read_only:
            return
        pending = catalog.pending_deletes(self.db)
        if local_only:
            pending = [u for u in pending if u.startswith("file://")]
        if pending:
            self._delete_files(pending)
