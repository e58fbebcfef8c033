"""Keeping views in step with their bases, in the same commit as each change to a base.

Every write goes through one operation (``writes.Operation.committing``), which calls this
module's hook (:class:`Keeper`, installed by ``pxlite.views``) at one place:

* before its transaction, :meth:`Keeper.prepare` records where the views' files go (committed
  before any lands, like every destination);
* inside it, :meth:`Keeper.maintaining` watches the table's data table while the operation
  writes. New rows are those above the largest rowid before it (rowids only grow: nothing is
  logged per inserted row, so an insert costs its view little); temporary triggers log into a
  temporary table each deleted row, each row inserted under a rowid it had before (a revert
  bringing it back, a replace), and each row whose column a view depends on changed value.
  When the operation's writes are done, each view of the table follows them in a nested
  operation of its own (its files in its own key space, its rows in the same transaction):
  rows of deleted base rows go (their files released), rows of new base rows come (their
  iterator run, computed columns computed), a base row whose where() or iterator input
  changed has its rows made again, and the view's computed columns that read a changed base
  column are recomputed. A view's own writes are watched the same way, so views of views
  follow in turn; a view further down that reads the table's columns directly (through its
  base) follows the rows they changed too.

A view still being built (create_view interrupted) follows only the base rows its build has
done; the build takes the rest, including rows inserted meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import catalog, media, writes
from ..errors import SchemaError
from ..plan import Rows
from . import model, rows
from .model import View

_LOG = "px_view_changes"
#: (database, table) pairs whose writes are being watched now: a write nested in another on the
#: same table (batch_update inserting) is left to the outer one, which sees it all.
_WATCHING: set[tuple[int, int]] = set()
INSERTED, DELETED = 0, -1


@dataclass
class Family:
    """What a write on one table must keep in step: its own views, the views further down
    that read its columns directly (with which), its columns whose new values matter, and the
    views with files (their destinations are prepared before the write's transaction). Read
    once per catalog state (see :func:`_state`)."""

    views: list[int]
    deep: list[tuple[int, int, set[int]]]   # (view, its base, the table's columns it reads)
    watch: set[int]
    with_files: list[int]


#: Each database's families and views, with the catalog state they were read at.
_KNOWN: weakref.WeakKeyDictionary[Any, tuple[tuple, dict[int, Family | None],
                                             dict[int, View]]] = weakref.WeakKeyDictionary()


def _state(db: Any) -> tuple:
    """What the families and views read from the catalog depends on: the schema (views and
    columns added or dropped), the columns still being added, the views still being built and
    where columns' files go (move_media). (Renames change names only; what is kept in step
    goes by ids.)"""
    return tuple(db.query(
        "SELECT (SELECT schema_version FROM pragma_schema_version()), (SELECT "
        "group_concat(table_id || ':' || col_id) FROM px_columns WHERE pending = 1), (SELECT "
        "group_concat(table_id) FROM px_views WHERE built = 0), (SELECT group_concat(table_id "
        "|| ':' || col_id || ':' || destination) FROM px_columns WHERE destination IS NOT "
        "NULL)")[0])


def _known(db: Any) -> tuple[dict[int, Family | None], dict[int, View]]:
    state = _state(db)
    known = _KNOWN.get(db)
    if known is None or known[0] != state:
        known = _KNOWN[db] = (state, {}, {})
    return known[1], known[2]


@dataclass
class Changes:
    """What a write did to a table's rows: new rows (those above ``after``, the largest rowid
    before it, and ``replaced``: deleted and inserted again under their rowid), rows gone, and
    rows whose watched columns changed value."""

    after: int | None = None
    replaced: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    updated: dict[int, set[int]] = field(default_factory=dict)  # rowid -> columns changed
    limit: int | None = None   # a view being built follows the base rows up to here only

    def __bool__(self) -> bool:
        return bool(self.after is not None or self.replaced or self.deleted or self.updated)

    def new_rows(self) -> Rows | None:
        """The new base rows (None: none), as a condition on the base's rowid."""
        parts: list[str] = []
        params: list[Any] = []
        if self.after is not None:
            parts.append("_rowid > ?")
            params.append(self.after)
        if self.replaced:
            parts.append("_rowid IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(self.replaced)))
        if not parts:
            return None
        cond = " OR ".join(parts)
        if self.limit is not None:
            cond, params = f"({cond}) AND _rowid <= ?", [*params, self.limit]
        return Rows.matching(cond, params)

    def upto(self, limit: int | None) -> Changes:
        """The changes of base rows a view still being built has done (``limit``)."""
        if limit is None:
            return self
        after = self.after if self.after is not None and self.after < limit else None
        return Changes(after, {r for r in self.replaced if r <= limit},
                       {r for r in self.deleted if r <= limit},
                       {r: c for r, c in self.updated.items() if r <= limit}, limit)


def family(db: Any, table_id: int, settings: Any = None) -> Family | None:
    """The views a write on a table must keep in step (None: it has none)."""
    families, _ = _known(db)
    if table_id not in families:
        families[table_id] = _family(db, table_id, settings)
    return families[table_id]


def _family(db: Any, table_id: int, settings: Any) -> Family | None:
    ids = model.descendants(db, table_id)
    if not ids:
        return None
    table = catalog.load_table_by_id(db, table_id)
    own = {c.col_id for c in table.own_columns}
    fam = Family([], [], set(), [])
    for vid in ids:
        view = model.load(db, catalog.load_table_by_id(db, vid), settings)
        assert view is not None
        if any(c.stored for c in view.meta.media_columns):
            fam.with_files.append(vid)
        needs = (view.key_columns | rows.reads(view)) & own
        if view.base.id == table.id:
            fam.views.append(vid)
            fam.watch |= needs
        elif needs:
            fam.deep.append((vid, view.base.id, needs))
            fam.watch |= needs
    return fam


def _view(op: writes.Operation, view_id: int) -> View:
    """A view as it is now (read once per catalog state)."""
    _, views = _known(op.db)
    view = views.get(view_id)
    if view is None:
        view = model.load(op.db, catalog.load_table_by_id(op.db, view_id), op.settings)
        assert view is not None
        views[view_id] = view
    return view


def _start(db: Any, table_id: int, watch: set[int], only_new: bool) -> int:
    """Temporary triggers logging the table's deleted rows, the rows inserted under a rowid it
    had before (a revert bringing rows back, a replace) and the rows whose watched columns
    change value (names and SQL from ids only; none for an operation that only adds rows,
    ``only_new``); returns the table's largest rowid now: rows above it will be new (new rows
    get rowids above every one before), found without a log."""
    data = f"main.t_{table_id}"
    after = int(db.query(f"SELECT coalesce(max(_rowid), -9223372036854775808) FROM {data}"
                         )[0][0])
    if only_new:
        return after
    log = f"INSERT INTO {_LOG} VALUES ({table_id}"
    ddl = [f"CREATE TEMP TABLE IF NOT EXISTS {_LOG} (tbl INTEGER NOT NULL, row INTEGER NOT "
           "NULL, col INTEGER NOT NULL)",
           f"CREATE TEMP TRIGGER px_vw_d{table_id} AFTER DELETE ON {data} BEGIN {log}, "
           f"OLD._rowid, {DELETED}); END",
           f"CREATE TEMP TRIGGER px_vw_i{table_id} AFTER INSERT ON {data} WHEN NEW._rowid <= "
           f"{after} BEGIN {log}, NEW._rowid, {INSERTED}); END"]
    ddl += [f"CREATE TEMP TRIGGER px_vw_u{table_id}_{col_id} AFTER UPDATE OF c{col_id} ON "
            f"{data} WHEN OLD.c{col_id} IS NOT NEW.c{col_id} BEGIN {log}, NEW._rowid, "
            f"{col_id}); END" for col_id in sorted(watch)]
    db.execute(";".join(ddl))
    return after


def _stop(db: Any, table_id: int, watch: set[int]) -> None:
    db.execute(";".join(
        f"DROP TRIGGER IF EXISTS temp.{trigger}"
        for trigger in [f"px_vw_d{table_id}", f"px_vw_i{table_id}",
                        *(f"px_vw_u{table_id}_{col_id}" for col_id in sorted(watch))]))


def _take(db: Any, table_id: int, after: int, only_new: bool) -> Changes:
    """The changes logged for the table (and the log emptied of them)."""
    found = [] if only_new else db.query(f"SELECT row, col FROM {_LOG} WHERE tbl = ?",
                                         (table_id,))
    if found:
        db.execute(f"DELETE FROM {_LOG} WHERE tbl = ?", (table_id,))
    ch = Changes()
    if db.query(f"SELECT 1 FROM t_{table_id} WHERE _rowid > ? LIMIT 1", (after,)):
        ch.after = after
    gone: set[int] = set()
    back: set[int] = set()
    for row, col in found:
        if col == DELETED:
            gone.add(row)
        elif col == INSERTED:
            back.add(row)
        elif row <= after:  # a new row's values are all new
            ch.updated.setdefault(row, set()).add(col)
    if gone or back:
        there = {r[0] for r in db.query(
            f"SELECT _rowid FROM t_{table_id} WHERE _rowid IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(gone | back)),))}
        # rows gone: their view rows go; rows there again under an old rowid (a replace, a
        # revert): theirs go too, and are made again from what the row holds now
        ch.deleted = gone | (back & there)
        ch.replaced = (gone | back) & there
        for r in ch.deleted:
            ch.updated.pop(r, None)
    return ch


class Keeper:
    """The hook ``writes.Operation`` calls (see the module docstring)."""

    def prepare(self, op: writes.Operation) -> None:
        """Before the write's transaction: the views' media destinations recorded (and their
        operations registered as writing) in brief commits of their own."""
        db = op.db
        fam = family(db, op.meta.id, op.settings)
        for vid in fam.with_files if fam is not None else []:
            meta = catalog.load_table_by_id(db, vid)
            child = op.child(meta, "view")
            for c in meta.media_columns:
                if c.stored:
                    child.prepare(child.output_prefix(c.destination))

    @contextlib.contextmanager
    def maintaining(self, op: writes.Operation) -> Iterator[None]:
        """Inside the write's transaction, around its writes (see the module docstring)."""
        db = op.db
        key = (id(db), op.meta.id)
        if key in _WATCHING or op.kind == "move_media":
            # an outer write on the table sees this one's changes; moving files changes where
            # they are, not what they hold: the views' rows stay as they are
            yield
            return
        fam = family(db, op.meta.id, op.settings)
        if fam is None:
            yield
            return
        _WATCHING.add(key)
        # an insert only adds rows (with rowids above the largest before): nothing to log
        only_new = op.capture == "new_rows"
        try:
            after = _start(db, op.meta.id, fam.watch, only_new)
            # the rows the bases of views further down have now (newer ones are made from
            # the new values)
            marks = {base_id: db.query(f"SELECT coalesce(max(_rowid), 0) FROM t_{base_id}"
                                       )[0][0] for _, base_id, _ in fam.deep}
            try:
                yield
                changes = _take(db, op.meta.id, after, only_new)
            finally:
                if not only_new:
                    _stop(db, op.meta.id, fam.watch)
            if op.kind == "revert":  # a revert to before a column views read was added
                _check_columns(db, op.meta.id, fam)
            if changes:
                apply(op, fam, changes, marks)
        finally:
            _WATCHING.discard(key)


def _check_columns(db: Any, table_id: int, fam: Family) -> None:
    """The table still has every column its views read (a revert may take one away)."""
    table = catalog.load_table_by_id(db, table_id)
    gone = fam.watch - {c.col_id for c in table.own_columns}
    if gone:
        names = model.paths_of(db, fam.views + [v for v, _, _ in fam.deep])
        raise SchemaError(f"this change of {table.path!r} would take away column(s) its "
                          f"views {', '.join(map(repr, names))} read; drop those views first "
                          "(or revert to a version that has the columns)")


def _limit(db: Any, view: View) -> int | None:
    """The last base row a view being built has done (None: it is built)."""
    if view.built:
        return None
    job = next((j for j in catalog.jobs(db, view.id) if j.kind == "create_view"), None)
    return -(2**63) if job is None else job.done_upto


def apply(op: writes.Operation, fam: Family, changes: Changes, marks: dict[int, int]) -> None:
    """The views follow ``changes`` of ``op``'s table, each in a nested operation."""
    db = op.db
    for vid in fam.views:
        view = _view(op, vid)
        step = changes.upto(_limit(db, view))
        if step:
            child = op.child(view.meta, "view")
            with child.committing():
                follow(child, view, step)
    for vid, base_id, needs in fam.deep:
        view = _view(op, vid)
        ch = _through(db, op.meta.id, view, needs, changes, marks[base_id])
        step = ch.upto(_limit(db, view))
        if step:
            child = op.child(view.meta, "view")
            with child.committing():
                follow(child, view, step)


def _through(db: Any, table_id: int, view: View, needs: set[int], changes: Changes,
             mark: int) -> Changes:
    """A change of ``table_id``'s columns as seen by a view further down: the rows of its base
    that come from the changed rows, each with the columns that changed; not those its base
    made in this write (above ``mark``: made from the new values, their rows cascaded)."""
    changed = {r: cols & needs for r, cols in changes.updated.items() if cols & needs}
    out = Changes()
    if not changed:
        return out
    for b, t in db.query(f"SELECT _rowid, _r{table_id} FROM {view.base.sql} WHERE "
                         f"_r{table_id} IN (SELECT value FROM json_each(?)) AND _rowid <= ?",
                         (json.dumps(sorted(changed)), mark)):
        out.updated.setdefault(b, set()).update(changed[t])
    return out


def follow(op: writes.Operation, view: View, ch: Changes) -> None:
    """Inside ``op``'s transaction (an operation on the view): the view follows its base's
    changes ``ch``."""
    keys = view.key_columns
    ch = dataclasses.replace(ch, updated={r: c for r, c in ch.updated.items()
                                          if r not in ch.deleted})
    again = {r for r, cols in ch.updated.items() if cols & keys}
    if view.call is None:
        _follow_filtered(op, view, ch, again)
    else:
        _follow_iterated(op, view, ch, again)


def _recompute_changed(op: writes.Operation, view: View, stay: dict[int, set[int]],
                       rows_of: Any) -> None:
    groups: dict[frozenset[int], list[int]] = {}
    for r, cols in stay.items():
        groups.setdefault(frozenset(cols), []).append(r)
    for changed, ids in groups.items():
        rows.recompute(op, view, set(changed), rows_of(ids))


def _follow_filtered(op: writes.Operation, view: View, ch: Changes, again: set[int]) -> None:
    """A filtered view's rowid is its base row's: rows of deleted base rows go, new base rows
    the where() keeps come, a changed base row comes, goes or stays."""
    db = op.db
    flt = rows.Filter(view)
    if ch.deleted:
        rows.delete_rows(op, view, Rows.ids(sorted(ch.deleted)))
    new = ch.new_rows()
    added: list[int] = []
    if new is not None and not flt.python and not view.computed():
        rows.insert_matching(op, view, flt, new)  # one statement, nothing to compute
    elif new is not None:
        added = flt.passing(db, new, _resolver(op))
        rows.insert_members(op, view, added)
    present: set[int] = set()
    if ch.updated:
        present = {r[0] for r in db.query(*_select_ids(view, sorted(ch.updated)))}
    if again:
        keep = set(flt.passing(db, Rows.ids(sorted(again)), _resolver(op)))
        gone = sorted((present & again) - keep)
        if gone:
            rows.delete_rows(op, view, Rows.ids(gone))
        came = sorted(keep - present)
        rows.insert_members(op, view, came)
        added += came
        present -= set(gone)
    rows.compute_new(op, view, sorted(added))
    _recompute_changed(op, view, {r: c for r, c in ch.updated.items() if r in present},
                       Rows.ids)


def _resolver(op: writes.Operation) -> media.Resolver:
    return media.Resolver(op.settings, op.places.media_folder)


def _select_ids(view: View, ids: list[int]) -> tuple[str, list[Any]]:
    return (f"SELECT _rowid FROM {view.meta.store} WHERE _rowid IN "
            "(SELECT value FROM json_each(?))", [json.dumps(ids)])


def _follow_iterated(op: writes.Operation, view: View, ch: Changes, again: set[int]) -> None:
    """An iterator view: rows of deleted or changed base rows go, new and changed base rows
    have their iterator run; the view's computed columns reading a changed base column are
    recomputed for the rows that stay."""
    kill = ch.deleted | again
    if kill:
        rows.delete_rows(op, view, rows.of_base_rows(kill))
    new = ch.new_rows()
    ids = sorted(again)
    if new is not None:
        cond, params = new.condition()
        ids = sorted(set(ids) | {r[0] for r in op.db.query(
            f"SELECT _rowid FROM {view.base.sql} WHERE {cond}", params)})
    if ids:
        out = rows.Outputs(op, view)
        produced = out.run(out.inputs(op.db, Rows.ids(ids)))
        made = rows.insert_outputs(op, view, produced, out.columns)
        rows.compute_new(op, view, made)
    _recompute_changed(op, view, {b: c for b, c in ch.updated.items() if b not in kill},
                       rows.of_base_rows)
