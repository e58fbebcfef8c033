"""Tables and queries: insert / select / where / order_by / limit / collect / update / delete,
column changes, and the bookkeeping that keeps files and rows consistent.

Data-safety rules (DESIGN.md): files are written before the rows that name them are committed;
files a write makes unreferenced are listed in ``px_pending_deletes`` in the same transaction and
deleted only after it commits; an aborted operation deletes the files it created (and only those:
content addressing means identical content may already have been named by an earlier row).
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import apsw

from . import (
    catalog,
    display,
    executors,
    history,
    jobs,
    maintenance,
    media,
    plan,
    storage,
    versions,
    writes,
)
from .catalog import ColumnMeta, TableMeta
from .compute import Computation, compute_rows, workers
from .errors import (
    AlreadyExistsError,
    ComputeError,
    NotFoundError,
    PxliteError,
    SchemaError,
    check_choice,
    check_on_error,
    useful_cause,
)
from .exprs import ColumnRef, Expr, Literal, RowContext, column_expr, split_conjuncts
from .ingest import INPUT_ERRORS, MediaInput, RowConverter, failed_input
from .io import keys
from .media import Resolver
from .plan import Rows
from .results import ResultSet, UpdateStatus
from .types import ColumnType, as_type

if TYPE_CHECKING:
    from .connection import Connection


def _converter(col: ColumnMeta, media_input: MediaInput) -> Callable[[Any], Any]:
    """The validating converter from an inserted Python value to the stored SQL value (the
    common types' fast paths live in ingest.RowConverter)."""
    if col.type.is_media:
        return lambda v: media_input(v, col)
    return col.type.to_sql


class Query:
    """A query over one table; immutable, each method returns a new Query."""

    def __init__(self, table: Table, outputs: list[tuple[str, Expr]] | None = None,
                 where: Expr | None = None, order: list[tuple[Expr, bool]] | None = None,
                 limit: int | None = None) -> None:
        self._t = table
        self._outputs = outputs
        self._where = where
        self._order = order or []
        self._limit = limit

    def _copy(self, **kw: Any) -> Query:
        args: dict[str, Any] = dict(outputs=self._outputs, where=self._where, order=self._order,
                                    limit=self._limit)
        args.update(kw)
        return Query(self._t, **args)

    def select(self, *exprs: Any, **named: Any) -> Query:
        """Choose the outputs: columns, expressions, and ``name=expr`` for named outputs;
        ``select()`` with nothing means every column."""
        if not exprs and not named:
            return self._copy(outputs=None)
        outputs: list[tuple[str, Expr]] = []
        used: set[str] = set()
        for e in exprs:
            e = self._t._expr(e)
            base = e.default_name()
            name, k = base, 1
            while name in used or name in named:
                name, k = f"{base}_{k}", k + 1
            outputs.append((name, e))
            used.add(name)
        for name, e in named.items():
            catalog.check_name(name, "output")
            outputs.append((name, self._t._expr(e)))
            used.add(name)
        return self._copy(outputs=outputs)

    def where(self, pred: Expr) -> Query:
        """Keep rows where ``pred`` is true; conditions SQLite can evaluate run in SQL."""
        pred = self._t._expr(pred)
        if pred.type.name != "Bool":
            raise SchemaError(f"where() needs a condition (e.g. t.x > 1), got {pred!r}")
        return self._copy(where=pred if self._where is None else self._where & pred)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        return self._copy(order=self._order + [(self._t._expr(e), asc) for e in exprs])

    def limit(self, n: int) -> Query:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
            raise SchemaError(f"limit() takes a whole number from 0 to 2**63 - 1, got {n!r}")
        return self._copy(limit=n)

    # ---- running -------------------------------------------------------------------------------
    def _plan(self, meta: TableMeta, outputs: list[tuple[str, Expr]]
              ) -> tuple[str, list[Any], list[Expr], list[tuple[Expr, bool]], list[ColumnMeta]]:
        where_sql, params, py_preds = [], [], []
        if self._where is not None:
            for p in split_conjuncts(self._where):
                s = p.sql()
                if s is None:
                    py_preds.append(p)
                else:
                    where_sql.append(s[0])
                    params += s[1]
        order_sql: list[str] = []
        py_order: list[tuple[Expr, bool]] = []
        if all(e.sql() is not None for e, _ in self._order):
            for e, asc in self._order:
                s = e.sql()
                assert s is not None
                order_sql.append(f"{s[0]} {'ASC' if asc else 'DESC'}")
                params += s[1]
        else:
            py_order = list(self._order)
        needed: set[int] = set()
        for e in [e for _, e in outputs] + py_preds + [e for e, _ in py_order]:
            needed |= e.columns()
        cols = [c for c in meta.columns if c.col_id in needed]
        select = ["_rowid"] + [plan.cell_columns(c) for c in cols]
        sql = f"SELECT {', '.join(select)} FROM {meta.sql}"
        if where_sql:
            sql += " WHERE " + " AND ".join(where_sql)
        if order_sql:
            sql += " ORDER BY " + ", ".join(order_sql) + ", _rowid"
        else:
            sql += " ORDER BY _rowid"
        if self._limit is not None and not py_preds and not py_order:
            sql += " LIMIT ?"
            params.append(self._limit)
        return sql, params, py_preds, py_order, cols

    def _rows(self, meta: TableMeta, outputs: list[tuple[str, Expr]], resolver: Resolver
              ) -> Iterator[tuple[int, RowContext]]:
        sql, params, py_preds, py_order, cols = self._plan(meta, outputs)
        db = self._t._conn.db
        with db.read():
            self._t._recheck(meta)
            raw_rows = db.execute(sql, params)
            contexts: Iterable[tuple[int, RowContext]] = (
                (r[0], RowContext(
                    {c.col_id: r[1 + 3 * i] for i, c in enumerate(cols)},
                    {c.col_id: (r[2 + 3 * i], r[3 + 3 * i]) for i, c in enumerate(cols)
                     if r[2 + 3 * i] is not None},
                    resolver, rowid=r[0]))
                for r in raw_rows
            )
            if py_preds:
                contexts = (rc for rc in contexts if all(p.eval(rc[1]) is True for p in py_preds))
            if py_order:
                contexts = _py_sort(list(contexts), py_order)
            for n, item in enumerate(contexts):
                if self._limit is not None and n >= self._limit:
                    break
                yield item

    @staticmethod
    def _eval(meta: TableMeta, name: str, e: Expr, rc: RowContext) -> Any:
        """One output of one row; a function that fails (a UDF may raise anything) is a
        ComputeError naming the row, the output and its expression, and the cause."""
        try:
            return e.eval(rc)
        except PxliteError:
            raise
        except Exception as err:
            raise ComputeError(
                f"computing {name} = {e!r} of {meta.path!r} failed for row {rc.rowid}: "
                f"{type(err).__name__}: {err}", table=meta.path, row=rc.rowid, column=name,
                errortype=type(err).__name__, error=err) from useful_cause(err)

    def _default_outputs(self, meta: TableMeta) -> list[tuple[str, Expr]]:
        return [(c.name, ColumnRef(meta, c)) for c in meta.columns if not c.pending]

    def collect(self) -> ResultSet:
        """Run the query; media cells load lazily when the result is read."""
        meta = self._t._meta()
        outputs = self._outputs if self._outputs is not None else self._default_outputs(meta)
        resolver = Resolver(self._t._conn.settings(), self._t._conn.media_folder)
        types: list[ColumnType] = [e.type for _, e in outputs]
        # Plain media columns keep their URI until read; computed media values (e.g.
        # select(t.image.rotate(90))) are already PIL objects and pass through untouched.
        cols_of: list[ColumnMeta | None] = [
            e.col if isinstance(e, ColumnRef) and e.type.is_media and e.col.stored else None
            for _, e in outputs]

        def one(rc: RowContext) -> tuple:
            vals = [self._eval(meta, name, e, rc) if col is None else rc.stored(col)
                    for (name, e), col in zip(outputs, cols_of, strict=True)]
            rc.close_opened(keep=vals)
            return tuple(vals)

        contexts = [rc for _, rc in self._rows(meta, outputs, resolver)]
        computing = any(col is None and not (isinstance(e, ColumnRef) and e.col.stored)
                        for (_, e), col in zip(outputs, cols_of, strict=True))
        if computing and len(contexts) > 1:
            # Computed outputs (a stored=False column, a function in select) run on the compute
            # threads, one per core, as computed columns do (Pillow releases the GIL).
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers(),
                                    thread_name_prefix="pxlite-query") as pool:
                try:
                    rows = list(pool.map(one, contexts))
                except PxliteError as e:  # the worker thread's frames add nothing to it
                    raise e.with_traceback(None) from e.__cause__
        else:
            rows = [one(rc) for rc in contexts]

        def media_value(i: int, uri: Any) -> Any:
            col = cols_of[i]
            return uri if col is None else resolver.value(col, uri)

        # A column's cell that failed (its input was missing, a UDF raised) shows its error
        refs = [e.col.col_id if isinstance(e, ColumnRef) else None for _, e in outputs]
        errors = {(r, i): rc.errors[c] for r, rc in enumerate(contexts)
                  for i, c in enumerate(refs) if c in rc.errors}
        return ResultSet([n for n, _ in outputs], types, rows, media_value, errors,
                         self._t._conn.resolve)

    def count(self) -> int:
        """Number of rows the query matches (ignores select; SQL only when possible)."""
        meta = self._t._meta()
        q = self._copy(outputs=[], order=[])
        sql, params, py_preds, _, _ = q._plan(meta, [])
        if not py_preds:
            inner = sql.replace("SELECT _rowid", "SELECT 1", 1)
            with self._t._conn.db.read():
                self._t._recheck(meta)
                return self._t._conn.db.query(f"SELECT count(*) FROM ({inner})", params)[0][0]
        resolver = Resolver(self._t._conn.settings(), self._t._conn.media_folder)
        return sum(1 for _ in q._rows(meta, [], resolver))

    def head(self, n: int = 10) -> ResultSet:
        return self.limit(n).collect()

    def show(self, n: int = 20) -> ResultSet:
        return self.limit(n).collect()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.collect())

    def __repr__(self) -> str:
        parts = [f"table {self._t._path!r}"]
        if self._outputs is not None:
            parts.append("select " + ", ".join(f"{n}={e!r}" for n, e in self._outputs))
        if self._where is not None:
            parts.append(f"where {self._where!r}")
        if self._order:
            parts.append("order by " + ", ".join(f"{e!r}{'' if a else ' desc'}"
                                                 for e, a in self._order))
        if self._limit is not None:
            parts.append(f"limit {self._limit}")
        return "<Query " + "; ".join(parts) + ">"


def _py_sort(items: list[tuple[int, RowContext]], order: list[tuple[Expr, bool]]
             ) -> list[tuple[int, RowContext]]:
    # Stable sorts from the last key to the first; None sorts first ascending, as in SQLite.
    for e, asc in reversed(order):
        items.sort(key=lambda it: (lambda v: (v is not None, v))(e.eval(it[1])), reverse=not asc)
    return items


class Table:
    """A handle on one table. Column references are attributes: ``t.image``, ``t['label']``."""

    def __init__(self, conn: Connection, path: str) -> None:
        self._conn = conn
        self._path = path

    # ---- schema --------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Two handles on the same table of the same database file are equal."""
        return (isinstance(other, Table) and other._path == self._path
                and other._conn.path == self._conn.path)

    def __hash__(self) -> int:
        return hash((str(self._conn.path), self._path))

    def _meta(self) -> TableMeta:
        # Reloaded per operation: another handle or process may have changed the schema.
        return catalog.load_table(self._conn.db, self._path)

    def _recheck(self, meta: TableMeta) -> None:
        """Inside an operation's transaction (or read snapshot): is the table still the one the
        operation was planned with? Another connection may have dropped it since ``meta`` was
        loaded. Raises NotFoundError naming the table instead of touching another one."""
        writes.current_columns(self._conn.db, meta)

    def _expr(self, e: Any) -> Expr:
        if not isinstance(e, Expr):
            return Literal(e)
        meta = self._meta()
        for node in e.walk():
            if isinstance(node, ColumnRef):
                if node.table.uid != meta.uid:
                    raise SchemaError(
                        f"{node!r} belongs to table {node.table.path!r}, not {self._path!r}")
                if not any(c.col_id == node.col.col_id for c in meta.columns):
                    raise NotFoundError(
                        f"column {node.col.name!r} no longer exists in {self._path!r}")
        return e

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
    def name(self) -> str:
        return self._path.rsplit(".", 1)[-1]

    @property
    def path(self) -> str:
        return self._path

    def columns(self) -> list[str]:
        """The names of the table's columns (a pending computed column is not one yet)."""
        return [c.name for c in self._meta().columns if not c.pending]

    def _describe_rows(self) -> list[display.ColumnInfo]:
        """Per column: name, type, the expression computing it (with an unfinished add's
        progress) and, for a stored media column, where new files go and where its files are."""
        meta = self._meta()
        settings = self._conn.settings()
        rows = []
        for c in meta.columns:
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
                if c.stored and c.type.is_media else None
            rows.append(display.ColumnInfo(c.name, repr(c.type), expr, pending, dest, not c.stored))
        return rows

    def _default_destination(self, meta: TableMeta, col: ColumnMeta,
                             settings: Any) -> display.Destination:
        """Where a media column's new files go now and why (its own ``destination=``, a global
        setting and its source, or the database's media folder), and the folders its existing
        files are in when that is not the same one (a setting changed since they were
        written: their files stay where they are)."""
        places, db = self._conn.places, self._conn.db
        key = "output_media_dest" if col.is_computed else "input_media_dest"
        note = "" if col.is_computed or settings.get(key) else \
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
            return display.TableDescription(self._path, self.count(),
                                            tuple(self._describe_rows())).to_text()
        except NotFoundError:
            return f"<table {self._path!r} (dropped)>"

    def _repr_html_(self) -> str:
        """The notebook form of :meth:`describe`: an HTML table, long URLs cut where they say
        least (the whole URL on hover)."""
        try:
            return display.TableDescription(self._path, self.count(),
                                            tuple(self._describe_rows()))._repr_html_()
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
            if col.pending:  # an unfinished add_computed_column: its job goes with it
                jobs.drop_pending(op, col)
                return
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

    def get_metadata(self) -> dict[str, Any]:
        """The table's name, path, kind, columns, whether it is versioned, and its current
        ``version`` (None when created with ``versioned=False``) and when that was made."""
        with self._conn.db.read():
            meta = self._meta()
            found = history.get_versions(self._conn.db, meta, 1)
        return {"name": self.name, "path": self.path, "kind": "table", "base": None,
                "columns": [c.name for c in meta.columns if not c.pending],
                "is_data_versioned": bool(found), "is_snapshot": False,
                "version": found[0]["version"] if found else None,
                "version_created": found[0]["created_at"] if found else None}

    def revert(self, to: int | None = None) -> UpdateStatus:
        """Undo changes. ``revert()`` goes back to the version before the latest change (again:
        the one before that, as Pixeltable's); ``revert(to=N)`` to any kept version, forward
        too. One transaction, recorded as a new version (so it can be reverted); rows, columns
        and the files they name come back as they were."""
        return history.revert(self._conn.places, self._meta(), to)

    def set_version_retention(self, days: float | None = None, count: int | None = None) -> None:
        """Keep this table's versions ``days`` days and/or at most ``count`` of them (None: the
        database's version_retention_days / version_retention_count); prunes at once."""
        history.set_retention(self._conn.places, self._meta(), days, count)

    # ---- queries -------------------------------------------------------------------------------
    def select(self, *exprs: Any, **named: Any) -> Query:
        return Query(self).select(*exprs, **named)

    def where(self, pred: Expr) -> Query:
        return Query(self).where(pred)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        return Query(self).order_by(*exprs, asc=asc)

    def limit(self, n: int) -> Query:
        return Query(self).limit(n)

    def collect(self) -> ResultSet:
        return Query(self).collect()

    def count(self) -> int:
        """Number of rows."""
        with self._conn.db.read():  # the metadata and the count from one snapshot
            meta = self._meta()
            return self._conn.db.query(f"SELECT count(*) FROM {meta.sql}")[0][0]

    def head(self, n: int = 10) -> ResultSet:
        return Query(self).limit(n).collect()

    def show(self, n: int = 20) -> ResultSet:
        return Query(self).limit(n).collect()

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
                    cells = comp.compute([(p[0], {c.col_id: p[1 + j]
                                                  for j, c in enumerate(inputs)},
                                           bad.get(p[0], {}))
                                          for p in params])
                    computed_errors, computed = comp.errors, comp.cols
            with op.committing(self._recheck):
                shift = db.query(next_rowid)[0][0] - base  # rows another writer added meanwhile
                for p in params:
                    p[0] += shift
                _insert_keyed(db, meta, inputs, insert_sql, params)
                for rowid, c, et, em in conv.errors:
                    db.execute(plan.set_cell_errors(meta, c), (et, em, rowid + shift))
                if cells:
                    db.executemany(plan.update_cells(meta, computed),
                                   [[*c, p[0]] for c, p in zip(cells, params, strict=True)])
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
        where = self._expr(where)
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
        q = Query(self).where(where)
        resolver = Resolver(self._conn.settings(), self._conn.media_folder)
        return Rows.ids(rid for rid, _ in q._rows(meta, [], resolver))

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
            if col.is_computed:
                raise SchemaError(f"column {name!r} of {self._path!r} is computed; update its "
                                  "inputs or use recompute_columns()")
            targets.append((col, self._expr(v) if isinstance(v, Expr) else v))
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
            batch: list[list[Any]] = []
            rowids: list[int] = []
            # One query for all matched rows (not one SELECT per row).
            for raw in db.query(*plan.select(meta, cols, rows)):
                rowid = raw[0]
                rowids.append(rowid)
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
                batch.append([*params, rowid])
            versions.capture_rows(db, meta, Rows.ids(rowids))  # their versions' old images
            _update_keyed(db, meta, [c for c, _ in targets], batch)
            for col_id, uris in replaced.items():
                op.release(col_id, uris)
            if dependents and rowids:
                errors += compute_rows(op, dependents, Rows.ids(rowids), on_error=on_error,
                                       release_old=True).num_errors
        return UpdateStatus("Updated", len(rowids), errors, time.perf_counter() - t0)

    def delete(self, where: Expr | None = None) -> UpdateStatus:
        """Delete the rows ``where`` selects (a condition on the table's columns; every row
        when called without it). Files pxlite wrote for them are removed once no kept version
        names them (at once for a table with ``versioned=False``), never a user's referenced
        originals nor a file another row still names."""
        t0 = time.perf_counter()
        where = self._condition(where, "delete")
        meta = self._meta()
        db = self._conn.db
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
    if not meta.primary_key:
        db.executemany(sql, params)
        return
    tracked = keys.Tracked(params)
    try:
        db.executemany(sql, tracked)
    except apsw.ConstraintError as e:
        raise keys.duplicate_error(meta, inputs, tracked) from e


def _update_keyed(db: Any, meta: TableMeta, cols: list[ColumnMeta], batch: list[list[Any]]
                  ) -> None:
    """executemany update()'s cells; on a table with a primary key, an update SQLite refuses
    as a duplicate key is an AlreadyExistsError naming the row and the key it would get."""
    sql = plan.update_cells(meta, cols)
    if not meta.primary_key or not any(c.col_id in meta.primary_key for c in cols):
        db.executemany(sql, batch)
        return
    tracked = keys.Tracked(batch)
    try:
        db.executemany(sql, tracked)
    except apsw.ConstraintError as e:
        row = tracked.last
        new = {c.col_id: row[3 * j] for j, c in enumerate(cols)}
        current = db.query(*plan.select(meta, meta.key_columns, Rows.ids([row[-1]])))
        values = [new.get(c.col_id, current[0][1 + i] if current else None)
                  for i, c in enumerate(meta.key_columns)]
        raise AlreadyExistsError(
            f"update of {meta.path!r}: row {row[-1]} would get primary key "
            f"{keys.describe_key(meta.key_columns, values)}, which another row has (or the "
            "update gives several rows); nothing was updated") from e


def _bad_keys(path: str, i: int, bad: set[str], computed: set[str], known: set[str]) -> None:
    comp = sorted(bad & computed)
    if comp:
        raise SchemaError(f"row {i}: column(s) {comp} of {path!r} are computed; do not insert them")
    raise NotFoundError(
        f"row {i}: table {path!r} has no column(s) {sorted(bad)}; its input columns: "
        f"{', '.join(sorted(known)) or '(none)'}"
    )
