"""Queries: ``select / where / join / group_by / order_by / limit / sample / distinct``, and
running them: ``collect``, a streaming ``cursor``, ``count``, ``head``/``tail``, ``explain``.

A :class:`Query` is immutable: each method returns a new one. Running it loads the tables'
metadata, binds the expressions to it, and hands the clauses to :mod:`pxlite.queryplan`, which
says which single SQL statement runs and what Python does with its rows (``Query.plan()``, the
twin of the runners, runs nothing). Rows stream from SQLite: Python evaluates only what SQLite
cannot (a UDF, an image's width, a column computed when read); memory stays bounded unless
Python must sort.

Joined tables share a query's row, so each table's column ids are made unique in it (see
:func:`pxlite.queryplan.shifted`).

Running the plan's statement and turning its rows into results is :mod:`pxlite.queryrun`'s.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from . import catalog, embeddings, queryplan, vecfilter, vecsearch
from .catalog import TableMeta
from .errors import NotFoundError, SchemaError, check_choice
from .exprs import ColumnRef, Expr, Literal
from .media import MediaFolder, Resolver
from .queryplan import Clauses, From, Plan, Sampling
from .queryrun import ResultCursor, Run, register_functions
from .results import ResultSet
from .types import ColumnType
from .uda import contains_aggregate

if TYPE_CHECKING:
    from .config import Settings
    from .db import Database

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
    resolve: Callable[[str], str]      # the absolute URI of a stored reference
    #: A view's bases (table ids): their columns are the view's, under their own ids, so a
    #: base's column (``videos.video``) in a query of the view reads each row's base value.
    bases: tuple[int, ...] = ()


class Joinable(Protocol):
    """A table that can be joined into a query (``Table``)."""

    def _query_source(self) -> Source: ...


class _Started(NamedTuple):
    """A query that started running (see Query._stream)."""

    names: list[str]
    types: list[ColumnType]
    rows: Iterator[tuple]
    value: Callable[[int, Any], Any]
    run: Run


class _Join(NamedTuple):
    source: Source
    how: str
    on: Expr | None


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
        for s in self._sources:
            for b in s.bases:
                sources.setdefault(b, s)
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
        for s in self._sources:
            if src.table_id in s.bases or s.table_id in src.bases:
                view, base = (s, src) if src.table_id in s.bases else (src, s)
                raise SchemaError(f"cannot join {src.path!r}: {base.path!r} is a base of the "
                                  f"view {view.path!r}, whose rows show its columns already; "
                                  "query the view alone")
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
        seed = _check_sample(n, n_per_stratum, fraction, seed, stratify_by)
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

    def view_definition(self) -> tuple[Source, Expr | None]:
        """What ``create_view`` takes from a query: its table and its ``where()`` condition.
        A view keeps every column of its base and follows its rows, so a query with anything
        else (select, join, group_by, distinct, order_by, limit, sample) cannot define one."""
        for clause, used in (("select()", self._outputs is not None),
                             ("join()", bool(self._joins)),
                             ("group_by()", self._group is not None),
                             ("distinct()", self._distinct), ("order_by()", bool(self._order)),
                             ("limit()", self._limit is not None or bool(self._offset)),
                             ("sample()", self._sample is not None)):
            if used:
                raise SchemaError(
                    f"{clause} cannot be used in a view definition: a view is its base's rows "
                    "(those a where() keeps) with all their columns; define it with "
                    "create_view(path, t) or create_view(path, t.where(...)), then query it")
        return self._source, self._where

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

    def _clauses(self, metas: list[TableMeta], *, bind: bool = True) -> Clauses:
        """The query's clauses bound to ``metas`` (see module docstring); ``bind``: with their
        similarities bound to their indexes (see pxlite.embeddings.bind)."""
        c = self._unbound_clauses(metas)
        if bind:
            exprs = [e for _, e in c.outputs] + [e for e, _ in c.order] + (c.group or []) + [
                x for x in (c.where, *(t.on for t in c.tables)) if x is not None]
            embeddings.bind_all(exprs, self._source.db, self._source.settings)
        return c

    def _searched(self, clauses: Clauses) -> tuple[Clauses, str | None]:
        """A query ordered first by a similarity: its rows found by an exact top-k over the
        index (pxlite.vecsearch.TopK) among the rows its where() selects, and the query
        rewritten to read just those; with a line saying so for explain()."""
        search = vecsearch.TopK.of(clauses)
        if search is None:
            return clauses, None
        assert search.sim.index is not None
        index_id = search.sim.index.id
        return search.run(self._source.db, None if clauses.where is None
                          else lambda: self._matching(clauses, index_id))

    def _matching(self, clauses: Clauses, index_id: int) -> Sequence[int]:
        """The rowids, in order, of the rows the where() of ``clauses`` selects (its Python
        parts evaluated too), for a search by the embedding index ``index_id``: by numpy over
        columns held in memory where it can (pxlite.vecfilter), else by SQLite."""
        db = self._source.db
        held = vecfilter.matching(db, clauses, index_id)
        if held is not None:
            return held
        found = queryplan.matching_rowids(clauses)
        if found is not None:  # SQLite evaluates the whole where(): its rowids, at once
            return vecsearch.filtered_rowids(db, *found)
        p = queryplan.build(clauses._replace(outputs=[], order=[], limit=None, offset=None))
        cursor = db.execute(p.sql, p.params)
        resolver = Resolver(self._source.settings, self._source.media_folder)
        return [r[0] for r in Run(p, resolver, self._label(), rowids=True).rows(db, cursor)]

    def _built(self, clauses: Clauses) -> tuple[Clauses, Plan]:
        """The plan of ``clauses`` (a similarity search found first, see _searched)."""
        clauses, note = self._searched(clauses)
        p = queryplan.build(clauses)
        if note is not None:
            p.python.insert(0, note)
        return clauses, p

    def _unbound_clauses(self, metas: list[TableMeta]) -> Clauses:
        views = [queryplan.shifted(m, i * _SHIFT) for i, m in enumerate(metas)]
        by_id = {m.id: v for m, v in zip(metas, views, strict=True)}
        for s, v in zip(self._sources, views, strict=True):
            for b in s.bases:
                by_id.setdefault(b, v)

        def bind(e: Expr) -> Expr:
            return queryplan.rebind(e, by_id)

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
            return self._built(self._clauses(self._checked(metas)))[1]

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
            p = self._built(self._clauses(self._checked(metas)))[1]
            register_functions(db)
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
            c = self._clauses(self._checked(metas), bind=False)
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
            clauses, p = self._built(clauses)
            if clauses.sample is not None:
                register_functions(db)
            cursor = db.execute(p.sql, p.params)
        resolver = Resolver(self._source.settings, self._source.media_folder)
        media = [o.media for o in p.outputs]

        def value(i: int, v: Any) -> Any:
            col = media[i]
            return v if col is None or v is None else resolver.value(col, v)

        run = Run(p, resolver, self._label(), rowids=rowids)
        return _Started([o.name for o in p.outputs], [o.expr.type for o in p.outputs],
                        run.rows(db, cursor), value, run)

    def _result(self, *, reverse: bool = False) -> ResultSet:
        started = self._stream(reverse=reverse)
        data = list(started.rows)
        last = len(data) - 1
        # A stored cell that failed (its input was missing, a UDF raised) shows its error
        errors = {(last - n if reverse else n, j): e for n, found in started.run.errors.items()
                  for j, e in found.items()}
        if reverse:
            data.reverse()
        return ResultSet(started.names, started.types, data, started.value, errors,
                         self._source.resolve, errors_skipped=started.run.skipped)

    def collect(self) -> ResultSet:
        """Run the query; media cells load lazily when the result is read. Aggregates that
        skipped error cells say how many (``errors_skipped``, and a note under the table)."""
        return self._result()

    def cursor(self) -> ResultCursor:
        """A :class:`ResultCursor` over the rows: for results larger than memory."""
        return ResultCursor(self)

    def _count_plan(self, clauses: Clauses) -> Plan:
        """The plan count() runs: the query without its outputs and order when they do not
        decide which rows there are (no aggregates)."""
        if clauses.group is None and not any(contains_aggregate(e) for _, e in clauses.outputs):
            clauses = clauses._replace(outputs=[], order=[])
        return queryplan.build(clauses)

    @staticmethod
    def _count_statement(p: Plan) -> tuple[str, list[Any]] | None:
        if p.needs_rows or p.in_python:
            return None
        return f"SELECT count(*) FROM ({p.sql})", list(p.params)

    def count_sql(self) -> tuple[str, list[Any]] | None:
        """The SQL statement ``count()`` runs, with its parameters; None when Python must
        look at the rows (it counts them as they stream). The plan twin of :meth:`count`."""
        metas = self._load()
        with self._source.db.read():
            return self._count_statement(self._count_plan(self._clauses(self._checked(metas))))

    def count(self) -> int:
        """The number of rows the query gives (groups, for a grouped query); one SQL
        statement when no condition needs Python."""
        db = self._source.db
        metas = self._load()
        with db.read():
            clauses = self._clauses(self._checked(metas))
            p = self._count_plan(clauses)
            if clauses.sample is not None:
                register_functions(db)
            statement = self._count_statement(p)
            if statement is not None:
                return int(db.query(*statement)[0][0])
            cursor = db.execute(p.sql, p.params)
        resolver = Resolver(self._source.settings, self._source.media_folder)
        return sum(1 for _ in Run(p, resolver, self._label()).rows(db, cursor))

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


def _check_sample(n: Any, n_per_stratum: Any, fraction: Any, seed: Any, stratify_by: Any) -> int:
    """Validate sample()'s sizes (Pixeltable's rules); the seed to use (drawn when None)."""
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
        return random.getrandbits(63)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SchemaError(f"sample(seed=...) takes a whole number, got {type(seed).__name__} "
                          f"{seed!r}")
    return seed


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
            if c.pending or c.hidden:
                continue
            name, k = c.name, 1
            while name in used:
                name, k = f"{c.name}_{k}", k + 1
            used.add(name)
            outputs.append((name, ColumnRef(v, c)))
    return outputs
