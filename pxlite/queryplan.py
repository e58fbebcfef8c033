"""Query plans: the one SQL statement a query runs, and what runs in Python and why.

:func:`build` turns a query's clauses (bound to the tables it reads) into a :class:`Plan` and runs
nothing, so a test or ``Query.explain()`` can look at it (the sqlite-utils "plan twin" idea;
``query.py`` runs plans). Everything SQLite can compute goes into the statement: the conditions
of ``where``, outputs, ``order_by``, ``group_by`` keys and aggregates, joins, samples, limits. An
expression whose ``sql()`` is None (a Python UDF, an image's width, a column computed when read,
``%``) runs in Python on the rows SQLite returns; the plan says which and why.

Joined tables share a query's row, so each table's column ids are made unique in it: every
table after the first is read through a copy of its metadata whose column ids are shifted
(:func:`shifted`; the SQL names stay ``t_<id>.c<id>``), and the expressions are rebound to
those copies (:func:`rebind`).

An output is selected as its value's SQL (``uda.value_sql``: an expression's ``sql_value()``
where it has one, such as a JSON path's JSON text) and decoded by the expression (its type's
stored form: Json as JSON text, Timestamp as ISO text, Bool as 0/1); a stored column's values are
checked to be of its kind. Conditions, sort keys and group keys use ``sql()``. Every identifier
in the SQL comes from integer ids (``t_<id>``, ``c<id>``) and every value is a bound parameter.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .catalog import ColumnMeta, TableMeta
from .errors import NotFoundError, SchemaError
from .exprs import (
    Arith,
    Call,
    Cast,
    ColumnRef,
    Expr,
    MediaAttr,
    MissingCall,
    split_conjuncts,
)
from .types import ColumnType
from .uda import AggregateCall, aggregates_in, contains_aggregate, value_decoder, value_sql

#: How SQL orders NULLs: last ascending, first descending (Pixeltable's and PostgreSQL's order).
_ASC, _DESC = "ASC NULLS LAST", "DESC NULLS FIRST"

#: Join kinds (Pixeltable's names) and their SQL.
JOINS = {"inner": "JOIN", "left": "LEFT JOIN", "full_outer": "FULL OUTER JOIN",
         "cross": "CROSS JOIN"}

#: The SQL function a sample orders rows by: a hash of (seed, rowid), the same in every process.
SAMPLE_KEY = "pxlite_sample_key"


class From(NamedTuple):
    """One table a query reads: its metadata as the query sees it, how it is joined to the
    tables before it (None for the first) and on what condition."""

    meta: TableMeta
    how: str | None = None
    on: Expr | None = None


class Sampling(NamedTuple):
    """``sample(n=, n_per_stratum=, fraction=, seed=, stratify_by=)``, validated."""

    n: int | None
    n_per_stratum: int | None
    fraction: float | None
    seed: int
    strata: tuple[Expr, ...]


class Clauses(NamedTuple):
    """What a query asks, bound to the tables it reads."""

    tables: list[From]
    outputs: list[tuple[str, Expr]]
    where: Expr | None = None
    group: list[Expr] | None = None
    order: Sequence[tuple[Expr, bool]] = ()
    limit: int | None = None
    offset: int | None = None
    sample: Sampling | None = None
    reverse: bool = False          # tail(): the last rows, read newest first


class Output(NamedTuple):
    """One result column: from SQL column ``column`` (decoded by ``decode``), or computed in
    Python (``column`` None); ``media``: a stored media column, kept as its URI until read;
    ``errors``: for a stored column, the SQL column of its cells' errortype (then errormsg)."""

    name: str
    expr: Expr
    column: int | None
    decode: Callable[[Any], Any] | None
    media: ColumnMeta | None
    errors: int | None = None


class Aggregate(NamedTuple):
    """An aggregate computed in Python: its arguments' SQL columns (None: computed in Python),
    and the SQL columns of the error types of the stored cells its arguments read."""

    call: AggregateCall
    arg_columns: list[int] | None
    decoders: list[Callable[[Any], Any] | None]
    error_columns: list[int]


class Plan(NamedTuple):
    """The statement a query runs and what Python does with its rows (see module docstring)."""

    sql: str
    params: list[Any]
    outputs: list[Output]
    grouped: bool
    cells: list[tuple[ColumnMeta, int]]      # raw cells for Python: (column, index of its value)
    py_where: list[Expr]
    py_order: list[tuple[Expr, bool]]
    skip: int                                # offset and limit applied in Python
    take: int | None
    keys: list[tuple[Expr, int | None, Callable[[Any], Any] | None]]  # grouped in Python
    aggregates: list[Aggregate]              # grouped in Python (empty when SQL computes them)
    in_python: bool                          # grouped: aggregates computed in Python
    errors_column: int | None                # grouped in SQL: error cells the aggregates skipped
    python: list[str]                        # what runs in Python, and why

    @property
    def needs_rows(self) -> bool:
        """Whether Python must look at each row the statement returns (a condition, an output,
        a sort key, or the offset and limit after those)."""
        return bool(self.cells or self.py_where or self.py_order or self.skip
                    or self.take is not None or any(o.column is None for o in self.outputs))


# ---- why an expression runs in Python ------------------------------------------------------------
def why_python(e: Expr) -> str:
    """Why SQLite cannot compute ``e``: the innermost part that needs Python, and what it is."""
    for node in e.walk():
        if node.sql() is not None:
            continue
        if all(c.sql() is not None for c in node.children()):
            return f"{node!r} {_reason(node)}"
    return f"{e!r} needs Python"


def _reason(node: Expr) -> str:
    if isinstance(node, ColumnRef):
        return "is a column computed when read (stored=False)"
    if isinstance(node, MediaAttr):
        return "resolves a file through storage and the cache"
    if isinstance(node, Call):
        return f"calls the Python function {node.fn.name}"
    if isinstance(node, MissingCall):
        return "calls a function that cannot be found"
    if isinstance(node, Arith) and node.op == "%":
        return "is Python's %, which differs from SQL's for negative numbers"
    if isinstance(node, Cast):
        return "converts with astype(), in Python"
    if isinstance(node, AggregateCall):
        return f"is the aggregate {node.fn.name}, which has no SQL form for these values"
    return "has no SQL form"


# ---- decoding values from SQL --------------------------------------------------------------------
class BadCell(SchemaError):
    """A stored value that is not of its column's kind (a damaged or crafted file); the
    runner adds the row to the message."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"column {column!r}: {reason}")
        self.column, self.reason = column, reason


def decoder(ctype: ColumnType, col: ColumnMeta | None = None) -> Callable[[Any], Any] | None:
    """How a value of ``ctype`` comes back from SQL: None when it is used as it is. A stored
    column's values are checked to be of its stored kind (a crafted file may hold anything);
    a value that cannot be decoded is a SchemaError (:class:`BadCell` for a column's)."""
    identity = ctype.from_sql.__func__ is ColumnType.from_sql  # type: ignore[attr-defined]
    if col is not None:
        kinds, name, from_sql = ctype.stored_as, col.name, ctype.from_sql

        def load(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, kinds):
                if identity:
                    return v
                try:
                    return from_sql(v)
                except (ValueError, TypeError, OverflowError, RecursionError):
                    pass  # ctype.load says what is wrong with it
            try:
                return ctype.load(v)
            except SchemaError as e:
                raise BadCell(name, str(e)) from None
        return load
    if identity:
        return None

    def convert(v: Any) -> Any:
        if v is None:
            return None
        try:
            return ctype.from_sql(v)
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            raise SchemaError(f"a {ctype.name} value computed in SQL cannot be read: "
                              f"{type(e).__name__}: {str(e)[:100]}") from None
    return convert


def signature(e: Expr) -> str:
    """A key telling two expressions apart by structure (the same key: the same value on every
    row). Column ids are unique in a query (see query.py), so the JSON form identifies it."""
    try:
        return json.dumps(e.to_json(), sort_keys=True, default=repr)
    except (SchemaError, NotImplementedError, TypeError, ValueError, RecursionError):
        return f"<node {id(e)}>"


# ---- building ------------------------------------------------------------------------------------
class _Select:
    """The SELECT list being assembled: fragments, their parameters, and where each one is."""

    def __init__(self) -> None:
        self.frags: list[str] = []
        self.params: list[Any] = []
        self._cells: dict[int, int] = {}
        self._errors: dict[int, int] = {}
        self.cells: list[tuple[ColumnMeta, int]] = []

    def add(self, frag: str, params: Sequence[Any] = ()) -> int:
        self.frags.append(frag)
        self.params += params
        return len(self.frags) - 1

    def cell(self, table: TableMeta, col: ColumnMeta) -> int:
        """A stored cell (value, errortype, errormsg) for Python; its value's index."""
        if col.col_id not in self._cells:
            i = self.add(f"{table.sql}.{col.sql}")
            self.add(f"{table.sql}.{col.sql_et}")
            self.add(f"{table.sql}.{col.sql_em}")
            self._cells[col.col_id] = i
            self.cells.append((col, i))
        return self._cells[col.col_id]

    def error_type(self, table: TableMeta, col: ColumnMeta) -> int:
        """A stored cell's errortype alone; its index (one per column)."""
        if col.col_id not in self._errors:
            self._errors[col.col_id] = self.add(f"{table.sql}.{col.sql_et}")
        return self._errors[col.col_id]

    def cells_of(self, exprs: Iterable[Expr]) -> None:
        """The stored cells ``exprs`` read (through columns computed when read too)."""
        for table, col in stored_cells(exprs):
            self.cell(table, col)


def _output(sel: _Select, name: str, e: Expr, *, errors: bool = False) -> Output:
    """One output: its value's SQL in the SELECT list when SQLite computes it. A stored column
    is checked to hold its kind of value; a stored media column stays a reference until read;
    ``errors``: a stored column's cells bring their errors (a failed cell shows why)."""
    s = value_sql(e) if e.sql() is not None else None
    if s is None:
        return Output(name, e, None, None, None)
    i = sel.add(s[0], s[1])
    if isinstance(e, ColumnRef):
        media = e.col if e.type.is_media else None
        et = None
        if errors:
            et = sel.add(f"{e.table.sql}.{e.col.sql_et}")
            sel.add(f"{e.table.sql}.{e.col.sql_em}")
        return Output(name, e, i, decoder(e.type, e.col), media, et)
    return Output(name, e, i, value_decoder(e), None)


def _from_clause(tables: list[From], params: list[Any]) -> str:
    parts = [tables[0].meta.sql]
    for t in tables[1:]:
        assert t.how is not None
        if t.on is None:
            parts.append(f"{JOINS[t.how]} {t.meta.sql}")
            continue
        on = t.on.sql()
        if on is None:
            raise SchemaError(f"the join condition {t.on!r} cannot run in SQL "
                              f"({why_python(t.on)}); join on columns or conditions SQLite can "
                              "compute")
        parts.append(f"{JOINS[t.how]} {t.meta.sql} ON {on[0]}")
        params += on[1]
    return " ".join(parts)


def _where(where: Expr | None) -> tuple[list[str], list[Any], list[Expr]]:
    """The conditions SQLite evaluates (and their parameters), and those left for Python."""
    sql, params, py = [], [], []
    for p in split_conjuncts(where) if where is not None else []:
        s = p.sql()
        if s is None:
            py.append(p)
        else:
            sql.append(s[0])
            params += s[1]
    return sql, params, py


def _rowid_order(tables: list[From], reverse: bool) -> str:
    """Table order: by rowid (of each joined table in turn; a row an outer join made up for a
    table has no rowid there, and comes after those that have one). A view's order is its
    own (``TableMeta.order``: an iterator view's rows follow their base rows)."""
    if reverse:
        return ", ".join(f"{tables[0].meta.sql}.{c} DESC" for c in tables[0].meta.order)
    outer = any(t.how == "full_outer" for t in tables)
    return ", ".join(f"{t.meta.sql}.{c}" + (f" {_ASC}" if i or outer else "")
                     for i, t in enumerate(tables) for c in t.meta.order)


def build(c: Clauses) -> Plan:
    """The plan of a query (see module docstring); runs nothing."""
    aggs = aggregates_in([e for _, e in c.outputs] + [e for e, _ in c.order])
    if c.group is not None or aggs:
        return _grouped(c, aggs)
    return _rows(c)


def matching_rowids(c: Clauses) -> tuple[str, list[Any]] | None:
    """The SQL of the rowids of the rows (of the first table) that the joins and where() of
    ``c`` select, in no set order, and its parameters; None when Python evaluates part of the
    where (or a sample is asked). The caller sorts them: without an ORDER BY, SQLite is free to
    read whichever index covers the condition most cheaply (a wide table's scan index,
    pxlite.scanindex, or a B-tree index in its own order) instead of the table."""
    where_sql, where_params, py_where = _where(c.where)
    if py_where or c.sample is not None:
        return None
    params: list[Any] = []
    first = c.tables[0].meta
    from_sql = _from_clause(c.tables, params)
    sql = f"SELECT {first.sql}._rowid FROM {from_sql}"
    if where_sql:
        sql += " WHERE " + " AND ".join(where_sql)
    return sql, params + where_params


def _rows(c: Clauses) -> Plan:
    sel = _Select()
    python: list[str] = []
    first = c.tables[0].meta
    sel.add(f"{first.sql}._rowid")
    outputs = []
    for name, e in c.outputs:
        o = _output(sel, name, e, errors=True)
        outputs.append(o)
        if o.column is None:
            python.append(f"select {name}={e!r}: {why_python(e)}")
    params: list[Any] = []
    from_sql = _from_clause(c.tables, params)
    where_sql, where_params, py_where = _where(c.where)
    for p in py_where:
        python.append(f"where {p!r}: {why_python(p)}")
    order_sql, order_params, py_order = [], [], []
    if any(e.sql() is None for e, _ in c.order):
        py_order = list(c.order)
        bad = next(e for e, _ in c.order if e.sql() is None)
        python.append(f"order_by (all keys, then limit/offset): {why_python(bad)}")
    else:
        for e, asc in c.order:
            s = e.sql()
            assert s is not None
            order_sql.append(f"{s[0]} {_ASC if asc else _DESC}")
            order_params += s[1]
    sel.cells_of([o.expr for o in outputs if o.column is None] + py_where
                 + [e for e, _ in py_order])
    skip, take = c.offset or 0, c.limit
    if c.sample is not None:
        return _sampled(c, sel, outputs, from_sql, params, where_sql, where_params, py_where,
                        python)
    sql = f"SELECT {', '.join(sel.frags)} FROM {from_sql}"
    if where_sql:
        sql += " WHERE " + " AND ".join(where_sql)
    sql += " ORDER BY " + ", ".join([*order_sql, _rowid_order(c.tables, c.reverse)])
    all_params = sel.params + params + where_params + order_params
    if not py_where and not py_order and (take is not None or skip):
        sql += " LIMIT ? OFFSET ?"
        all_params += [-1 if take is None else take, skip]
        skip, take = 0, None
    return Plan(sql, all_params, outputs, False, sel.cells, py_where, py_order, skip, take, [],
                [], False, None, python)


def _sampled(c: Clauses, sel: _Select, outputs: list[Output], from_sql: str, params: list[Any],
             where_sql: list[str], where_params: list[Any], py_where: list[Expr],
             python: list[str]) -> Plan:
    """A sample: rows in the order of a seeded hash of their rowid (see queryrun.sample_key);
    stratified samples rank the rows of each stratum with a window function."""
    s = c.sample
    assert s is not None
    first = c.tables[0].meta
    key = f"{SAMPLE_KEY}(?, {first.sql}._rowid)"
    where = list(where_sql)
    where_p = list(where_params)
    if not s.strata:
        if s.fraction is not None and s.fraction < 1.0:
            where.append(f"{key} < ?")
            where_p += [s.seed, int(s.fraction * 2**63)]
        sql = f"SELECT {', '.join(sel.frags)} FROM {from_sql}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key}, {first.sql}._rowid"
        all_params = sel.params + params + where_p + [s.seed]
        take = s.n
        if s.n is not None and not py_where:
            sql += " LIMIT ?"
            all_params.append(s.n)
            take = None
        return Plan(sql, all_params, outputs, False, sel.cells, py_where, [], 0, take, [], [],
                    False, None, python)
    if py_where:
        raise SchemaError(f"a stratified sample needs a where() SQLite can evaluate; "
                          f"{why_python(py_where[0])}")
    strata = []
    strata_params: list[Any] = []
    for e in s.strata:
        sq = e.sql()
        if sq is None:
            raise SchemaError(f"stratify_by={e!r} must be computable in SQL: {why_python(e)}")
        strata.append(sq[0])
        strata_params += sq[1]
    inner_cols = [f"{f} AS _c{i}" for i, f in enumerate(sel.frags)]
    partition = f"PARTITION BY {', '.join(strata)}"
    inner_cols.append(f"row_number() OVER ({partition} ORDER BY {key}, {first.sql}._rowid) "
                      "AS _rank")
    inner_cols.append(f"{key} AS _key")
    window_params = [*strata_params, s.seed, s.seed]
    if s.fraction is not None:
        inner_cols.append(f"count(*) OVER ({partition}) AS _size")
        window_params += strata_params
    inner = f"SELECT {', '.join(inner_cols)} FROM {from_sql}"
    if where:
        inner += " WHERE " + " AND ".join(where)
    outer = ", ".join(f"_c{i}" for i in range(len(sel.frags)))
    sql = f"SELECT {outer} FROM ({inner})"
    tail: list[Any] = []
    if s.n_per_stratum is not None:
        sql += " WHERE _rank <= ? ORDER BY _key, _c0"
        tail = [s.n_per_stratum]
    elif s.fraction is not None:
        sql += " WHERE _rank - 1 < ? * _size ORDER BY _key, _c0"
        tail = [s.fraction]
    else:
        sql += " ORDER BY _rank, _key, _c0 LIMIT ?"
        tail = [s.n]
    all_params = sel.params + window_params + params + where_params + tail
    python.append("sample: stratified in SQL (window functions over the strata)")
    return Plan(sql, all_params, outputs, False, sel.cells, [], [], 0, None, [], [], False, None,
                python)


def _check_grouped(e: Expr, keys: set[str], what: str) -> None:
    """``e`` may read columns only through group keys or aggregates."""
    if isinstance(e, AggregateCall) or signature(e) in keys:
        return
    if isinstance(e, ColumnRef):
        raise SchemaError(
            f"{what} reads {e!r} outside an aggregate, but {e!r} is not a group_by() key: "
            "each group has many values of it; aggregate it (e.g. pxlf.max(...)) or add it "
            "to group_by()")
    for child in e.children():
        _check_grouped(child, keys, what)


def _grouped(c: Clauses, aggs: list[AggregateCall]) -> Plan:
    if c.sample is not None:
        raise SchemaError("sample() cannot be used with group_by() or aggregates")
    keys = list(c.group or [])
    for k in keys:
        if contains_aggregate(k):
            raise SchemaError(f"group_by({k!r}): a group key cannot call an aggregate")
    key_sigs = {signature(k) for k in keys}
    outputs_in = c.outputs
    for name, e in outputs_in:
        _check_grouped(e, key_sigs, f"select {name}={e!r}")
    for e, _ in c.order:
        _check_grouped(e, key_sigs, f"order_by({e!r})")
    params: list[Any] = []
    from_sql = _from_clause(c.tables, params)
    where_sql, where_params, py_where = _where(c.where)
    every = [e for _, e in outputs_in] + [e for e, _ in c.order] + keys
    in_sql = not py_where and all(e.sql() is not None for e in every)
    if in_sql:
        return _grouped_sql(c, keys, aggs, from_sql, params, where_sql, where_params)
    python = [f"where {p!r}: {why_python(p)}" for p in py_where]
    bad = next((e for e in every if e.sql() is None), None)
    if bad is not None:
        python.append(f"aggregates and groups in Python, streaming the rows: {why_python(bad)}")
    else:
        python.append("aggregates and groups in Python, streaming the rows: the where() "
                      "condition needs Python")
    sel = _Select()
    first = c.tables[0].meta
    sel.add(f"{first.sql}._rowid")
    key_plan: list[tuple[Expr, int | None, Callable[[Any], Any] | None]] = []
    for k in keys:
        s = value_sql(k) if k.sql() is not None else None
        if s is None:
            key_plan.append((k, None, None))
        else:
            key_plan.append((k, sel.add(s[0], s[1]), value_decoder(k)))
    agg_plan = []
    for a in aggs:
        parts = [value_sql(x) if x.sql() is not None else None for x in a.args] \
            if not a.kwargs else [None]
        cols: list[int] | None = None
        decs: list[Callable[[Any], Any] | None] = []
        if all(p is not None for p in parts):
            cols = [sel.add(p[0], p[1]) for p in parts if p is not None]
            decs = [value_decoder(x) for x in a.args]
        agg_plan.append(Aggregate(a, cols, decs, _error_columns(sel, a)))
    python_exprs = [k for k, i, _ in key_plan if i is None] + py_where + [
        x for a in agg_plan if a.arg_columns is None for x in a.call.children()]
    sel.cells_of(python_exprs)
    # outputs and order keys read the group's first row (its key columns) and the aggregates
    sel.cells_of(_outside_aggregates(e) for e in [*(e for _, e in outputs_in),
                                                   *(e for e, _ in c.order)])
    outputs = [Output(n, e, None, None, None) for n, e in outputs_in]
    sql = f"SELECT {', '.join(sel.frags)} FROM {from_sql}"
    if where_sql:
        sql += " WHERE " + " AND ".join(where_sql)
    sql += f" ORDER BY {first.sql}._rowid"
    return Plan(sql, sel.params + params + where_params, outputs, True, sel.cells, py_where,
                list(c.order), c.offset or 0, c.limit, key_plan, agg_plan, True, None, python)


def _outside_aggregates(e: Expr) -> Expr:
    """``e`` with the arguments of its aggregates left out (what a group's first row gives)."""
    return _Outside(e)


class _Outside(Expr):
    """A view of an expression whose walk() stops at aggregates (for the cells it reads)."""

    def __init__(self, e: Expr) -> None:
        self.e = e

    def walk(self) -> Iterable[Expr]:
        stack = [self.e]
        while stack:
            n = stack.pop()
            if isinstance(n, AggregateCall):
                continue
            yield n
            stack.extend(n.children())


def stored_cells(exprs: Iterable[Expr]) -> list[tuple[TableMeta, ColumnMeta]]:
    """The stored columns ``exprs`` read (through columns computed when read too), once each."""
    out: dict[tuple[int, int], tuple[TableMeta, ColumnMeta]] = {}
    for e in exprs:
        for node in e.walk():
            if isinstance(node, ColumnRef):
                for col_id in node.columns():
                    col = node.table.column_by_id(col_id)
                    if col.stored:
                        out.setdefault((node.table.id, col.col_id), (node.table, col))
    return list(out.values())


def _error_columns(sel: _Select, a: AggregateCall) -> list[int]:
    """SQL columns holding the error types of the stored cells ``a``'s arguments read."""
    return [sel.error_type(t, col) for t, col in stored_cells(a.children())]


def _grouped_sql(c: Clauses, keys: list[Expr], aggs: list[AggregateCall], from_sql: str,
                 params: list[Any], where_sql: list[str], where_params: list[Any]) -> Plan:
    sel = _Select()
    outputs = [_output(sel, name, e) for name, e in c.outputs]
    # error cells among those the aggregates read: count(errortype) per such column
    errors = [f"count({t.sql}.{col.sql_et})"
              for t, col in stored_cells(x for a in aggs for x in a.children())]
    errors_column = sel.add(" + ".join(errors)) if errors else None
    sql = f"SELECT {', '.join(sel.frags)} FROM {from_sql}"
    if where_sql:
        sql += " WHERE " + " AND ".join(where_sql)
    group_params: list[Any] = []
    if keys:
        frags = []
        for k in keys:
            s = k.sql()
            assert s is not None
            frags.append(s[0])
            group_params += s[1]
        sql += " GROUP BY " + ", ".join(frags)
    order_sql, order_params = [], []
    for e, asc in c.order or [(k, True) for k in keys]:
        s = e.sql()
        assert s is not None
        order_sql.append(f"{s[0]} {_ASC if asc else _DESC}")
        order_params += s[1]
    if order_sql:
        sql += " ORDER BY " + ", ".join(order_sql)
    all_params = sel.params + params + where_params + group_params + order_params
    if c.limit is not None or c.offset:
        sql += " LIMIT ? OFFSET ?"
        all_params += [-1 if c.limit is None else c.limit, c.offset or 0]
    return Plan(sql, all_params, outputs, True, [], [], [], 0, None, [], [], False, errors_column,
                [])


# ---- joined tables: unique column ids ------------------------------------------------------------
@dataclasses.dataclass
class _ShiftedColumn(ColumnMeta):
    """A column of a joined table with its id shifted (unique in the query); its SQL names
    stay those of its own id."""

    orig: int = 0

    @property
    def sql(self) -> str:
        return f"c{self.orig}"

    @property
    def sql_et(self) -> str:
        return f"c{self.orig}_et"

    @property
    def sql_em(self) -> str:
        return f"c{self.orig}_em"


@dataclasses.dataclass
class _ShiftedTable(TableMeta):
    """A joined table whose column ids are shifted; finds its columns by either id (a column
    computed when read names others by their own ids)."""

    shift: int = 0

    def column_by_id(self, col_id: int) -> ColumnMeta:
        return super().column_by_id(col_id + self.shift if col_id < self.shift else col_id)


def shifted(meta: TableMeta, shift: int) -> TableMeta:
    """``meta`` with its column ids shifted by ``shift`` (none: ``meta`` itself), for a table
    read after the first in a join."""
    if not shift:
        return meta
    # Every field copied, whatever fields the catalog's records have.
    def moved(c: ColumnMeta) -> ColumnMeta:
        return _ShiftedColumn(**{**_fields(c), "col_id": c.col_id + shift}, orig=c.col_id)

    return _ShiftedTable(**{**_fields(meta), "columns": [moved(c) for c in meta.columns],
                            "hidden": [moved(c) for c in meta.hidden]}, shift=shift)


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def rebind(e: Expr, metas: dict[int, TableMeta]) -> Expr:
    """``e`` with its column references pointing at ``metas`` (by table id; the columns as
    loaded now, which also finds a column dropped since as a NotFoundError)."""
    def visit(node: Expr) -> Expr | None:
        if not isinstance(node, ColumnRef):
            return None
        meta = metas.get(node.table.id)
        if meta is None:
            return node
        try:
            col = meta.column_by_id(node.col.col_id)
        except NotFoundError:
            raise NotFoundError(f"column {node.col.name!r} no longer exists in {meta.path!r}"
                                ) from None
        return ColumnRef(meta, col)
    return e.rewrite(visit)
