"""The SQLite connection: opening, schema versions, and transactions with after-commit work.

One :class:`Database` wraps one apsw connection to one catalog file. It applies apsw's
best-practice settings to this connection only (never ``apsw.connection_hooks``, which would change
every connection in the process), WAL journaling, a busy timeout so concurrent writers wait instead
of failing, foreign keys, and ``BEGIN IMMEDIATE`` for writers so two writers never deadlock on a
lock upgrade. The catalog DDL comes from ``schema.sql``; ``PRAGMA user_version`` holds the schema
version and ``PRAGMA application_id`` marks the file as pxlite's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import apsw

from . import faults, sqlcall
from .errors import BusyError, DatabaseError, NotFoundError, PxliteError

APPLICATION_ID = 0x50584C54  # 'PXLT'
SCHEMA_VERSION = 8
BUSY_TIMEOUT_MS = 30_000
#: How much of the file :meth:`Database.mapped` lets SQLite read through a memory map.
MMAP_BYTES = 1 << 30

#: Upgrades from version N to N+1, as SQL. Version 1 is the first released schema; version 2
#: records which database identity owns each media location (a copy never cleans its original's)
#: and the long operations in progress (pending columns, resumable jobs); version 3 the uids each
#: table has had (a copy writes under uids of its own) and the operations writing files now;
#: version 4 a table's primary key (enforced by a unique index on the data table); version 5
#: the indexes users add (add_btree_index); version 6 versions (pxlite/versions.py): each table
#: starts its history with a baseline version 0 of its columns as they are (its high-water mark
#: is set by its next write); version 7 an embedding index's definition; version 8 views
#: (create_view: px_views).
MIGRATIONS: dict[int, str] = {
    1: """
    ALTER TABLE px_media_locations ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE px_columns ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE px_columns ADD COLUMN stored INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE px_jobs (
        id         INTEGER PRIMARY KEY,
        table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        spec       TEXT NOT NULL,
        done_upto  INTEGER NOT NULL,
        done_rows  INTEGER NOT NULL DEFAULT 0,
        total_rows INTEGER NOT NULL DEFAULT 0,
        pid        INTEGER NOT NULL,
        host       TEXT NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) STRICT;
    """,
    2: """
    CREATE TABLE px_table_uids (
        uid      TEXT PRIMARY KEY,
        table_id INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE
    ) STRICT;
    INSERT INTO px_table_uids(uid, table_id) SELECT uid, id FROM px_tables;
    CREATE TABLE px_writers (
        id         INTEGER PRIMARY KEY,
        table_uid  TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        host       TEXT NOT NULL,
        proc_start TEXT NOT NULL,
        kind       TEXT NOT NULL,
        started_at REAL NOT NULL
    ) STRICT;
    """,
    3: """
    ALTER TABLE px_tables ADD COLUMN primary_key TEXT;
    """,
    4: """
    CREATE TABLE IF NOT EXISTS px_indexes (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        col_id     INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (table_id, name)
    ) STRICT;
    """,
    5: """
    CREATE TABLE IF NOT EXISTS px_versions (
        table_id      INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
        version       INTEGER NOT NULL,
        created_at    REAL NOT NULL,
        kind          TEXT NOT NULL,
        inserts       INTEGER NOT NULL DEFAULT 0,
        updates       INTEGER NOT NULL DEFAULT 0,
        deletes       INTEGER NOT NULL DEFAULT 0,
        schema_change TEXT,
        reverted_to   INTEGER,
        state_of      INTEGER NOT NULL,
        columns       TEXT NOT NULL,
        high_water    INTEGER,
        PRIMARY KEY (table_id, version)
    ) STRICT;
    CREATE TABLE IF NOT EXISTS px_dropped_columns (
        table_id INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
        col_id   INTEGER NOT NULL,
        meta     TEXT NOT NULL,
        version  INTEGER NOT NULL,
        PRIMARY KEY (table_id, col_id)
    ) STRICT;
    CREATE TABLE IF NOT EXISTS px_version_policy (
        table_id        INTEGER PRIMARY KEY REFERENCES px_tables(id) ON DELETE CASCADE,
        versioned       INTEGER NOT NULL DEFAULT 1,
        retention_days  REAL,
        retention_count INTEGER
    ) STRICT;
    CREATE TABLE IF NOT EXISTS px_snapshots (
        id         INTEGER PRIMARY KEY,
        path       TEXT NOT NULL UNIQUE,
        dir_id     INTEGER REFERENCES px_dirs(id),
        table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
        version    INTEGER NOT NULL,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS px_snapshots_table ON px_snapshots(table_id);
    INSERT OR IGNORE INTO px_versions(table_id, version, created_at, kind, state_of, columns)
    SELECT t.id, 0, (julianday('now') - 2440587.5) * 86400.0, 'baseline', 0,
           (SELECT json_group_array(json(c.obj)) FROM (
                SELECT json_object('col_id', col_id, 'name', name, 'position', position,
                                   'type', type, 'expr', expr, 'destination', destination,
                                   'format', format, 'on_error', on_error,
                                   'stored', json(CASE stored WHEN 0 THEN 'false' ELSE 'true' END)
                                   ) AS obj
                FROM px_columns WHERE table_id = t.id AND pending = 0 ORDER BY position) AS c)
    FROM px_tables AS t;
    """,
    6: """
    ALTER TABLE px_indexes ADD COLUMN params TEXT;
    """,
    7: """
    CREATE TABLE IF NOT EXISTS px_views (
        table_id  INTEGER PRIMARY KEY REFERENCES px_tables(id) ON DELETE CASCADE,
        base_id   INTEGER NOT NULL REFERENCES px_tables(id),
        predicate TEXT,
        iterator  TEXT,
        options   TEXT NOT NULL DEFAULT '{}',
        built     INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX IF NOT EXISTS px_views_base ON px_views(base_id);
    """,
}


def schema_sql() -> str:
    """The catalog DDL: from the installed package, else from the source tree's root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "schema.sql", here.parent / "schema.sql"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise DatabaseError("schema.sql is missing from the pxlite installation; reinstall pxlite")


def _read_only_file(path: Path) -> bool:
    """True when the file's permission bits allow nobody to write it.

    Checked by mode rather than os.access so a read-only file is honoured even for root, who could
    otherwise write through the permission bits and surprise the owner.
    """
    try:
        return not (path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return False


class Database:
    """One open pxlite catalog file."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        """Open the catalog file at ``path``. ``create``: make the file when it is missing (its
        folder must exist: a missing folder is far more often a typo than a wish); False
        refuses a missing file. Both refusals are :class:`NotFoundError`."""
        if "\x00" in os.fspath(path):
            raise DatabaseError(f"{os.fspath(path)!r} is not a usable database path: it "
                                "contains a NUL character")
        self.path = Path(path).expanduser().absolute()
        self.read_only = self.path.exists() and _read_only_file(self.path)
        self._lock = threading.RLock()
        self._mapping = 0  # depth of mapped() blocks
        self._after_commit: list[Callable[[], None]] | None = None
        self._depth = 0
        self._savepoints = 0
        #: Says what holds the write lock when a write times out (set by the connection).
        self.busy_hint: Callable[[], str] | None = None
        #: The schema version this file had before this open migrated it (None: no migration).
        self.migrated_from: int | None = None
        self._wal = False
        self._writing = 0
        self.sqlite = self._open(create)

    # ---- opening -------------------------------------------------------------------------------
    def _open(self, create: bool) -> apsw.Connection:
        if self.path.is_dir():
            raise DatabaseError(f"{self.path} is a folder; pass the path of a database file")
        parent = self.path.parent
        if not parent.exists():
            # Never made here: a mistyped folder would otherwise become a new empty database.
            raise NotFoundError(
                f"cannot open database {self.path}: the folder {parent} does not exist; "
                "create the folder first, or pass the path of an existing database file")
        if not parent.is_dir():
            raise DatabaseError(f"cannot create database {self.path}: {parent} is not a folder")
        if not create and not self.path.exists():
            raise NotFoundError(
                f"no database file at {self.path}; pass the path of an existing file, or "
                f"connect({str(self.path)!r}) to create one")
        flags = (
            apsw.SQLITE_OPEN_READONLY
            if self.read_only
            else apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        )
        try:
            conn = apsw.Connection(str(self.path), flags=flags)
        except apsw.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from e
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        try:
            self._configure(conn)
            self._check_schema(conn)
        except apsw.NotADBError as e:
            conn.close()
            raise DatabaseError(
                f"{self.path} is not a pxlite database (not a SQLite file, or corrupt); "
                "pass another path or restore the file from a backup"
            ) from e
        except apsw.CorruptError as e:
            conn.close()
            raise DatabaseError(f"{self.path} is corrupt ({e}); restore it from a backup") from e
        except DatabaseError:
            conn.close()
            raise
        return conn

    def _configure(self, conn: apsw.Connection) -> None:
        import apsw.bestpractice  # here, not at import: it pulls in apsw.ext (~15 ms)

        # Best practice for *this* connection only: no double-quoted string literals, recursive
        # triggers, periodic optimize; then foreign keys on and WAL so readers never block the
        # writer.
        # (Not connection_optimize: its PRAGMA optimize at connect time can need the write lock
        # and fail with a busy error while another process writes. It runs at close instead.)
        for fix in (
            apsw.bestpractice.connection_dqs,
            apsw.bestpractice.connection_recursive_triggers,
        ):
            fix(conn)
        conn.pragma("foreign_keys", True)
        sqlcall.install(conn)  # pxl_call(): expressions SQLite computes by calling Python
        if not self.read_only:
            mode = conn.pragma("journal_mode", "wal")
            self._wal = str(mode).lower() == "wal"
            if not self._wal:  # e.g. a filesystem without shared memory
                conn.pragma("journal_mode", "delete")
            # FULL: a commit survives power loss. pxlite deletes superseded files right after a
            # commit, so a commit a power cut could undo would leave rows naming deleted files.
            # Its transactions are few and large, so the extra fsync per commit is cheap.
            conn.pragma("synchronous", "full")

    def _check_schema(self, conn: apsw.Connection) -> None:
        app_id = conn.pragma("application_id")
        version = conn.pragma("user_version")
        has_tables = bool(
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0]
        )
        if app_id == 0 and version == 0 and not has_tables:
            if self.read_only:
                raise DatabaseError(f"{self.path} is empty and read-only; cannot create a catalog")
            with self._tx(conn):
                conn.execute(schema_sql())
                conn.pragma("application_id", APPLICATION_ID)
                conn.pragma("user_version", SCHEMA_VERSION)
            return
        if app_id != APPLICATION_ID:
            raise DatabaseError(
                f"{self.path} is a SQLite file but not a pxlite database "
                f"(application_id {app_id:#x}); pass another path"
            )
        # Version 0 with pxlite's id, or a version without the catalog's tables: not a catalog
        # pxlite wrote (a damaged file, or another program's).
        if version == 0 or not conn.execute(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                "('px_meta', 'px_tables', 'px_columns')").fetchall()[0][0] == 3:
            raise DatabaseError(
                f"{self.path} carries pxlite's file id but holds no pxlite catalog (damaged, or "
                "written by another program); restore it from a backup or pass another path")
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{self.path} was written by a newer pxlite (schema version {version}, this pxlite "
                f"knows up to {SCHEMA_VERSION}); upgrade with: pip install -U pxlite"
            )
        if version < SCHEMA_VERSION:
            if self.read_only:
                raise DatabaseError(
                    f"{self.path} uses schema version {version} and needs a migration, "
                    "but it is read-only; make it writable once to migrate"
                )
            self.migrated_from = version
            with self._tx(conn):
                for v in range(version, SCHEMA_VERSION):
                    conn.execute(MIGRATIONS[v])
                    conn.pragma("user_version", v + 1)

    @staticmethod
    @contextlib.contextmanager
    def _tx(conn: apsw.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ---- use -----------------------------------------------------------------------------------
    def execute(self, sql: str, params: Any = None) -> apsw.Cursor:
        """Run one statement (values always bound as parameters) and return its cursor. Under
        this connection's lock, as every call into it: apsw refuses a connection that another
        thread is using (read a long result with :meth:`stream`)."""
        try:
            with self._lock:
                return self.sqlite.execute(sql, params)
        except apsw.Error as e:
            mapped = self._mapped(e)
            if mapped is None:
                raise
            raise mapped from e

    def _mapped(self, e: BaseException) -> PxliteError | None:
        """The pxlite error (saying what happened and what to do) for the SQLite errors a user
        can meet: a read-only file, a write lock held too long, a full disk, a closed
        connection. None for the others (programming errors, re-raised as they are)."""
        if isinstance(e, apsw.ReadOnlyError):
            return self._read_only_error()
        if isinstance(e, apsw.BusyError):
            return self._busy_error(e)
        if isinstance(e, apsw.FullError):
            return self._full_error()
        if isinstance(e, apsw.ConnectionClosedError):
            return self._closed_error()
        return None

    def _closed_error(self) -> DatabaseError:
        return DatabaseError(f"the connection to database {self.path} is closed; open it again "
                             f"with pxl.connect({str(self.path)!r}) and get the table from it")

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        """Run one statement and return all rows."""
        with self._lock:
            return self.execute(sql, params).fetchall()

    def stream(self, cursor: apsw.Cursor, batch: int = 256) -> Iterator[tuple]:
        """The rows of a statement started with :meth:`execute`, read ``batch`` at a time under
        this connection's lock, so a query's rows can stream while other threads use the same
        connection (apsw refuses a connection busy in two threads at once). Closing the
        iterator (or reading to the end) finalizes the statement."""
        with contextlib.closing(self.pages(cursor, batch)) as pages:
            for rows in pages:
                yield from rows

    def pages(self, cursor: apsw.Cursor, size: int, *, ahead: bool = False
              ) -> Generator[list[tuple], None, None]:
        """:meth:`stream`'s rows, as lists of ``size`` rows (the last one shorter): for work
        done a batch at a time. ``ahead``: each list is yielded only once the next one is read,
        so the statement has moved past all of its rows and the caller may change them (a
        changed row's index entry is put back at a key the statement has passed; were the
        statement standing on that row, it would meet it again). Closing the iterator (or
        reading to the end) finalizes the statement."""

        def read() -> list[tuple]:
            with self._lock:
                try:
                    return list(itertools.islice(cursor, size))
                except apsw.Error as e:
                    mapped = self._mapped(e)
                    if mapped is None:
                        raise
                    raise mapped from e

        try:
            rows = read()
            while rows:
                after = read() if ahead else []
                yield rows
                rows = after if ahead else read()
        finally:
            with self._lock:
                cursor.close()

    def executemany(self, sql: str, rows: Any) -> None:
        try:
            with self._lock:
                self.sqlite.executemany(sql, rows)
        except apsw.Error as e:
            mapped = self._mapped(e)
            if mapped is None:
                raise
            raise mapped from e

    def _full_error(self) -> DatabaseError:
        return DatabaseError(
            f"the disk holding database {self.path} is full (or the database reached its size "
            "limit); nothing of this operation was committed: free some space and retry")

    def _busy_error(self, e: BaseException) -> BusyError:
        """The write lock stayed taken past the busy timeout: say by whom, if the catalog
        knows (a long operation records itself), and what to do."""
        who = ""
        if self.busy_hint is not None:
            with contextlib.suppress(Exception):
                who = self.busy_hint()
        return BusyError(
            f"database {self.path} is busy: another connection held its write lock for more "
            f"than {BUSY_TIMEOUT_MS // 1000} s{who or ' (an operation in another process)'}; "
            "try again when it has finished")

    def _read_only_error(self) -> DatabaseError:
        return DatabaseError(
            f"database {self.path} is read-only; make the file (and its folder) writable "
            "to change it, or only read from it"
        )

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[list[Callable[[], None]]]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one.

        Yields the after-commit list: callables appended to it run once the outermost transaction
        has committed (used to delete superseded files only when no committed row names them).
        ``durable=False`` (an outermost transaction only): its commit is visible to every
        connection at once but not synced to disk (WAL, ``synchronous=NORMAL``): for records
        that matter only while their process lives, such as which operations are writing now.
        """
        if self.read_only:
            raise self._read_only_error()
        with self._lock:
            outer = self._depth == 0
            after: list[Callable[[], None]] = []
            relaxed = outer and not durable and self._wal
            if outer:
                self._after_commit = after
                if relaxed:
                    self.sqlite.pragma("synchronous", "normal")
                try:
                    self.execute("BEGIN IMMEDIATE")
                except BaseException:
                    if relaxed:
                        self.sqlite.pragma("synchronous", "full")
                    self._after_commit = None
                    raise
            else:
                assert self._after_commit is not None
                after = self._after_commit
            self._depth += 1
            self._writing += 1
            try:
                yield after
            except BaseException:
                self._depth -= 1
                self._writing -= 1
                if outer:
                    self._after_commit = None
                    with contextlib.suppress(apsw.Error):
                        self.sqlite.execute("ROLLBACK")
                    if relaxed:
                        self.sqlite.pragma("synchronous", "full")
                raise
            self._depth -= 1
            self._writing -= 1
            if not outer:
                return
            try:
                faults.point("before_commit")
                self.sqlite.execute("COMMIT")
            except BaseException as e:
                # a COMMIT that failed (or a fault before it): undo it, as a crash would
                with contextlib.suppress(apsw.Error):
                    if not self.sqlite.getautocommit():
                        self.sqlite.execute("ROLLBACK")
                mapped = self._mapped(e)
                if mapped is None:
                    raise
                raise mapped from e
            finally:
                self._after_commit = None
                if relaxed:
                    self.sqlite.pragma("synchronous", "full")
        faults.point("after_commit")
        for fn in after:
            fn()

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        """Writes inside give up at once (BusyError) instead of waiting for the write lock:
        for optional work, such as finishing deletes at connect time, that can wait for a
        later moment when another process is writing."""
        self.sqlite.set_busy_timeout(0)
        try:
            yield
        finally:
            self.sqlite.set_busy_timeout(BUSY_TIMEOUT_MS)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a write transaction: a nested part whose changes are taken back on error while
        the transaction (and its lock) goes on; the error propagates."""
        if not self._depth:
            raise AssertionError("internal error: a savepoint needs an open write transaction")
        name = f"pxlite_sp{self._savepoints}"
        self._savepoints += 1
        self.sqlite.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            with contextlib.suppress(apsw.Error):
                self.sqlite.execute(f"ROLLBACK TO {name}")
                self.sqlite.execute(f"RELEASE {name}")
            raise
        finally:
            self._savepoints -= 1
        self.sqlite.execute(f"RELEASE {name}")

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """A read transaction: every query inside sees one consistent snapshot."""
        with self._lock:
            if self._depth:
                yield
                return
            self.execute("BEGIN")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                with contextlib.suppress(apsw.Error):
                    self.sqlite.execute("COMMIT")

    def catalog_stamp(self) -> tuple[int, int] | None:
        """A key for what this connection would read from the catalog now, for caches of it
        (see catalog.load_table): the commits of other connections it has seen (``PRAGMA
        data_version``) and the rows it changed itself (``sqlite3_total_changes``, which counts
        uncommitted and rolled-back changes too, so it only ever grows). Inside a read
        transaction the same: its snapshot is the state at that ``data_version`` (the pragma
        begins the read when nothing has yet). None inside a transaction that has written: its
        changes may still roll back."""
        with self._lock:
            version = self.query("PRAGMA data_version")[0][0]  # (a closed connection: its error)
            if self.sqlite.in_transaction and \
                    self.sqlite.txn_state("main") != apsw.SQLITE_TXN_READ:
                return None
            return int(version), self.sqlite.total_changes()

    def in_write_transaction(self) -> bool:
        """Is a write transaction (:meth:`transaction`) open on this connection?"""
        return self._writing > 0

    def max_columns(self) -> int:
        """How many columns SQLite allows in one table (SQLITE_LIMIT_COLUMN)."""
        return int(self.sqlite.limit(apsw.SQLITE_LIMIT_COLUMN, -1))

    def changes(self) -> int:
        """Rows changed by the last INSERT, UPDATE or DELETE on this connection."""
        return self.sqlite.changes()

    @contextlib.contextmanager
    def mapped(self) -> Iterator[None]:
        """SQLite reads the file (its first :data:`MMAP_BYTES`) through a memory map while the
        block runs: for work that visits the same pages twice in a row, such as a versioned
        delete (one pass copies the rows into the undo log, a second deletes them by rowid),
        the second visit then copies nothing. Measured, 10,000 of 1,000,000 rows: 1.18x the
        plain delete read by pread, 1.10x mapped; the plain delete itself gains 2%.

        Only around such statements, never for the connection's life: an I/O error on a mapped
        file (a drive pulled out) is a SIGBUS, not an error SQLite can report, and the pages
        read count in the process's resident memory while mapped."""
        with self._lock:
            outer = not self._mapping
            if outer:
                self.sqlite.pragma("mmap_size", MMAP_BYTES)
            self._mapping += 1
            try:
                yield
            finally:
                self._mapping -= 1
                if outer:
                    with contextlib.suppress(apsw.Error):
                        self.sqlite.pragma("mmap_size", 0)

    def last_insert_rowid(self) -> int:
        return self.sqlite.last_insert_rowid()

    def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; an empty list means the file is sound."""
        rows = [r[0] for r in self.query("PRAGMA integrity_check")]
        return [] if rows == ["ok"] else rows

    def close(self) -> None:
        """Close; first let SQLite refresh its planner statistics if that is quick and the lock
        is free (never waiting: a busy database just skips it)."""
        if not self.read_only:
            with contextlib.suppress(apsw.Error):
                self.sqlite.set_busy_timeout(0)
                self.sqlite.pragma("optimize")
        self.sqlite.close()
