"""Queries: ``select / where / join / group_by / order_by / limit / sample / distinct``, and
running them: ``collect``, a streaming ``cursor``, ``count``, ``head``/``tail``, ``explain``.

A :class:`Query` is immutable: each method returns a new one. Running it loads the tables'
metadata, binds the expressions to it, and hands the clauses to :mod:`pxlite.queryplan`, which
says which single SQL statement runs and what Python does with its rows (``Query.plan()``, the
twin of the runners, runs nothing). Rows stream from SQLite: Python evaluates only what SQLite
cannot (a UDF, an image's width, a column computed when read), on the compute threads when that
is an output; memory stays bounded unless Python must sort.

Joined tables share a query's row, so each table's column ids are made unique in it: every
table after the first is read through a copy of its metadata whose column ids are shifted (the
SQL names stay ``t_<id>.c<id>``), and the expressions are rebound to those copies.

Samples order rows by ``pxlite_sample_key(seed, rowid)``, a 64-bit mix (SplitMix64's finalizer)
of the seed and the rowid registered on the connection: the same sample for the same seed in
every process (SQLite's ``random()`` is not seedable), and a row's place does not depend on the
other rows, so ``fraction=`` keeps a row exactly when its key is below the fraction of the range.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import random
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from . import catalog, queryplan
from .catalog import ColumnMeta, TableMeta
from .compute import workers
from .errors import ComputeError, NotFoundError, PxliteError, SchemaError, check_choice
from .exprs import ColumnRef, Expr, Literal, RowContext
from .media import MediaFolder, Resolver
from .queryplan import Clauses, From, Plan, Sampling
from .results import ResultSet
from .types import ColumnType
from .uda import contains_aggregate

if TYPE_CHECKING:
    from .config import Settings
    from .db import Database

#: Rows handed to the compute threads at a time (and between checks of a cursor's consumer).
BATCH = 256

#: Column ids of the n-th table of a join are shifted by n * _SHIFT (ids are per table, small).
_SHIFT = 1 << 32

_MASK = (1 << 64) - 1


class Source(NamedTuple):
    """What a query needs of one table (handed over by ``Table``): how to load its metadata
    now, and to check in a read transaction that it is still the table the query planned with."""

    path: str
    table_id: int
    db: Database
    load: Callable[[], TableMeta]
    recheck: Callable[[TableMeta], None]
    settings: Callable[[], Settings]
    media_folder: MediaFolder


class Joinable(Protocol):
    """A table that can be joined into a query (``Table``)."""

    def _query_source(self) -> Source: ...


class _Started(NamedTuple):
    """A query that started running (see Query._stream)."""

    names: list[str]
    types: list[ColumnType]
    rows: Iterator[tuple]
    value: Callable[[int, Any], Any]
    run: _Run


class _Join(NamedTuple):
    source: Source
    how: str
    on: Expr | None


# ---- rows of a result ----------------------------------------------------------------------------
class Row(Mapping[str, Any]):
    """One row of a cursor (Pixeltable's ``Row``): ``row['col']``, ``keys()``, ``values()``,
    ``items()``, ``'col' in row``; media cells open when read."""

    __slots__ = ("_index", "_value", "_values")

    def __init__(self, values: tuple, index: dict[str, int],
                 value: Callable[[int, Any], Any]) -> None:
        self._values, self._index, self._value = values, index, value

    def __getitem__(self, key: str) -> Any:
        i = self._index.get(key) if isinstance(key, str) else None
        if i is None:
            raise NotFoundError(f"no column {key!r} in this row; it has {list(self._index)}")
        return self._value(i, self._values[i])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(self)!r})"


class ResultCursor:
    """Rows of a query, one at a time, for results larger than memory (Pixeltable's
    ``ResultCursor``). Pending until iterated or opened; iterating to the end, ``close()``, or
    leaving ``with q.cursor() as cur:`` releases the statement. Closed, it cannot be reopened.

    The cursor reads one SQL statement as it goes; rows committed by this connection while it
    is open may or may not appear (SQLite's rule for a table changed under a running statement).
    """

    def __init__(self, query: Query) -> None:
        self._query = query
        self._names, self._types = query._shape()
        self._index = {n: i for i, n in enumerate(self._names)}
        self._rows: Iterator[Row] | None = None
        self._closed = False

    @property
    def schema(self) -> dict[str, ColumnType]:
        """The result's columns: name to type."""
        return dict(zip(self._names, self._types, strict=True))

    def open(self) -> None:
        """Start the query (done by iterating, or by ``with``)."""
        if self._closed:
            raise SchemaError("this cursor is closed and cannot be reopened; ask the query for a "
                              "new one with .cursor()")
        if self._rows is not None:
            raise SchemaError("this cursor is already open")
        started = self._query._stream()
        self._names, self._types = started.names, started.types
        index = self._index = {n: i for i, n in enumerate(started.names)}
        value = started.value
        self._rows = (Row(r, index, value) for r in started.rows)

    def close(self) -> None:
        """Release the statement (again: nothing happens)."""
        if self._rows is not None:
            self._rows.close()  # type: ignore[attr-defined]
        self._rows = None
        self._closed = True

    def __enter__(self) -> ResultCursor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __iter__(self) -> Iterator[Row]:
        if self._closed:
            raise SchemaError("this cursor is closed and cannot be iterated upon; ask the query "
                              "for a new one with .cursor()")
        if self._rows is None:
            self.open()
        assert self._rows is not None
        try:
            yield from self._rows
        finally:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._rows is not None else "pending"
        cols = ", ".join(f"{n}: {t!r}" for n, t in zip(self._names, self._types, strict=True))
        return f"ResultCursor({state}, columns=[{cols}])"


# ---- the query -----------------------------------------------------------------------------------
class Query:
    """A query over a table (and the tables joined to it); immutable, each method returns a new
    Query. Built by ``t.select(...)``, ``t.where(...)``, ``t.join(...)``... (Pixeltable's
    names and rules)."""

    def __init__(self, source: Source, *, joins: tuple[_Join, ...] = (),
                 outputs: list[tuple[str, Expr]] | None = None, where: Expr | None = None,
                 group: list[Expr] | None = None, distinct: bool = False,
                 order: list[tuple[Expr, bool]] | None = None, limit: int | None = None,
                 offset: int | None = None, sample: Sampling | None = None) -> None:
        self._source = source
        self._joins = joins
        self._outputs = outputs
        self._where = where
        self._group = group
        self._distinct = distinct
        self._order = order or []
        self._limit = limit
        self._offset = offset
        self._sample = sample

    def _copy(self, **kw: Any) -> Query:
        args: dict[str, Any] = dict(
            joins=self._joins, outputs=self._outputs, where=self._where, group=self._group,
            distinct=self._distinct, order=self._order, limit=self._limit, offset=self._offset,
            sample=self._sample)
        args.update(kw)
        return Query(self._source, **args)

    # ---- the tables ------------------------------------------------------------------------------
    @property
    def _sources(self) -> list[Source]:
        return [self._source, *(j.source for j in self._joins)]

    def _label(self) -> str:
        paths = [s.path for s in self._sources]
        return repr(paths[0]) if len(paths) == 1 else "the join of " + ", ".join(map(repr, paths))

    def _bind(self, e: Any, what: str) -> Expr:
        """An argument as an expression of this query's tables (a plain value is a literal);
        a column of another table, or one dropped since, is refused now."""
        if not isinstance(e, Expr):
            try:
                return Literal(e)
            except SchemaError as err:
                raise SchemaError(f"{what}: {err}") from None
        sources = {s.table_id: s for s in self._sources}
        metas: dict[int, TableMeta] = {}
        for node in e.walk():
            if not isinstance(node, ColumnRef):
                continue
            src = sources.get(node.table.id)
            if src is None:
                raise SchemaError(
                    f"{what}: {node!r} belongs to table {node.table.path!r}, not "
                    f"{' or '.join(repr(s.path) for s in self._sources)}"
                    + ("" if node.table.path in {s.path for s in self._sources} else
                       "; join it first with .join()"))
            meta = metas.get(src.table_id) or metas.setdefault(src.table_id, src.load())
            if not any(c.col_id == node.col.col_id for c in meta.columns):
                raise NotFoundError(f"column {node.col.name!r} no longer exists in {src.path!r}")
        return e

    def _check_unsampled(self, verb: str) -> None:
        if self._sample is not None:
            raise SchemaError(f"{verb} cannot be used after sample(): a sample is the last step "
                              "of a query (filter with where() before sample())")

    # ---- building -------------------------------------------------------------------------------
    def select(self, *exprs: Any, **named: Any) -> Query:
        """Choose the outputs: columns, expressions, and ``name=expr`` for named outputs;
        ``select()`` with nothing means every column. Unnamed outputs are named after their
        column or function, with ``_1``, ``_2``... when a name repeats."""
        if not exprs and not named:
            return self._copy(outputs=None)
        outputs: list[tuple[str, Expr]] = []
        used: set[str] = set()
        for i, e in enumerate(exprs):
            e = self._bind(e, f"select() item {i}")
            base = e.default_name()
            name, k = base, 1
            while name in used or name in named:
                name, k = f"{base}_{k}", k + 1
            outputs.append((name, e))
            used.add(name)
        for name, e in named.items():
            catalog.check_name(name, "output")
            outputs.append((name, self._bind(e, f"select({name}=...)")))
            used.add(name)
        return self._copy(outputs=outputs)

    def where(self, pred: Expr) -> Query:
        """Keep rows where ``pred`` is true (a condition on the query's columns; chained
        ``where`` calls all apply); parts SQLite can evaluate run in SQL."""
        self._check_unsampled("where()")
        if not isinstance(pred, Expr):
            raise SchemaError(
                f"where() takes a condition on the columns of {self._label()} (e.g. t.x > 1); "
                f"got {type(pred).__name__} {pred!r}")
        pred = self._bind(pred, "where()")
        if pred.type.name != "Bool":
            raise SchemaError(f"where() needs a condition (e.g. t.x > 1), got {pred!r}, a "
                              f"{pred.type.name} value")
        if contains_aggregate(pred):
            raise SchemaError(f"where({pred!r}) calls an aggregate; where() filters rows before "
                              "they are grouped (pxlite, like Pixeltable, has no having())")
        return self._copy(where=pred if self._where is None else self._where & pred)

    def join(self, other: Joinable, on: Any = None, how: str = "inner") -> Query:
        """Join another table: ``how`` is 'inner', 'left', 'full_outer' or 'cross'. ``on`` is a
        condition over both tables (``t1.k == t2.k``), or column(s) of one of them matched by
        name in the other (``on=t2.k`` or ``on=[t1.k, t1.j]``); none for 'cross'. One SQL
        statement reads both tables."""
        self._check_unsampled("join()")
        check_choice(how, "how", tuple(queryplan.JOINS))
        if not hasattr(other, "_query_source"):
            raise SchemaError(f"join() takes a table, got {type(other).__name__} {other!r}")
        src = other._query_source()
        if src.db is not self._source.db:
            raise SchemaError(f"cannot join {src.path!r}: it belongs to another database than "
                              f"{self._source.path!r}")
        if any(s.table_id == src.table_id for s in self._sources):
            raise SchemaError(f"{src.path!r} is already in this query; pxlite does not join a "
                              "table with itself")
        joined = self._copy(joins=(*self._joins, _Join(src, how, None)))
        if how == "cross":
            if on is not None:
                raise SchemaError("a cross join takes no on= condition (every row meets every "
                                  "row)")
            return joined
        if on is None:
            raise SchemaError(f"join(how={how!r}) needs on=: a condition such as t1.k == t2.k, or "
                              "the column(s) matched by name, e.g. on=t2.k")
        pred = joined._join_condition(src, on)
        return self._copy(joins=(*self._joins, _Join(src, how, pred)))

    def _join_condition(self, other: Source, on: Any) -> Expr:
        if isinstance(on, ColumnRef):
            on = [on]
        if isinstance(on, Expr):
            pred = self._bind(on, "join(on=...)")
            if pred.type.name != "Bool":
                raise SchemaError(f"join(on=...) takes a condition (a Bool), got {on!r}, a "
                                  f"{pred.type.name} value")
            return pred
        if not isinstance(on, (list, tuple)) or not on or \
                not all(isinstance(c, ColumnRef) for c in on):
            raise SchemaError("join(on=...) takes a condition, or a column or a list of columns "
                              f"matched by name in both tables; got {on!r}")
        preds: list[Expr] = []
        before = self._sources[:-1]
        for ref in on:
            self._bind(ref, "join(on=...)")
            name = ref.col.name
            theirs = other.load()
            if ref.table.id == other.table_id:  # their column: find its namesake before them
                matches = []
                for s in before:
                    meta = s.load()
                    matches += [ColumnRef(meta, c) for c in meta.columns
                                if c.name == name and not c.pending]
                if not matches:
                    raise NotFoundError(f"join(on=...): column {name!r} is not in any of "
                                        f"{', '.join(repr(s.path) for s in before)}")
                if len(matches) > 1:
                    raise SchemaError(f"join(on=...): ambiguous column {name!r}: it is in "
                                      f"several of the joined tables; write the condition, e.g. "
                                      f"on=t1.{name} == t2.{name}")
                preds.append(matches[0] == ref)
            else:
                col = next((c for c in theirs.columns if c.name == name and not c.pending),
                           None)
                if col is None:
                    raise NotFoundError(f"join(on=...): column {name!r} is not in the joined "
                                        f"table {other.path!r}")
                preds.append(ref == ColumnRef(theirs, col))
        pred = preds[0]
        for p in preds[1:]:
            pred = pred & p
        return pred

    def group_by(self, *exprs: Any) -> Query:
        """Group the rows by these expressions: the outputs are then group keys and
        aggregates (``pxlf.count``, ``pxlf.mean``..., or an ``@pxl.uda``), one row per group."""
        self._check_unsampled("group_by()")
        if self._group is not None or self._distinct:
            raise SchemaError("group_by() was given already (or distinct(), which groups by the "
                              "outputs); pass every key in one group_by(...)")
        if not exprs:
            raise SchemaError("group_by() needs at least one expression, e.g. "
                              "group_by(t.label)")
        keys = []
        for i, e in enumerate(exprs):
            if not isinstance(e, Expr):
                raise SchemaError(f"group_by() takes expressions of the query's columns (e.g. "
                                  f"t.label); argument {i} is {type(e).__name__} {e!r}")
            if contains_aggregate(e):
                raise SchemaError(f"group_by({e!r}): a group key cannot call an aggregate")
            keys.append(self._bind(e, "group_by()"))
        return self._copy(group=keys)

    def distinct(self) -> Query:
        """Drop repeated rows: the outputs (every column without select()) become the group
        keys (Pixeltable's distinct)."""
        self._check_unsampled("distinct()")
        if self._group is not None:
            raise SchemaError("distinct() cannot be used with group_by(): it groups by the "
                              "outputs itself")
        return self._copy(distinct=True)

    def order_by(self, *exprs: Any, asc: bool = True) -> Query:
        """Sort by these expressions (``asc=False``: descending); chained calls add keys after
        the earlier ones. None sorts last ascending and first descending (as in Pixeltable and
        PostgreSQL). Rows equal on every key stay in table order."""
        self._check_unsampled("order_by()")
        if not isinstance(asc, bool):
            raise SchemaError(f"order_by(asc=...) takes True or False, got {asc!r}")
        if not exprs:
            raise SchemaError("order_by() needs at least one expression, e.g. order_by(t.n)")
        keys = []
        for i, e in enumerate(exprs):
            if not isinstance(e, Expr):
                raise SchemaError(f"order_by() takes expressions of the query's columns (e.g. "
                                  f"t.n); argument {i} is {type(e).__name__} {e!r}")
            keys.append((self._bind(e, "order_by()"), asc))
        return self._copy(order=self._order + keys)

    def limit(self, n: int, offset: int | None = None) -> Query:
        """At most ``n`` rows, after skipping ``offset`` rows (for pages: ``limit(10,
        offset=20)`` gives rows 21 to 30)."""
        self._check_unsampled("limit()")
        _check_count(n, "limit()")
        if offset is not None:
            _check_count(offset, "limit(offset=...)")
        return self._copy(limit=n, offset=offset)

    def sample(self, n: int | None = None, n_per_stratum: int | None = None,
               fraction: float | None = None, seed: int | None = None,
               stratify_by: Any = None) -> Query:
        """A shuffled sample of the rows (Pixeltable's ``sample``): ``n`` rows, ``fraction`` of
        the rows (0 to 1), or ``n_per_stratum`` rows of each stratum, strata being the
        distinct values of ``stratify_by`` (an expression or a list). The same ``seed`` gives
        the same sample, in any process; without one, each run draws anew. Filter with
        ``where()`` before; nothing but running follows a sample."""
        if self._sample is not None:
            raise SchemaError("sample() was given already: a query takes one sample")
        for verb, used in (("group_by()", self._group is not None or self._distinct),
                           ("order_by()", bool(self._order)),
                           ("limit()", self._limit is not None or self._offset is not None),
                           ("join()", bool(self._joins))):
            if used:
                raise SchemaError(f"sample() cannot be used with {verb}")
        if (n is not None) + (n_per_stratum is not None) + (fraction is not None) != 1:
            raise SchemaError("sample() takes exactly one of n=, n_per_stratum= or fraction=")
        if n_per_stratum is not None and stratify_by is None:
            raise SchemaError("sample(n_per_stratum=...) needs stratify_by=, the expression(s) "
                              "whose values make the strata")
        for name, v in (("n", n), ("n_per_stratum", n_per_stratum)):
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise SchemaError(f"sample({name}=...) takes a whole number, got "
                                      f"{type(v).__name__} {v!r}")
                if v < 1:
                    raise SchemaError(f"sample({name}=...) must be >= 1, got {v}")
        if fraction is not None:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise SchemaError(f"sample(fraction=...) takes a number from 0 to 1, got "
                                  f"{type(fraction).__name__} {fraction!r}")
            if not 0.0 <= fraction <= 1.0:
                raise SchemaError(f"sample(fraction=...) must be >= 0 and <= 1, got {fraction}")
        if seed is None:
            seed = random.getrandbits(63)
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise SchemaError(f"sample(seed=...) takes a whole number, got "
                              f"{type(seed).__name__} {seed!r}")
        strata: list[Expr] = []
        if stratify_by is not None:
            items = stratify_by if isinstance(stratify_by, (list, tuple)) else [stratify_by]
            if not isinstance(stratify_by, (list, tuple, Expr)):
                raise SchemaError(f"stratify_by= takes an expression or a list of them, got "
                                  f"{type(stratify_by).__name__} {stratify_by!r}")
            for e in items:
                if not isinstance(e, Expr):
                    raise SchemaError(f"stratify_by= takes expressions of the query's columns; "
                                      f"got {type(e).__name__} {e!r}")
                e = self._bind(e, "stratify_by")
                if e.type.name == "Json" or e.type.is_media:
                    raise SchemaError(f"stratify_by={e!r}: a stratum is a scalar value (a "
                                      f"number, string, bool or timestamp), not {e.type.name}")
                strata.append(e)
        return self._copy(sample=Sampling(n, n_per_stratum, None if fraction is None else
                                          float(fraction), seed & _MASK, tuple(strata)))

    # ---- planning -------------------------------------------------------------------------------
    def _load(self) -> list[TableMeta]:
        """The tables' metadata now (before the read transaction: see :meth:`_checked`)."""
        return [s.load() for s in self._sources]

    def _checked(self, metas: list[TableMeta]) -> list[TableMeta]:
        """Inside the read transaction the query runs in: are the tables still those the
        metadata describes? (Another connection may have dropped one meanwhile: that is a
        NotFoundError naming it, never a read of another table.)"""
        for s, meta in zip(self._sources, metas, strict=True):
            s.recheck(meta)
        return metas

    def _clauses(self, metas: list[TableMeta]) -> Clauses:
        """The query's clauses bound to ``metas`` (see module docstring)."""
        views = [_shifted(m, i * _SHIFT) for i, m in enumerate(metas)]
        by_id = {m.id: v for m, v in zip(metas, views, strict=True)}

        def bind(e: Expr) -> Expr:
            return _rebind(e, by_id)

        tables = [From(views[0])] + [
            From(v, j.how, None if j.on is None else bind(j.on))
            for v, j in zip(views[1:], self._joins, strict=True)]
        group = None if self._group is None else [bind(e) for e in self._group]
        if self._outputs is not None:
            outputs = [(n, bind(e)) for n, e in self._outputs]
        elif group is not None:  # grouped without select(): the keys
            outputs = _named(group)
        else:
            outputs = _default_outputs(views)
        if self._distinct:
            group = [e for _, e in outputs]
        sample = self._sample
        if sample is not None:
            sample = sample._replace(strata=tuple(bind(e) for e in sample.strata))
        return Clauses(tables, outputs, None if self._where is None else bind(self._where), group,
                       [(bind(e), asc) for e, asc in self._order], self._limit, self._offset,
                       sample)

    def plan(self) -> Plan:
        """The plan of this query as it would run now: its SQL statement and parameters and
        what runs in Python and why (see :mod:`pxlite.queryplan`). Runs nothing."""
        metas = self._load()
        with self._source.db.read():
            return queryplan.build(self._clauses(self._checked(metas)))

    def collect_sql(self) -> tuple[str, list[Any]]:
        """The SQL statement ``collect()`` runs, with its parameters (the plan twin)."""
        p = self.plan()
        return p.sql, p.params

    def explain(self) -> None:
        """Print the SQL this query runs, SQLite's plan for it (which index it uses) and every
        part that runs in Python, with the reason."""
        print(self._explain())

    def _explain(self) -> str:
        db = self._source.db
        metas = self._load()
        with db.read():
            p = queryplan.build(self._clauses(self._checked(metas)))
            _register_functions(db)
            steps = db.query(f"EXPLAIN QUERY PLAN {p.sql}", p.params)
        lines = [f"Query on {self._label()}", f"SQL: {p.sql}"]
        if p.params:
            lines.append(f"parameters: {_short(p.params)}")
        lines.append("SQLite's plan:")
        lines += [f"  {r[-1]}" for r in steps]
        if p.python:
            lines.append("In Python:")
            lines += [f"  {x}" for x in p.python]
        else:
            lines.append("In Python: nothing (SQLite computes the whole query)")
        return "\n".join(lines)

    def _shape(self) -> tuple[list[str], list[ColumnType]]:
        metas = self._load()
        with self._source.db.read():
            c = self._clauses(self._checked(metas))
        return [n for n, _ in c.outputs], [e.type for _, e in c.outputs]

    @property
    def schema(self) -> dict[str, ColumnType]:
        """The result's columns, name to type, as the query would run now."""
        names, types = self._shape()
        return dict(zip(names, types, strict=True))

    # ---- running --------------------------------------------------------------------------------
    def _stream(self, *, reverse: bool = False, rowids: bool = False) -> _Started:
        """Start the query: the statement runs now, its rows are read as the iterator of
        output tuples is (media cells as their stored reference: ``value`` turns one into its
        value). ``reverse``: newest rows first (tail); ``rowids``: each tuple starts with the
        first table's rowid."""
        db = self._source.db
        metas = self._load()
        with db.read():
            clauses = self._clauses(self._checked(metas))
            if reverse:
                clauses = clauses._replace(reverse=True)
            p = queryplan.build(clauses)
            if clauses.sample is not None:
                _register_functions(db)
            cursor = db.execute(p.sql, p.params)
        resolver = Resolver(self._source.settings(), self._source.media_folder)
        media = [o.media for o in p.outputs]

        def value(i: int, v: Any) -> Any:
            col = media[i]
            return v if col is None or v is None else resolver.value(col, v)

        run = _Run(p, resolver, self._label(), rowids=rowids)
        return _Started([o.name for o in p.outputs], [o.expr.type for o in p.outputs],
                        run.rows(db, cursor), value, run)

    def _result(self, *, reverse: bool = False) -> ResultSet:
        started = self._stream(reverse=reverse)
        data = list(started.rows)
        if reverse:
            data.reverse()
        return ResultSet(started.names, started.types, data, started.value,
                         errors_skipped=started.run.skipped)

    def collect(self) -> ResultSet:
        """Run the query; media cells load lazily when the result is read. Aggregates that
        skipped error cells say how many (``errors_skipped``, and a note under the table)."""
        return self._result()

    def cursor(self) -> ResultCursor:
        """A :class:`ResultCursor` over the rows: for results larger than memory."""
        return ResultCursor(self)

    def count(self) -> int:
        """The number of rows the query gives (groups, for a grouped query); SQL only when
        the conditions allow."""
        db = self._source.db
        metas = self._load()
        with db.read():
            clauses = self._clauses(self._checked(metas))
            if clauses.group is None and not any(
                    contains_aggregate(e) for _, e in clauses.outputs):
                clauses = clauses._replace(outputs=[], order=[])
            p = queryplan.build(clauses)
            if clauses.sample is not None:
                _register_functions(db)
            if not p.needs_rows and not p.in_python:
                return int(db.query(f"SELECT count(*) FROM ({p.sql})", p.params)[0][0])
            cursor = db.execute(p.sql, p.params)
        resolver = Resolver(self._source.settings(), self._source.media_folder)
        return sum(1 for _ in _Run(p, resolver, self._label()).rows(db, cursor))

    def head(self, n: int = 10) -> ResultSet:
        """The first ``n`` rows (in the query's order; table order without order_by)."""
        self._check_unsampled("head()")
        return self.limit(n).collect()

    def show(self, n: int = 20) -> ResultSet:
        """The first ``n`` rows, to look at."""
        self._check_unsampled("show()")
        return self.limit(n).collect()

    def tail(self, n: int = 10) -> ResultSet:
        """The last ``n`` rows in table (insertion) order, oldest first."""
        self._check_unsampled("tail()")
        for verb, used in (("order_by()", bool(self._order)), ("join()", bool(self._joins)),
                           ("group_by()", self._group is not None or self._distinct)):
            if used:
                raise SchemaError(f"tail() cannot be used with {verb}: it gives the last rows "
                                  "in table order; use order_by(..., asc=False).limit(n)")
        _check_count(n, "tail()")
        return self._copy(limit=n, offset=None)._result(reverse=True)

    def rowids(self) -> Iterator[int]:
        """The rowids of the first table's rows this query matches (for writes whose where()
        needs Python)."""
        return (r[0] for r in self._copy(outputs=[], order=[])._stream(rowids=True).rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.collect())

    def __repr__(self) -> str:
        parts = [f"table {self._source.path!r}"]
        for j in self._joins:
            parts.append(f"{j.how} join {j.source.path!r}"
                         + ("" if j.on is None else f" on {j.on!r}"))
        if self._outputs is not None:
            parts.append("select " + ", ".join(f"{n}={e!r}" for n, e in self._outputs))
        if self._where is not None:
            parts.append(f"where {self._where!r}")
        if self._group is not None:
            parts.append("group by " + ", ".join(map(repr, self._group)))
        if self._distinct:
            parts.append("distinct")
        if self._order:
            parts.append("order by " + ", ".join(f"{e!r}{'' if a else ' desc'}"
                                                 for e, a in self._order))
        if self._limit is not None:
            parts.append(f"limit {self._limit}")
        if self._offset:
            parts.append(f"offset {self._offset}")
        if self._sample is not None:
            s = self._sample
            strata = ", ".join(map(repr, s.strata))
            parts.append(f"sample(n={s.n}, n_per_stratum={s.n_per_stratum}, "
                         f"fraction={s.fraction}, seed={s.seed}, stratify_by=[{strata}])")
        return "<Query " + "; ".join(parts) + ">"


def _check_count(n: Any, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
        raise SchemaError(f"{what} takes a whole number from 0 to 2**63 - 1, got {n!r}")


def _short(params: Sequence[Any]) -> str:
    text = repr(list(params))
    return text if len(text) <= 200 else text[:197] + "..."


def _named(exprs: list[Expr]) -> list[tuple[str, Expr]]:
    """Expressions as outputs named after them, made unique with _1, _2..."""
    outputs: list[tuple[str, Expr]] = []
    used: set[str] = set()
    for e in exprs:
        base = e.default_name()
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        outputs.append((name, e))
    return outputs


def _default_outputs(views: list[TableMeta]) -> list[tuple[str, Expr]]:
    """Every complete column of every table, names made unique with _1, _2..."""
    outputs: list[tuple[str, Expr]] = []
    used: set[str] = set()
    for v in views:
        for c in v.columns:
            if c.pending:
                continue
            name, k = c.name, 1
            while name in used:
                name, k = f"{c.name}_{k}", k + 1
            used.add(name)
            outputs.append((name, ColumnRef(v, c)))
    return outputs


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


def _shifted(meta: TableMeta, shift: int) -> TableMeta:
    if not shift:
        return meta
    cols: list[ColumnMeta] = [
        _ShiftedColumn(c.col_id + shift, c.name, c.position, c.type, c.expr, c.destination,
                       c.format, c.on_error, c.pending, c.stored, orig=c.col_id)
        for c in meta.columns]
    return _ShiftedTable(meta.id, meta.uid, meta.path, cols, shift=shift)


def _rebind(e: Expr, metas: dict[int, TableMeta]) -> Expr:
    """``e`` with its column references pointing at ``metas`` (by table id; the columns as
    loaded now, which also finds a column dropped since as a NotFoundError). Other nodes are
    copied when a child changes; their children are the Expr-valued attributes (and lists,
    tuples and dicts of them), the convention of every node in exprs.py."""
    if isinstance(e, ColumnRef):
        meta = metas.get(e.table.id)
        if meta is None:
            return e
        try:
            col = meta.column_by_id(e.col.col_id)
        except NotFoundError:
            raise NotFoundError(f"column {e.col.name!r} no longer exists in {meta.path!r}"
                                ) from None
        return ColumnRef(meta, col)
    changed: dict[str, Any] = {}
    for k, v in vars(e).items():
        nv = _rebind_value(v, metas)
        if nv is not v:
            changed[k] = nv
    if not changed:
        return e
    out = copy.copy(e)
    for k, v in changed.items():
        setattr(out, k, v)
    return out


def _rebind_value(v: Any, metas: dict[int, TableMeta]) -> Any:
    if isinstance(v, Expr):
        return _rebind(v, metas)
    if isinstance(v, (list, tuple)) and any(isinstance(x, Expr) for x in v):
        items = [_rebind_value(x, metas) for x in v]
        if all(a is b for a, b in zip(items, v, strict=True)):
            return v
        return type(v)(items) if isinstance(v, list) else tuple(items)
    if isinstance(v, dict) and any(isinstance(x, Expr) for x in v.values()):
        new = {k: _rebind_value(x, metas) for k, x in v.items()}
        return v if all(new[k] is v[k] for k in v) else new
    return v


# ---- the sample key ------------------------------------------------------------------------------
def _mix(x: int) -> int:
    """SplitMix64's finalizer: a bijection of 64-bit integers that spreads every input bit."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def sample_key(seed: int, rowid: int) -> int:
    """A row's place in a sample: uniform over 0..2**63-1, fixed by (seed, rowid)."""
    return _mix(_mix(seed & _MASK) ^ (rowid & _MASK)) >> 1


_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def _register_functions(db: Database) -> None:
    """Register the sample key on this database's connection (once)."""
    conn = db.sqlite
    if conn not in _registered:
        conn.create_scalar_function(queryplan.SAMPLE_KEY, sample_key,  # type: ignore[arg-type]
                                    2, deterministic=True)
        _registered.add(conn)


# ---- running a plan ------------------------------------------------------------------------------
class _GroupRow(RowContext):
    """A group's row for its outputs: its first row's cells and the aggregates' values."""

    def __init__(self, raw: dict[int, Any], errors: dict[int, tuple[Any, Any]],
                 media: Resolver, rowid: int | None, aggregates: dict[int, Any]) -> None:
        super().__init__(raw, errors, media, rowid=rowid)
        self.aggregates = aggregates


class _Group:
    __slots__ = ("first", "keys", "states")

    def __init__(self, keys: list[Any], first: tuple[dict[int, Any], dict[int, Any], Any],
                 states: list[Any]) -> None:
        self.keys, self.first, self.states = keys, first, states


class _Run:
    """One run of a plan over the rows its statement returns."""

    def __init__(self, plan: Plan, resolver: Resolver, label: str, *, rowids: bool = False
                 ) -> None:
        self.plan = plan
        self.resolver = resolver
        self.label = label
        self.skipped = 0           # error cells the aggregates skipped
        self.want_rowids = rowids

    def rows(self, db: Database, cursor: Any) -> Iterator[tuple]:
        """The output tuples of the statement ``cursor`` runs (read in batches under the
        connection's lock)."""
        stream = db.stream(cursor, BATCH)
        try:
            if self.plan.in_python:
                yield from self._grouped(stream)
            elif self.plan.grouped:
                yield from self._grouped_sql(stream)
            else:
                yield from self._rows(stream)
        finally:
            stream.close()  # type: ignore[attr-defined]

    # -- helpers --
    def _context(self, r: tuple) -> RowContext:
        cells = self.plan.cells
        return RowContext({c.col_id: r[i] for c, i in cells},
                          {c.col_id: (r[i + 1], r[i + 2]) for c, i in cells
                           if r[i + 1] is not None}, self.resolver, rowid=r[0])

    def _eval(self, name: str, e: Expr, rc: RowContext) -> Any:
        """One output of one row; a function that fails (a UDF may raise anything) is a
        ComputeError naming the row, the output and its expression, and the cause."""
        try:
            return e.eval(rc)
        except PxliteError:
            raise
        except Exception as err:
            raise ComputeError(
                f"computing {name} = {e!r} of {self.label} failed for row {rc.rowid}: "
                f"{type(err).__name__}: {err}", table=self.label, row=rc.rowid, column=name,
                errortype=type(err).__name__) from err

    def _filtered(self, cursor: Iterable[tuple]) -> Iterator[tuple[tuple, RowContext]]:
        py_where = self.plan.py_where
        for r in cursor:
            rc = self._context(r)
            if all(self._true(p, rc) for p in py_where):
                yield r, rc
            else:
                rc.close_opened()

    def _true(self, p: Expr, rc: RowContext) -> bool:
        return self._eval("where", p, rc) is True

    # -- rows --
    def _rows(self, cursor: Iterable[tuple]) -> Iterator[tuple]:
        p = self.plan
        if self.want_rowids:
            outs: list[queryplan.Output] = []
        else:
            outs = p.outputs
        py_outputs = any(o.column is None for o in outs)
        if not (p.py_where or p.py_order or py_outputs):
            specs = [(o.column, o.decode) for o in outs]
            stream: Iterable[tuple] = cursor
            if p.skip or p.take is not None:
                stream = itertools.islice(cursor, p.skip, None if p.take is None
                                          else p.skip + p.take)
            for r in stream:
                vals = self._decoded(r, specs)
                yield (r[0], *vals) if self.want_rowids else vals
            return
        items: Iterable[tuple[tuple, RowContext]] = self._filtered(cursor)
        if p.py_order:
            items = self._sorted(list(items), p.py_order)
        if p.skip or p.take is not None:
            items = itertools.islice(items, p.skip, None if p.take is None else p.skip + p.take)

        def one(item: tuple[tuple, RowContext]) -> tuple:
            r, rc = item
            vals = []
            for o in outs:
                if o.column is None:
                    vals.append(self._eval(o.name, o.expr, rc))
                else:
                    vals.append(self._decoded(r, [(o.column, o.decode)])[0])
            rc.close_opened(keep=vals)
            return (r[0], *vals) if self.want_rowids else tuple(vals)

        it = iter(items)
        with ThreadPoolExecutor(max_workers=workers(),
                                thread_name_prefix="pxlite-query") as pool:
            while True:
                batch = list(itertools.islice(it, BATCH))
                if not batch:
                    return
                if py_outputs and len(batch) > 1:
                    # Computed outputs (a column computed when read, a function in select) run
                    # on the compute threads, one per core, as computed columns do.
                    yield from pool.map(one, batch)
                else:
                    yield from map(one, batch)

    @staticmethod
    def _decoded(r: tuple, specs: list[tuple[Any, Any]]) -> tuple:
        """The SQL columns ``specs`` of row ``r``, decoded; a crafted cell's error names its
        row (the first column)."""
        try:
            return tuple(r[i] if d is None else d(r[i]) for i, d in specs)
        except queryplan.BadCell as e:
            raise SchemaError(f"column {e.column!r}, row {r[0]}: {e.reason}") from None

    def _sorted(self, items: list[tuple[Any, RowContext]], order: list[tuple[Expr, bool]]
                ) -> list[tuple[Any, RowContext]]:
        # Stable sorts from the last key to the first: None last ascending, first descending.
        keyed = [(it, [self._eval("order_by", e, it[1]) for e, _ in order]) for it in items]
        for k in range(len(order) - 1, -1, -1):
            asc = order[k][1]
            keyed.sort(key=lambda x, k=k: order_key(x[1][k]), reverse=not asc)  # type: ignore[misc]
        return [it for it, _ in keyed]

    # -- groups --
    def _grouped_sql(self, cursor: Iterable[tuple]) -> Iterator[tuple]:
        p = self.plan
        specs = [(o.column, o.decode) for o in p.outputs if o.column is not None]
        err = p.errors_column
        for r in cursor:
            if err is not None and r[err]:
                self.skipped += r[err]
            yield tuple(r[i] if d is None else d(r[i]) for i, d in specs)

    def _grouped(self, cursor: Iterable[tuple]) -> Iterator[tuple]:
        p = self.plan
        groups: dict[Any, _Group] = {}
        err_cols = sorted({i for a in p.aggregates for i in a.error_columns})
        python_heavy = any(i is None for _, i, _ in p.keys) or any(
            a.arg_columns is None for a in p.aggregates)

        def prepare(r: tuple) -> tuple | None:
            rc = self._context(r) if p.cells else None
            try:
                if p.py_where:
                    assert rc is not None
                    if not all(self._true(x, rc) for x in p.py_where):
                        return None
                keys = []
                for k, i, d in p.keys:
                    if i is None:
                        assert rc is not None
                        keys.append(self._eval("group_by", k, rc))
                    else:
                        keys.append(r[i] if d is None else d(r[i]))
                calls = [self._arguments(a, r, rc) for a in p.aggregates]
                errors = sum(1 for i in err_cols if r[i] is not None)
                first = (rc.raw, rc.errors, r[0]) if rc is not None else ({}, {}, r[0])
                return keys, calls, errors, first
            finally:
                if rc is not None:
                    rc.close_opened()

        it = iter(cursor)
        with ThreadPoolExecutor(max_workers=workers(),
                                thread_name_prefix="pxlite-query") as pool:
            while True:
                batch = list(itertools.islice(it, BATCH))
                if not batch:
                    break
                prepared = pool.map(prepare, batch) if python_heavy and len(batch) > 1 else \
                    map(prepare, batch)
                for item in prepared:
                    if item is not None:
                        self._update(groups, *item)
        if not p.keys and not groups:  # a whole-query aggregate over no rows: one row
            groups[()] = _Group([], ({}, {}, None), [a.call.fn.start(a.call.options)
                                                     for a in p.aggregates])
        yield from self._group_outputs(list(groups.values()))

    def _arguments(self, a: queryplan.Aggregate, r: tuple, rc: RowContext | None
                   ) -> tuple[list[Any], dict[str, Any]] | None:
        """What one row passes to an aggregate's update(): None to skip the row (a cell its
        arguments read holds an error)."""
        if any(r[i] is not None for i in a.error_columns):
            return None
        if a.arg_columns is not None:
            return [r[i] if d is None else d(r[i])
                    for i, d in zip(a.arg_columns, a.decoders, strict=True)], {}
        assert rc is not None
        try:
            return a.call.arguments(rc)
        except PxliteError:
            raise
        except Exception as e:
            raise ComputeError(
                f"computing the argument of {a.call!r} of {self.label} failed for row "
                f"{rc.rowid}: {type(e).__name__}: {e}", table=self.label, row=rc.rowid,
                errortype=type(e).__name__) from e

    def _update(self, groups: dict[Any, _Group], keys: list[Any], calls: list[Any],
                errors: int, first: tuple[dict[int, Any], dict[int, Any], Any]) -> None:
        p = self.plan
        gk = tuple(_hashable(k) for k in keys)
        g = groups.get(gk)
        if g is None:
            g = groups[gk] = _Group(keys, first, [a.call.fn.start(a.call.options)
                                                  for a in p.aggregates])
        self.skipped += errors
        for a, state, call in zip(p.aggregates, g.states, calls, strict=True):
            if call is None:
                continue
            args, kwargs = call
            if a.call.skips(args, kwargs):
                continue
            try:
                state.update(*args, **kwargs)
            except PxliteError:
                raise
            except Exception as e:
                raise ComputeError(f"the aggregate {a.call!r} of {self.label} failed in "
                                   f"update(): {type(e).__name__}: {e}",
                                   table=self.label, errortype=type(e).__name__) from e

    def _group_outputs(self, groups: list[_Group]) -> Iterator[tuple]:
        p = self.plan
        rows: list[tuple[tuple, list[Any]]] = []
        for g in groups:
            values = {}
            for a, state in zip(p.aggregates, g.states, strict=True):
                try:
                    values[id(a.call)] = state.value()
                except PxliteError:
                    raise
                except Exception as e:
                    raise ComputeError(f"the aggregate {a.call!r} of {self.label} failed in "
                                       f"value(): {type(e).__name__}: {e}", table=self.label,
                                       errortype=type(e).__name__) from e
            raw, errors, rowid = g.first
            row = _GroupRow(dict(raw), dict(errors), self.resolver, rowid, values)
            out = tuple(self._eval(o.name, o.expr, row) for o in p.outputs)
            order = [self._eval("order_by", e, row) for e, _ in p.py_order] if p.py_order \
                else g.keys
            rows.append((out, order))
        asc = [a for _, a in p.py_order] if p.py_order else [True] * len(p.keys)
        for k in range(len(asc) - 1, -1, -1):
            rows.sort(key=lambda x, k=k: order_key(x[1][k]), reverse=not asc[k])  # type: ignore[misc]
        end = None if p.take is None else p.skip + p.take
        for out, _ in rows[p.skip:end]:
            yield out


def order_key(v: Any) -> tuple:
    """A sort key for one value, in SQLite's order of kinds (numbers, then text, then other
    values), None after everything (so last ascending and first descending)."""
    if v is None:
        return (1,)
    if isinstance(v, (bool, int, float)):
        return (0, 0, v)
    if isinstance(v, str):
        return (0, 1, v)
    if isinstance(v, (bytes, bytearray)):
        return (0, 3, bytes(v))
    if hasattr(v, "isoformat"):
        return (0, 2, v.isoformat())
    return (0, 4, json.dumps(v, sort_keys=True, default=repr))


def _hashable(v: Any) -> Any:
    """A group key's value as a dict key (lists and dicts by their JSON)."""
    try:
        hash(v)
        return v
    except TypeError:
        return ("json", json.dumps(v, sort_keys=True, default=repr))


