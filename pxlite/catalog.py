"""The catalog: directories, tables, columns and media bookkeeping, as SQL over one Database.

No I/O beyond SQL happens here. Names are validated before they are stored, and never reach SQL
text: data tables and columns are named from integer ids (``t_<id>``, ``c<col_id>``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from . import scanindex
from .db import Database
from .errors import AlreadyExistsError, NotFoundError, SchemaError
from .media import MEDIA_REF
from .types import ColumnType, parse_type

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"_rowid", "rowid", "oid", "_rowid_"})


def did_you_mean(name: object, candidates: Iterable[str]) -> str:
    """``"did you mean 'image'? "`` for a mistyped name (close spellings, or the same name in
    another directory), or ``''`` when nothing is close; spliced into NotFoundError messages."""
    if not isinstance(name, str) or len(name) > 200:  # matching cost grows with the length
        return ""
    names = list(candidates)
    import difflib  # here: only a mistyped name needs it, and it costs a few ms to import

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    last = name.rsplit(".", 1)[-1]
    close += [c for c in names if c.rsplit(".", 1)[-1] == last and c not in close]
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close[:3]) + "? "


def _short(text: object) -> str:
    """A user's string in a message: at most ~60 characters (a name may be a megabyte)."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:40] + f"...' ({len(str(text)):,} characters)"


#: The longest name of a table, directory or column (as in PostgreSQL).
MAX_NAME_LENGTH = 63


def check_name(name: object, what: str = "column") -> str:
    """Return ``name`` if it is an identifier (ASCII letters, digits, ``_``, at most
    MAX_NAME_LENGTH characters), else explain why not."""
    if not isinstance(name, str):
        raise SchemaError(f"a {what} name must be a string, got {type(name).__name__} "
                          f"{str(name)[:40]!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise SchemaError(f"invalid {what} name {_short(name)}: a name has at most "
                          f"{MAX_NAME_LENGTH} characters; choose a shorter one")
    if not _IDENT.match(name):
        hint = "" if name else " (it is empty)"
        raise SchemaError(
            f"invalid {what} name {name!r}{hint}: use ASCII letters, digits and _ only, "
            "not starting with a digit"
        )
    if name.lower() in _RESERVED:
        raise SchemaError(f"invalid {what} name {name!r}: it is reserved; choose another name")
    return name


def check_path(path: object, what: str = "table") -> str:
    """Validate a dotted path such as ``'demo.media'``: each part an identifier."""
    if not isinstance(path, str) or not path:
        raise SchemaError(f"a {what} path must be a non-empty string like 'dir.name', got "
                          f"{_short(path)}")
    for part in path.split("."):
        if len(part) > MAX_NAME_LENGTH:
            raise SchemaError(f"invalid {what} path {_short(path)}: each dot-separated part has "
                              f"at most {MAX_NAME_LENGTH} characters")
        try:
            check_name(part, what)
        except SchemaError:
            raise SchemaError(
                f"invalid {what} path {_short(path)}: each dot-separated part must be an "
                "identifier (ASCII letters, digits and _, not starting with a digit)"
            ) from None
    return path


@dataclass
class ColumnMeta:
    col_id: int
    name: str
    position: int
    type: ColumnType
    expr: str | None = None          # expression JSON for computed columns
    destination: str | None = None   # canonical prefix URI, computed media columns only
    format: str | None = None
    on_error: str = "abort"
    pending: bool = False            # an add_computed_column that has not finished
    stored: bool = True              # False: a computed column evaluated when read
    #: A view's column that belongs to one of its bases: that table's id (None: the table's
    #: own column). A view shows its bases' columns under their own ids (a family of tables
    #: draws column ids from one counter, so they never collide).
    base_table: int | None = None

    @property
    def sql(self) -> str:
        return f"c{self.col_id}"

    @property
    def sql_et(self) -> str:
        return f"c{self.col_id}_et"

    @property
    def sql_em(self) -> str:
        return f"c{self.col_id}_em"

    @property
    def is_computed(self) -> bool:
        return self.expr is not None

    @property
    def hidden(self) -> bool:
        """A column pxlite keeps for an index (an embedding index's vectors): not listed,
        selected by default or exported; reached through the index (``col.similarity()``)."""
        return self.name.startswith(HIDDEN_PREFIX)


#: The name prefix of the hidden columns that hold an embedding index's vectors.
HIDDEN_PREFIX = "_pxl_ix_"


@dataclass
class TableMeta:
    id: int
    uid: str                         # the current key space: where its new files go
    path: str
    columns: list[ColumnMeta] = field(default_factory=list)
    #: Every uid the table has had, the current one first (files written under an earlier uid,
    #: before this database took a new identity, are still the table's).
    uids: tuple[str, ...] = ()
    primary_key: tuple[int, ...] = ()   # col_ids of the primary key, in key order
    #: A view (pxlite/views.py): the table or view it is a view of (None: a table).
    base_id: int | None = None
    #: The table whose counter gives this table's column ids: its root table (for a table,
    #: itself). Every table of a family of views shares it, so ids never collide among them.
    family: int | None = None
    #: The SQL columns (of :attr:`sql`) that give the table's own row order: ``_rowid``; for an
    #: iterator view, its base's order then its own rowid (each base row's outputs in order).
    order: tuple[str, ...] = ("_rowid",)
    #: A view's base columns hidden by an own column of the same name: not the view's columns,
    #: but found by id (the bases' computed columns still read them).
    hidden: list[ColumnMeta] = field(default_factory=list)
    #: A read-only view of one version (time travel, snapshots: pxlite/versions.py): its number
    #: and the name of the temporary view holding its rows (None: the table as it is now).
    version: int | None = None
    view: str | None = None

    @property
    def key_columns(self) -> list[ColumnMeta]:
        """The primary key's columns, in key order (empty: the table has none)."""
        return [self.column_by_id(i) for i in self.primary_key]

    @property
    def sql(self) -> str:
        """What reads the table's rows: the data table ``t_<id>``; for a view the SQL view
        ``v_<id>`` joining its data table to its bases' (their columns, and ``_r<id>``: each
        base's rowid); or a version's view (time travel, snapshots)."""
        if self.view is not None:
            return self.view
        return f"t_{self.id}" if self.base_id is None else f"v_{self.id}"

    @property
    def store(self) -> str:
        """What writes change: the data table ``t_<id>`` (a view's own columns only)."""
        return f"t_{self.id}"

    @property
    def log_sql(self) -> str:
        """The SQL name of its undo log (pxlite/versions.py): ``h_<id>``."""
        return f"h_{self.id}"

    @property
    def own_columns(self) -> list[ColumnMeta]:
        """The table's own columns (a view's, without those of its bases)."""
        return [c for c in self.columns if c.base_table is None]

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def column(self, name: str) -> ColumnMeta:
        for c in self.columns:
            if c.name == name:
                return c
        names = [c.name for c in self.columns]
        raise NotFoundError(
            f"table {self.path!r} has no column {_short(name)}; {did_you_mean(name, names)}"
            f"its columns: {', '.join(names) or '(none)'}"
        )

    @property
    def media_columns(self) -> list[ColumnMeta]:
        """The table's own media columns (a view's bases' files are theirs)."""
        return [c for c in self.columns if c.type.is_media and c.base_table is None]

    def column_by_id(self, col_id: int) -> ColumnMeta:
        for c in self.columns:
            if c.col_id == col_id:
                return c
        for c in self.hidden:
            if c.col_id == col_id:
                return c
        raise NotFoundError(f"table {self.path!r} has no column with id {col_id} (was it dropped?)")


def _parent(path: str) -> str | None:
    return path.rsplit(".", 1)[0] if "." in path else None


def _dir_id(db: Database, path: str | None, for_what: str) -> int | None:
    if path is None:
        return None
    rows = db.query("SELECT id FROM px_dirs WHERE path = ?", (path,))
    if not rows:
        hint = did_you_mean(path, list_dirs(db))
        raise NotFoundError(f"directory {path!r} does not exist (needed for {for_what!r}); "
                            f"{hint}create it first with create_dir({path!r})")
    return rows[0][0]


def path_kind(db: Database, path: str) -> str | None:
    """'directory', 'table', 'snapshot' or None for a dotted path."""
    if db.query("SELECT 1 FROM px_dirs WHERE path = ?", (path,)):
        return "directory"
    if db.query("SELECT 1 FROM px_tables WHERE path = ?", (path,)):
        return "table"
    if db.query("SELECT 1 FROM px_snapshots WHERE path = ?", (path,)):
        return "snapshot"
    return None


# ---- directories ---------------------------------------------------------------------------------
def create_dir(db: Database, path: str) -> None:
    check_path(path, "directory")
    kind = path_kind(db, path)
    if kind is not None:
        raise AlreadyExistsError(f"a {kind} named {path!r} exists already; pass if_exists='ignore'")
    _dir_id(db, _parent(path), path)
    db.execute("INSERT INTO px_dirs(path, created_at) VALUES (?, ?)", (path, time.time()))


def list_dirs(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT path FROM px_dirs ORDER BY path")]


def dir_contents(db: Database, path: str) -> tuple[list[str], list[str]]:
    """(sub-directories, tables and snapshots) directly or indirectly below ``path``."""
    like = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"
    dirs = [r[0] for r in db.query(
        "SELECT path FROM px_dirs WHERE path LIKE ? ESCAPE '\\' ORDER BY path", (like,))]
    tables = [r[0] for r in db.query(
        "SELECT path FROM px_tables WHERE path LIKE ? ESCAPE '\\' UNION "
        "SELECT path FROM px_snapshots WHERE path LIKE ? ESCAPE '\\' ORDER BY path",
        (like, like))]
    return dirs, tables


def drop_dir_row(db: Database, path: str) -> None:
    db.execute("DELETE FROM px_dirs WHERE path = ?", (path,))


# ---- tables --------------------------------------------------------------------------------------
def create_table(db: Database, path: str, columns: Iterable[tuple[str, ColumnType]]) -> TableMeta:
    """Create the catalog rows and the data table for a new table (inside the caller's tx)."""
    check_path(path, "table")
    kind = path_kind(db, path)
    if kind is not None:
        raise AlreadyExistsError(
            f"a {kind} named {path!r} exists already; pass if_exists='ignore' or 'replace'"
        )
    dir_id = _dir_id(db, _parent(path), path)
    uid = secrets.token_hex(6)
    db.execute(
        "INSERT INTO px_tables(uid, path, dir_id, created_at) VALUES (?, ?, ?, ?)",
        (uid, path, dir_id, time.time()),
    )
    tid = db.last_insert_rowid()
    db.execute("INSERT INTO px_table_uids(uid, table_id) VALUES (?, ?)", (uid, tid))
    meta = TableMeta(id=tid, uid=uid, path=path, uids=(uid,))
    db.execute(f"CREATE TABLE {meta.store} (_rowid INTEGER PRIMARY KEY)")
    for name, ctype in columns:
        add_column(db, meta, name, ctype)
    return meta


T = TypeVar("T")

#: The tables each connection loaded last, by path, with the catalog stamp they were loaded at
#: (Database.catalog_stamp): a Table handle loads its metadata for every attribute and query
#: (another handle or program may have changed the schema), which was more than half of a small
#: query's time. An entry is used only while the stamp is unchanged: no commit by another
#: connection and no row changed by this one since.
_LOADED: weakref.WeakKeyDictionary[Database, dict[str, tuple[tuple[int, int], TableMeta]]] = \
    weakref.WeakKeyDictionary()


def _copy(meta: TableMeta) -> TableMeta:
    """A copy a caller may change (operations rename, add and drop the columns they hold):
    new TableMeta and ColumnMeta objects with the same field values (those are immutable:
    ints, strings, tuples, column types)."""
    out = object.__new__(TableMeta)
    out.__dict__.update(meta.__dict__)
    out.columns = [_copy_column(c) for c in meta.columns]
    out.hidden = [_copy_column(c) for c in meta.hidden]
    return out


def _copy_column(col: ColumnMeta) -> ColumnMeta:
    out = object.__new__(ColumnMeta)
    out.__dict__.update(col.__dict__)
    return out


def _stamped(cache: weakref.WeakKeyDictionary[Database, dict[Any, tuple[tuple[int, int], T]]],
             db: Database, key: Any, load: Callable[[], T], copy: Callable[[T], T]) -> T:
    """``load()``, or a ``copy`` of what it gave for ``key`` on this connection while the
    catalog stamp (Database.catalog_stamp) is unchanged; the caller owns what it gets."""
    stamp = db.catalog_stamp()  # taken first: a change after it makes the entry stale
    if stamp is not None:
        hit = cache.get(db, {}).get(key)
        if hit is not None and hit[0] == stamp:
            return copy(hit[1])
    value = load()
    if stamp is not None:
        cache.setdefault(db, {})[key] = (stamp, copy(value))
    return value


def load_table(db: Database, path: str) -> TableMeta:
    """The table (or view) at ``path``, as the catalog says now."""
    return _stamped(_LOADED, db, path, lambda: _load_table(db, path), _copy)


def _load_table(db: Database, path: str) -> TableMeta:
    rows = db.query("SELECT id, uid, path, primary_key FROM px_tables WHERE path = ?", (path,))
    if not rows:
        if db.query("SELECT 1 FROM px_dirs WHERE path = ?", (path,)):
            raise NotFoundError(f"{path!r} is a directory, not a table")
        if db.query("SELECT 1 FROM px_snapshots WHERE path = ?", (path,)):
            raise NotFoundError(f"{path!r} is a snapshot (a read-only version of a table), not "
                                "a table; read it through get_table()")
        raise NotFoundError(f"table {_short(path)} does not exist; "
                            f"{did_you_mean(path, list_tables(db))}"
                            "list_tables() shows the tables there are")
    return _load(db, *rows[0])


def _load(db: Database, tid: int, uid: str, p: str, pk: str | None) -> TableMeta:
    former = [r[0] for r in db.query("SELECT uid FROM px_table_uids WHERE table_id = ? AND "
                                     "uid != ? ORDER BY rowid", (tid, uid))]
    meta = TableMeta(id=tid, uid=uid, path=p, uids=(uid, *former), primary_key=_key_ids(pk))
    for r in db.query(
        "SELECT col_id, name, position, type, expr, destination, format, on_error, pending, "
        "stored FROM px_columns WHERE table_id = ? ORDER BY position",
        (tid,),
    ):
        meta.columns.append(ColumnMeta(r[0], r[1], r[2], parse_type(r[3]), r[4], r[5], r[6], r[7],
                                       bool(r[8]), bool(r[9])))
    view = db.query("SELECT base_id, iterator IS NOT NULL FROM px_views WHERE table_id = ?",
                    (tid,))
    if view:
        _inherit(db, meta, view[0][0], bool(view[0][1]))
    return meta


def load_table_by_id(db: Database, table_id: int) -> TableMeta:
    """The table (or view) with this id; NotFoundError when there is none."""
    rows = db.query("SELECT id, uid, path, primary_key FROM px_tables WHERE id = ?", (table_id,))
    if not rows:
        raise NotFoundError(f"the table with id {table_id} does not exist (was it dropped?)")
    return _load(db, *rows[0])


def _inherit(db: Database, meta: TableMeta, base_id: int, one_to_many: bool) -> None:
    """Make ``meta`` a view of ``base_id``: its bases' columns follow its own (an own column
    hides a base's of the same name: an iterator's output such as ``text``), under their own
    ids, read through the SQL view; its row order is its base's (then, one row giving many, its
    own rowid)."""
    base = load_table_by_id(db, base_id)
    mine = {c.name for c in meta.columns}
    visible = [dataclasses.replace(c, base_table=c.base_table or base.id) for c in base.columns]
    meta.columns += [c for c in visible if c.name not in mine]
    meta.hidden = [c for c in visible if c.name in mine] + [
        dataclasses.replace(c, base_table=c.base_table or base.id) for c in base.hidden]
    meta.base_id, meta.family = base_id, base.family or base.id
    # the base's order as the SQL view names its columns (each base's rowid is _r<id>)
    order = tuple(f"_r{base.id}" if c == "_rowid" else c for c in base.order)
    if one_to_many:
        meta.order = (*order, "_rowid")
    elif order != (f"_r{base.id}",):
        meta.order = order  # a filtered view's rowid is its base row's: its order when a table's


def _key_ids(stored: str | None) -> tuple[int, ...]:
    """The col_ids of a stored primary key (JSON list); () for none or an unreadable value."""
    if not stored:
        return ()
    try:
        ids = json.loads(stored)
    except ValueError:
        return ()
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        return ()
    return tuple(ids)


def set_primary_key(db: Database, meta: TableMeta, cols: list[ColumnMeta]) -> None:
    """Record ``cols`` as the table's primary key and enforce it with a unique index on the
    data table (inside the caller's transaction; the caller checked the columns' types)."""
    ids = [c.col_id for c in cols]
    db.execute("UPDATE px_tables SET primary_key = ? WHERE id = ?", (json.dumps(ids), meta.id))
    # Index and column names come from integer ids: nothing user-made in the SQL text.
    db.execute(f"CREATE UNIQUE INDEX {meta.store}_pk ON {meta.store} "
               f"({', '.join(c.sql for c in cols)})")
    meta.primary_key = tuple(ids)


def ensure_value_index(db: Database, meta: TableMeta, col: ColumnMeta) -> None:
    """An index on one column's values (for "which of these values are present?" without a
    table scan: import_files' check by URI). Made once; dropped with its column."""
    db.execute(f"CREATE INDEX IF NOT EXISTS {meta.store}_{col.sql}_ix ON {meta.store} ({col.sql})")


def drop_indexes_on(db: Database, meta: TableMeta, col: ColumnMeta) -> None:
    """Drop the indexes on ``col``, pxlite's (ensure_value_index) and a user's
    (add_btree_index), and the scan index if it holds it (the caller syncs that once the
    column is gone): SQLite refuses to drop an indexed column, and a dropped (or hidden)
    column has no index. (A primary key column is never dropped.)"""
    db.execute(f"DROP INDEX IF EXISTS {meta.store}_{col.sql}_ix")
    scanindex.release(db, meta.store, col.sql)
    for idx in indexes(db, meta):
        if idx.col_id == col.col_id:
            drop_index(db, idx)


def live_tables(db: Database) -> list[TableMeta]:
    """Every table's metadata (one consistent read when called inside a transaction)."""
    return [load_table(db, r[0]) for r in db.query("SELECT path FROM px_tables ORDER BY path")]


def dropped_columns(db: Database, table_id: int) -> list[ColumnMeta]:
    """The columns dropped from a versioned table whose SQL columns (and files) are kept while
    a retained version names them (pxlite/versions.py)."""
    out = []
    for (text,) in db.query("SELECT meta FROM px_dropped_columns WHERE table_id = ? "
                            "ORDER BY col_id", (table_id,)):
        d = json.loads(text)
        out.append(ColumnMeta(d["col_id"], d["name"], d["position"], parse_type(d["type"]),
                              d.get("expr"), d.get("destination"), d.get("format"),
                              d.get("on_error", "abort"), False, bool(d.get("stored", True))))
    return out


def sql_columns(db: Database, sql_table: str) -> list[str]:
    """The SQL columns of a data table or undo log as they are in the file (none if absent)."""
    return [r[0] for r in db.query("SELECT name FROM pragma_table_info(?)", (sql_table,))]


def media_cells(db: Database, meta: TableMeta) -> list[tuple[str, str]]:
    """Every ``(SQL table, SQL column)`` whose cells may name a file of ``meta``: its media
    columns and those dropped but kept for its versions, in its data table and in its undo log
    (the state of rows before each retained version)."""
    cols = [c.sql for c in meta.media_columns if c.stored]
    cols += [c.sql for c in dropped_columns(db, meta.id) if c.type.is_media and c.stored]
    out = [(meta.store, c) for c in cols]
    in_log = set(sql_columns(db, meta.log_sql))
    return out + [(meta.log_sql, c) for c in cols if c in in_log]


def named_by_rows(db: Database, uris: Iterable[str]) -> set[str]:
    """Which of ``uris`` a row of any table's media column names, now or in a retained version
    (one scan per media column; a file pxlite wrote for one table may be referenced by
    another table's row)."""
    wanted = sorted(set(uris))
    if not wanted:
        return set()
    arg = json.dumps(wanted)
    named: set[str] = set()
    for meta in live_tables(db):
        for sql_table, sql_col in media_cells(db, meta):
            named |= {r[0] for r in db.query(
                f"SELECT DISTINCT {sql_col} FROM {sql_table} WHERE {sql_col} IN "
                "(SELECT value FROM json_each(?))", (arg,))}
    return named


def list_tables(db: Database, under: str | None = None) -> list[str]:
    """The tables and snapshots (of a directory and its subdirectories)."""
    if under is None:
        return [r[0] for r in db.query("SELECT path FROM px_tables UNION "
                                       "SELECT path FROM px_snapshots ORDER BY path")]
    return dir_contents(db, under)[1]


def table_uids(db: Database) -> dict[str, int]:
    """Every uid of every live table (current and former), with the table's id."""
    return {r[0]: r[1] for r in db.query("SELECT uid, table_id FROM px_table_uids")}


def new_table_uids(db: Database) -> None:
    """Give every table a new current uid (inside the caller's write transaction): from now
    on its new files go to a key space no other database has written (a copy of this one
    keeps writing under the old uids otherwise, where its original may clean them)."""
    for (tid,) in db.query("SELECT id FROM px_tables"):
        uid = secrets.token_hex(6)
        db.execute("UPDATE px_tables SET uid = ? WHERE id = ?", (uid, tid))
        db.execute("INSERT INTO px_table_uids(uid, table_id) VALUES (?, ?)", (uid, tid))


def drop_table_rows(db: Database, meta: TableMeta) -> None:
    """Remove a table's data table, undo log and catalog rows (its versions and snapshots go
    with them; inside the caller's tx); a view's SQL view first."""
    if meta.base_id is not None:
        db.execute(f"DROP VIEW IF EXISTS v_{meta.id}")
    db.execute(f"DROP TABLE IF EXISTS {meta.store}")
    db.execute(f"DROP TABLE IF EXISTS {meta.log_sql}")
    db.execute("DELETE FROM px_tables WHERE id = ?", (meta.id,))


# ---- snapshots ---------------------------------------------------------------------------------
def create_snapshot(db: Database, path: str, table_id: int, version: int) -> None:
    """Record a snapshot: ``path`` names ``version`` of table ``table_id`` (caller's tx)."""
    check_path(path, "snapshot")
    kind = path_kind(db, path)
    if kind is not None:
        raise AlreadyExistsError(f"a {kind} named {path!r} exists already; pass "
                                 "if_exists='ignore' or 'replace'")
    dir_id = _dir_id(db, _parent(path), path)
    db.execute("INSERT INTO px_snapshots(path, dir_id, table_id, version, created_at) "
               "VALUES (?, ?, ?, ?, ?)", (path, dir_id, table_id, version, time.time()))


def load_snapshot(db: Database, path: str) -> tuple[str, int]:
    """The table path and version a snapshot names (NotFoundError when there is none)."""
    rows = db.query("SELECT t.path, s.version FROM px_snapshots AS s JOIN px_tables AS t ON "
                    "t.id = s.table_id WHERE s.path = ?", (path,))
    if not rows:
        raise NotFoundError(f"snapshot {_short(path)} does not exist; "
                            f"{did_you_mean(path, list_tables(db))}"
                            "list_tables() shows the tables and snapshots there are")
    return rows[0][0], rows[0][1]


def snapshots_of(db: Database, table_id: int) -> list[tuple[str, int]]:
    """The snapshots of a table: ``(path, version)``, oldest version first."""
    return [(r[0], r[1]) for r in db.query(
        "SELECT path, version FROM px_snapshots WHERE table_id = ? ORDER BY version, path",
        (table_id,))]


def drop_snapshot_row(db: Database, path: str) -> None:
    db.execute("DELETE FROM px_snapshots WHERE path = ?", (path,))


# ---- columns ---------------------------------------------------------------------------------
def add_column(
    db: Database,
    meta: TableMeta,
    name: str,
    ctype: ColumnType,
    *,
    expr: str | None = None,
    destination: str | None = None,
    format: str | None = None,
    on_error: str = "abort",
    pending: bool = False,
    stored: bool = True,
) -> ColumnMeta:
    check_name(name, "column")
    if any(c.name == name for c in meta.columns):
        raise AlreadyExistsError(f"table {meta.path!r} already has a column named {name!r}")
    # Each column is three SQL columns (value, errortype, errormsg) beside the rowid.
    # Its undo log (pxlite/versions.py) has the same columns plus _v and _op; columns dropped
    # but kept for the table's versions still take their place. (A view's data table has
    # _base beside _rowid.)
    limit = (db.max_columns() - 3) // 3
    own = meta.own_columns
    extra = 1 if meta.base_id is None else 2
    used = max(len(own), (len(sql_columns(db, meta.store)) - extra) // 3)
    if used >= limit:
        hidden = used - len(own)
        raise SchemaError(
            f"table {meta.path!r} has {len(own)} columns"
            + (f" and {hidden} dropped ones its kept versions still name" if hidden else "")
            + f", the most a table can have here ({limit}: SQLite allows {db.max_columns()} SQL "
            "columns, each pxlite column takes 3); split the data over several tables"
            + (" (or prune its versions)" if hidden else ""))
    counter = meta.family or meta.id  # a view's ids come from its family's counter
    col_id = db.query("SELECT next_col_id FROM px_tables WHERE id = ?", (counter,))[0][0]
    position = max((c.position for c in own), default=-1) + 1
    col = ColumnMeta(col_id, name, position, ctype, expr, destination, format, on_error, pending,
                     stored)
    db.execute("UPDATE px_tables SET next_col_id = ? WHERE id = ?", (col_id + 1, counter))
    db.execute(
        "INSERT INTO px_columns(table_id, col_id, name, position, type, expr, destination, format,"
        " on_error, pending, stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (meta.id, col_id, name, position, repr(ctype), expr, destination, format, on_error,
         int(pending), int(stored)),
    )
    # Column names come from integer ids; the SQL type is from a fixed set: nothing user-made here.
    db.execute(f"ALTER TABLE {meta.store} ADD COLUMN {col.sql} {ctype.sql_type}")
    db.execute(f"ALTER TABLE {meta.store} ADD COLUMN {col.sql_et} TEXT")
    db.execute(f"ALTER TABLE {meta.store} ADD COLUMN {col.sql_em} TEXT")
    meta.columns.append(col)
    scanindex.sync(db, meta.store, meta.columns)
    return col


def check_droppable(meta: TableMeta, col: ColumnMeta) -> None:
    """A primary key's column cannot be dropped (nor hidden: versions.drop_column)."""
    if col.col_id in meta.primary_key:
        raise SchemaError(f"cannot drop column {col.name!r} of {meta.path!r}: it is part of the "
                          "table's primary key")


def drop_column(db: Database, meta: TableMeta, col: ColumnMeta) -> None:
    check_droppable(meta, col)
    drop_indexes_on(db, meta, col)
    db.execute("DELETE FROM px_columns WHERE table_id = ? AND col_id = ?", (meta.id, col.col_id))
    for sql_name in (col.sql, col.sql_et, col.sql_em):
        db.execute(f"ALTER TABLE {meta.store} DROP COLUMN {sql_name}")
    meta.columns.remove(col)
    scanindex.sync(db, meta.store, meta.columns)


def rename_column(db: Database, meta: TableMeta, col: ColumnMeta, new_name: str) -> None:
    check_name(new_name, "column")
    if any(c.name == new_name for c in meta.columns):
        raise AlreadyExistsError(f"table {meta.path!r} already has a column named {new_name!r}")
    db.execute(
        "UPDATE px_columns SET name = ? WHERE table_id = ? AND col_id = ?",
        (new_name, meta.id, col.col_id),
    )
    col.name = new_name


def set_column_ready(db: Database, meta: TableMeta, col: ColumnMeta) -> None:
    """An added computed column is complete: visible to queries from this commit on."""
    db.execute("UPDATE px_columns SET pending = 0 WHERE table_id = ? AND col_id = ?",
               (meta.id, col.col_id))
    col.pending = False


def set_column_position(db: Database, meta: TableMeta, col: ColumnMeta, position: int) -> None:
    db.execute("UPDATE px_columns SET position = ? WHERE table_id = ? AND col_id = ?",
               (position, meta.id, col.col_id))
    col.position = position
    meta.columns.sort(key=lambda c: (c.base_table is not None, c.position))


def set_column_destination(db: Database, meta: TableMeta, col: ColumnMeta,
                           dest: str | None) -> None:
    db.execute(
        "UPDATE px_columns SET destination = ? WHERE table_id = ? AND col_id = ?",
        (dest, meta.id, col.col_id),
    )
    col.destination = dest


# ---- database identity ---------------------------------------------------------------------------
def get_meta(db: Database, key: str) -> str | None:
    """One value of ``px_meta`` (the database's identity, where it was last opened), or None."""
    rows = db.query("SELECT value FROM px_meta WHERE key = ?", (key,))
    return rows[0][0] if rows else None


def set_meta(db: Database, values: dict[str, str]) -> None:
    """Set ``px_meta`` values (inside the caller's write transaction)."""
    db.executemany("INSERT INTO px_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                   "SET value = excluded.value", list(values.items()))


# ---- media bookkeeping ---------------------------------------------------------------------------
#: The stored prefix of the database's own media folder. Files there are stored as
#: ``media:<key>``, relative to the folder beside the database file, so the pair (database file +
#: media folder) can be copied or moved and works on its own files (see media.MediaFolder).
#: One spelling: the location is the prefix every stored reference into the folder starts with.
MEDIA_LOCATION = MEDIA_REF

_UID = re.compile(r"[0-9a-f]{12}\Z")


def valid_location(table_uid: object, prefix: object) -> bool:
    """Can this location row be pxlite's? A crafted database may hold anything: a location is
    only honoured when its uid has pxlite's shape and its prefix is the media folder or a
    canonical folder URI below a root (never ``file:///`` itself, never a bare scheme)."""
    if not isinstance(table_uid, str) or not isinstance(prefix, str) or not _UID.match(table_uid):
        return False
    if prefix == MEDIA_LOCATION:
        return True
    if not prefix.endswith("/") or "/../" in prefix or "/./" in prefix:
        return False
    if prefix.startswith("file:"):
        return prefix.startswith("file:///") and prefix[len("file://"):].strip("/") != ""
    scheme, sep, rest = prefix.partition("://")
    return bool(sep) and scheme.isalnum() and rest.split("/", 1)[0] != ""


def record_location(db: Database, table_uid: str, prefix: str, owner: str) -> None:
    """Remember that pxlite writes this table's files under ``prefix`` (ownership, check()).

    ``owner`` is the identity of the database writing there; a location inherited from the
    database this one was copied from keeps its original owner, so the copy never cleans it."""
    db.execute(
        "INSERT OR IGNORE INTO px_media_locations(table_uid, prefix, owner) VALUES (?, ?, ?)",
        (table_uid, prefix, owner),
    )


def locations(db: Database, table_uid: str) -> list[str]:
    """Every recorded prefix of a table's files (owned or inherited)."""
    return [r[0] for r in db.query(
        "SELECT prefix FROM px_media_locations WHERE table_uid = ?", (table_uid,))]


def all_locations(db: Database) -> list[tuple[str, str, str]]:
    """Every valid location row: ``(table uid, prefix, owner identity)``."""
    return [(u, p, o) for u, p, o in db.query(
        "SELECT table_uid, prefix, owner FROM px_media_locations") if valid_location(u, p)]


def forget_locations(db: Database, table_uid: str) -> None:
    """Forget a dropped table's locations (once nothing of it is left there)."""
    db.execute("DELETE FROM px_media_locations WHERE table_uid = ?", (table_uid,))


def set_locations_owner(db: Database, owner: str) -> list[tuple[str, str]]:
    """Record every location as ``owner``'s (a claim); returns the ``(uid, prefix)`` rows
    that changed hands."""
    changed = [(u, p) for u, p in db.query(
        "SELECT table_uid, prefix FROM px_media_locations WHERE owner != ?", (owner,))]
    db.execute("UPDATE px_media_locations SET owner = ?", (owner,))
    return changed


def add_pending_deletes(db: Database, uris: Iterable[str]) -> None:
    db.executemany("INSERT OR IGNORE INTO px_pending_deletes(uri) VALUES (?)", ((u,) for u in uris))


def pending_deletes(db: Database, uids: Iterable[str] | None = None) -> list[str]:
    """The files waiting to be deleted (stored forms); with ``uids``, only those in the key
    space of one of these table uids."""
    if uids is None:
        return [r[0] for r in db.query("SELECT uri FROM px_pending_deletes")]
    return [r[0] for r in db.query(
        "SELECT uri FROM px_pending_deletes WHERE EXISTS (SELECT 1 FROM json_each(?) "
        "WHERE instr(uri, value || '/') > 0)", (json.dumps(sorted(uids)),))]


def clear_pending_deletes(db: Database, uris: Iterable[str]) -> None:
    db.executemany("DELETE FROM px_pending_deletes WHERE uri = ?", ((u,) for u in uris))


# ---- long operations (px_jobs) -------------------------------------------------------------------
class Job:
    """A long operation in progress: what was asked (``spec``) and how far it got. (A plain
    class: a dataclass would cost ``import pxlite`` half a millisecond to define.)"""

    __slots__ = ("done_rows", "done_upto", "host", "id", "kind", "pid", "spec", "started_at",
                 "table_id", "total_rows")

    def __init__(self, id: int, table_id: int, kind: str, spec: dict[str, Any], done_upto: int,
                 done_rows: int, total_rows: int, pid: int, host: str,
                 started_at: float) -> None:
        self.id, self.table_id, self.kind, self.spec = id, table_id, kind, spec
        self.done_upto, self.done_rows, self.total_rows = done_upto, done_rows, total_rows
        self.pid, self.host, self.started_at = pid, host, started_at

    def __repr__(self) -> str:
        return (f"<Job {self.id} {self.kind} on table {self.table_id}: {self.progress()} rows, "
                f"pid {self.pid} on {self.host}>")

    def progress(self) -> str:
        return f"{self.done_rows:,}/{self.total_rows:,}"


_JOB_COLUMNS = ("id, table_id, kind, spec, done_upto, done_rows, total_rows, pid, host, "
                "started_at")


def _job(row: tuple) -> Job:
    try:
        spec = json.loads(row[3])
    except ValueError:
        spec = {}
    return Job(row[0], row[1], row[2], spec if isinstance(spec, dict) else {}, *row[4:])


def jobs(db: Database, table_id: int | None = None) -> list[Job]:
    """The long operations recorded as in progress (of one table, or all)."""
    if table_id is None:
        rows = db.query(f"SELECT {_JOB_COLUMNS} FROM px_jobs ORDER BY id")
    else:
        rows = db.query(f"SELECT {_JOB_COLUMNS} FROM px_jobs WHERE table_id = ? ORDER BY id",
                        (table_id,))
    return [_job(r) for r in rows]


def start_job(db: Database, table_id: int, kind: str, spec: dict[str, Any], total: int,
              pid: int, host: str) -> Job:
    now = time.time()
    db.execute("INSERT INTO px_jobs(table_id, kind, spec, done_upto, done_rows, total_rows, pid,"
               " host, started_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
               (table_id, kind, json.dumps(spec, sort_keys=True), -(2**63), total, pid, host,
                now, now))
    return Job(db.last_insert_rowid(), table_id, kind, spec, -(2**63), 0, total, pid, host, now)


def advance_job(db: Database, job: Job, done_upto: int, rows: int) -> None:
    """Record a committed batch (inside its transaction)."""
    job.done_upto, job.done_rows = done_upto, job.done_rows + rows
    db.execute("UPDATE px_jobs SET done_upto = ?, done_rows = ?, updated_at = ? WHERE id = ?",
               (job.done_upto, job.done_rows, time.time(), job.id))


def claim_job(db: Database, job: Job, total: int, pid: int, host: str) -> None:
    """This process resumes ``job`` (another one was interrupted)."""
    job.total_rows, job.pid, job.host = total, pid, host
    db.execute("UPDATE px_jobs SET total_rows = ?, pid = ?, host = ?, updated_at = ? "
               "WHERE id = ?", (total, pid, host, time.time(), job.id))


def end_job(db: Database, job: Job) -> None:
    db.execute("DELETE FROM px_jobs WHERE id = ?", (job.id,))


# ---- operations writing files now (px_writers) ----------------------------------------------
class Writer:
    """An operation registered as writing files into a table's key space."""

    __slots__ = ("host", "id", "kind", "pid", "proc_start", "started_at", "table_uid")

    def __init__(self, id: int, table_uid: str, pid: int, host: str, proc_start: str, kind: str,
                 started_at: float) -> None:
        self.id, self.table_uid, self.pid, self.host = id, table_uid, pid, host
        self.proc_start, self.kind, self.started_at = proc_start, kind, started_at

    def __repr__(self) -> str:
        return (f"<Writer {self.id} {self.kind} into {self.table_uid}: pid {self.pid} on "
                f"{self.host}>")


def add_writer(db: Database, table_uid: str, pid: int, host: str, proc_start: str,
               kind: str) -> int:
    db.execute("INSERT INTO px_writers(table_uid, pid, host, proc_start, kind, started_at) "
               "VALUES (?, ?, ?, ?, ?, ?)", (table_uid, pid, host, proc_start, kind, time.time()))
    return db.last_insert_rowid()


def writers(db: Database) -> list[Writer]:
    return [Writer(*r) for r in db.query(
        "SELECT id, table_uid, pid, host, proc_start, kind, started_at FROM px_writers "
        "ORDER BY id")]


def remove_writers(db: Database, ids: Iterable[int]) -> None:
    db.executemany("DELETE FROM px_writers WHERE id = ?", ((i,) for i in ids))


# ---- indexes (px_indexes) ------------------------------------------------------------------------
class IndexMeta(NamedTuple):
    """An index a user added: its name, the column (by id), its kind ('btree' or 'embedding')
    and, for an embedding index, its definition (JSON: see pxlite.embeddings)."""

    id: int
    table_id: int
    name: str
    col_id: int
    kind: str
    params: str | None = None

    @property
    def sql(self) -> str:
        """The SQLite index's name, from its id: ``i_<id>``."""
        return f"i_{self.id}"


#: Each connection's last reading of a table's indexes, as _LOADED: used while the stamp holds.
_INDEXES: weakref.WeakKeyDictionary[Database, dict[int, tuple[tuple[int, int], list[IndexMeta]]]] \
    = weakref.WeakKeyDictionary()


def indexes(db: Database, meta: TableMeta) -> list[IndexMeta]:
    """The indexes of a table, oldest first."""
    return _stamped(_INDEXES, db, meta.id, lambda: [IndexMeta(*r) for r in db.query(
        "SELECT id, table_id, name, col_id, kind, params FROM px_indexes WHERE table_id = ? "
        "ORDER BY id",
        (meta.id,))], list)  # (a new list of the same IndexMeta tuples: immutable)


def add_index(db: Database, meta: TableMeta, col: ColumnMeta, name: str, kind: str,
              params: str | None = None) -> IndexMeta:
    """Record an index on one column and create it (inside the caller's write transaction): a
    B-tree index is a SQLite index; an embedding index's SQL objects are made by
    :func:`add_vector_log`."""
    check_name(name, "index")
    if any(i.name == name for i in indexes(db, meta)):
        raise AlreadyExistsError(f"table {meta.path!r} already has an index named {name!r}")
    db.execute("INSERT INTO px_indexes(table_id, name, col_id, kind, created_at, params) "
               "VALUES (?, ?, ?, ?, ?, ?)", (meta.id, name, col.col_id, kind, time.time(),
                                             params))
    idx = IndexMeta(db.last_insert_rowid(), meta.id, name, col.col_id, kind, params)
    if kind == "btree":
        db.execute(f"CREATE INDEX {idx.sql} ON {meta.store} ({col.sql})")
    return idx


def drop_index(db: Database, idx: IndexMeta) -> None:
    """Drop an index and its record (inside the caller's write transaction); an embedding
    index's change log and triggers go with it (its hidden column is the caller's)."""
    db.execute(f"DROP INDEX IF EXISTS {idx.sql}")
    drop_vector_log(db, idx)
    db.execute("DELETE FROM px_indexes WHERE id = ?", (idx.id,))


# ---- an embedding index's change log (x_<index id>) ---------------------------------------------
_LOG_TRIGGERS = ("ins", "upd", "del")

#: An index's change log keeps about this many of its latest entries (a reader further behind
#: reloads its vectors); trimmed by the writes themselves, every 65,536 entries.
LOG_KEEP = 1_000_000


def vector_log(idx: IndexMeta) -> str:
    """The SQL name of an embedding index's change log: ``x_<index id>``."""
    return vector_log_of(idx.id)


def vector_log_of(index_id: int) -> str:
    """:func:`vector_log` by the index's id alone (a search holds an EmbeddingIndex)."""
    return f"x_{int(index_id)}"


def has_vector_log(db: Database, idx: IndexMeta) -> bool:
    """Does an embedding index have its change log (it is active)?"""
    return bool(db.query("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
                         (vector_log(idx),)))


def drop_vector_log(db: Database, idx: IndexMeta) -> None:
    """Inside the caller's write transaction: an embedding index's change log and triggers go
    (the index is dropped, or its vectors' column hidden by a version)."""
    for suffix in _LOG_TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {vector_log(idx)}_{suffix}")
    db.execute(f"DROP TABLE IF EXISTS {vector_log(idx)}")


def add_vector_log(db: Database, meta: TableMeta, idx: IndexMeta) -> None:
    """Inside the caller's write transaction: an embedding index's change log and the triggers
    that fill it. Every insert, update and delete of a row of the data table appends its
    rowid, in the writer's own transaction, whichever code (or program) writes it: a reader
    holding the vectors in memory applies what changed since the log entry it last saw. Plain
    SQL: no extension is needed to write the table; and no trigger names a column, so none
    stands in the way of dropping one (a version keeps dropped columns, and drops them later)."""
    log = vector_log(idx)
    db.execute(f"CREATE TABLE {log} (seq INTEGER PRIMARY KEY, row INTEGER NOT NULL)")
    trim = (f"DELETE FROM {log} WHERE (SELECT max(seq) FROM {log}) % 65536 = 0 AND seq < "
            f"(SELECT max(seq) FROM {log}) - {LOG_KEEP};")
    db.execute(f"CREATE TRIGGER {log}_ins AFTER INSERT ON {meta.store} BEGIN "
               f"INSERT INTO {log}(row) VALUES (NEW._rowid); {trim} END")
    db.execute(f"CREATE TRIGGER {log}_upd AFTER UPDATE ON {meta.store} BEGIN "
               f"INSERT INTO {log}(row) VALUES (NEW._rowid); {trim} END")
    db.execute(f"CREATE TRIGGER {log}_del AFTER DELETE ON {meta.store} BEGIN "
               f"INSERT INTO {log}(row) VALUES (OLD._rowid); END")
