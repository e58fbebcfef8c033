"""Tables and queries: insert / select / where / order_by / limit / collect / update / delete,
column changes, and the bookkeeping that keeps files and rows consistent.

Data-safety rules (DESIGN.md): files are written before the rows that name them are committed;
files a write makes unreferenced are listed in ``px_pending_deletes`` in the same transaction and
deleted only after it commits; an aborted operation deletes the files it created (and only those:
content addressing means identical content may already have been named by an earlier row).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import apsw

from . import catalog, executors, maintenance, media, plan, storage, writes
from .catalog import ColumnMeta, TableMeta
from .compute import Computation, Interrupted, compute_rows, run_batches, workers
from .errors import (
    AlreadyExistsError,
    ComputeError,
    NotFoundError,
    PxliteError,
    SchemaError,
    check_choice,
    check_on_error,
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
                errortype=type(err).__name__) from err

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
                rows = list(pool.map(one, contexts))
        else:
            rows = [one(rc) for rc in contexts]

        def media_value(i: int, uri: Any) -> Any:
            col = cols_of[i]
            return uri if col is None else resolver.value(col, uri)

        return ResultSet([n for n, _ in outputs], types, rows, media_value)

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
        current = writes.current_table(self._conn, meta)
        if not {c.col_id for c in meta.columns} <= {c.col_id for c in current.columns}:
            raise SchemaError(
                f"the columns of table {self._path!r} were changed by another connection "
                "while this operation ran; retry it")

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
            raise NotFoundError(self._pending_message(meta, col))
        return ColumnRef(meta, col)

    def _pending_message(self, meta: TableMeta, col: ColumnMeta) -> str:
        return (f"column {col.name!r} of {self._path!r} is not complete yet "
                f"({self._pending_state(meta, col)}): an add_computed_column is running or was "
                f"interrupted; run the same add_computed_column({col.name}=...) again to finish "
                f"it, or drop it with t.drop_column({col.name!r})")

    @property
    def name(self) -> str:
        return self._path.rsplit(".", 1)[-1]

    @property
    def path(self) -> str:
        return self._path

    def columns(self) -> list[str]:
        """The names of the table's columns (a pending computed column is not one yet)."""
        return [c.name for c in self._meta().columns if not c.pending]

    def _describe_rows(self) -> list[tuple[str, str, str, str]]:
        meta = self._meta()
        rows = []
        for c in meta.columns:
            expr = ""
            if c.expr:
                try:
                    expr = repr(column_expr(meta, c, self._conn.settings()))
                except PxliteError as e:
                    expr = f"(unreadable: {e})"
            if c.pending:
                expr += f"  [{self._pending_state(meta, c)}]"
            dest = ""
            if not c.stored:
                dest = "(computed when read: stored=False)"
            elif c.type.is_media:
                dest = (self._conn.resolve(c.destination) if c.destination else
                        self._default_destination("output_media_dest" if c.is_computed
                                                  else "input_media_dest"))
            rows.append((c.name, repr(c.type), expr, dest))
        return rows

    def _default_destination(self, key: str) -> str:
        """What a column without its own destination writes to now, and where that comes
        from (a global setting and its source, or the database's media folder)."""
        settings = self._conn.settings()
        dest = settings.get(key)
        if not dest:
            if key == "input_media_dest":
                return "(default: references stay where they are; new files go to the media " \
                       f"folder {self._conn.media_folder.prefix})"
            return f"(default: the media folder {self._conn.media_folder.prefix})"
        return f"(default: {dest}, {key} from {settings.sources.get(key, 'default')})"

    def describe(self) -> None:
        """Print the schema: name, type, computed-from expression (with the progress of a
        pending column), destination (a default shows where it resolves to now, and why).
        Returns nothing, so a REPL shows it once; ``repr(t)`` is the same text."""
        print(repr(self))

    def __repr__(self) -> str:
        try:
            rows = self._describe_rows()
        except NotFoundError:
            return f"<table {self._path!r} (dropped)>"
        head = ("Column", "Type", "Computed with", "Destination")
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(head)]
        fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
        lines = [f"Table '{self._path}'", fmt(head), fmt(tuple("-" * w for w in widths))]
        lines += [fmt(r) for r in rows]
        return "\n".join(lines)

    def add_column(self, *, if_exists: str = "error", **columns: Any) -> UpdateStatus:
        """Add plain columns (``t.add_column(label=pxl.String)``); existing rows get None."""
        t0 = time.perf_counter()
        check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
        db = self._conn.db
        with writes.operation(self._conn, self._meta(), recheck=self._recheck) as op:
            meta = op.meta
            for name, ctype in columns.items():
                ctype = as_type(ctype)
                if any(c.name == name for c in meta.columns):
                    if self._keep_existing(name, if_exists):
                        continue
                    old = meta.column(name)  # replaced in this transaction: all or nothing
                    if _dependents(meta, old.col_id):
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
        wrote for it go too, unless another column or table still names them."""
        name = self._name_of(name)
        with writes.operation(self._conn, self._meta(), recheck=self._recheck) as op:
            meta, db = op.meta, self._conn.db
            col = meta.column(name)
            if col.pending:  # an unfinished add_computed_column: its job goes with it
                self._drop_pending(op, col)
                return
            deps = _dependents(meta, col.col_id)
            if deps:
                raise SchemaError(
                    f"cannot drop column {name!r} of {self._path!r}: computed column(s) "
                    f"{', '.join(repr(d.name) for d in deps)} depend on it; drop them first"
                )
            for job in catalog.jobs(db, meta.id):  # a recompute of it cannot resume now
                if col.col_id in job.spec.get("cols", ()):
                    catalog.end_job(db, job)
            op.drop_column(col)  # released after the column is gone: what others name stays

    def rename_column(self, old: str | ColumnRef, new: str) -> None:
        """Rename a column; computed columns refer to it by id and keep working."""
        old = self._name_of(old)
        with writes.operation(self._conn, self._meta(), recheck=self._recheck) as op:
            col = op.meta.column(old)
            catalog.rename_column(self._conn.db, op.meta, col, check_column_name(new))

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
        next_rowid = f"SELECT coalesce(max(_rowid), 0) + 1 FROM {meta.sql}"
        computed_errors = 0
        with writes.Operation(self._conn, meta) as op:
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
                return UpdateStatus("Inserted", count, len(conv.errors), time.perf_counter() - t0)
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

                with self._executor(executor, meta, computed, local_input) as pool, \
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
        return UpdateStatus("Inserted", len(params), len(conv.errors) + computed_errors,
                            time.perf_counter() - t0)

    def batch_update(self, rows: Iterable[dict[str, Any]], *, if_not_exists: str = "error",
                     on_error: str = "abort") -> UpdateStatus:
        """Update rows by primary key (Pixeltable's): each dict holds the key columns and the
        columns to set; the computed columns depending on them are recomputed. A key not in
        the table is an error, skipped or inserted: ``if_not_exists='error'|'ignore'|'insert'``.
        All or nothing, in one write (see :func:`pxlite.io.keys.batch_update`)."""
        return keys.batch_update(
            keys.KeyedWrite(self._conn, self._path,
                            lambda meta, ids: [d for d in _dependents(meta, *ids) if d.stored],
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
        dependents = [d for d in _dependents(meta, *(c.col_id for c, _ in targets)) if d.stored]
        db = self._conn.db
        errors = 0
        with writes.operation(self._conn, meta, columns=[c for c, _ in targets] + dependents,
                              recheck=self._recheck) as op:
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
            db.executemany(plan.update_cells(meta, [c for c, _ in targets]), batch)
            for col_id, uris in replaced.items():
                op.release(col_id, uris)
            if dependents and rowids:
                errors += compute_rows(op, dependents, Rows.ids(rowids), on_error=on_error,
                                       release_old=True).num_errors
        return UpdateStatus("Updated", len(rowids), errors, time.perf_counter() - t0)

    def delete(self, where: Expr | None = None) -> UpdateStatus:
        """Delete the rows ``where`` selects (a condition on the table's columns; every row
        when called without it). Files pxlite wrote for them are removed after the commit,
        never a user's referenced originals nor a file another row still names."""
        t0 = time.perf_counter()
        where = self._condition(where, "delete")
        meta = self._meta()
        db = self._conn.db
        with writes.operation(self._conn, meta, recheck=self._recheck) as op:
            rows = self._rows(meta, where)
            uris = {c.col_id: writes.named_files(db, meta, c, rows) for c in meta.media_columns}
            db.execute(*plan.delete(meta, rows))
            n = db.changes()
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
        return maintenance.move_media(self._conn, self._meta(), self._name_of(column),
                                      destination)

    # ---- computed columns (the executor: compute.py) -------------------------------------------
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
        t0 = time.perf_counter()
        check_on_error(on_error)
        if not column and isinstance(executor, Expr):
            check_column_name("executor")  # the option took the expression meant for a column
        if len(column) != 1:
            raise SchemaError("add_computed_column() takes exactly one name=expression, e.g. "
                              "add_computed_column(rot=t.image.rotate(90))")
        ((name, expr),) = column.items()
        check_column_name(name)
        check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
        if not isinstance(expr, Expr):
            raise SchemaError(f"column {name!r}: expected an expression of the table's columns "
                              f"(e.g. t.image.rotate(90)), got {type(expr).__name__} {expr!r}")
        expr = self._expr(expr)
        if not expr.columns():
            raise SchemaError(f"column {name!r}: the expression {expr!r} reads no column")
        ctype = expr.type.with_nullable(True)
        fmt = media.check_format(format)
        if not ctype.is_media and (destination is not None or fmt is not None):
            what = "destination" if destination is not None else "format"
            raise SchemaError(f"column {name!r} computes {ctype.name} values, not files: "
                              f"{what}= applies to image results only")
        if fmt is not None and ctype.name != "Image":
            raise SchemaError(f"column {name!r}: format= applies to Image results only")
        if destination is not None and not isinstance(destination, (str, os.PathLike)):
            raise SchemaError(f"column {name!r}: destination= takes a folder path or a storage "
                              f"URI (e.g. 's3://bucket/prefix/'), got {type(destination).__name__} "
                              f"{destination!r}")
        if not stored:
            if executor is not None:
                raise SchemaError(f"column {name!r} is computed when read (stored=False), by the "
                                  "query reading it: executor= does not apply")
            return self._add_on_read(name, expr, ctype, destination, fmt, on_error, if_exists, t0)
        conn, db = self._conn, self._conn.db
        # The database's own media folder is stored as such ('media:'), so a copy of the
        # database writes into its own media folder, never into its original's.
        dest = conn.stored(conn.validate_dest(destination)) if destination is not None else None
        spec: dict[str, Any] = {"name": name, "expr": json.dumps(expr.to_json()),
                                "destination": dest, "format": fmt, "on_error": on_error}
        meta = self._meta()
        existing = next((c for c in meta.columns if c.name == name), None)
        replacing = existing is not None and not existing.pending
        if replacing:
            if self._keep_existing(name, if_exists):
                return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")
            self._check_replaceable(meta, name)
        spec["replace"] = replacing
        work_name = f"_pxl_new_{name}" if replacing else name
        col, job = self._resumable(meta, work_name, spec, replace=if_exists == "replace")
        meta = self._meta()
        reads = [c for c in meta.columns if c.col_id in expr.columns()]

        def outputs() -> list[tuple[str, str]]:
            op = writes.Operation(conn, meta)
            return [(name, op.output_prefix(dest))] if ctype.is_media else []

        with executors.opened(executor, conn.settings(), outputs=outputs,
                              local_input=lambda: self._first_local(meta, reads)) as pool, \
                writes.Operation(conn, meta) as op:
            if ctype.is_media:
                op.prepare(op.output_prefix(dest))
            if col is None:  # a new pending column and its job, in one brief commit
                with op.committing(self._recheck):
                    col = catalog.add_column(db, op.meta, work_name, ctype, expr=spec["expr"],
                                             destination=dest, format=fmt, on_error=on_error,
                                             pending=True)
                    total = db.query(*plan.count(op.meta))[0][0]
                    job = catalog.start_job(db, meta.id, "add_computed_column",
                                            {**spec, "col_id": col.col_id}, total,
                                            os.getpid(), _host())
            else:
                self._sweep_uncommitted(op, col)  # files of a batch a crash kept from commit
            assert job is not None
            hint = (f"column {name!r} of {self._path!r} is pending ({{}} rows done); run the "
                    f"same add_computed_column({name}=...) again to finish it")
            try:
                status = self._run_job(op, [col], Rows.all(), job, on_error, hint, pool)
                with op.committing(self._recheck):  # brief: the last rows, then it is complete
                    self._check_job(op.meta, job)
                    tail = compute_rows(op, [col], Rows.matching("_rowid > ?", [job.done_upto]),
                                        on_error=on_error, release_old=True)
                    if replacing:
                        self._check_replaceable(self._meta(), name)
                        old = op.meta.column(name)
                        op.drop_column(old)
                        catalog.rename_column(db, op.meta, col, name)
                        catalog.set_column_position(db, op.meta, col, old.position)
                    catalog.set_column_ready(db, op.meta, col)
                    catalog.end_job(db, job)
            except ComputeError:
                if on_error == "abort":  # nothing of the operation remains
                    op.undo()  # the files of the batch that failed, then the committed ones
                    self._abandon(op, col)
                raise
        status.num_rows += tail.num_rows
        status.num_errors += tail.num_errors
        status.elapsed_s = time.perf_counter() - t0
        return status

    def _add_on_read(self, name: str, expr: Expr, ctype: ColumnType, destination: Any,
                     fmt: str | None, on_error: str, if_exists: str, t0: float) -> UpdateStatus:
        """add_computed_column(..., stored=False): a column defined now, computed when read."""
        if destination is not None or fmt is not None:
            raise SchemaError(f"column {name!r} is computed when read (stored=False): nothing "
                              "is written, so destination= and format= do not apply")
        with writes.operation(self._conn, self._meta(), recheck=self._recheck) as op:
            if any(c.name == name for c in op.meta.columns):
                if self._keep_existing(name, if_exists):
                    return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")
                self._check_replaceable(op.meta, name)
                op.drop_column(op.meta.column(name))
            catalog.add_column(self._conn.db, op.meta, name, ctype,
                               expr=json.dumps(expr.to_json()), on_error=on_error, stored=False)
        return UpdateStatus("Added", 0, 0, time.perf_counter() - t0, "column value")

    def _resumable(self, meta: TableMeta, work_name: str, spec: dict[str, Any], *,
                   replace: bool) -> tuple[ColumnMeta | None, catalog.Job | None]:
        """A pending column left by an interrupted call: the one to resume when ``spec`` is
        what it was started with; else an error saying what is pending and how to go on
        (``replace``: it is dropped and the call starts afresh)."""
        pending = next((c for c in meta.columns if c.name == work_name and c.pending), None)
        if pending is None:
            return None, None
        job = self._job_of(meta, pending)
        if job is not None and _alive_elsewhere(job):
            raise SchemaError(
                f"column {spec['name']!r} of {self._path!r} is being computed by another process "
                f"(pid {job.pid} on {job.host}, {job.progress()} rows done); wait for it")
        if job is not None and {k: job.spec.get(k) for k in spec} == spec:
            with self._conn.db.transaction():
                catalog.claim_job(self._conn.db, job, max(job.total_rows, self._count_all()),
                                  os.getpid(), _host())
            return pending, job
        if not replace:
            raise SchemaError(
                f"column {spec['name']!r} of {self._path!r} is pending from an interrupted "
                f"add_computed_column of another expression ({self._pending_state(meta, pending)}"
                f"); run that call again to finish it, pass if_exists='replace' to start this "
                f"one instead, or drop it with t.drop_column({pending.name!r})")
        with writes.operation(self._conn, meta, recheck=self._recheck) as op:
            self._drop_pending(op, pending)
        return None, None

    def _run_job(self, op: writes.Operation, cols: list[ColumnMeta], rows: Rows,
                 job: catalog.Job, on_error: str, hint: str,
                 pool: executors.Pool | None) -> UpdateStatus:
        def recheck() -> None:
            self._recheck(op.meta)
            self._check_job(op.meta, job)

        try:
            return run_batches(op, cols, rows, job, on_error=on_error, release_old=True,
                               recheck=recheck, resume_hint=hint.format(job.progress()),
                               desc=f"{self.name}: {', '.join(c.name for c in cols)}",
                               pool=pool)
        except Interrupted as e:
            raise Interrupted(f"interrupted: {hint.format(job.progress())}") from e

    def _executor(self, executor: Any, meta: TableMeta, cols: list[ColumnMeta],
                  local_input: Callable[[], str | None]
                  ) -> contextlib.AbstractContextManager[executors.Pool | None]:
        """The pool computing ``cols`` (None: this process's threads), refused up front when
        its workers could not reach the columns' destinations or the local inputs."""
        settings = self._conn.settings()

        def outputs() -> list[tuple[str, str]]:
            op = writes.Operation(self._conn, meta, settings)
            return [(c.name, op.output_prefix(c.destination)) for c in cols if c.type.is_media]

        return executors.opened(executor, settings, outputs=outputs, local_input=local_input)

    def _first_local(self, meta: TableMeta, cols: list[ColumnMeta]) -> str | None:
        """Where one of ``cols`` (media columns among them) names a local file in a row, as
        text for a message; None when none does."""
        media_cols = [c for c in cols if c.type.is_media and c.stored]
        if not media_cols:
            return None
        found = self._conn.db.query(*plan.first_local_file(meta, media_cols))
        if not found:
            return None
        rowid, *values = found[0]
        name = next(c.name for c, v in zip(media_cols, values, strict=True)
                    if isinstance(v, str) and v.startswith(("file:", "media:")))
        return f"column {name!r} of row {rowid}"

    def _check_job(self, meta: TableMeta, job: catalog.Job) -> None:
        """Inside a batch's transaction: the job was not cancelled meanwhile (its column
        dropped by another connection)."""
        if not any(j.id == job.id for j in catalog.jobs(self._conn.db, meta.id)):
            raise NotFoundError(f"the {job.kind} on {self._path!r} was cancelled by another "
                                "connection (its column was dropped or replaced)")

    def _job_of(self, meta: TableMeta, col: ColumnMeta) -> catalog.Job | None:
        return next((j for j in catalog.jobs(self._conn.db, meta.id)
                     if j.kind == "add_computed_column" and j.spec.get("col_id") == col.col_id),
                    None)

    def _pending_state(self, meta: TableMeta, col: ColumnMeta) -> str:
        job = self._job_of(meta, col)
        return f"pending {job.progress()}" if job is not None else "pending"

    def _sweep_uncommitted(self, op: writes.Operation, col: ColumnMeta) -> None:
        """Before resuming: delete the files a killed batch stored for ``col`` without
        committing them (in pxlite's key shape under this column's folder, named by no row)."""
        if not col.type.is_media:
            return
        prefix = op.output_prefix(col.destination)
        where = storage.join(prefix, f"{op.meta.uid}/{col.col_id}/")
        try:
            listed = [self._conn.stored(u) for u in
                      storage.get_backend(where, op.settings).list(where)]
        except PxliteError:
            return  # check(fix=True) sweeps them later
        if listed:
            with self._conn.db.transaction():
                writes.delete_unreferenced(self._conn, listed, op.settings)

    def _abandon(self, op: writes.Operation, col: ColumnMeta) -> None:
        """on_error='abort' after batches committed: remove the column, its cells and files."""
        with contextlib.suppress(NotFoundError), op.committing(self._recheck):
            self._drop_pending(op, col)

    def _drop_pending(self, op: writes.Operation, col: ColumnMeta) -> None:
        """Inside ``op``'s transaction: drop a pending column, its job and its files."""
        db = self._conn.db
        meta = op.meta if any(c.col_id == col.col_id for c in op.meta.columns) else self._meta()
        col = meta.column_by_id(col.col_id)
        for job in catalog.jobs(db, meta.id):
            if job.spec.get("col_id") == col.col_id:
                catalog.end_job(db, job)
        op.drop_column(col, meta)

    def _count_all(self) -> int:
        return self._conn.db.query(*plan.count(self._meta()))[0][0]

    def _keep_existing(self, name: str, if_exists: str) -> bool:
        """A column ``name`` exists already: keep it (``if_exists='ignore'``: True) or replace
        it ('replace': False); 'error' raises AlreadyExistsError saying how to go on."""
        if if_exists == "error":
            raise AlreadyExistsError(f"table {self._path!r} already has a column named {name!r}; "
                                     "pass if_exists='replace' or 'ignore'")
        return if_exists == "ignore"

    def _check_replaceable(self, meta: TableMeta, name: str) -> None:
        """May ``if_exists='replace'`` replace this column? Not while others depend on it: then
        a SchemaError says which."""
        old = meta.column(name)
        deps = [d for d in _dependents(meta, old.col_id)
                if d.col_id != old.col_id and d.name != f"_pxl_new_{name}"]
        if deps:
            raise SchemaError(
                f"cannot replace column {name!r} of {self._path!r}: computed column(s) "
                f"{', '.join(repr(d.name) for d in deps)} depend on it; drop them first")

    def recompute_columns(self, *columns: str | ColumnRef, where: Expr | None = None,
                          errors_only: bool = False, executor: Any = None) -> UpdateStatus:
        """Recompute computed columns (after a UDF changed, or for the rows that errored);
        the columns computed from them are recomputed too.

        Like add_computed_column, it computes outside the write lock and commits in brief
        batches; interrupted, running the same call again continues where it stopped.
        ``executor`` says where (see :meth:`add_computed_column`)."""
        t0 = time.perf_counter()
        names = [self._name_of(c) for c in columns]
        if not names:
            raise SchemaError("recompute_columns() needs at least one computed column name")
        meta = self._meta()
        cols = []
        for n in names:
            c = meta.column(n)
            if not c.is_computed:
                raise SchemaError(f"column {n!r} of {self._path!r} is not computed; nothing to "
                                  "recompute")
            if c.pending:
                raise SchemaError(self._pending_message(meta, c))
            if not c.stored:
                raise SchemaError(f"column {n!r} of {self._path!r} is computed when read "
                                  "(stored=False): there is nothing stored to recompute")
            cols.append(c)
        for d in [d for d in _dependents(meta, *(c.col_id for c in cols)) if d.stored]:
            if d not in cols:
                cols.append(d)
        where = self._condition(where, "recompute_columns")
        spec = {"cols": sorted(c.col_id for c in cols), "errors_only": bool(errors_only),
                "where": None if where is None else json.dumps(where.to_json(), default=str)}
        db = self._conn.db
        read_ids = set().union(*(column_expr(meta, d).columns() for d in cols))
        reads = [c for c in meta.columns if c.col_id in read_ids]
        with self._executor(executor, meta, cols,
                            lambda: self._first_local(meta, reads)) as pool, \
                writes.Operation(self._conn, meta) as op:
            op.prepare_for(cols)
            with op.committing(self._recheck):
                job = None
                for j in catalog.jobs(db, meta.id):
                    if j.kind != "recompute_columns":
                        continue
                    if _alive_elsewhere(j):
                        raise SchemaError(
                            f"another process is recomputing columns of {self._path!r} (pid "
                            f"{j.pid} on {j.host}, {j.progress()} rows done); wait for it")
                    if j.spec == spec and job is None:
                        job = j  # the same call, interrupted: resume it
                    else:
                        catalog.end_job(db, j)
                rows = self._rows(meta, where)
                if errors_only:
                    rows = rows.where(" OR ".join(f"{c.sql_et} IS NOT NULL" for c in cols))
                total = db.query(*plan.count(meta, rows))[0][0]
                if job is None:
                    job = catalog.start_job(db, meta.id, "recompute_columns", spec, total,
                                            os.getpid(), _host())
                else:
                    catalog.claim_job(db, job, job.done_rows + total, os.getpid(),
                                      _host())
            hint = (f"recompute_columns of {self._path!r} stopped after {{}} rows; run the same "
                    "call again to continue")
            status = self._run_job(op, cols, rows, job, "ignore", hint, pool)
            with op.committing(self._recheck):
                catalog.end_job(db, job)
        status.verb, status.noun = "Recomputed", "row"
        status.num_rows //= max(1, len(cols))  # rows, not cells (one per recomputed column)
        status.elapsed_s = time.perf_counter() - t0
        return status


def _host() -> str:
    """This machine's name, for job records (os.uname: no socket module to import)."""
    return os.uname().nodename


def _alive_elsewhere(job: catalog.Job) -> bool:
    """Is another live process on this machine running ``job``? (One on another machine cannot
    be asked: its job is taken over.)"""
    if job.pid == os.getpid() or job.host != _host():
        return False
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _dependents(meta: TableMeta, *col_ids: int) -> list[ColumnMeta]:
    """Computed columns that read any of ``col_ids``, directly or through another computed one
    (a column whose function cannot be found still depends on what it reads)."""
    reads = {c.col_id: column_expr(meta, c).columns()
             for c in meta.columns if c.expr is not None}
    found: list[ColumnMeta] = []
    frontier = set(col_ids)
    changed = True
    while changed:
        changed = False
        for c in meta.columns:
            if c.is_computed and c not in found and reads[c.col_id] & frontier:
                found.append(c)
                frontier.add(c.col_id)
                changed = True
    return found


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


def _bad_keys(path: str, i: int, bad: set[str], computed: set[str], known: set[str]) -> None:
    comp = sorted(bad & computed)
    if comp:
        raise SchemaError(f"row {i}: column(s) {comp} of {path!r} are computed; do not insert them")
    raise NotFoundError(
        f"row {i}: table {path!r} has no column(s) {sorted(bad)}; its input columns: "
        f"{', '.join(sorted(known)) or '(none)'}"
    )
