"""pxlite: an embedded, single-file table engine for media.

Tables live in one SQLite file; image and other media columns hold file references; computed
columns run image functions and store their output files locally or in cloud storage; remote
files are downloaded on demand into a bounded cache. See SPEC.md for the contract.

Only the public API is here. Heavy modules (Pillow, cloud SDKs, diskcache, the executor) are
imported lazily so ``import pxlite`` stays cheap.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from . import config as _config
from . import functions, io, storage
from .connection import Connection
from .errors import (
    AlreadyExistsError,
    ComputeError,
    ConfigError,
    DatabaseError,
    ExecutorError,
    NotFoundError,
    ObjectNotFoundError,
    OwnershipWarning,
    PxliteError,
    SchemaError,
    StorageError,
    VersionError,
)
from .exprs import Expr
from .query import Query
from .queryrun import ResultCursor, Row
from .results import ResultSet, UpdateStatus
from .table import Table
from .types import (
    Array,
    Audio,
    Bool,
    ColumnType,
    Date,
    Document,
    Float,
    Image,
    Int,
    Json,
    Required,
    String,
    Timestamp,
    Video,
)
from .uda import Aggregator, uda
from .udf import Function, udf

__version__ = "0.1.0"

# Pillow's transpose methods, as plain ints so importing pxlite does not import Pillow.
FLIP_LEFT_RIGHT = 0
FLIP_TOP_BOTTOM = 1
ROTATE_90 = 2
ROTATE_180 = 3
ROTATE_270 = 4
TRANSPOSE = 5
TRANSVERSE = 6

__all__ = [
    "FLIP_LEFT_RIGHT",
    "FLIP_TOP_BOTTOM",
    "ROTATE_90",
    "ROTATE_180",
    "ROTATE_270",
    "TRANSPOSE",
    "TRANSVERSE",
    "Aggregator",
    "AlreadyExistsError",
    "Array",
    "Audio",
    "Bool",
    "ColumnType",
    "ComputeError",
    "ConfigError",
    "Connection",
    "DatabaseError",
    "Date",
    "Document",
    "ExecutorError",
    "Expr",
    "Float",
    "Function",
    "Image",
    "Int",
    "Json",
    "NotFoundError",
    "ObjectNotFoundError",
    "OwnershipWarning",
    "PxliteError",
    "Query",
    "Required",
    "ResultCursor",
    "ResultSet",
    "Row",
    "SchemaError",
    "StorageError",
    "String",
    "Table",
    "Timestamp",
    "UpdateStatus",
    "VersionError",
    "Video",
    "cache_info",
    "check",
    "clear_cache",
    "configure",
    "connect",
    "create_dir",
    "create_snapshot",
    "create_table",
    "create_view",
    "drop_dir",
    "drop_table",
    "functions",
    "get_table",
    "io",
    "list_dirs",
    "list_tables",
    "settings",
    "uda",
    "udf",
]

_default: Connection | None = None
_default_lock = threading.Lock()
#: Databases opened with connect(path), for a message that names them (not kept alive by it).
_opened: weakref.WeakSet[Connection] = weakref.WeakSet()


def connect(path: str | os.PathLike[str] | None = None, *,
            config: dict[str, Any] | None = None, create: bool = True) -> Connection:
    """Open a pxlite database file, creating the file if it is missing (``create=False``:
    refuse a missing file with ``NotFoundError``).

    The file's folder must exist: a missing folder is a ``NotFoundError``, never created, so a
    mistyped path does not become a new empty database. Without ``path``, the default database
    ``$PXLITE_HOME/pxlite.db`` (``~/.pxlite`` unless set; created with its folder), whose media
    folder is ``$PXLITE_HOME/media``. ``config`` takes the shape of config.toml: the
    ``[pxlite]`` keys at the top level and provider sections as nested dicts; it applies to this
    database only and takes precedence over ``configure()``, the environment and the file.
    Destinations in it are checked now.
    """
    if path is None:
        home = _config.pxlite_home()
        _config.private_home(home)
        conn = Connection(home / "pxlite.db", config=config, media_dir=home / "media")
    else:
        conn = Connection(path, config=config, create=create)
        _opened.add(conn)
    if config:
        try:
            for dest in _dests(config):
                conn.validate_dest(dest)
        except BaseException:
            conn.close()  # not left open for the garbage collector
            raise
    return conn


def _dests(settings: dict[str, Any]) -> list[str]:
    """The destination URIs set in a settings dict (top level or under ``pxlite``)."""
    found = []
    for key in ("input_media_dest", "output_media_dest"):
        dest = settings.get(key) or (settings.get("pxlite") or {}).get(key)
        if dest:
            found.append(os.fspath(dest))
    return found


def default() -> Connection:
    """The default database (opened on first use; reopened if ``PXLITE_HOME`` changed)."""
    global _default
    home = _config.pxlite_home()
    with _default_lock:
        if _default is None or _default.path != (home / "pxlite.db").absolute():
            _default = connect()
        return _default


io.use_default_database(default)


def configure(**settings: Any) -> None:
    """Set process-wide settings, e.g. ``configure(output_media_dest='s3://b/out/',
    s3={'endpoint_url': ...})``; ``None`` unsets a key. All or nothing: the keys and the
    destinations (form, bucket, write access) are validated first, against the settings as they
    would be, and nothing is applied when one fails, so a mistake fails here rather than at the
    first row and leaves the settings as they were."""
    dests = _dests(settings)
    if dests:
        given = {k: v for k, v in settings.items() if v is not None}
        # The would-be settings: the new values over the current ones. (A key unset by None in
        # the same call still shows its old value here; no destination check reads one.)
        try:
            s = _config.resolve(given)
        except ConfigError:
            _config.resolve()  # config.toml or the environment is wrong: say so, apply nothing
            _config.configure(**settings)  # checks keys before applying: names the bad one
            raise
        for dest in dests:
            storage.validate_destination(dest, s)
    _config.configure(**settings)


def settings() -> _config.Settings:
    """The effective process-wide settings (with the source of each value)."""
    return _config.resolve()


def create_dir(path: str, *, if_exists: str = "error") -> None:
    """``create_dir`` on the default database."""
    default().create_dir(path, if_exists=if_exists)


def drop_dir(path: str, *, force: bool = False, if_not_exists: str = "error") -> None:
    """``drop_dir`` on the default database."""
    default().drop_dir(path, force=force, if_not_exists=if_not_exists)


def list_dirs() -> list[str]:
    """``list_dirs`` on the default database."""
    return default().list_dirs()


def create_table(path: str, schema: dict[str, Any] | None = None, *,
                 if_exists: str = "error", primary_key: str | list[str] | None = None,
                 source: Any = None, source_format: str | None = None,
                 schema_overrides: dict[str, Any] | None = None, on_error: str = "abort",
                 extra_args: dict[str, Any] | None = None, versioned: bool = True,
                 version_retention_days: float | None = None,
                 version_retention_count: int | None = None) -> Table:
    """``create_table`` on the default database (see :meth:`Connection.create_table`)."""
    return default().create_table(path, schema, if_exists=if_exists, primary_key=primary_key,
                                  source=source, source_format=source_format,
                                  schema_overrides=schema_overrides, on_error=on_error,
                                  extra_args=extra_args, versioned=versioned,
                                  version_retention_days=version_retention_days,
                                  version_retention_count=version_retention_count)


def create_view(path: str, base: Table | Query, *, additional_columns: Any = None,
                iterator: Any = None, is_snapshot: bool = False, if_exists: str = "error",
                store_media: bool = True, destination: Any = None) -> Table:
    """``create_view`` in the base's database (see :meth:`Connection.create_view`): a view of a
    table (or of a query's ``where()``), its rows following the base's; with ``iterator=``,
    many rows per base row (``frame_iterator(t.video, fps=1)``)."""
    return _connection_of(base).create_view(
        path, base, additional_columns=additional_columns, iterator=iterator,
        is_snapshot=is_snapshot, if_exists=if_exists, store_media=store_media,
        destination=destination)


def _connection_of(base: Any) -> Connection:
    """The open database a table or query belongs to (a view lives beside its base); the
    default database for anything else (create_view then says what is wrong)."""
    if isinstance(base, Table):
        return base._conn
    if isinstance(base, Query):
        db = base.view_definition()[0].db
        for conn in [*list(_opened), *([_default] if _default is not None else [])]:
            if conn.db is db:
                return conn
    return default()


def get_table(path: str) -> Table:
    """``get_table`` on the default database (``'dir.t:3'``: version 3, read-only)."""
    return default().get_table(path)


def create_snapshot(path: str, base: Table, *, if_exists: str = "error") -> Table:
    """``create_snapshot`` on the database of ``base``: a read-only name for its current
    version (or the version a read-only handle reads), made in O(1)."""
    if not isinstance(base, Table):
        raise SchemaError(f"create_snapshot() takes a table (pxl.get_table(...)), got "
                          f"{type(base).__name__}")
    return base._conn.create_snapshot(path, base, if_exists=if_exists)


def list_tables(dir: str | None = None) -> list[str]:
    """``list_tables`` on the default database."""
    return default().list_tables(dir)


def drop_table(path: str | Table, *, if_not_exists: str = "error", force: bool = False) -> None:
    """``drop_table`` on the default database (or, given a Table, on its own); ``force=True``
    also drops the table's views and snapshots."""
    conn = path._conn if isinstance(path, Table) else default()
    conn.drop_table(path, if_not_exists=if_not_exists, force=force)


def cache_info() -> Any:
    """Size, count, bound and hit/miss figures of the download cache."""
    from .cache import get_cache  # here, not at import: it loads diskcache

    return get_cache(_config.resolve()).info()


def clear_cache() -> int:
    """Empty the download cache (and its hit/miss counts); returns the number of files
    removed."""
    from .cache import get_cache  # here, not at import: it loads diskcache

    return get_cache(_config.resolve()).clear()


def check(fix: bool = False, db: Connection | None = None) -> Any:
    """Compare catalog and files both ways (see ``maintenance.check``) on ``db``, else on the
    default database ``$PXLITE_HOME/pxlite.db``; the report names the database it checked.

    A check never creates a database: without ``db`` and without a default database file this
    is a ``NotFoundError`` that names the databases this process opened (check one of those with
    ``db.check()``) instead of a check of a new, empty database that would say ok."""
    if db is not None:
        return db.check(fix=fix)
    home = _config.pxlite_home() / "pxlite.db"
    if (_default is None or _default.path != home.absolute()) and not home.is_file():
        opened = sorted({str(c.path) for c in list(_opened)})
        raise NotFoundError(
            f"pxl.check() checks the default database, {home}, which does not exist (a check "
            "never makes a database to check it); to check a database opened with "
            "db = pxl.connect(path), call db.check()"
            + (f" (opened in this process: {', '.join(opened)})" if opened else ""))
    return default().check(fix=fix)
