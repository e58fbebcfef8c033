"""A view's definition: its ``px_views`` record rebuilt against the tables as they are now, and
the catalog DDL that makes a view (its data table, its SQL view).

A view is a table (``px_tables``, data table ``t_<id>``) whose rows come from its base: one per
base row a ``where()`` keeps (a *filtered* view: the row's rowid is its base row's), or one per
output of an iterator run on each base row (an *iterator* view: ``pos`` and the iterator's
columns). ``_base`` in its data table names the base row. The SQL view ``v_<id>`` joins the
data table to every base up the chain, so the view shows its bases' columns (their ids never
collide with its own: a family of tables draws column ids from one counter, see
``catalog.add_column``) and each base's rowid as ``_r<id>``. Reads use ``v_<id>``
(``TableMeta.sql``), writes ``t_<id>`` (``TableMeta.store``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import catalog, versions
from ..catalog import ColumnMeta, TableMeta
from ..errors import NotFoundError, PxliteError, SchemaError
from ..exprs import Expr, from_json
from ..functions.iterator_call import POS_COLUMN, IteratorCall
from ..udf import trusting

if TYPE_CHECKING:
    from ..db import Database

#: The function that decodes an unstored frame again when it is read (Pixeltable's way):
#: the frame shown at its own time, which is exactly the frame the iterator picked.
EXTRACT_FRAME = "pxlite.functions.video.extract_frame"

#: Iterators whose Image output can be kept unstored (decoded again when read), and how it is
#: found again from the view's row (only frames: a frame's time names it exactly).
UNSTORABLE = {"pxlite.functions.video.frame_iterator": "frame"}


@dataclass
class View:
    """One view as it is now: its metadata (own columns, then its bases'), its base's, and its
    definition bound to the base's columns."""

    meta: TableMeta
    base: TableMeta
    predicate: Expr | None
    call: IteratorCall | None
    #: The iterator's columns: name -> col_id (``pos`` first), as created.
    outputs: dict[str, int]
    options: dict[str, Any]
    built: bool

    @property
    def id(self) -> int:
        return self.meta.id

    @property
    def path(self) -> str:
        return self.meta.path

    @property
    def key_columns(self) -> set[int]:
        """The base's columns whose values decide the view's rows for a base row (what the
        where() reads, the iterator's input): when one changes, the rows are made again."""
        keys: set[int] = set()
        if self.predicate is not None:
            keys |= self.predicate.columns()
        if self.call is not None:
            keys |= self.call.input.columns()
        return keys

    def output_columns(self) -> list[ColumnMeta]:
        """The iterator's columns (``pos`` first), as the view has them now."""
        return [self.meta.column_by_id(i) for i in self.outputs.values()]

    def computed(self, *, pending: bool = False) -> list[ColumnMeta]:
        """The view's own stored computed columns, in order (with the pending ones: columns
        being added, which their own job fills for new rows)."""
        return [c for c in self.meta.own_columns
                if c.is_computed and c.stored and (pending or not c.pending)]

    def describe(self) -> str:
        """``of 'videos' where ... with frame_iterator(video, fps=1.0)``, for describe()."""
        text = f"of {self.base.path!r}"
        if self.predicate is not None:
            text += f" where {self.predicate!r}"
        if self.call is not None:
            text += f" with {self.call!r}"
        return text


def _expr(data: str, table: TableMeta, what: str, settings: Any) -> Expr:
    try:
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            raise TypeError("not an object")
        with trusting(settings):
            return from_json(parsed, table)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, PxliteError) as e:
        raise SchemaError(f"the {what} of view {table.path!r}'s definition cannot be read "
                          f"({type(e).__name__}: {str(e)[:120]}); a damaged or crafted database "
                          "file? Drop the view, or restore the file from a backup") from None


def load(db: Database, meta: TableMeta, settings: Any = None) -> View | None:
    """The view ``meta`` is (None: a table), its definition bound to its base as it is now."""
    rows = db.query("SELECT base_id, predicate, iterator, options, built FROM px_views "
                    "WHERE table_id = ?", (meta.id,))
    if not rows:
        return None
    base_id, pred, it, options, built = rows[0]
    base = catalog.load_table_by_id(db, base_id)
    predicate = None if pred is None else _expr(pred, base, "where()", settings)
    call, outputs = None, {}
    if it is not None:
        try:
            data = json.loads(it)
            with trusting(settings):
                call = IteratorCall.from_json(data["call"], base)
            outputs = {str(k): int(v) for k, v in data["outputs"].items()}
        except NotFoundError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, PxliteError) as e:
            raise SchemaError(f"the iterator of view {meta.path!r} cannot be read "
                              f"({type(e).__name__}: {str(e)[:120]}); a damaged or crafted "
                              "database file? Drop the view") from None
    try:
        opts = json.loads(options)
    except ValueError:
        opts = {}
    return View(meta, base, predicate, call, outputs, opts if isinstance(opts, dict) else {},
                bool(built))


def views_of(db: Database, table_id: int) -> list[int]:
    """The ids of the views made directly of a table, oldest first."""
    return [r[0] for r in db.query("SELECT table_id FROM px_views WHERE base_id = ? "
                                   "ORDER BY table_id", (table_id,))]


def descendants(db: Database, table_id: int) -> list[int]:
    """Every view of a table, of its views and so on: nearest first (a view before the views
    made of it), oldest first at each depth."""
    return [r[0] for r in db.query(
        "WITH RECURSIVE d(id, depth) AS (SELECT table_id, 1 FROM px_views WHERE base_id = ? "
        "UNION ALL SELECT v.table_id, d.depth + 1 FROM px_views v JOIN d ON v.base_id = d.id) "
        "SELECT id FROM d ORDER BY depth, id", (table_id,))]


def ancestors(db: Database, table_id: int) -> list[int]:
    """A view's bases: its base, its base's base... up to the table (empty for a table)."""
    out: list[int] = []
    while True:
        rows = db.query("SELECT base_id FROM px_views WHERE table_id = ?", (table_id,))
        if not rows:
            return out
        table_id = rows[0][0]
        out.append(table_id)


def paths_of(db: Database, ids: list[int]) -> list[str]:
    names = dict(db.query("SELECT id, path FROM px_tables"))
    return [names[i] for i in ids if i in names]


# ---- making one ---------------------------------------------------------------------------------
def create(db: Database, path: str, base: TableMeta, predicate: Expr | None,
           call: IteratorCall | None, options: Mapping[str, Any],
           plain: Mapping[str, Any]) -> TableMeta:
    """Inside the caller's write transaction: the catalog rows, data table and SQL view of a new
    view (not yet built), with the iterator's columns and the ``plain`` (name -> type)
    additional columns. Returns the view's metadata."""
    meta = catalog.create_table(db, path, [])
    db.execute(f"ALTER TABLE {meta.store} ADD COLUMN _base INTEGER NOT NULL DEFAULT 0")
    if call is not None:  # a base row's outputs, found by its rowid
        db.execute(f"CREATE INDEX {meta.store}_base ON {meta.store} (_base)")
    db.execute("INSERT INTO px_views(table_id, base_id, predicate, options) VALUES (?, ?, ?, ?)",
               (meta.id, base.id, None if predicate is None else json.dumps(predicate.to_json()),
                json.dumps(dict(options), sort_keys=True)))
    # A view's rows are its base's, made again from each version of the base: it keeps no
    # versions of its own (a revert of the base brings it back; versions.py).
    versions.created(db, meta, versions.Policy(False, None, None))
    # a view now (ids from its family's counter); its own columns may hide its base's of the
    # same name (an iterator's output 'text' over a base with a column 'text')
    meta = catalog.load_table_by_id(db, meta.id)
    meta = dataclasses.replace(meta, columns=meta.own_columns, hidden=[])
    if call is not None:
        outputs = _iterator_columns(db, meta, call, bool(options.get("store_media", True)),
                                    options.get("destination"))
        db.execute("UPDATE px_views SET iterator = ? WHERE table_id = ?",
                   (json.dumps({"call": call.to_json(), "outputs": outputs}), meta.id))
    for name, ctype in plain.items():
        catalog.add_column(db, meta, name, ctype)
    _create_sql_view(db, meta.id)
    return catalog.load_table_by_id(db, meta.id)


def _iterator_columns(db: Database, meta: TableMeta, call: IteratorCall, store_media: bool,
                      destination: str | None) -> dict[str, int]:
    """The iterator's columns of a new view (``pos`` first), its stored files going to
    ``destination`` (None: the usual precedence); an unstored frame is a column computed
    when read from the frame's time."""
    unstored = None if store_media else UNSTORABLE.get(call.name)
    outputs: dict[str, int] = {}
    for name, ctype in call.columns().items():
        stored = name != unstored
        col = catalog.add_column(db, meta, name, ctype, stored=stored,
                                 destination=destination if ctype.is_media and stored else None)
        outputs[name] = col.col_id
    if unstored is not None:
        expr = {"call": EXTRACT_FRAME, "args": [call.input.to_json()],
                "kwargs": {"timestamp": {"arith": "/", "l": {"col": outputs["pos_msec"]},
                                         "r": {"lit": 1000.0}}}}
        db.execute("UPDATE px_columns SET expr = ? WHERE table_id = ? AND col_id = ?",
                   (json.dumps(expr), meta.id, outputs[unstored]))
    return outputs


def _create_sql_view(db: Database, view_id: int) -> None:
    """``v_<id>``: the view's data table joined to each base up the chain (``t_<base>.*`` is
    expanded when the SQL view is used, so columns added to a base later are there too)."""
    select = [f"t_{view_id}.*"]
    joins = []
    child = view_id
    for base_id in ancestors(db, view_id):
        select += [f"t_{base_id}._rowid AS _r{base_id}", f"t_{base_id}.*"]
        joins.append(f"JOIN t_{base_id} ON t_{base_id}._rowid = t_{child}._base")
        child = base_id
    # Only integer ids in the SQL text.
    db.execute(f"CREATE VIEW v_{view_id} AS SELECT {', '.join(select)} FROM t_{view_id} "
               + " ".join(joins))


def set_built(db: Database, view_id: int) -> None:
    db.execute("UPDATE px_views SET built = 1 WHERE table_id = ?", (view_id,))


__all__ = ["POS_COLUMN", "View", "ancestors", "create", "descendants", "load", "views_of"]
