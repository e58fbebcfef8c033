"""Views (Pixeltable's ``create_view``): tables whose rows come from a base table, filtered by a
``where()`` or made by an iterator (a video's frames, a document's chunks...), queried like a
table (the base's columns included), with computed columns of their own, kept in step with
their base in the same commit as each change to it.

* :mod:`.model`: the definition record and the catalog DDL (data table, SQL view);
* :mod:`.rows`: making a view's rows from base rows (where() in SQL and Python, iterator
  outputs stored once), adding, removing and recomputing them;
* :mod:`.build`: ``create_view`` over existing rows, a resumable long operation;
* :mod:`.sync`: the hook every write operation calls, which keeps views in step.

This module is what the ``Table``/``Connection`` facades delegate to: creating, listing,
describing and dropping views, and the rules for writes and column changes on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import catalog, jobs, queryplan, writes
from ..catalog import ColumnMeta, TableMeta
from ..errors import AlreadyExistsError, NotFoundError, SchemaError, check_choice
from ..exprs import ColumnRef, Expr
from ..functions.iterator_call import IteratorCall
from ..iterators.base import ComponentIterator
from ..results import UpdateStatus
from ..types import ColumnType, as_type
from ..uda import contains_aggregate
from . import build, model, rows, sync
from .model import View

if TYPE_CHECKING:
    from ..places import Places
    from ..query import Source

writes.keep_dependents(sync.Keeper())

__all__ = ["View", "create_view", "list_views"]

_SPEC_KEYS = ("type", "value", "stored", "destination")


# ---- create_view ------------------------------------------------------------------------------
class _Request:
    """A checked create_view call."""

    def __init__(self, base: TableMeta, predicate: Expr | None, call: IteratorCall | None,
                 options: dict[str, Any], plain: dict[str, ColumnType],
                 computed: dict[str, tuple[Expr, bool, Any]]) -> None:
        self.base, self.predicate, self.call, self.options = base, predicate, call, options
        self.plain, self.computed = plain, computed

    def same_as(self, view: View) -> bool:
        """Is ``view`` the view this call defines (so running it again resumes it)?"""
        pred = None if self.predicate is None else json.dumps(self.predicate.to_json(),
                                                              sort_keys=True)
        theirs = None if view.predicate is None else json.dumps(view.predicate.to_json(),
                                                                sort_keys=True)
        return (view.base.id == self.base.id and pred == theirs and self.call == view.call
                and self.options == view.options)

    def complete(self, view: View) -> bool:
        """Built, with every additional column there and complete."""
        own = {c.name: c for c in view.meta.own_columns}
        return view.built and all(n in own and not own[n].pending
                                  for n in [*self.plain, *self.computed])


def _check_where(where: Expr | None, base: TableMeta) -> Expr | None:
    if where is None:
        return None
    if contains_aggregate(where):
        raise SchemaError(f"a view's where({where!r}) cannot call an aggregate")
    if not where.columns():
        raise SchemaError(f"a view's where({where!r}) reads no column of {base.path!r}")
    _storable(where, "where()")
    return where


def _storable(e: Expr, what: str) -> None:
    try:
        json.dumps(e.to_json())
    except (SchemaError, NotImplementedError, TypeError, ValueError) as err:
        raise SchemaError(f"a view's {what} {e!r} cannot be stored in its definition: "
                          f"{err}") from None


def _bases(db: Any, base: TableMeta) -> dict[int, TableMeta]:
    """The tables whose column references mean ``base``'s columns: it and its bases."""
    return {i: base for i in (base.id, *model.ancestors(db, base.id))}


def _bound(db: Any, e: Expr, base: TableMeta, what: str) -> Expr:
    """``e`` with its columns rebound to ``base`` (columns of other tables refused)."""
    allowed = _bases(db, base)
    for node in e.walk():
        if isinstance(node, ColumnRef) and node.table.id not in allowed:
            raise SchemaError(f"{what}: {node!r} belongs to table {node.table.path!r}, not to "
                              f"the view's base {base.path!r}")
    return queryplan.rebind(e, allowed)


def _check_iterator(db: Any, iterator: Any, base: TableMeta) -> IteratorCall | None:
    if iterator is None:
        return None
    if isinstance(iterator, ComponentIterator):
        iterator.close()
        raise SchemaError(f"create_view(iterator=...) takes an iterator applied to a column of "
                          f"the base, e.g. {iterator.short_name()}(t.video); it was given a "
                          "value, on which it runs at once")
    if not isinstance(iterator, IteratorCall):
        raise SchemaError(f"create_view(iterator=...) takes an iterator call such as "
                          f"frame_iterator(t.video, fps=1), got {type(iterator).__name__} "
                          f"{iterator!r}")
    if not iterator.input.columns():
        raise SchemaError(f"create_view(iterator=...): the input of {iterator!r} reads no "
                          f"column of {base.path!r}")
    iterator.iterator.check_installed()
    inp = _bound(db, iterator.input, base, f"the input of {iterator!r}")
    return IteratorCall(iterator.iterator, inp, iterator.args)


def _check_options(places: Places, call: IteratorCall | None, store_media: Any,
                   destination: Any) -> dict[str, Any]:
    if not isinstance(store_media, bool):
        raise SchemaError(f"create_view(store_media=...) takes True or False, got "
                          f"{store_media!r}")
    files = [n for n, t in (call.output_schema.items() if call else []) if t.is_media]
    if not store_media and (call is None or call.name not in model.UNSTORABLE):
        raise SchemaError(
            "store_media=False keeps frame_iterator's frames unstored (decoded again each time "
            "they are read, as Pixeltable does); "
            + ("this view has no iterator" if call is None else
               f"{call.iterator.short_name()}'s outputs are always stored"))
    dest = None
    if destination is not None:
        if not files:
            raise SchemaError("create_view(destination=...) says where an iterator's media "
                              "outputs (frames, tiles, segments) are stored; this view has none "
                              "(a computed column takes its own destination)")
        if not store_media and files == [model.UNSTORABLE.get(call.name if call else "")]:
            raise SchemaError("destination= and store_media=False: unstored frames are not "
                              "written anywhere")
        if not isinstance(destination, str) and not hasattr(destination, "__fspath__"):
            raise SchemaError(f"create_view(destination=...) takes a folder path or a storage "
                              f"URI (e.g. 's3://bucket/frames/'), got "
                              f"{type(destination).__name__} {destination!r}")
        dest = places.stored(places.validate_dest(destination))
    return {"store_media": store_media, "destination": dest}


def _check_additional(db: Any, additional: Any, base: TableMeta, call: IteratorCall | None,
                      check_name: Callable[[str], str]
                      ) -> tuple[dict[str, ColumnType], dict[str, tuple[Expr, bool, Any]]]:
    if additional is None:
        return {}, {}
    if not isinstance(additional, Mapping):
        raise SchemaError(f"additional_columns= takes a dict of {{name: type or expression}}, "
                          f"got {type(additional).__name__}")
    outputs = set(call.columns()) if call is not None else set()
    plain: dict[str, ColumnType] = {}
    computed: dict[str, tuple[Expr, bool, Any]] = {}
    for name, spec in additional.items():
        check_name(name)
        if name in outputs:
            raise SchemaError(f"column {name!r} is made by the view's iterator and also "
                              "declared in additional_columns; rename the declared column")
        if name not in outputs and any(c.name == name for c in base.columns):
            raise AlreadyExistsError(f"column {name!r} already exists in the base table "
                                     f"{base.path!r}; choose another name")
        stored, dest = True, None
        if isinstance(spec, Mapping):
            unknown = [k for k in spec if k not in _SPEC_KEYS]
            if unknown or ("type" in spec) == ("value" in spec):
                raise SchemaError(
                    f"additional column {name!r}: a column spec is a dict with 'type' (a plain "
                    f"column) or 'value' (an expression), and optionally 'stored' and "
                    f"'destination'; got keys {sorted(spec)}")
            stored, dest = spec.get("stored", True), spec.get("destination")
            spec = spec.get("type", spec.get("value"))
        if isinstance(spec, Expr):
            if contains_aggregate(spec):
                raise SchemaError(f"additional column {name!r}: {spec!r} calls an aggregate")
            computed[name] = (_bound(db, spec, base, f"additional column {name!r}"),
                              bool(stored), dest)
            continue
        if stored is not True or dest is not None:
            raise SchemaError(f"additional column {name!r}: 'stored' and 'destination' apply "
                              "to computed columns (a 'value' expression)")
        try:
            plain[name] = as_type(spec)
        except SchemaError as e:
            raise SchemaError(f"additional column {name!r}: {e}") from None
    return plain, computed


def create_view(places: Places, path: str, source: Source, where: Expr | None, *,
                additional_columns: Any = None, iterator: Any = None,
                if_exists: str = "error", store_media: Any = True, destination: Any = None,
                check_name: Callable[[str], str],
                drop: Callable[[str, bool], None]) -> tuple[int, UpdateStatus | None]:
    """See :meth:`pxlite.connection.Connection.create_view`. Returns the view's id and what
    its build did (None when an existing view was returned as it is). ``drop(path, force)``
    drops the table a replace replaces; ``check_name`` validates a new column's name."""
    db = places.db
    catalog.check_path(path, "view")
    check_choice(if_exists, "if_exists", ("error", "ignore", "replace", "replace_force"))
    if source.db is not db:
        raise SchemaError(f"create_view: {source.path!r} belongs to another database than "
                          f"{path!r}; a view lives beside its base")
    base = source.load()
    with db.read():
        source.recheck(base)
        base_view = model.load(db, base)
        if base_view is not None and not base_view.built:
            raise SchemaError(f"{base.path!r} is a view still being built; run its "
                              "create_view again to finish it before making views of it")
        predicate = _check_where(None if where is None else _bound(db, where, base, "where()"),
                                 base)
        call = _check_iterator(db, iterator, base)
        plain, computed = _check_additional(db, additional_columns, base, call, check_name)
    req = _Request(base, predicate, call, _check_options(places, call, store_media, destination),
                   plain, computed)
    found = _existing(places, path, req, if_exists, drop)
    if isinstance(found, int):
        return found, None
    return _make(places, path, req, found)


def _existing(places: Places, path: str, req: _Request, if_exists: str,
              drop: Callable[[str, bool], None]) -> View | int | None:
    """What is at ``path`` already: None (nothing, or it was replaced), a view of this
    definition to resume, or the id of a view to return as it is (if_exists='ignore')."""
    db = places.db
    kind = catalog.path_kind(db, path)
    if kind is None:
        return None
    if kind == "directory":
        raise AlreadyExistsError(f"a directory named {path!r} exists already; choose another "
                                 "path for the view")
    meta = catalog.load_table(db, path)
    if meta.id in _bases(db, req.base):
        raise SchemaError(f"cannot replace {path!r} by a view of it: it is the view's base "
                          "(or one of its bases); choose another path")
    view = model.load(db, meta, places.settings())
    if view is not None and req.same_as(view) and not req.complete(view):
        return view  # the same call again: resume it
    what = "view" if view is not None else "table"
    if if_exists == "ignore":
        if view is None or view.base.id != req.base.id:
            raise AlreadyExistsError(
                f"{path!r} already exists and is not a view of {req.base.path!r} "
                f"(it is a {what}" + ("" if view is None else f" of {view.base.path!r}")
                + "); if_exists='ignore' returns only a view of the same base")
        if not view.built:
            raise SchemaError(f"view {path!r} is being built from another definition; run "
                              "that create_view again to finish it, or pass "
                              "if_exists='replace'")
        return meta.id
    if if_exists == "error":
        pending = "" if view is None or view.built else \
            " (still being built from another definition)"
        raise AlreadyExistsError(f"a {what} named {path!r} exists already{pending}; pass "
                                 "if_exists='ignore' to use it, or 'replace' to replace it")
    drop(path, if_exists == "replace_force")
    return None


def _make(places: Places, path: str, req: _Request, view: View | None
          ) -> tuple[int, UpdateStatus]:
    """Create (or resume) the view, build it, add its computed columns."""
    db = places.db
    resumed = view is not None
    job: catalog.Job | None
    if view is None:
        with db.transaction():
            writes.current_table(db, req.base)  # still there, under the lock
            meta = model.create(db, path, req.base, req.predicate, req.call, req.options,
                                req.plain)
            view = model.load(db, meta, places.settings())
            assert view is not None
            job = build.start(db, view, {})
    else:
        missing = {n: t for n, t in req.plain.items()
                   if all(c.name != n for c in view.meta.own_columns)}
        if missing:
            with db.transaction():
                meta = catalog.load_table_by_id(db, view.id)
                for n, t in missing.items():
                    catalog.add_column(db, meta, n, t)
        view = model.load(db, catalog.load_table_by_id(db, view.id), places.settings())
        assert view is not None
        job = build.claim(db, view) if not view.built else None
    status = build.build(places, view, job, resumed=resumed) if job is not None else \
        UpdateStatus("Added", 0, 0, 0.0, "view row")
    _add_computed(places, view.id, req)
    return view.id, status


def _add_computed(places: Places, view_id: int, req: _Request) -> None:
    """The additional computed columns still missing (a pending one resumes)."""
    db = places.db
    for name, (expr, stored, dest) in req.computed.items():
        meta = catalog.load_table_by_id(db, view_id)
        col = next((c for c in meta.own_columns if c.name == name), None)
        if col is not None and not col.pending:
            continue
        e = queryplan.rebind(expr, {i: meta for i in (req.base.id,
                                                      *model.ancestors(db, req.base.id))})
        jobs.add_computed_column(places, meta, name, e, destination=dest, on_error="abort",
                                 format=None, if_exists="error", stored=stored, executor=None)


# ---- what the facades ask ---------------------------------------------------------------------
def view_of(db: Any, meta: TableMeta) -> View | None:
    """The view ``meta`` is, or None for a table."""
    return None if meta.base_id is None else model.load(db, meta)


def list_views(db: Any, table_id: int, *, recursive: bool = True) -> list[str]:
    """The paths of the views of a table (``recursive``: and of their views...)."""
    ids = model.descendants(db, table_id) if recursive else model.views_of(db, table_id)
    return model.paths_of(db, ids)


def to_drop_first(db: Any, meta: TableMeta, force: bool) -> list[TableMeta]:
    """The views that go before ``meta`` is dropped, views of views first (``force``); without
    ``force`` a table with views is not dropped (Pixeltable's rule): a SchemaError names them."""
    ids = model.descendants(db, meta.id)
    if not ids:
        return []
    if not force:
        names = model.paths_of(db, ids)
        shown = ", ".join(repr(n) for n in names[:5]) + (
            f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise SchemaError(f"cannot drop {meta.path!r}: the following depend on it: {shown}; "
                          "drop them first, or pass force=True to drop them with it")
    return [catalog.load_table_by_id(db, i) for i in reversed(ids)]


def check_writable(db: Any, meta: TableMeta, verb: str) -> None:
    """Rows of a view come from its base: no insert or delete of its own."""
    if meta.base_id is None:
        return
    base = catalog.load_table_by_id(db, meta.base_id)
    if verb == "revert":
        raise SchemaError(f"cannot revert view {meta.path!r}: a view keeps no versions of its "
                          f"own (its rows are made from its base's); revert its base "
                          f"{base.path!r} and the view follows")
    raise SchemaError(f"cannot {verb} view {meta.path!r}: its rows come from its base "
                      f"{base.path!r}; change the rows of {base.path!r} and the view follows")


def check_column(db: Any, meta: TableMeta, col: ColumnMeta, verb: str) -> None:
    """A view's column that is its base's, or that its iterator makes, is not the view's to
    ``verb`` (update, drop, rename, index)."""
    if col.base_table is not None:
        owner = catalog.load_table_by_id(db, col.base_table).path
        raise SchemaError(f"cannot {verb} column {col.name!r} of view {meta.path!r}: it "
                          f"belongs to its base {owner!r}; {verb} it there (the view shows "
                          "its base's columns as they are)")
    view = view_of(db, meta)
    if view is not None and col.col_id in view.outputs.values():
        raise SchemaError(f"cannot {verb} column {col.name!r} of view {meta.path!r}: the "
                          f"view's iterator {view.call!r} makes it")


def check_drop_column(db: Any, meta: TableMeta, col: ColumnMeta) -> None:
    """A column a view of the table reads (its where(), its iterator's input, its computed
    columns) is not dropped while the view is there."""
    users = []
    for vid in model.descendants(db, meta.id):
        view = model.load(db, catalog.load_table_by_id(db, vid))
        if view is not None and col.col_id in view.key_columns | rows.reads(view):
            users.append(view.path)
    if users:
        raise SchemaError(f"cannot drop column {col.name!r} of {meta.path!r}: view(s) "
                          f"{', '.join(repr(u) for u in users)} depend on it; drop them first")


def check_readable(db: Any, meta: TableMeta) -> None:
    """A view still being built is not read (its rows are incomplete)."""
    if meta.base_id is None:
        return
    if db.query("SELECT built FROM px_views WHERE table_id = ?", (meta.id,)) == [(0,)]:
        job = next((j for j in catalog.jobs(db, meta.id) if j.kind == "create_view"), None)
        raise NotFoundError(build.hint(meta.path).format(
            job.progress() if job is not None else "?"))


def made_files(db: Any, meta: TableMeta) -> set[int]:
    """The columns of a view whose files its iterator makes (frames, segments): stored where
    computed files go (its destination= > output_media_dest > the media folder)."""
    view = view_of(db, meta)
    return set() if view is None else {i for i in view.outputs.values()
                                       if view.meta.column_by_id(i).type.is_media}


def bases(db: Any, meta: TableMeta) -> tuple[int, ...]:
    """The ids of a view's bases (their column references mean the view's columns)."""
    return () if meta.base_id is None else tuple(model.ancestors(db, meta.id))


def info(db: Any, meta: TableMeta) -> dict[str, Any]:
    """What get_metadata() and describe() say of a view: its base, where() and iterator."""
    view = view_of(db, meta)
    if view is None:
        return {"kind": "table", "base": None}
    about = view.describe()
    if not view.built:
        job = next((j for j in catalog.jobs(db, meta.id) if j.kind == "create_view"), None)
        about += (f", being built ({job.progress() if job is not None else '?'} base rows "
                  "done: run the same create_view again to finish it)")
    return {"kind": "view", "base": view.base.path,
            "predicate": None if view.predicate is None else repr(view.predicate),
            "iterator": None if view.call is None else repr(view.call),
            "built": view.built, "describe": about}
