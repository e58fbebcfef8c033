"""Versions: every change to a table is a version, kept in an undo log SQLite captures itself.

**The design, and why.** Each versioned table ``t_<id>`` has an undo log ``h_<id>`` with the same
``c<N>`` columns plus ``_v`` (a version) and ``_op``, primary key ``(_v, _rowid)``. It holds the
*first old image* of every row a version changed (several statements in one version record the
state before the version; ``_op`` says what became of the row: 'u' updated, 'd' deleted, 'r'
deleted and inserted again, so a version's counts need no lookup).
Two ways fill it, chosen by the write operation (``CAPTURE``):

* **Temporary triggers**, the generic way, for any statement of any operation:
  ``BEFORE UPDATE OF`` the table's complete columns and ``BEFORE DELETE`` copy the old row.
  :func:`begin` makes them at the start of each write transaction with the version number and
  the table's *high-water mark* written in as constants (a lookup in a temporary table per row
  doubled the cost of a delete), and :func:`finish` removes them. With apsw's best practice
  (``recursive_triggers`` on), ``INSERT OR REPLACE`` fires the delete trigger, so a replaced
  row is captured too.
* **One statement per change**, for the operations that know which rows they change
  (``update``, ``delete``, ``revert``): :func:`capture_rows` and :func:`delete_rows` copy the
  rows set-based (an update by a SQL condition copies them in the pass that finds them, and
  reads them back from the log: :func:`capture_found`; a delete copies them in one pass and
  deletes them by rowid, reading the file through a memory map so the second visit of each
  page copies nothing). Measured on a 1% delete of a 1,000,000-row table, a row trigger costs
  SQLite a second pass and every old row's columns even with an empty body (+60 %); the
  statements cost the copy and the lookups by rowid (+17-24 %).

Inserts capture nothing: rowids are never reused (the next rowid is above every rowid a version
has given out), so a row above version N's high-water mark did not exist at N. A revert
inserting rows that did not exist before it records an ``'i'`` marker for them. A change made
outside a write operation (raw SQL) is not a version.

So the state at version N is plain SQL (:func:`state_sql`): the rows there now with no change
after N and a rowid up to N's high-water mark, plus, for each rowid changed after N, its
earliest image after N (unless that is an ``'i'`` marker). Time travel reads it as a temporary
view; :func:`revert` applies it in one transaction, itself recorded as a new version (so it can
be reverted): the cost is the rows changed since N, never the table's size, and reading the
current version is untouched (``FROM t_<id>`` as before).

Measured against the alternatives the issue names (tools/bench_versions.py; README "Undo and
history"): SQLite's session extension records as cheaply, but a changeset is an opaque blob:
reading an old version would mean applying inverted changesets to a copy of the table, and the
delete gate could not ask SQL which files a kept version names; decoding a 1% delete's changeset
into rows in Python cost more than the delete itself. Version ranges on every row
(Pixeltable's ``v_min``/``v_max``) add a filter to every scan of the current version and an
update becomes an insert plus an update. The undo log costs only the changed rows, only when
they change.

**Columns.** ``px_versions`` records each version's column list. A column dropped from a
versioned table is only hidden (``px_dropped_columns``): its SQL columns and files stay while a
retained version names it, and go when the last such version is pruned.

**Files.** The one delete gate (writes.py) keeps a file a retained image or a kept column names
(``catalog.named_by_rows``); pruning a version deletes its images and returns the files only
they named, which the caller releases through that gate.

**Bounded history.** After each write (:func:`finish`) and in ``check(fix=True)``, versions older
than the table's retention are pruned: those created before ``version_retention_days`` (the one
current at that moment is kept, so any change made since can be undone) and beyond
``version_retention_count``; a snapshot keeps its version and every one after it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import weakref
from typing import Any, NamedTuple, TypedDict

from . import catalog, scanindex
from .catalog import ColumnMeta, TableMeta
from .db import Database
from .errors import DatabaseError, NotFoundError, SchemaError, VersionError
from .plan import Rows
from .types import parse_type

#: A high-water mark no rowid reaches (a baseline made by a migration before its first write).
EVERY_ROW = 2**62


class VersionMetadata(TypedDict):
    """One version of a table, as :meth:`Table.get_versions` returns it (Pixeltable's keys, plus
    ``kind`` and ``reverted_to``)."""

    version: int
    created_at: Any          # datetime.datetime
    kind: str                # 'create', 'insert', 'update', 'delete', 'add_column', 'revert', ...
    change_type: str         # 'data' or 'schema'
    inserts: int
    updates: int
    deletes: int
    schema_change: str | None
    reverted_to: int | None


# ---- columns as of a version ------------------------------------------------------------------
def column_record(c: ColumnMeta) -> dict[str, Any]:
    """A column as stored in a version's column list."""
    return {"col_id": c.col_id, "name": c.name, "position": c.position, "type": repr(c.type),
            "expr": c.expr, "destination": c.destination, "format": c.format,
            "on_error": c.on_error, "stored": bool(c.stored)}


def _records(cols: list[ColumnMeta]) -> list[dict[str, Any]]:
    return sorted((column_record(c) for c in cols if not c.pending), key=lambda d: d["position"])


def _parse(text: str) -> list[dict[str, Any]]:
    cols = json.loads(text)
    for d in cols:
        d["stored"] = bool(d.get("stored", True))
    return sorted(cols, key=lambda d: d["position"])


def columns_from_record(records: list[dict[str, Any]]) -> list[ColumnMeta]:
    return [ColumnMeta(d["col_id"], d["name"], d["position"], parse_type(d["type"]), d["expr"],
                       d["destination"], d["format"], d["on_error"], False, d["stored"])
            for d in records]


def _schema_change(before: list[dict[str, Any]], after: list[dict[str, Any]]
                   ) -> tuple[str | None, str | None]:
    """(kind for a plain schema change, description) between two column lists."""
    old, new = {d["col_id"]: d for d in before}, {d["col_id"]: d for d in after}
    parts: list[tuple[str, str]] = []
    for i in new.keys() - old.keys():
        parts.append(("add_column", f"added {new[i]['name']!r}"))
    for i in old.keys() - new.keys():
        parts.append(("drop_column", f"dropped {old[i]['name']!r}"))
    for i in old.keys() & new.keys():
        if old[i]["name"] != new[i]["name"]:
            parts.append(("rename_column", f"renamed {old[i]['name']!r} to {new[i]['name']!r}"))
        changed = [k for k in ("type", "expr", "destination", "format", "on_error", "stored")
                   if old[i][k] != new[i][k]]
        if changed:
            parts.append(("schema", f"changed {', '.join(changed)} of {new[i]['name']!r}"))
    if not parts:
        if [d["col_id"] for d in before] != [d["col_id"] for d in after]:
            return "schema", "reordered columns"
        return None, None
    kinds = {k for k, _ in parts}
    return (kinds.pop() if len(kinds) == 1 else "schema"), "; ".join(sorted(p for _, p in parts))


# ---- per-table settings -------------------------------------------------------------------------
class Policy(NamedTuple):
    versioned: bool
    days: float | None      # the table's own retention (None: the database's setting)
    most: int | None        # at most this many versions (None: the database's setting)


def policy(db: Database, table_id: int) -> Policy:
    """Whether a table keeps versions, and its own retention (a table without a row: yes)."""
    rows = db.query("SELECT versioned, retention_days, retention_count FROM px_version_policy "
                    "WHERE table_id = ?", (table_id,))
    if not rows:
        return Policy(True, None, None)
    return Policy(bool(rows[0][0]), rows[0][1], rows[0][2])


def set_policy(db: Database, table_id: int, p: Policy) -> None:
    """Record a table's versioning and retention (inside the caller's write transaction)."""
    db.execute("INSERT INTO px_version_policy(table_id, versioned, retention_days, "
               "retention_count) VALUES (?, ?, ?, ?) ON CONFLICT(table_id) DO UPDATE SET "
               "versioned = excluded.versioned, retention_days = excluded.retention_days, "
               "retention_count = excluded.retention_count",
               (table_id, int(p.versioned), p.days, p.most))


def created(db: Database, meta: TableMeta, p: Policy) -> None:
    """A table was just created (same transaction): its policy, its undo log and version 0."""
    if p != Policy(True, None, None):
        set_policy(db, meta.id, p)
    if not p.versioned:
        return
    _sync_log(db, meta)
    cols = _records(meta.columns)
    db.execute("INSERT INTO px_versions(table_id, version, created_at, kind, state_of, columns, "
               "high_water) VALUES (?, 0, ?, 'create', 0, ?, 0)",
               (meta.id, time.time(), json.dumps(cols, sort_keys=True)))


# ---- version records --------------------------------------------------------------------------
class Record(NamedTuple):
    version: int
    created_at: float
    kind: str
    state_of: int
    columns: str
    high_water: int | None


_RECORD = "version, created_at, kind, state_of, columns, high_water"


def latest(db: Database, table_id: int) -> Record | None:
    """The table's current version (None: not versioned, or no record yet)."""
    rows = db.query("SELECT " + _RECORD + " FROM px_versions WHERE table_id = ? "
                    "ORDER BY version DESC LIMIT 1", (table_id,))
    return Record(*rows[0]) if rows else None


def record(db: Database, table_id: int, version: int) -> Record | None:
    rows = db.query("SELECT " + _RECORD + " FROM px_versions WHERE table_id = ? AND "
                    "version = ?", (table_id, version))
    return Record(*rows[0]) if rows else None


def retained(db: Database, table_id: int) -> tuple[int, int] | None:
    """(oldest, newest) version kept of a table, or None."""
    rows = db.query("SELECT min(version), max(version) FROM px_versions WHERE table_id = ?",
                    (table_id,))
    return None if rows[0][0] is None else (rows[0][0], rows[0][1])


def require(db: Database, meta: TableMeta, version: object) -> Record:
    """The record of a version that is kept, else an error saying which versions there are."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError(f"a version of {meta.path!r} is a whole number, got "
                           f"{type(version).__name__} {version!r}")
    if not policy(db, meta.id).versioned:
        raise unversioned(db, meta, "earlier versions")
    rec = record(db, meta.id, version)
    if rec is not None:
        return rec
    span = retained(db, meta.id)
    if span is not None and version > span[1]:
        raise NotFoundError(f"table {meta.path!r} has no version {version} yet: its current "
                            f"version is {span[1]}")
    kept = f"versions {span[0]} to {span[1]}" if span else "no versions"
    raise NotFoundError(f"version {version} of table {meta.path!r} is not kept any more (it keeps "
                        f"{kept}); keep versions longer with version_retention_days, or pin one "
                        "with pxl.create_snapshot()")


def history(db: Database, table_id: int, n: int | None = None) -> list[VersionMetadata]:
    """The versions kept of a table, most recent first (at most ``n``)."""
    import datetime  # here: only history needs it

    sql = ("SELECT version, created_at, kind, inserts, updates, deletes, schema_change, "
           "reverted_to FROM px_versions WHERE table_id = ? ORDER BY version DESC")
    params: list[Any] = [table_id]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SchemaError(f"n= takes a whole number >= 0 (how many versions), got {n!r}")
        sql += " LIMIT ?"
        params.append(n)
    return [VersionMetadata(
        version=r[0], created_at=datetime.datetime.fromtimestamp(r[1]), kind=r[2],
        change_type="schema" if r[6] is not None else "data", inserts=r[3], updates=r[4],
        deletes=r[5], schema_change=r[6], reverted_to=r[7]) for r in db.query(sql, params)]


# ---- the undo log and its triggers -------------------------------------------------------------
_SQL_NAME = re.compile(r"c[0-9]+(_et|_em)?\Z")
_SQL_TYPES = frozenset({"ANY", "INTEGER", "REAL", "TEXT", "BLOB", ""})


def _physical(db: Database, sql_table: str) -> list[tuple[str, str]]:
    """(name, declared type) of a table's SQL columns other than the keys. Each must be one
    pxlite makes (``c<id>``, ``c<id>_et``, ``c<id>_em``; a type of its fixed set): they are
    written into the undo log's DDL and triggers, so a crafted file cannot inject SQL there."""
    out = []
    for name, sql_type in db.query("SELECT name, type FROM pragma_table_info(?)", (sql_table,)):
        if name in ("_rowid", "_v", "_op"):
            continue
        if not (_SQL_NAME.match(name) and sql_type.upper() in _SQL_TYPES):
            raise DatabaseError(f"table {sql_table} of {db.path} has a column pxlite did not "
                                f"make ({name!r} {sql_type!r}): the file was altered by "
                                "another program; restore it from a backup")
        out.append((name, sql_type.upper()))
    return out


def _sync_log(db: Database, meta: TableMeta) -> None:
    """Make the undo log hold the data table's columns (created if missing). Only while no
    trigger names its columns."""
    data = _physical(db, meta.sql)
    if not catalog.sql_columns(db, meta.log_sql):
        sql_cols = "".join(f", {n} {ty}" for n, ty in data)
        db.execute(f"CREATE TABLE {meta.log_sql} (_v INTEGER NOT NULL, _rowid INTEGER NOT NULL, "
                   f"_op TEXT NOT NULL{sql_cols}, PRIMARY KEY (_v, _rowid)) WITHOUT ROWID")
        return
    have = {n for n, _ in _physical(db, meta.log_sql)}
    for sql_name, sql_type in data:
        if sql_name not in have:
            db.execute(f"ALTER TABLE {meta.log_sql} ADD COLUMN {sql_name} {sql_type}")
    for sql_name in sorted(have - {n for n, _ in data}):
        db.execute(f"ALTER TABLE {meta.log_sql} DROP COLUMN {sql_name}")


def _disarm(db: Database, table_id: int) -> None:
    db.execute(f"DROP TRIGGER IF EXISTS temp.pxv_d_{int(table_id)}")
    db.execute(f"DROP TRIGGER IF EXISTS temp.pxv_u_{int(table_id)}")
    db.execute(f"DROP TRIGGER IF EXISTS temp.pxv_i_{int(table_id)}")


def _arm(db: Database, meta: TableMeta, version: int, high_water: int) -> None:
    """Capture the changes of ``version``: the first old image of each row that existed before
    it (rowid <= ``high_water``) and is updated (a complete column) or deleted. The image's
    ``_op`` says what became of the row, so the version's counts need no lookup: 'u' updated,
    'd' deleted (also after an update), 'r' deleted and inserted again (a replace, a revert)."""
    _disarm(db, meta.id)
    sql_cols = [n for n, _ in _physical(db, meta.sql)]
    names = "".join(f", {c}" for c in sql_cols)
    olds = "".join(f", OLD.{c}" for c in sql_cols)
    # (followed by the op letter and the old values)
    capture = (f"INSERT INTO {meta.log_sql}(_v, _rowid, _op{names}) VALUES ({int(version)}, "
               "OLD._rowid, ")
    db.execute(f"CREATE TEMP TRIGGER pxv_d_{int(meta.id)} BEFORE DELETE ON main.{meta.sql} WHEN "
               f"OLD._rowid <= {int(high_water)} BEGIN {capture}'d'{olds}) ON CONFLICT (_v, "
               "_rowid) DO UPDATE SET _op = 'd' WHERE _op != 'i'; END")
    db.execute(f"CREATE TEMP TRIGGER pxv_i_{int(meta.id)} AFTER INSERT ON main.{meta.sql} WHEN "
               f"NEW._rowid <= {int(high_water)} BEGIN UPDATE {meta.log_sql} SET _op = 'r' "
               f"WHERE _v = {int(version)} AND _rowid = NEW._rowid AND _op = 'd'; END")
    # Not the pending columns: the batches filling a column being added change nothing visible.
    watched = [s for c in meta.columns if not c.pending for s in (c.sql, c.sql_et, c.sql_em)]
    if watched:
        db.execute(f"CREATE TEMP TRIGGER pxv_u_{int(meta.id)} BEFORE UPDATE OF "
                   f"{', '.join(watched)} ON main.{meta.sql} WHEN OLD._rowid <= "
                   f"{int(high_water)} BEGIN {capture}'u'{olds}) ON CONFLICT (_v, _rowid) DO "
                   "NOTHING; END")


# ---- a version in the making -------------------------------------------------------------------
class Log:
    """The version one write transaction is making of one table."""

    def __init__(self, meta: TableMeta, version: int, high_water: int, before: str,
                 continuing: bool, capture: str = "triggers") -> None:
        self.meta, self.version, self.high_water = meta, version, high_water
        self.before = before          # the previous version's columns (JSON)
        self.continuing = continuing  # the version was recorded by an earlier commit
        self.capture = capture        # how old rows are captured (see CAPTURE)
        self.kind: str | None = None
        self.reverted_to: int | None = None
        self.state_of: int | None = None


#: How a write operation's changes to existing rows reach the undo log: ``'triggers'`` (any
#: statement: the generic way), ``'statements'`` (the operation calls :func:`capture_rows`
#: before it updates rows and :func:`delete_rows` to delete them: one set-based copy instead of
#: a trigger per row, which costs SQLite a second pass and the old row's columns for every row
#: even when it records nothing), ``'new_rows'`` (the operation only inserts rows and changes
#: those: nothing existed before it to capture).
CAPTURE = ("triggers", "statements", "new_rows")

#: The versions open in each connection's transaction, by table id.
_OPEN: weakref.WeakKeyDictionary[Database, dict[int, Log]] = weakref.WeakKeyDictionary()


def unversioned(db: Database, meta: TableMeta, what: str) -> VersionError:
    """The error for asking ``what`` ("earlier versions to revert to", ...) of a table that
    keeps no versions: one created with ``versioned=False``, or a view (its rows are made from
    its base's versions, so the base is the one to ask)."""
    if meta.base_id is not None:
        base = catalog.load_table_by_id(db, meta.base_id).path
        return VersionError(f"view {meta.path!r} keeps no versions of its own (its rows are "
                            f"made from its base's), so no {what}; ask its base {base!r}, "
                            "which the view follows")
    return VersionError(f"table {meta.path!r} was created with versioned=False: it keeps no "
                        f"{what}")


def is_versioned(db: Database, table_id: int) -> bool:
    return policy(db, table_id).versioned


def open_log(db: Database, table_id: int) -> Log | None:
    """The version being made of a table in this connection's transaction, if any."""
    return _OPEN.get(db, {}).get(table_id)


def begin(db: Database, table_id: int, continuing: int | None = None,
          capture: str = "triggers") -> Log | None:
    """Inside a write transaction, before anything changes: start the next version of a
    versioned table (or go on with ``continuing``, an operation's version committed in an
    earlier batch, while no other version came after it), capturing old rows as ``capture``
    says (see CAPTURE). None for an unversioned or dropped table, or when an enclosing
    operation already makes this table's version."""
    opened = _OPEN.setdefault(db, {})
    if table_id in opened or not is_versioned(db, table_id):
        return None
    rows = db.query("SELECT path FROM px_tables WHERE id = ?", (table_id,))
    if not rows:
        return None
    meta = catalog.load_table(db, rows[0][0])
    last = latest(db, table_id)
    if last is None:  # a table older than versions, never written since: its baseline
        db.execute("INSERT INTO px_versions(table_id, version, created_at, kind, state_of, "
                   "columns) VALUES (?, 0, ?, 'baseline', 0, ?)",
                   (table_id, time.time(), json.dumps(_records(meta.columns), sort_keys=True)))
        last = latest(db, table_id)
        assert last is not None
    if last.high_water is None:  # a baseline: every row there now was there then
        hw = db.query(f"SELECT coalesce(max(_rowid), 0) FROM {meta.sql}")[0][0]
        db.execute("UPDATE px_versions SET high_water = ? WHERE table_id = ? AND version = ?",
                   (hw, table_id, last.version))
        last = last._replace(high_water=hw)
    assert last.high_water is not None
    _sync_log(db, meta)
    if continuing is not None and continuing == last.version:
        prev = record(db, table_id, continuing - 1)
        log = Log(meta, continuing, prev.high_water if prev and prev.high_water is not None
                  else last.high_water, prev.columns if prev else last.columns, True, capture)
    else:
        log = Log(meta, last.version + 1, last.high_water, last.columns, False, capture)
    if capture == "triggers":
        _arm(db, meta, log.version, log.high_water)
    opened[table_id] = log
    return log


def _image_columns(db: Database, meta: TableMeta) -> str:
    return "".join(f", {c}" for c, _ in _physical(db, meta.sql))


def _existing(db: Database, meta: TableMeta, log: Log) -> str:
    """The condition "the row existed before this version" (rowid up to its high-water mark),
    or nothing when no row above the mark exists: the bound then costs a comparison per row of
    every scan for nothing (3 ms of a 30 ms pass over 1,000,000 rows)."""
    if db.query(f"SELECT 1 FROM {meta.sql} WHERE _rowid > {int(log.high_water)} LIMIT 1"):
        return f"_rowid <= {int(log.high_water)} AND "
    return ""


def capture_rows(db: Database, meta: TableMeta, rows: Rows, existing: str | None = None
                 ) -> None:
    """Inside an operation capturing its own rows (``'statements'``), before it updates
    ``rows``: copy their old images into the undo log in one statement (the first image of a
    row in a version wins). ``existing``: :func:`_existing`, when the caller knows it."""
    log = open_log(db, meta.id)
    if log is None or log.capture == "triggers":
        return
    names = _image_columns(db, meta)
    cond, params = rows.condition()
    if existing is None:
        existing = _existing(db, meta, log)
    db.execute(f"INSERT INTO {meta.log_sql}(_v, _rowid, _op{names}) SELECT {int(log.version)}, "
               f"_rowid, 'u'{names} FROM {meta.sql} WHERE {existing}({cond}) ON CONFLICT (_v, "
               "_rowid) DO NOTHING", params)


def capture_found(db: Database, meta: TableMeta, rows: Rows, cols: list[ColumnMeta]
                  ) -> tuple[str, list[Any]] | None:
    """Inside an operation capturing its own rows, before an update reads the rows it will
    change (``rows``, a SQL condition): copy their old images into the undo log in the one pass
    over the table that finds them, and return the statement reading ``_rowid`` and ``cols``
    of those rows back from the log, in rowid order (an image is the row as it is now). Reading
    the table and then copying the rows by rowid cost a second pass of lookups (+7% on an
    update of 1% of 1,000,000 rows). None where that does not hold, and the caller reads the
    table and uses :func:`capture_rows`: no log capturing its own rows, a view or an explicit
    rowid set, or a version that has images or new rows already (an earlier batch of it)."""
    log = open_log(db, meta.id)
    if log is None or log.capture == "triggers" or meta.sql != meta.store or \
            rows.rowids is not None:
        return None
    if db.query(f"SELECT 1 FROM {meta.log_sql} WHERE _v = ? LIMIT 1", (log.version,)) or \
            _existing(db, meta, log):
        return None
    capture_rows(db, meta, rows, "")  # the same copy, by the condition (one pass), not by rowid
    what = ", ".join(["_rowid"] + [c.sql for c in cols])
    return f"SELECT {what} FROM {meta.log_sql} WHERE _v = ? ORDER BY _rowid", [log.version]


def delete_rows(db: Database, meta: TableMeta, rows: Rows) -> int:
    """Delete ``rows`` (returns how many), their old images captured first when the
    operation captures its own rows: one pass copies them into the log, then they are deleted
    by rowid, read back from the log, one prepared single-row delete each. (``_rowid IN
    (SELECT ...)`` builds and reads two temporary b-trees: of 1,000,000 rows, deleting 10,000
    so took 40 ms, one by one 31 ms; the plain delete that scans took 45 ms.)"""
    cond, params = rows.condition()
    log = open_log(db, meta.id)
    if log is None or log.capture == "triggers":
        db.execute(f"DELETE FROM {meta.sql} WHERE {cond}", params)
        return db.changes()
    names = _image_columns(db, meta)
    existing = _existing(db, meta, log)
    v = log.version
    revived = db.query(f"SELECT 1 FROM {meta.log_sql} WHERE _v = ? AND _op = 'i' LIMIT 1", (v,))
    with db.mapped():  # (the delete visits again each page the copy read)
        db.execute(f"INSERT INTO {meta.log_sql}(_v, _rowid, _op{names}) SELECT {int(v)}, "
                   f"_rowid, 'd'{names} FROM {meta.sql} WHERE {existing}({cond}) ON CONFLICT "
                   "(_v, _rowid) DO UPDATE SET _op = 'd' WHERE _op != 'i'", params)
        n = db.changes()  # the rows found: the log holds them as deleted, the table still has
        # (rows deleted earlier in this version are gone already: deleting them is a no-op)
        # (the cursor itself, read row by row inside SQLite's loop: memory stays bounded
        # without a Python generator step per row, 3 ms of 10,000; the write transaction holds
        # the connection's lock throughout)
        found = db.execute(f"SELECT _rowid FROM {meta.log_sql} WHERE _v = ? AND _op = 'd'",
                           (v,))
        db.executemany(f"DELETE FROM {meta.sql} WHERE _rowid = ?", found)
    # Rows a revert of this version brought back ('i': nothing of them to keep) and rows this
    # version inserted, if it did either.
    if revived:
        db.execute(f"DELETE FROM {meta.sql} WHERE _rowid IN (SELECT _rowid FROM "
                   f"{meta.log_sql} WHERE _v = {int(v)} AND _op = 'i') AND ({cond})", params)
        n += db.changes()
    if existing:
        db.execute(f"DELETE FROM {meta.sql} WHERE _rowid > {int(log.high_water)} AND ({cond})",
                   params)
        n += db.changes()
    return n


def abandon(db: Database, log: Log) -> None:
    """The transaction making ``log`` ends (after :func:`finish`, or failing: its changes and
    triggers roll back with it)."""
    opened = _OPEN.get(db, {})
    if opened.get(log.meta.id) is log:
        del opened[log.meta.id]


class Finished(NamedTuple):
    version: int | None                 # the version recorded (None: nothing changed)
    freed: dict[int, list[str]]         # column id -> files only pruned versions named


def finish(db: Database, log: Log, kind: str, days: float | None, count: int | None,
           now: float | None = None) -> Finished:
    """Inside the write transaction, after its changes: record the version (when something
    changed), remove the triggers, and prune versions beyond the retention (the table's own,
    else ``days``/``count``). Returns the files the pruned versions alone named."""
    abandon(db, log)
    rows = db.query("SELECT path FROM px_tables WHERE id = ?", (log.meta.id,))
    if not rows:
        return Finished(None, {})  # the operation dropped the table
    meta = catalog.load_table(db, rows[0][0])
    if log.capture == "triggers":
        _disarm(db, meta.id)
    _sync_log(db, meta)
    v = log.version
    # One statement, reading only what changed: rows above the mark (inserted) and this
    # version's images by what became of their rows (see _arm; 'i': a revert brought it back).
    inserted, top, back, updated, deleted = db.query(
        f"SELECT (SELECT count(*) FROM {meta.sql} WHERE _rowid > ?), (SELECT coalesce(max("
        f"_rowid), 0) FROM {meta.sql}), coalesce(sum(_op = 'i'), 0), coalesce(sum(_op IN "
        f"('u', 'r')), 0), coalesce(sum(_op = 'd'), 0) FROM {meta.log_sql} WHERE _v = ?",
        (log.high_water, v))[0]
    cols = _records(meta.columns)
    before = _parse(log.before)
    plain_kind, change = _schema_change(before, cols)
    high = max(log.high_water, top)
    kind = log.kind or (plain_kind if kind == "write" and plain_kind else kind)
    counts = (inserted + back, updated, deleted)
    recorded: int | None = None
    if log.continuing:
        db.execute("UPDATE px_versions SET inserts = ?, updates = ?, deletes = ?, "
                   "schema_change = ?, columns = ?, high_water = ? WHERE table_id = ? AND "
                   "version = ?", (*counts, change, json.dumps(cols, sort_keys=True), high,
                                   meta.id, v))
        recorded = v
    elif any(counts) or change is not None:
        db.execute("INSERT INTO px_versions(table_id, version, created_at, kind, inserts, "
                   "updates, deletes, schema_change, reverted_to, state_of, columns, "
                   "high_water) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (meta.id, v, time.time(), kind, *counts, change, log.reverted_to,
                    v if log.state_of is None else log.state_of,
                    json.dumps(cols, sort_keys=True), high))
        recorded = v
    return Finished(recorded, prune(db, meta, days, count, now))


# ---- columns -----------------------------------------------------------------------------------
def hides(db: Database, meta: TableMeta, col: ColumnMeta) -> bool:
    """Does dropping ``col`` now only hide it (see :func:`drop_column`)?"""
    return open_log(db, meta.id) is not None and not col.pending


def drop_column(db: Database, meta: TableMeta, col: ColumnMeta) -> list[Any]:
    """Inside a write operation: drop a column. In a versioned table a complete column is only
    hidden (a version before this one names it: its cells and files stay until that version is
    pruned); a pending one, and any column of an unversioned table, goes at once. Returns the
    files the undo log named for a column that went (the caller releases them and the data
    table's)."""
    log = open_log(db, meta.id)
    catalog.check_droppable(meta, col)
    if hides(db, meta, col):
        assert log is not None
        catalog.drop_indexes_on(db, meta, col)  # (an index is not part of a version)
        db.execute("DELETE FROM px_columns WHERE table_id = ? AND col_id = ?",
                   (meta.id, col.col_id))
        db.execute("INSERT OR REPLACE INTO px_dropped_columns(table_id, col_id, meta, version) "
                   "VALUES (?, ?, ?, ?)", (meta.id, col.col_id,
                                           json.dumps(column_record(col)), log.version))
        meta.columns.remove(col)
        scanindex.sync(db, meta.store, meta.columns)
        return []
    if log is None and is_versioned(db, meta.id):  # not inside an operation: never happens
        raise AssertionError("internal error: a column of a versioned table dropped outside "
                             "a write operation")
    logged = _log_values(db, meta, col)
    _disarm(db, meta.id)  # the triggers name every column
    _drop_views(db, meta.id)
    catalog.drop_column(db, meta, col)
    if log is not None:
        _sync_log(db, meta)
        if log.capture == "triggers":
            _arm(db, meta, log.version, log.high_water)
    return logged


def _log_values(db: Database, meta: TableMeta, col: ColumnMeta, upto: int | None = None
                ) -> list[Any]:
    if not col.type.is_media or col.sql not in catalog.sql_columns(db, meta.log_sql):
        return []
    cond = "1" if upto is None else f"_v <= {int(upto)}"
    return [r[0] for r in db.query(f"SELECT DISTINCT {col.sql} FROM {meta.log_sql} WHERE "
                                   f"{col.sql} IS NOT NULL AND {cond}")]


# ---- pruning -----------------------------------------------------------------------------------
def prune(db: Database, meta: TableMeta, days: float | None, count: int | None,
          now: float | None = None) -> dict[int, list[str]]:
    """Inside a write transaction: forget the versions of a table beyond its retention (its
    own, else ``days``/``count``): their records, the undo log's images they needed, and the
    dropped columns no kept version names. Returns column id -> the files those named (the
    caller releases them through the delete gate, which keeps what anything else names)."""
    p = policy(db, meta.id)
    if not p.versioned:
        return {}
    days = p.days if p.days is not None else days
    count = p.most if p.most is not None else count
    span = retained(db, meta.id)
    if span is None:
        return {}
    oldest, newest = span
    bounds = []
    if days is not None:
        cutoff = (time.time() if now is None else now) - days * 86400.0
        young = db.query("SELECT min(version) FROM px_versions WHERE table_id = ? AND "
                         "created_at >= ?", (meta.id, cutoff))[0][0]
        # The version current at the cutoff is kept: every change since can be undone.
        bounds.append(newest if young is None else young - 1)
    if count is not None:
        bounds.append(newest - count + 1)
    keep = max(bounds, default=oldest)
    pinned = db.query("SELECT min(version) FROM px_snapshots WHERE table_id = ?",
                      (meta.id,))[0][0]
    if pinned is not None:
        keep = min(keep, pinned)
    if keep <= oldest:
        return {}
    freed: dict[int, list[str]] = {}
    dropped = catalog.dropped_columns(db, meta.id)
    for c in [*meta.media_columns, *dropped]:
        found = _log_values(db, meta, c, upto=keep)
        if found:
            freed.setdefault(c.col_id, []).extend(found)
    db.execute(f"DELETE FROM {meta.log_sql} WHERE _v <= ?", (keep,))
    db.execute("DELETE FROM px_versions WHERE table_id = ? AND version < ?", (meta.id, keep))
    named = {r[0] for r in db.query(
        "SELECT DISTINCT json_extract(j.value, '$.col_id') FROM px_versions AS v, "
        "json_each(v.columns) AS j WHERE v.table_id = ?", (meta.id,))}
    for c in dropped:
        if c.col_id not in named:
            if c.type.is_media:
                freed.setdefault(c.col_id, []).extend(
                    _log_values(db, meta, c) + [r[0] for r in db.query(
                        f"SELECT DISTINCT {c.sql} FROM {meta.sql} WHERE {c.sql} IS NOT NULL")])
            _drop_sql_columns(db, meta, c)
    return freed


def _drop_views(db: Database, table_id: int) -> None:
    """Drop this connection's views of the table's versions (SQLite refuses to drop a column a
    view names; a view is made again when a version is read)."""
    prefix = f"pxv_{int(table_id)}_"
    for (view_name,) in db.query("SELECT name FROM temp.sqlite_master WHERE type = 'view' AND "
                                 "substr(name, 1, ?) = ?", (len(prefix), prefix)):
        if re.fullmatch(r"pxv_[0-9]+_[0-9]+_[0-9a-f]+", view_name):
            db.execute(f"DROP VIEW IF EXISTS temp.{view_name}")


def _drop_sql_columns(db: Database, meta: TableMeta, col: ColumnMeta) -> None:
    """Physically drop a hidden column (no trigger names it: they are removed by then)."""
    _drop_views(db, meta.id)
    catalog.drop_indexes_on(db, meta, col)
    for sql_table in (meta.sql, meta.log_sql):
        have = set(catalog.sql_columns(db, sql_table))
        for sql_col in (col.sql, col.sql_et, col.sql_em):
            if sql_col in have:
                db.execute(f"ALTER TABLE {sql_table} DROP COLUMN {sql_col}")
    db.execute("DELETE FROM px_dropped_columns WHERE table_id = ? AND col_id = ?",
               (meta.id, col.col_id))
    scanindex.sync(db, meta.store, meta.columns)


# ---- the state at a version --------------------------------------------------------------------
def state_sql(meta: TableMeta, version: int, high_water: int, cols: list[ColumnMeta],
              has_log: bool = True) -> str:
    """SELECT of the table's rows as they were at ``version`` (``_rowid`` and the three SQL
    columns of each of ``cols``): the rows there now that no later version changed, plus the
    earliest image after ``version`` of each row one changed (a row a revert brought back
    after it, marked ``'i'``, did not exist then). ``has_log``: False for a table never
    written since versions began (no undo log yet: it is as it was). Constants only (integers
    from the catalog)."""
    names = "".join(f", {c.sql}, {c.sql_et}, {c.sql_em}" for c in cols)
    data = TableMeta(meta.id, meta.uid, meta.path)  # the data table itself, not a view
    if not has_log:
        return f"SELECT _rowid{names} FROM {data.sql}"
    return (f"SELECT _rowid{names} FROM {data.sql} WHERE _rowid <= {int(high_water)} AND _rowid "
            f"NOT IN (SELECT _rowid FROM {data.log_sql} WHERE _v > {int(version)}) UNION ALL "
            f"SELECT _rowid{names} FROM (SELECT min(_v) AS _v, _rowid, _op{names} FROM "
            f"{data.log_sql} WHERE _v > {int(version)} GROUP BY _rowid) WHERE _op != 'i' AND "
            f"_rowid <= {int(high_water)}")


def meta_at(db: Database, path: str, version: int) -> TableMeta:
    """A read-only description of ``version`` of the table at ``path``: that version's columns,
    and as its rows a temporary view of :func:`state_sql` (per connection; named after its
    definition, so a view is made once). NotFoundError for a version not kept."""
    live = catalog.load_table(db, path)
    rec = require(db, live, version)
    cols = columns_from_record(_parse(rec.columns))
    hw = EVERY_ROW if rec.high_water is None else rec.high_water
    sql = state_sql(live, version, hw, cols, bool(catalog.sql_columns(db, live.log_sql)))
    name = f"pxv_{live.id}_{version}_{hashlib.sha1(sql.encode()).hexdigest()[:12]}"
    db.execute(f"CREATE TEMP VIEW IF NOT EXISTS {name} AS {sql}")
    have = {c.col_id for c in cols}
    return TableMeta(live.id, live.uid, live.path, cols, live.uids,
                     tuple(i for i in live.primary_key if i in have), version=version, view=name)


def still_kept(db: Database, meta: TableMeta) -> None:
    """Inside the read snapshot of a query on a version: it is still kept (else the view would
    read images a pruning removed); NotFoundError saying so otherwise."""
    assert meta.version is not None
    require(db, catalog.load_table(db, meta.path), meta.version)


# ---- revert --------------------------------------------------------------------------------------
def revert_target(db: Database, meta: TableMeta) -> int:
    """What ``revert()`` goes back to: the version before the change the table's current
    content came from (so repeated reverts step back through the history, as Pixeltable's do;
    ``revert(to=N)`` goes anywhere, forward too)."""
    last = latest(db, meta.id)
    if last is None:
        raise unversioned(db, meta, "earlier versions to revert to")
    state = last.state_of
    if state == 0:
        raise VersionError(f"table {meta.path!r} is as it was at version 0 (its creation, or "
                           "where its history starts): there is nothing earlier to revert to")
    if record(db, meta.id, state - 1) is None:
        span = retained(db, meta.id)
        raise VersionError(f"cannot revert table {meta.path!r}: version {state - 1}, before the "
                           f"change that made its current content, is not kept any more (it "
                           f"keeps versions {span[0] if span else '?'} to "
                           f"{span[1] if span else '?'})")
    return state - 1


def revert(db: Database, meta: TableMeta, target: int) -> None:
    """Inside the write operation making this table's next version (capturing its own rows:
    ``'statements'``): bring its rows and columns back to ``target`` (see :func:`state_sql`).
    The rows it changes are captured like any change, so the revert is itself a version that
    can be reverted. Set-based: its cost is the rows changed since ``target``; its statements
    look up the same rows several times, so it reads the file mapped (Database.mapped)."""
    with db.mapped():
        _revert(db, meta, target)


def _revert(db: Database, meta: TableMeta, target: int) -> None:
    log = open_log(db, meta.id)
    if log is None:
        raise unversioned(db, meta, "earlier versions to revert to")
    rec = require(db, meta, target)
    pending = [c.name for c in meta.columns if c.pending]
    if pending:
        raise VersionError(
            f"cannot revert table {meta.path!r} while column {pending[0]!r} is being added "
            "(pending): finish it by running the same add_computed_column again, or drop it, "
            "then revert")
    wanted = columns_from_record(_parse(rec.columns))
    have = set(catalog.sql_columns(db, meta.sql))
    lost = [c.name for c in wanted if c.sql not in have]
    if lost:
        raise VersionError(f"cannot revert table {meta.path!r} to version {target}: the cells "
                           f"of column {lost[0]!r} are gone (internal error)")
    hw = EVERY_ROW if rec.high_water is None else rec.high_water
    v = log.version
    names = _image_columns(db, meta)
    sql_cols = [c for c, _ in _physical(db, meta.sql)]
    # The earliest image after the target of each row changed since (before this version).
    db.execute("DROP TABLE IF EXISTS temp.pxv_images")
    db.execute(f"CREATE TEMP TABLE pxv_images (_rowid INTEGER PRIMARY KEY{names})")
    db.execute(f"INSERT INTO temp.pxv_images(_rowid{names}) SELECT _rowid{names} FROM (SELECT "
               f"min(_v) AS _v, _rowid, _op{names} FROM {meta.log_sql} WHERE _v > {int(target)} "
               f"AND _v < {int(v)} GROUP BY _rowid) WHERE _op != 'i' AND _rowid <= {int(hw)}")
    # Rows born after the target, or changed since and not there then: they go (their image
    # kept by this version).
    delete_rows(db, meta, Rows.matching(f"_rowid > {int(hw)}"))
    delete_rows(db, meta, Rows.matching(
        f"_rowid IN (SELECT _rowid FROM {meta.log_sql} WHERE _v > {int(target)} AND _v < "
        f"{int(v)}) AND _rowid NOT IN (SELECT _rowid FROM temp.pxv_images)"))
    restored = Rows.matching("_rowid IN (SELECT _rowid FROM temp.pxv_images)")
    if meta.primary_key:
        # A unique key is checked row by row: rows that swapped keys since cannot be updated
        # back in place one by one, so they go and come back below (updated: 'r').
        delete_rows(db, meta, restored)
    # Rows there now that were different then: updated in place (their image kept).
    capture_rows(db, meta, restored)
    if sql_cols and not meta.primary_key:  # (a join would scan the table: a lookup per row)
        sql_names = ", ".join(sql_cols)
        db.execute(f"UPDATE {meta.sql} SET ({sql_names}) = (SELECT {sql_names} FROM "
                   f"temp.pxv_images AS i WHERE i._rowid = {meta.sql}._rowid) WHERE _rowid IN "
                   "(SELECT _rowid FROM temp.pxv_images)")
    # Rows deleted since: back, marked as not existing before this version.
    db.execute(f"INSERT INTO {meta.log_sql}(_v, _rowid, _op) SELECT {int(v)}, _rowid, 'i' FROM "
               f"temp.pxv_images WHERE _rowid NOT IN (SELECT _rowid FROM {meta.sql}) ON "
               "CONFLICT (_v, _rowid) DO NOTHING")
    db.execute(f"INSERT INTO {meta.sql}(_rowid{names}) SELECT _rowid{names} FROM "
               f"temp.pxv_images WHERE _rowid NOT IN (SELECT _rowid FROM {meta.sql})")
    db.execute(f"UPDATE {meta.log_sql} SET _op = 'r' WHERE _v = {int(v)} AND _op = 'd' AND "
               "_rowid IN (SELECT _rowid FROM temp.pxv_images)")
    db.execute("DROP TABLE temp.pxv_images")
    _restore_columns(db, meta, wanted, v)
    log.kind, log.reverted_to, log.state_of = "revert", target, rec.state_of


def _restore_columns(db: Database, meta: TableMeta, wanted: list[ColumnMeta],
                     version: int) -> None:
    """Make the table's columns those of a version: hide the ones it did not have, bring back
    the hidden ones it had, restore names, positions, destinations."""
    keep = {c.col_id for c in wanted}
    for c in meta.columns:
        if c.col_id not in keep:
            db.execute("INSERT OR REPLACE INTO px_dropped_columns(table_id, col_id, meta, "
                       "version) VALUES (?, ?, ?, ?)",
                       (meta.id, c.col_id, json.dumps(column_record(c)), version))
    db.execute("DELETE FROM px_columns WHERE table_id = ?", (meta.id,))
    for c in wanted:
        db.execute(
            "INSERT INTO px_columns(table_id, col_id, name, position, type, expr, destination, "
            "format, on_error, pending, stored) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (meta.id, c.col_id, c.name, c.position, repr(c.type), c.expr, c.destination,
             c.format, c.on_error, int(c.stored)))
        db.execute("DELETE FROM px_dropped_columns WHERE table_id = ? AND col_id = ?",
                   (meta.id, c.col_id))
    scanindex.sync(db, meta.store, wanted)
