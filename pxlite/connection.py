"""The public database handle returned by ``pxl.connect``: directories, tables, settings, the
database's own media folder, and the deferred deletion of files rows no longer name."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from . import backup, catalog, history, maintenance, versions, writes
from . import config as _config
from .db import Database
from .errors import (
    AlreadyExistsError,
    BusyError,
    NotFoundError,
    SchemaError,
    VersionError,
    check_choice,
)
from .io import keys, tables
from .places import Ownership, Places
from .results import UpdateStatus
from .snapshots import TableVersion, parse_versioned_path
from .table import Table, check_column_name
from .types import as_type


class Connection:
    """One pxlite database file and its media folder (``<file>.media/`` beside it)."""

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None,
                 media_dir: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        self.config = dict(config or {})
        _config.resolve(self.config)  # a typo in config= fails here, not at first use
        self.db = Database(path, create=create)
        self.path = self.db.path
        #: Where this database's files live and which it owns (places.py).
        self.places = Places(self.db, media_dir, self.config)
        self.media_dir, self.media_folder = self.places.media_dir, self.places.media_folder
        self.db.busy_hint = self._busy_hint
        try:
            self.places.establish()
            # Optional at connect time: with another process writing, the deletes wait for a
            # later open (or check(fix=True)) rather than this open waiting for the lock.
            with contextlib.suppress(BusyError), self.db.nowait():
                writes.finish_pending(self.places, local_only=True)
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

    def check(self, fix: bool = False) -> maintenance.CheckReport:
        """Compare this database's catalog with its files, both ways (see
        :func:`pxlite.maintenance.check`); ``fix=True`` removes orphan files pxlite wrote. The
        report names this database."""
        return maintenance.check(self.places, fix=fix)

    # ---- settings, places and ownership --------------------------------------------------------
    def settings(self) -> _config.Settings:
        """Effective settings now: this database's config= over configure() over env over file."""
        return self.places.settings()

    @property
    def ownership(self) -> Ownership:
        """Which locations this database may delete files in (see :mod:`pxlite.places`)."""
        return self.places.ownership

    def stored(self, uri: str) -> str:
        """The form a row stores for ``uri`` (relative inside the media folder)."""
        return self.places.stored(uri)

    def resolve(self, stored: str) -> str:
        """The absolute URI of a stored reference."""
        return self.places.resolve(stored)

    def validate_dest(self, dest: str | os.PathLike[str]) -> str:
        """Check a destination fully (form, bucket, write access) and return its prefix URI."""
        return self.places.validate_dest(dest)

    def claim_locations(self) -> list[str]:
        """Take ownership of every location this database's files were written to, for a
        database that was *moved* (to another machine, or with its pair renamed) rather than
        copied: until then it reads those files but never deletes them (another database may
        still name them). Returns the places claimed. Never claim locations another live
        database uses: their files this database does not name would become orphans."""
        return self.places.claim()

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
            for t in sorted(tables, key=lambda p: catalog.path_kind(self.db, p) != "snapshot"):
                self.drop_table(t, force=True)
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
                     extra_args: dict[str, Any] | None = None, versioned: bool = True,
                     version_retention_days: float | None = None,
                     version_retention_count: int | None = None) -> Table:
        """Create a table from ``{name: type}``; ``if_exists='error'|'ignore'|'replace'``.

        ``primary_key``: a column name or a list of them; SQLite enforces it (a unique index),
        its columns become Required. ``source``: a CSV, Parquet or JSON file (or folder of
        Parquet files), a pandas DataFrame or a list of dicts; the table gets its columns,
        types inferred from every value (``schema_overrides={'img': pxl.Image}`` sets some,
        e.g. to make a column of paths or URLs a media column), and its rows, in one
        transaction (see :mod:`pxlite.io`). ``source_format`` ('csv', 'parquet', 'json')
        when the file's suffix does not say; ``extra_args`` the reader's options
        (``delimiter``, ``lines``).

        Every change to it is a version (revert, time travel, snapshots: README "Undo and
        history"), kept ``version_retention_days`` days and at most ``version_retention_count``
        versions (None: the database's settings, by default 30 days). ``versioned=False``
        keeps none (operational tables: a delete frees its files at once)."""
        policy = history.policy_of(versioned, version_retention_days, version_retention_count)
        if source is not None:
            if schema is not None:
                raise SchemaError("create_table() takes a schema or a source, not both")
            return tables.create_from_source(
                self, path, source, source_format=source_format,
                schema_overrides=schema_overrides, primary_key=primary_key,
                if_exists=if_exists, on_error=on_error, extra_args=extra_args,
                check_name=check_column_name, versioning={
                    "versioned": versioned, "version_retention_days": version_retention_days,
                    "version_retention_count": version_retention_count})
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
                return Table(self, path, catalog.load_table(self.db, path).id)
            if kind == "table" and if_exists == "replace":
                self.drop_table(path)
            elif kind is not None:
                raise AlreadyExistsError(
                    f"a {kind} named {path!r} exists already; pass if_exists='ignore'"
                    + (" or 'replace'" if kind == "table" else "")
                )
            meta = catalog.create_table(self.db, path, cols)
            keys.declare(self.db, meta, key)
            versions.created(self.db, catalog.load_table(self.db, path), policy)
        return Table(self, path, meta.id)

    def get_table(self, path: str) -> Table:
        """The table at ``path``; NotFoundError when there is none. ``'dir.t:3'`` is version 3
        of table ``dir.t`` and a snapshot's path its snapshot: read-only handles."""
        at = parse_versioned_path(path)
        if at is not None:
            return TableVersion(self, *at)
        catalog.check_path(path)
        if catalog.path_kind(self.db, path) == "snapshot":
            table_path, version = catalog.load_snapshot(self.db, path)
            return TableVersion(self, table_path, version, label=path, snapshot=True)
        return Table(self, path, catalog.load_table(self.db, path).id)

    def create_snapshot(self, path: str, base: Table, *, if_exists: str = "error") -> Table:
        """Name the current version of table ``base`` (or the version a read-only handle
        reads) ``path``: a read-only handle, made in O(1) (no rows or files copied). The
        snapshot keeps that version, and the files it names, until it is dropped
        (``drop_table(path)``)."""
        if not isinstance(base, Table):
            raise SchemaError(f"create_snapshot() takes a table (pxl.get_table(...)), got "
                              f"{type(base).__name__}")
        if base._conn.path != self.path:
            raise SchemaError(f"table {base._path!r} belongs to database {base._conn.path}, not "
                              f"{self.path}; snapshot it there")
        table_path, version = ((base._table_path, base._version)
                               if isinstance(base, TableVersion) else (base._path, None))
        history.create_snapshot(self.places, path, catalog.load_table(self.db, table_path),
                                version, if_exists)
        return self.get_table(path)

    def backup(self, path: str | os.PathLike[str], *,
               if_exists: str = "error") -> UpdateStatus:
        """Write a consistent copy of this database to ``path`` and of its media folder beside
        it, while other programs keep writing (see :func:`pxlite.backup.backup`)."""
        return backup.backup(self.places, path, if_exists=if_exists)

    def list_tables(self, dir: str | None = None) -> list[str]:
        """The tables (of a directory and its subdirectories, when ``dir`` is given)."""
        if dir is not None:
            catalog.check_path(dir, "directory")
            if catalog.path_kind(self.db, dir) != "directory":
                raise NotFoundError(f"directory {dir!r} does not exist; list_dirs() shows the "
                                    "directories there are")
        return catalog.list_tables(self.db, dir)

    def drop_table(self, path: str | Table, *, if_not_exists: str = "error",
                   force: bool = False) -> None:
        """Drop a table (with its versions) or a snapshot; files pxlite wrote for a table that
        no other table names are deleted after the commit. A table with snapshots is dropped
        only with ``force=True`` (which drops them too)."""
        check_choice(if_not_exists, "if_not_exists", ("error", "ignore"))
        if isinstance(path, Table):
            path._meta()  # a handle on a table replaced since must not drop its successor
            path = path._path
        if parse_versioned_path(path) is not None:
            raise VersionError(f"{path!r} is a version of a table, not a table: it goes when "
                               "its history is pruned (a snapshot of it is dropped by its name)")
        catalog.check_path(path)
        if catalog.path_kind(self.db, path) == "snapshot":
            history.drop_snapshot(self.places, path)
            return
        try:
            meta = catalog.load_table(self.db, path)
        except NotFoundError:
            if if_not_exists == "ignore":
                return
            raise
        with writes.operation(self.places, meta, kind="drop_table") as op:
            # The table as it is now, under the lock: another connection may have dropped it,
            # or some of its columns, since it was loaded.
            meta = writes.current_table(self.db, meta)
            pinned = [p for p, _ in catalog.snapshots_of(self.db, meta.id)]
            if pinned and not force:
                raise SchemaError(
                    f"table {path!r} has snapshot(s) {', '.join(map(repr, pinned[:5]))}: drop "
                    "them first (drop_table(snapshot)), or pass force=True to drop them too")
            named = {c.col_id: writes.named_files(self.db, meta, c) for c in meta.media_columns}
            folders = self.places.owned_folders(meta)
            catalog.drop_table_rows(self.db, meta)
            # After the rows are gone: what another table still names is kept (the same rule
            # as delete()).
            for col_id, uris in named.items():
                op.release(col_id, uris)
            # Locations of the dropped table stay recorded until its prefixes are swept, so a
            # crash before the sweep leaves files check() still recognises as orphans.
            op.after_commit(lambda: writes.sweep_dropped(self.places, folders))
