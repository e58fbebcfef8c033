"""Tables: insert / update / delete, column changes, indexes, and the bookkeeping that keeps files
and rows consistent; queries (select / where / join / group_by / ...) are handed to query.py.

Data-safety rules (DESIGN.md): files are written before the rows that name them are committed;
files a write makes unreferenced are listed in ``px_pending_deletes`` in the same transaction and
deleted only after it commits; an aborted operation deletes the files it created (and only those:
content addressing means identical content may already have been named by an earlier row).
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import (
    catalog,
    display,
    executors,
    history,
    indexing,
    jobs,
    maintenance,
    media,
    plan,
    queryplan,
    storage,
    versions,
    views,
    writes,
)
from .catalog import ColumnMeta, TableMeta
from .compute import Computation, compute_rows
from .errors import (
    AlreadyExistsError,
    NotFoundError,
    PxliteError,
    SchemaError,
    check_choice,
    check_on_error,
)
from .exprs import ColumnRef, Expr, Literal, RowContext, column_expr
from .ingest import INPUT_ERRORS, MediaInput, RowConverter, failed_input
from .io import keys
from .media import Resolver
from .plan import Rows
from .query import Query, Source
from .queryrun import ResultCursor
from .results import ResultSet, UpdateStatus
from .types import as_type
from .uda import contains_aggregate

if TYPE_CHECKING:
    from .connection import Connection


def _converter(col: ColumnMeta, media_input: MediaInput) -> Callable[[Any], Any]:
    """The validating converter from an inserted Python value to the stored SQL value (the
    common types' fast paths live in ingest.RowConverter)."""
    if col.type.is_media:
        return lambda v: media_input(v, col)
    return col.type.to_sql


class Table:
    """A handle on one table. Column references are attributes: ``t.image``, ``t['label']``
    (any column name, ``t.name`` included); the table's own name is ``t._name`` and its path
    ``t._path`` (also in ``t.get_metadata()``)."""

    def __init__(self, conn: Connection, path: str, table_id: int | None = None) -> None:
        self._conn = conn
        self._path = path
        #: The table this handle was made for: a table dropped and created again under the same
        #: path (create_table(..., if_exists='replace')) is another table, not this handle's.
        self._id = table_id if table_id is not None else catalog.load_table(conn.db, path).id

    # ---- schema --------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Two handles on the same table of the same database file are equal (a table that
        replaced it under the same path is another table)."""
        return (isinstance(other, Table) and other._id == self._id
                and other._conn.path == self._conn.path)

    def __hash__(self) -> int:
        return hash((str(self._conn.path), self._id))

    def _meta(self) -> TableMeta:
        # Reloaded per operation: another handle or process may have changed the schema.
        meta = catalog.load_table(self._conn.db, self._path)
        if meta.id != self._id:
            raise NotFoundError(
                f"table {self._path!r} of this handle was dropped, and another table of that "
                f"name made since (create_table(..., if_exists='replace')?); get the new one "
                f"with get_table({self._path!r})")
        return meta

    def _query_source(self) -> Source:
        """What a query needs of this table (see query.Source); a view's bases' columns are
        its own (views.py)."""
        return Source(self._path, self._id, self._conn.db, self._readable, self._recheck,
                      self._conn.settings, self._conn.media_folder, self._conn.resolve,
                      views.bases(self._conn.db, self._meta()))

    def _readable(self) -> TableMeta:
        """The metadata, for a read of the rows: a view still being built is refused."""
        meta = self._meta()
        views.check_readable(self._conn.db, meta)
        return meta

    def _recheck(self, meta: TableMeta) -> None:
        """Inside an operation's transaction (or read snapshot): is the table still the one the
        operation was planned with? Another connection may have dropped it since ``meta`` was
        loaded. Raises NotFoundError naming the table instead of touching another one."""
        writes.current_columns(self._conn.db, meta)

    def _expr(self, e: Any, verb: str | None = None) -> Expr:
        """An argument of a write as an expression of this table's columns (a plain value is a
        literal). ``verb``: a write that evaluates it on each row, where an aggregate (one
        value per group of rows) has no value."""
        if not isinstance(e, Expr):
            return Literal(e)
        if verb is not None and contains_aggregate(e):
            raise SchemaError(f"{verb}: {e!r} calls an aggregate, which has one value per group "
                              "of rows, not one per row; query aggregates with t.select(...)")
        meta = self._meta()
        bases = views.bases(self._conn.db, meta)  # a view's bases' columns are the view's
        for node in e.walk():
            if isinstance(node, ColumnRef):
                if node.table.uid != meta.uid and node.table.id not in bases:
                    raise SchemaError(
                        f"{node!r} belongs to table {node.table.path!r}, not {self._path!r}")
                if not any(c.col_id == node.col.col_id for c in meta.columns):
                    raise NotFoundError(
                        f"column {node.col.name!r} no longer exists in {self._path!r}")
        return queryplan.rebind(e, {b: meta for b in bases}) if bases else e

    def __getattr__(self, name: str) -> ColumnRef:
        if name.startswith("_"):
            raise AttributeError(name)
        meta = self._meta()  # a missing table is a NotFoundError; a missing column is not an
        try:                 # attribute (hasattr() and getattr(t, name, default) work)
            col = meta.column(name)
        except NotFoundError as e:
            raise AttributeError(str(e)) from None
        return self._ref(meta, col)

    def __getitem__(self, name: str) -> ColumnRef:
        meta = self._meta()
        return self._ref(meta, meta.column(name))

    def _ref(self, meta: TableMeta, col: ColumnMeta) -> ColumnRef:
        if col.pending:  # not readable until complete
            raise NotFoundError(jobs.pending_message(self._conn.db, meta, col))
        return ColumnRef(meta, col)

    @property
    def _name(self) -> str:
        """The table's name (the last part of its path); ``t.name`` is a column named name."""
        return self._path.rsplit(".", 1)[-1]

    def get_metadata(self) -> dict[str, Any]:
        """The table's metadata, in Pixeltable's shape: ``name``, ``path``, ``id`` (its
        uid), ``kind``, ``columns`` (name to its type, whether computed and how, stored),
        ``indexes`` (name to kind and columns), ``is_data_versioned``, and its current
        ``version`` (None when created with ``versioned=False``) and when that was made."""
        meta = self._meta()
        cols: dict[str, Any] = {}
        for c in meta.columns:
            if c.pending or c.hidden:
                continue
            computed = None
            if c.expr:
                try:
                    computed = repr(column_expr(meta, c, self._conn.settings()))
                except PxliteError as e:
                    computed = f"(unreadable: {e})"
            cols[c.name] = {"name": c.name, "type_": repr(c.type), "is_computed": c.is_computed,
                            "computed_with": computed, "is_stored": c.stored,
                            "destination": c.destination}
        names = {c.col_id: c.name for c in meta.columns}
        embedding = indexing.metadata(self._conn.db, meta)
        indexes = {i.name: {"name": i.name, "columns": [names[i.col_id]], "index_type": i.kind,
                            "parameters": embedding[i.id].describe() if i.id in embedding
                            else None}
                   for i in indexing.listed(self._conn.db, meta)}
        view = views.info(self._conn.db, meta)
        last = history.get_versions(self._conn.db, meta, 1)  # versions.py (None: unversioned)
        return {"id": meta.uid, "name": self._name, "path": self._path, "kind": view["kind"],
                "base": view["base"], "columns": cols, "indexes": indexes,
                "is_data_versioned": bool(last),
                "version": last[0]["version"] if last else None,
                "version_created": last[0]["created_at"] if last else None}

    def list_views(self, *, recursive: bool = True) -> list[str]:
        """The paths of this table's views (``recursive``: and of their views, and so on)."""
        return views.list_views(self._conn.db, self._meta().id, recursive=recursive)

    def columns(self) -> list[str]:
        """The names of the table's columns (a pending computed column is not one yet)."""
        return [c.name for c in self._meta().columns if not (c.pending or c.hidden)]

    def _describe_rows(self) -> list[display.ColumnInfo]:
        """Per column: name, type, the expression computing it (with an unfinished add's
        progress) and, for a stored media column, where new files go and where its files are."""
        meta = self._meta()
        settings = self._conn.settings()
        rows = []
        for c in meta.columns:
            if c.hidden:  # an index's vectors: shown with the index, not as a column
                continue
            expr = ""
            if c.expr:
                try:
                    expr = repr(column_expr(meta, c, settings))
                except PxliteError as e:
                    expr = f"(unreadable: {e})"
            job = jobs.job_of(self._conn.db, meta, c) if c.pending else None
            pending = None if not c.pending else (
                (job.done_rows, job.total_rows) if job is not None else (0, 0))
            dest = self._default_destination(meta, c, settings) \
                if c.stored and c.type.is_media and c.base_table is None else None
            rows.append(display.ColumnInfo(c.name, repr(c.type), expr, pending, dest, not c.stored))
        return rows

    def _default_destination(self, meta: TableMeta, col: ColumnMeta,
                             settings: Any) -> display.Destination:
        """Where a media column's new files go now and why (its own ``destination=``, a global
        setting and its source, or the database's media folder), and the folders its existing
        files are in when that is not the same one (a setting changed since they were
        written: their files stay where they are)."""
        places, db = self._conn.places, self._conn.db
        made = col.is_computed or col.col_id in views.made_files(db, meta)  # frames too
        key = "output_media_dest" if made else "input_media_dest"
        note = "" if made or settings.get(key) else \
            "inserted paths and URLs stay where they are"
        if col.destination:
            uri, why = places.resolve(col.destination), "set by destination="
        elif settings.get(key):
            try:
                uri = places.canonical_dest(settings.get(key))
            except PxliteError:
                uri = str(settings.get(key))
            why = f"{key} from {settings.sources.get(key, 'default')}"
        else:
            uri, why = places.media_folder.prefix, "default: the media folder"
        with db.read():
            existing = tuple(dict.fromkeys(
                places.resolve(loc.prefix) for loc in places.locations(meta.uids or (meta.uid,))
                if db.query(*plan.any_file_under(meta, col, loc.folder(col.col_id)))))
        return display.Destination(uri, why, () if existing in ((), (uri,)) else existing, note)

    def describe(self) -> None:
        """Show the schema: name, type, computed-from expression (with the progress of a
        pending column), where a media column's files go (a default shows where it resolves
        to now, and why) and where its existing files are. A notebook shows it as a table
        (``_repr_html_``); elsewhere it is printed as ``repr(t)``. Returns nothing, so a REPL
        shows it once."""
        display.show(self)

    def __repr__(self) -> str:
        try:
            return self._description().to_text()
        except NotFoundError:
            return f"<table {self._path!r} (dropped)>"

    def _description(self) -> display.TableDescription:
        db = self._conn.db
        with db.read():  # a view being built shows its progress and the rows it has so far
            meta = self._meta()
            rows = db.query(*plan.count(meta))[0][0]
            view = views.info(db, meta)
        return display.TableDescription(self._path, rows, tuple(self._describe_rows()),
                                        view.get("describe"))

    def _repr_html_(self) -> str:
        """The notebook form of :meth:`describe`: an HTML table, long URLs cut where they say
        least (the whole URL on hover)."""
        try:
            return self._description()._repr_html_()
        except NotFoundError:
            return f"<p>table {html.escape(repr(self._path))} (dropped)</p>"

    def add_column(self, *, if_exists: str = "error", **columns: Any) -> UpdateStatus:
        """Add plain columns (``t.add_column(label=pxl.String)``); existing rows get None."""
        t0 = time.perf_counter()
        check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
        db = self._conn.db
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            meta = op.meta
            for name, ctype in columns.items():
                ctype = as_type(ctype)
                if any(c.name == name for c in meta.columns):
                    if jobs.keep_existing(meta, name, if_exists):
                        continue
                    old = meta.column(name)  # replaced in this transaction: all or nothing
                    if jobs.dependents(meta, old.col_id):
                        raise SchemaError(
                            f"cannot replace column {name!r} of {self._path!r}: computed "
                            "columns depend on it; drop them first")
                    op.drop_column(old)
                check_column_name(name)
                if not ctype.nullable and db.query(f"SELECT 1 FROM {meta.sql} LIMIT 1"):
                    raise SchemaError(
                        f"cannot add Required column {name!r} to {self._path!r}: its existing rows "
                        "would have no value; add it as nullable, fill it with update(), or "
                        "start empty"
                    )
                catalog.add_column(db, meta, name, ctype)
        return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")

    def _name_of(self, column: str | ColumnRef) -> str:
        """A column given by name or by reference (``t.rot``): its name."""
        if isinstance(column, ColumnRef):
            if column.table.uid != self._meta().uid:
                raise SchemaError(f"{column!r} belongs to table {column.table.path!r}, not "
                                  f"{self._path!r}")
            return column.col.name
        if not isinstance(column, str):
            raise SchemaError(f"expected a column name or a column of {self._path!r} (e.g. "
                              f"t.image), got {type(column).__name__} {column!r}")
        return column

    def drop_column(self, name: str | ColumnRef) -> None:
        """Drop a column (refused while a computed column depends on it); the files pxlite
        wrote for it go too once no kept version names the column (``revert`` brings it
        back until then), unless another column or table still names them."""
        name = self._name_of(name)
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            meta, db = op.meta, self._conn.db
            col = meta.column(name)
            views.check_column(db, meta, col, "drop")
            if col.pending:  # an unfinished add_computed_column: its job goes with it
                jobs.drop_pending(op, col)
                return
            views.check_drop_column(db, meta, col)
            indexing.drop_indexes_of(op, col)  # its embedding indexes go with it
            deps = jobs.dependents(meta, col.col_id)
            if deps:
                raise SchemaError(
                    f"cannot drop column {name!r} of {self._path!r}: computed column(s) "
                    f"{', '.join(repr(d.name) for d in deps)} depend on it; drop them first"
                )
            jobs.end_jobs_of_column(db, meta, col)  # a recompute of it cannot resume now
            op.drop_column(col)  # released after the column is gone: what others name stays

    def rename_column(self, old: str | ColumnRef, new: str) -> None:
        """Rename a column; computed columns refer to it by id and keep working."""
        old = self._name_of(old)
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            col = op.meta.column(old)
            views.check_column(self._conn.db, op.meta, col, "rename")
            catalog.rename_column(self._conn.db, op.meta, col, check_column_name(new))

    # ---- versions (the undo log: versions.py; what a user asks of it: history.py) -------------
    def get_versions(self, n: int | None = None) -> list[versions.VersionMetadata]:
        """The kept versions of the table, most recent first (at most ``n``): each a dict of
        version, created_at, kind, change_type, inserts, updates, deletes, schema_change and
        reverted_to."""
        return history.get_versions(self._conn.db, self._meta(), n)

    def history(self, n: int | None = None) -> Any:
        """:meth:`get_versions` as a readable table (a DataFrame when pandas is installed)."""
        return history.history_table(self._conn.db, self._meta(), n)

    def revert(self, to: int | None = None) -> UpdateStatus:
        """Undo changes. ``revert()`` goes back to the version before the latest change (again:
        the one before that, as Pixeltable's); ``revert(to=N)`` to any kept version, forward
        too. One transaction, recorded as a new version (so it can be reverted); rows, columns
        and the files they name come back as they were. A view keeps no versions of its own:
        revert its base and it follows."""
        meta = self._meta()
        views.check_writable(self._conn.db, meta, "revert")
        return history.revert(self._conn.places, meta, to)

    def set_version_retention(self, days: float | None = None, count: int | None = None) -> None:
        """Keep this table's versions ``days`` days and/or at most ``count`` of them (None: the
        database's version_retention_days / version_retention_count); prunes at once."""
        history.set_retention(self._conn.places, self._meta(), days, count)

    # ---- queries (query.py) -------------------------------------------------------------------
    def _query(self) -> Query:
        return Query(self._query_source())

    def select(self, *exprs: Any, **named: Any) -> Query:
        """A query with these outputs (see :meth:`Query.select`)."""
        return self._query().select(*exprs, **named)

    def where(self, pred: Expr) -> Query:
        """A query of the rows where ``pred`` holds (see :meth:`Query.where`)."""
        return self._query().where(pred)

    def join(self, other: Table, on: Any = None, how: str = "inner") -> Query:
        """This table joined with another (see :meth:`Query.join`)."""
        return self._query().join(other, on=on, how=how)

    def group_by(self, *exprs: Any) -> Query:
        """The rows grouped by these expressions (see :meth:`Query.group_by`)."""
        return self._query().group_by(*exprs)

    def distinct(self) -> Query:
        """The distinct rows (see :meth:`Query.distinct`)."""
        return self._query().distinct()

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """The rows sorted (see :meth:`Query.order_by`)."""
        return self._query().order_by(*exprs, asc=asc)

    def limit(self, n: int, offset: int | None = None) -> Query:
        """At most ``n`` rows after ``offset`` (see :meth:`Query.limit`)."""
        return self._query().limit(n, offset=offset)

    def sample(self, n: int | None = None, n_per_stratum: int | None = None,
               fraction: float | None = None, seed: int | None = None,
               stratify_by: Any = None) -> Query:
        """A shuffled, seeded sample of the rows (see :meth:`Query.sample`)."""
        return self._query().sample(n=n, n_per_stratum=n_per_stratum, fraction=fraction,
                                    seed=seed, stratify_by=stratify_by)

    def collect(self) -> ResultSet:
        """Every row, every column."""
        return self._query().collect()

    def cursor(self) -> ResultCursor:
        """Every row, one at a time (see :class:`pxlite.query.ResultCursor`)."""
        return self._query().cursor()

    def count(self) -> int:
        """Number of rows."""
        with self._conn.db.read():  # the metadata and the count from one snapshot
            meta = self._readable()
            return self._conn.db.query(*plan.count(meta))[0][0]

    def head(self, n: int = 10) -> ResultSet:
        """The first ``n`` rows inserted."""
        return self._query().head(n)

    def show(self, n: int = 20) -> ResultSet:
        """The first ``n`` rows, to look at."""
        return self._query().show(n)

    def tail(self, n: int = 10) -> ResultSet:
        """The last ``n`` rows inserted, oldest first."""
        return self._query().tail(n)

    # ---- indexes -------------------------------------------------------------------------------
    def add_btree_index(self, column: str | ColumnRef, *, idx_name: str | None = None,
                        if_exists: str = "error") -> None:
        """Index a column (Pixeltable's ``add_btree_index``), so ``where`` comparisons and
        ``order_by`` on it read the index instead of every row; kept current by SQLite on
        every write. Any stored column of a scalar type but Bool and Json, or a media column
        that is not computed (indexed by file reference). One B-tree index per column."""
        check_choice(if_exists, "if_exists", ("error", "ignore"))
        name = self._name_of(column)
        if idx_name is not None:
            catalog.check_name(idx_name, "index")
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            meta, db = op.meta, self._conn.db
            col = meta.column(name)
            views.check_column(db, meta, col, "index")
            existing = catalog.indexes(db, meta)
            for idx in existing:
                if idx.col_id == col.col_id and idx.kind == "btree":
                    if if_exists == "ignore":
                        return
                    raise AlreadyExistsError(
                        f"column {name!r} of {self._path!r} has a B-tree index already "
                        f"({idx.name!r}); pass if_exists='ignore', or drop it first with "
                        f"t.drop_index(idx_name={idx.name!r})")
                if idx.name == idx_name:
                    owner = next(c.name for c in meta.columns if c.col_id == idx.col_id)
                    raise AlreadyExistsError(
                        f"an index named {idx_name!r} already exists on column {owner!r} of "
                        f"{self._path!r}; choose another idx_name")
            _check_indexable(self._path, col)
            if idx_name is None:
                taken = {i.name for i in existing}
                idx_name = next(f"idx{k}" for k in itertools.count() if f"idx{k}" not in taken)
            catalog.add_index(db, meta, col, idx_name, "btree")

    def drop_index(self, *, column: str | ColumnRef | None = None, idx_name: str | None = None,
                   if_not_exists: str = "error") -> None:
        """Drop an index, given by its column or by its name (Pixeltable's ``drop_index``)."""
        check_choice(if_not_exists, "if_not_exists", ("error", "ignore"))
        if (column is None) == (idx_name is None):
            raise SchemaError("drop_index() takes either column= or idx_name=, not both or "
                              "neither")
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            col = None if column is None else op.meta.column(self._name_of(column))
            indexing.drop_any(op, col, idx_name, if_not_exists)

    def add_embedding_index(self, column: str | ColumnRef, *, idx_name: str | None = None,
                            embedding: Any = None, string_embed: Any = None,
                            image_embed: Any = None, metric: str = "cosine",
                            precision: str = "fp16", if_exists: str = "error",
                            executor: Any = None) -> None:
        """Add an embedding index on a String, Image or Array column (Pixeltable's
        ``add_embedding_index``), for ``col.similarity(...)`` searches.

        ``embedding`` (or ``string_embed`` / ``image_embed``) is a ``@pxl.udf`` taking one
        string or image and returning a 1-dimensional float Array (``-> pxl.Array[(512,),
        pxl.Float]``); an Array column of precomputed vectors needs none (a string_embed=
        lets it take string queries). ``metric``: 'cosine', 'ip' (inner product) or 'l2';
        ``precision``: 'fp16' or 'fp32', how the vectors are stored. ``if_exists``: 'error',
        'ignore' or 'replace' an index of that name (or, without ``idx_name``, an identical
        one on the column).

        The vectors live in the database file, beside their rows: computed for the existing
        rows as a long operation (brief commits, on ``executor`` like add_computed_column,
        resumable by running the same call again), then kept current in the same transaction
        as every insert, update and delete. Searches are exact (see the README's "Similarity
        search")."""
        with writes.operation(self._conn.places, self._meta(), recheck=self._recheck) as op:
            col = op.meta.column(self._name_of(column))
            if col.pending or col.hidden:
                raise SchemaError(f"cannot index column {col.name!r} of {self._path!r}: it is "
                                  "not a complete column of the table")
        indexing.add_embedding_index(
            self._conn.places, self._meta(), col, idx_name=idx_name, embedding=embedding,
            string_embed=string_embed, image_embed=image_embed, metric=metric,
            precision=precision, if_exists=if_exists, executor=executor)

    def drop_embedding_index(self, *, column: str | ColumnRef | None = None,
                             idx_name: str | None = None, if_not_exists: str = "error") -> None:
        """Drop an embedding index, given by its column (which must have only one) or by its
        name (Pixeltable's ``drop_embedding_index``); its vectors go with it."""
        meta = self._meta()
        col = None if column is None else meta.column(self._name_of(column))
        indexing.drop_embedding_index(self._conn.places, meta, column=col, idx_name=idx_name,
                                      if_not_exists=if_not_exists)

    # ---- writes --------------------------------------------------------------------------------
    def insert(self, rows: Iterable[dict[str, Any]] | None = None, /, *,
               on_error: str = "abort", executor: Any = None, **values: Any) -> UpdateStatus:
        """Insert rows (a list of dicts, or one row as keyword arguments).

        ``on_error='abort'``: any bad cell aborts the call; nothing is written and files already
        stored for it are removed. ``'ignore'``: bad cells become None and keep their error
        (``t.col.errortype`` / ``t.col.errormsg``). ``executor`` says where the new rows'
        computed cells are computed (see :meth:`add_computed_column`).
        """
        t0 = time.perf_counter()
        check_on_error(on_error)
        if executor is not None:
            executors.check_executor(executor)  # also where no computed column would use it
        if rows is None:
            if not values:
                raise SchemaError("insert() needs rows: a list of dicts, or column=value arguments")
            rows = [values]
        elif values:
            raise SchemaError("pass either a list of rows or column=value arguments, not both")
        elif isinstance(rows, dict):
            rows = [rows]
        meta = self._meta()
        views.check_writable(self._conn.db, meta, "insert into")
        inputs = [c for c in meta.columns if not c.is_computed]
        computed = [c for c in meta.columns if c.is_computed and c.stored]
        known = {c.name for c in inputs}
        db = self._conn.db

        def check_row(i: int, row: Any) -> None:
            if not isinstance(row, dict):
                raise SchemaError(f"row {i}: expected a dict of column values, got "
                                  f"{type(row).__name__}")
            if not row.keys() <= known:
                _bad_keys(self._path, i, row.keys() - known, {c.name for c in computed}, known)

        insert_sql = plan.insert(meta, inputs)
        next_rowid = plan.next_rowid(meta)
        computed_errors = 0
        with writes.Operation(self._conn.places, meta, kind="insert", capture="new_rows") as op:
            op.prepare_for(meta.columns)
            media_input = MediaInput(op)
            conv = RowConverter(self._path, inputs, [_converter(c, media_input) for c in inputs],
                                on_error, check_row, frozenset(known))
            if not computed and not any(c.type.is_media for c in inputs):
                # Plain values: streamed straight into one brief transaction.
                with op.committing(self._recheck):
                    base = db.query(next_rowid)[0][0]
                    _insert_keyed(db, meta, inputs, insert_sql, conv.rows(rows, base))
                    last = db.query(f"SELECT max(_rowid) FROM {meta.sql}")[0][0]
                    count = 0 if last is None or last < base else last - base + 1
                    for rowid, c, et, em in conv.errors:
                        db.execute(plan.set_cell_errors(meta, c), (et, em, rowid))
                    late = _compute_late_columns(op, [], Rows.matching(
                        "_rowid >= ?", [base]), on_error) if count else 0
                return UpdateStatus("Inserted", count, len(conv.errors) + late,
                                    time.perf_counter() - t0)
            # Media files and computed cells are made before the write lock is taken; then one
            # brief commit makes the rows appear, all together with their computed cells.
            with db.read():
                self._recheck(meta)
                base = db.query(next_rowid)[0][0]
            params = [list(p) for p in conv.rows(rows, base)]
            cells: list[list[Any]] = []
            if computed and params:
                bad: dict[int, dict[int, tuple[Any, Any]]] = {}
                for rowid, c, et, em in conv.errors:  # inputs that failed (on_error='ignore')
                    bad.setdefault(rowid, {})[c.col_id] = (et, em)
                media_inputs = [(1 + j, c) for j, c in enumerate(inputs) if c.type.is_media]

                def local_input() -> str | None:
                    for p in params:
                        for j, c in media_inputs:
                            if isinstance(p[j], str) and p[j].startswith(("file:", "media:")):
                                return f"column {c.name!r} of row {p[0] - base + 1}"
                    return None

                with jobs.pool_for(self._conn.places, executor, meta, computed,
                                   local_input) as pool, \
                        Computation(op, computed, on_error=on_error, pool=pool) as comp:
                    read = [(1 + j, c.col_id) for j, c in enumerate(inputs)
                            if c in comp.inputs]  # what the computed columns read
                    cells = comp.compute([(p[0], {cid: p[j] for j, cid in read},
                                           bad.get(p[0], {}))
                                          for p in params])
                    computed_errors, computed = comp.errors, comp.cols
            with op.committing(self._recheck):
                shift = db.query(next_rowid)[0][0] - base  # rows another writer added meanwhile
                for p in params:
                    p[0] += shift
                if cells:
                    _insert_keyed(db, meta, inputs, plan.insert(meta, inputs, computed),
                                  ([*p, *c] for p, c in zip(params, cells, strict=True)))
                else:
                    _insert_keyed(db, meta, inputs, insert_sql, params)
                for rowid, c, et, em in conv.errors:
                    db.execute(plan.set_cell_errors(meta, c), (et, em, rowid + shift))
                if params:
                    computed_errors += _compute_late_columns(
                        op, computed, Rows.ids(p[0] for p in params), on_error)
        return UpdateStatus("Inserted", len(params), len(conv.errors) + computed_errors,
                            time.perf_counter() - t0)

    def batch_update(self, rows: Iterable[dict[str, Any]], *, if_not_exists: str = "error",
                     on_error: str = "abort") -> UpdateStatus:
        """Update rows by primary key (Pixeltable's): each dict holds the key columns and the
        columns to set; the computed columns depending on them are recomputed. A key not in
        the table is an error, skipped or inserted: ``if_not_exists='error'|'ignore'|'insert'``.
        All or nothing, in one write (see :func:`pxlite.io.keys.batch_update`)."""
        views.check_writable(self._conn.db, self._meta(), "batch_update")
        return keys.batch_update(
            keys.KeyedWrite(self._conn.places, self._path,
                            lambda meta, ids: [d for d in jobs.dependents(meta, *ids)
                                               if d.stored],
                            self._recheck, lambda new, oe: self.insert(new, on_error=oe)),
            rows, if_not_exists=if_not_exists, on_error=on_error)

    def _condition(self, where: Any, verb: str) -> Expr | None:
        """Validate the ``where=`` of a write: None, or a boolean expression over this table's
        columns. Anything else (``True``, ``1 == 1``, a string, an expression that reads no
        column) is refused: it would silently select every row or none."""
        if where is None:
            return None
        if not isinstance(where, Expr):
            raise SchemaError(
                f"{verb}(where=...) takes a condition on the columns of {self._path!r}, e.g. "
                f"where=t.label == 'x'; got {type(where).__name__} {where!r}"
                + (f". To {verb} every row, call {verb}() without where="
                   if verb == "delete" else ""))
        where = self._expr(where, f"{verb}(where=...)")
        if where.type.name != "Bool" or not where.columns():
            raise SchemaError(
                f"{verb}(where=...) takes a condition on the columns of {self._path!r} (e.g. "
                f"t.n > 1), got {where!r}, which "
                + ("reads no column" if where.type.name == "Bool" else
                   f"is a {where.type.name} value, not a condition"))
        return where

    def _rows(self, meta: TableMeta, where: Expr | None) -> Rows:
        """The rows ``where`` selects: its SQL when SQLite can evaluate it, else the rowids a
        query evaluating it in Python finds."""
        if where is None:
            return Rows.all()
        where = self._expr(where)
        s = where.sql()
        if s is not None:
            return Rows.matching(*s)
        return Rows.ids(self._query().where(where).rowids())

    def update(self, values: dict[str, Any], where: Expr | None = None, *,
               on_error: str = "abort") -> UpdateStatus:
        """Set columns to values or expressions of the row (``{'n': t.n + 1}``) where ``where``
        (a condition on the table's columns; all rows without it).

        Setting a media column to another media column of the row (``{'image': t.alt}``) copies
        the reference itself: the file is neither decoded nor re-encoded."""
        t0 = time.perf_counter()
        check_on_error(on_error)
        if not isinstance(values, dict) or not values:
            raise SchemaError("update() takes a dict of {column name: new value or expression}")
        where = self._condition(where, "update")
        meta = self._meta()
        # A new value is an expression of the row, or a constant (a media value such as a path
        # or PIL image is a constant too, stored the way insert() would store it).
        targets: list[tuple[ColumnMeta, Any]] = []
        for name, v in values.items():
            col = meta.column(name)
            views.check_column(self._conn.db, meta, col, "update")
            if col.is_computed:
                raise SchemaError(f"column {name!r} of {self._path!r} is computed; update its "
                                  "inputs or use recompute_columns()")
            targets.append((col, self._expr(v, "update()") if isinstance(v, Expr) else v))
        dependents = [d for d in jobs.dependents(meta, *(c.col_id for c, _ in targets)) if d.stored]
        db = self._conn.db
        errors = 0
        with writes.operation(self._conn.places, meta, recheck=self._recheck, kind="update",
                              columns=[c for c, _ in targets] + dependents,
                              capture="statements") as op:
            # Under the lock: a computed column another connection completed since ``meta``
            # was loaded depends on these inputs too.
            current = writes.current_columns(db, meta)
            late = [d for d in jobs.dependents(current, *(c.col_id for c, _ in targets))
                    if d.stored and d.col_id not in {x.col_id for x in dependents}]
            if late:
                op.meta = current
                op.prepare_for(late)
                dependents += late
            rows = self._rows(meta, where)
            needed = set().union(*(e.columns() for _, e in targets if isinstance(e, Expr))) | {
                c.col_id for c, _ in targets if c.type.is_media}
            cols = [c for c in meta.columns if c.col_id in needed]
            resolver = Resolver(op.settings, self._conn.media_folder)
            media_input = MediaInput(op)
            replaced: dict[int, list[str]] = {}

            def cells(raw: tuple) -> list[Any]:
                """One matched row's new cells (value, errortype, errormsg per target), then
                its rowid: the parameters of its UPDATE."""
                nonlocal errors
                rowid = raw[0]
                rc = RowContext({c.col_id: raw[1 + i] for i, c in enumerate(cols)}, None, resolver)
                params: list[Any] = []
                for c, e in targets:
                    try:
                        if (c.type.is_media and isinstance(e, ColumnRef) and e.type.is_media
                                and e.col.type.kind == c.type.kind):  # type: ignore[attr-defined]
                            sv = rc.raw.get(e.col.col_id)  # the reference itself, not a re-encode
                        else:
                            v = e.eval(rc) if isinstance(e, Expr) else e
                            sv = None if v is None else (
                                media_input(v, c) if c.type.is_media else c.type.to_sql(v))
                        if sv is None and not c.type.nullable:
                            raise SchemaError(f"column {c.name!r} is Required")
                        params += [sv, None, None]
                    except INPUT_ERRORS as err:
                        params += failed_input(on_error, err, self._path, rowid, c)
                        errors += 1
                    if c.type.is_media and rc.raw.get(c.col_id) not in (None, params[-3]):
                        replaced.setdefault(c.col_id, []).append(rc.raw[c.col_id])
                return [*params, rowid]

            # One query for all matched rows (not one SELECT per row), read and updated
            # UPDATE_ROWS at a time, so memory stays bounded whatever the number of rows; on a
            # versioned table the pass that finds them copies their old images too, and they
            # are read from that copy. The query reads in rowid order (through a sorter holding
            # every row first, when SQLite reads another index) and a page is updated once the
            # query has read past it: an updated row's entries keep its rowid, so whichever
            # rowid-led index the query reads (the table, a scan index) meets none again.
            found = versions.capture_found(db, meta, rows, cols)
            matched, rowids = 0, []  # (the rowids: only for the dependents to recompute)
            cursor = db.execute(*(found or plan.select(meta, cols, rows)))
            with contextlib.closing(db.pages(cursor, UPDATE_ROWS, ahead=True)) as pages:
                for page in pages:
                    batch = [cells(raw) for raw in page]
                    ids = [raw[0] for raw in page]
                    if found is None:
                        versions.capture_rows(db, meta, Rows.ids(ids))  # their old images
                    _update_keyed(db, meta, [c for c, _ in targets], batch)
                    matched += len(ids)
                    if dependents:
                        rowids += ids
            for col_id, uris in replaced.items():
                op.release(col_id, uris)
            if dependents and rowids:
                errors += compute_rows(op, dependents, Rows.ids(rowids), on_error=on_error,
                                       release_old=True).num_errors
        return UpdateStatus("Updated", matched, errors, time.perf_counter() - t0)

    def delete(self, where: Expr | None = None) -> UpdateStatus:
        """Delete the rows ``where`` selects (a condition on the table's columns; every row
        when called without it). Files pxlite wrote for them are removed once no kept version
        names them (at once for a table with ``versioned=False``), never a user's referenced
        originals nor a file another row still names."""
        t0 = time.perf_counter()
        where = self._condition(where, "delete")
        meta = self._meta()
        db = self._conn.db
        views.check_writable(db, meta, "delete from")
        with writes.operation(self._conn.places, meta, recheck=self._recheck,
                              kind="delete", capture="statements") as op:
            rows = self._rows(meta, where)
            uris = {c.col_id: writes.named_files(db, meta, c, rows) for c in meta.media_columns}
            n = versions.delete_rows(db, meta, rows)  # (their old images kept for versions)
            for col_id, lst in uris.items():
                op.release(col_id, lst)
        return UpdateStatus("Deleted", n, 0, time.perf_counter() - t0)

    def prefetch(self, *columns: str | ColumnRef, where: Expr | None = None,
                 refresh: bool = False) -> int:
        """Download the remote files of media columns (all of them without names) into the
        cache, so the table's media reads work offline; returns the number of files fetched
        or already cached. The cache must be large enough to hold them (see file_cache_size_g).
        ``refresh=True`` re-downloads files whose remote version changed since they were cached."""
        from concurrent.futures import ThreadPoolExecutor

        from .cache import get_cache  # here, not at import: it loads diskcache

        meta = self._meta()
        cols = [meta.column(self._name_of(n)) for n in columns] if columns else \
            meta.media_columns
        for c in cols:
            if not c.type.is_media:
                raise SchemaError(f"column {c.name!r} of {self._path!r} holds {c.type.name} "
                                  "values, not files; prefetch() takes media columns")
        settings = self._conn.settings()
        rows = self._rows(meta, self._condition(where, "prefetch"))
        uris: set[str] = set()
        resolve = self._conn.resolve
        for c in cols:
            found = self._conn.db.query(*plan.distinct_values(meta, c, rows))
            uris |= {u for u in (resolve(r[0]) for r in found if isinstance(r[0], str))
                     if not storage.is_local(u)}
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="pxlite-prefetch") as pool, \
                get_cache(settings).operation():
            return sum(1 for _ in pool.map(
                lambda u: media.fetch_local(u, settings, refresh=refresh), sorted(uris)))

    def move_media(self, column: str | ColumnRef, destination: str) -> UpdateStatus:
        """Move the files pxlite wrote for ``column`` to ``destination`` (see
        :func:`pxlite.maintenance.move_media`)."""
        return maintenance.move_media(self._conn.places, self._meta(), self._name_of(column),
                                      destination)

    # ---- computed columns (resumable jobs: jobs.py; the computing: compute.py) ------------------
    def add_computed_column(self, *, destination: str | None = None, on_error: str = "abort",
                            format: str | None = None, if_exists: str = "error",
                            stored: bool = True, executor: Any = None,
                            **column: Expr) -> UpdateStatus:
        """Add a column computed from others, and compute it for every existing row.

        Image results are stored as files in ``destination`` (else the global
        ``output_media_dest``, else the database's media folder): JPEG quality 90, or PNG when
        the image has alpha, unless ``format`` says otherwise.

        The rows are computed outside the write lock and committed in brief batches, so other
        connections and processes keep reading and writing. Until every row is done the column
        is *pending*: queries do not show it and ``describe()`` shows its progress. Interrupted
        (an error, Ctrl-C, a killed process), it stays pending: running the same call again
        resumes with the missing rows. ``on_error='abort'`` leaves nothing behind (cells,
        files, the column). ``if_exists='replace'`` computes the new column beside the old one,
        which keeps serving until the new one takes its place.

        ``stored=False``: nothing is computed or written now (no destination, no files); the
        column is computed each time a query reads it.

        ``executor``: where the cells are computed. ``'threads'`` (the default, or the
        ``executor`` setting): this process, a thread per core. ``'processes'``: worker
        processes on this machine, for UDFs in plain Python (they hold the GIL). A Dask
        ``distributed.Client`` or scheduler address (``'tcp://host:8786'``): the cluster's
        workers compute and store the files; this process commits. Workers use their own
        credentials; local inputs or destinations with workers on other machines are refused.
        """
        views.check_readable(self._conn.db, self._meta())  # a view being built: finish it
        if not column and isinstance(executor, Expr):
            check_column_name("executor")  # the option took the expression meant for a column
        if len(column) != 1:
            raise SchemaError("add_computed_column() takes exactly one name=expression, e.g. "
                              "add_computed_column(rot=t.image.rotate(90))")
        ((name, expr),) = column.items()
        check_column_name(name)
        if not isinstance(expr, Expr):
            raise SchemaError(f"column {name!r}: expected an expression of the table's columns "
                              f"(e.g. t.image.rotate(90)), got {type(expr).__name__} {expr!r}")
        expr = self._expr(expr)
        return jobs.add_computed_column(
            self._conn.places, self._meta(), name, expr, destination=destination,
            on_error=on_error, format=format, if_exists=if_exists, stored=stored,
            executor=executor)

    def recompute_columns(self, *columns: str | ColumnRef, where: Expr | None = None,
                          errors_only: bool = False, executor: Any = None) -> UpdateStatus:
        """Recompute computed columns (after a UDF changed, or for the rows that errored);
        the columns computed from them are recomputed too.

        Like add_computed_column, it computes outside the write lock and commits in brief
        batches; interrupted, running the same call again continues where it stopped.
        ``executor`` says where (see :meth:`add_computed_column`)."""
        names = [self._name_of(c) for c in columns]
        if not names:
            raise SchemaError("recompute_columns() needs at least one computed column name")
        meta = self._meta()
        db = self._conn.db
        cols = []
        for n in names:
            c = meta.column(n)
            if not c.is_computed:
                raise SchemaError(f"column {n!r} of {self._path!r} is not computed; nothing to "
                                  "recompute")
            if c.pending:
                raise SchemaError(jobs.pending_message(db, meta, c))
            if not c.stored:
                raise SchemaError(f"column {n!r} of {self._path!r} is computed when read "
                                  "(stored=False): there is nothing stored to recompute")
            cols.append(c)
        for d in [d for d in jobs.dependents(meta, *(c.col_id for c in cols)) if d.stored]:
            if d not in cols:
                cols.append(d)
        where = self._condition(where, "recompute_columns")
        spec = {"cols": sorted(c.col_id for c in cols), "errors_only": bool(errors_only),
                "where": None if where is None else json.dumps(where.to_json(), default=str)}
        return jobs.recompute_columns(self._conn.places, meta, cols, self._rows(meta, where),
                                      spec, errors_only=errors_only, executor=executor)


#: update() reads, computes and writes the rows it changes this many at a time.
UPDATE_ROWS = 4096

#: Names a column may not have: ``t.<name>`` must reach the column, never a Table method or
#: attribute (a column named ``name`` once turned ``t.delete(where=t.name != 'x')`` into
#: "delete every row", because ``t.name`` was the table's name, a plain string).
TABLE_ATTRIBUTES = frozenset(n for n in dir(Table) if not n.startswith("_"))


#: insert()'s keyword options: a column of such a name could not be given as insert(name=...).
INSERT_OPTIONS = frozenset({"on_error", "executor"})


def check_column_name(name: object) -> str:
    """Validate a new column's name: an identifier (see catalog.check_name) that is not the
    name of a Table method or attribute."""
    catalog.check_name(name, "column")
    assert isinstance(name, str)
    if name in TABLE_ATTRIBUTES:
        raise SchemaError(
            f"invalid column name {name!r}: t.{name} is a Table method or attribute, so the "
            f"column could not be reached as t.{name}; choose another name, e.g. {name + '_'!r}")
    if name in INSERT_OPTIONS:
        raise SchemaError(
            f"invalid column name {name!r}: t.insert({name}=...) would set insert()'s own "
            f"{name}= option, not the column; choose another name, e.g. {name + '_'!r}")
    return name


def _check_indexable(path: str, col: ColumnMeta) -> None:
    """A B-tree index takes a stored column of a scalar type but Bool and Json, or a media
    column that is not computed (Pixeltable's rules)."""
    if not col.stored:
        raise SchemaError(f"cannot index column {col.name!r} of {path!r}: it is computed when "
                          "read (stored=False), so there are no values to index")
    if col.type.is_media and col.is_computed:
        raise SchemaError(f"cannot index the computed media column {col.name!r} of {path!r}; "
                          "index the column it is computed from")
    if col.type.name in ("Bool", "Json"):
        raise SchemaError(f"cannot index column {col.name!r} of {path!r}: a B-tree index takes "
                          f"a non-boolean scalar type or a media column, not {col.type.name}")


def _compute_late_columns(op: writes.Operation, computed: list[ColumnMeta], rows: Rows,
                          on_error: str) -> int:
    """Inside an insert's commit: compute the cells of stored computed columns completed by
    another connection after this insert computed its cells (an insert appears all at once,
    with every computed column that exists when it commits). A column still pending is filled
    by its own job, which reaches these rows. Returns the number of cell errors."""
    current = writes.current_columns(op.db, op.meta)
    have = {c.col_id for c in computed}
    late = [c for c in current.columns
            if c.is_computed and c.stored and not c.pending and c.col_id not in have]
    if not late:
        return 0
    op.meta = current
    op.prepare_for(late)
    return compute_rows(op, late, rows, on_error=on_error).num_errors


def _insert_keyed(db: Any, meta: TableMeta, inputs: list[ColumnMeta], sql: str,
                  params: Iterable[Any]) -> None:
    """executemany an insert; on a table with a primary key, a row SQLite refuses as a
    duplicate key is an AlreadyExistsError naming the row and its key."""
    keys.executemany(db, sql, params, bool(meta.primary_key),
                     lambda tracked: keys.duplicate_error(meta, inputs, tracked))


def _update_keyed(db: Any, meta: TableMeta, cols: list[ColumnMeta], batch: list[list[Any]]
                  ) -> None:
    """executemany update()'s cells; on a table with a primary key, an update SQLite refuses
    as a duplicate key is an AlreadyExistsError naming the row and the key it would get."""

    def duplicate(tracked: keys.Tracked) -> AlreadyExistsError:
        row = tracked.last
        new = {c.col_id: row[3 * j] for j, c in enumerate(cols)}
        current = db.query(*plan.select(meta, meta.key_columns, Rows.ids([row[-1]])))
        values = [new.get(c.col_id, current[0][1 + i] if current else None)
                  for i, c in enumerate(meta.key_columns)]
        return AlreadyExistsError(
            f"update of {meta.path!r}: row {row[-1]} would get primary key "
            f"{keys.describe_key(meta.key_columns, values)}, which another row has (or the "
            "update gives several rows); nothing was updated")

    keys.executemany(db, plan.update_cells(meta, cols), batch,
                     any(c.col_id in meta.primary_key for c in cols), duplicate)


def _bad_keys(path: str, i: int, bad: set[str], computed: set[str], known: set[str]) -> None:
    comp = sorted(bad & computed)
    if comp:
        raise SchemaError(f"row {i}: column(s) {comp} of {path!r} are computed; do not insert them")
    raise NotFoundError(
        f"row {i}: table {path!r} has no column(s) {sorted(bad)}; its input columns: "
        f"{', '.join(sorted(known)) or '(none)'}"
    )
