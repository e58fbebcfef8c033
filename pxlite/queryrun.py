"""Running a query's plan: the rows its one SQL statement returns, turned into output tuples,
and the streaming cursor (:class:`ResultCursor`, :class:`Row`) that hands them out.

:class:`Run` reads the statement's rows in batches (``Database.stream``, under the connection's
lock), evaluates in Python what the plan leaves to Python (conditions, outputs, sort keys) and
computes outputs that call Python functions on the compute threads, a batch at a time; a
grouped query whose aggregates or keys need Python streams its rows into one aggregate state
per group (memory grows with the groups, not the rows). Sorting in Python needs every row.

Samples order rows by ``pxlite_sample_key(seed, rowid)`` (:func:`sample_key`), a 64-bit mix
(SplitMix64's finalizer) of the seed and the rowid, registered on the connection: the same
sample for the same seed in every process (SQLite's ``random()`` is not seedable), and a row's
place does not depend on the other rows, so ``fraction=`` keeps a row exactly when its key is
below that fraction of the range.
"""

from __future__ import annotations

import functools
import itertools
import json
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import queryplan
from .compute import workers
from .errors import ComputeError, NotFoundError, PxliteError, SchemaError, useful_cause
from .exprs import Expr, RowContext
from .media import Resolver
from .queryplan import Plan

if TYPE_CHECKING:
    from .db import Database
    from .query import Query
    from .types import ColumnType

#: Rows read from SQLite, and handed to the compute threads, at a time.
BATCH = 256

_MASK = (1 << 64) - 1


# ---- rows of a result ----------------------------------------------------------------------------
class Row(Mapping[str, Any]):
    """One row of a cursor (Pixeltable's ``Row``): ``row['col']``, ``keys()``, ``values()``,
    ``items()``, ``'col' in row``; media cells open when read."""

    __slots__ = ("_errors", "_index", "_value", "_values")

    def __init__(self, values: tuple, index: dict[str, int], value: Callable[[int, Any], Any],
                 errors: dict[int, tuple[str, str]] | None = None) -> None:
        self._values, self._index, self._value = values, index, value
        self._errors = errors

    @property
    def errors(self) -> dict[str, dict[str, str]]:
        """The cells of this row that hold an error instead of a value (their value is None):
        column name to ``{'errortype': ..., 'errormsg': ...}`` (Pixeltable's ``Row.errors``)."""
        if not self._errors:
            return {}
        names = list(self._index)
        return {names[j]: {"errortype": et, "errormsg": em}
                for j, (et, em) in self._errors.items()}

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
        value, errors = started.value, started.run.errors
        self._rows = (Row(r, index, value, errors.pop(i, None))
                      for i, r in enumerate(started.rows))

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


def register_functions(db: Database) -> None:
    """Register the sample key on this database's connection (once)."""
    conn = db.sqlite
    if conn not in _registered:
        conn.create_scalar_function(queryplan.SAMPLE_KEY, sample_key,  # type: ignore[arg-type]
                                    2, deterministic=True)
        _registered.add(conn)


# ---- running a plan ------------------------------------------------------------------------------
class GroupRow(RowContext):
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


class Run:
    """One run of a plan over the rows its statement returns."""

    def __init__(self, plan: Plan, resolver: Resolver, label: str, *, rowids: bool = False
                 ) -> None:
        self.plan = plan
        self.resolver = resolver
        self.label = label
        self.skipped = 0           # error cells the aggregates skipped
        #: Output row number -> {output index: (errortype, errormsg)}: the stored cells among
        #: the outputs that hold an error, shown instead of None.
        self.errors: dict[int, dict[int, tuple[str, str]]] = {}
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
                errortype=type(err).__name__, error=err) from useful_cause(err)

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
        err_outs = [(j, o.errors) for j, o in enumerate(outs) if o.errors is not None]
        n = 0
        if not (p.py_where or p.py_order or py_outputs):
            decode = row_decoder([(o.column, o.decode) for o in outs
                                   if o.column is not None])  # all of them, here
            stream: Iterable[tuple] = cursor
            if p.skip or p.take is not None:
                stream = itertools.islice(cursor, p.skip, None if p.take is None
                                          else p.skip + p.take)
            for r in stream:
                vals = decode(r)
                if err_outs:
                    self._note_errors(n, r, err_outs)
                    n += 1
                yield (r[0], *vals) if self.want_rowids else vals
            return
        items: Iterable[tuple[tuple, RowContext]] = self._filtered(cursor)
        if p.py_order:
            items = self._sorted(list(items), p.py_order)
        if p.skip or p.take is not None:
            items = itertools.islice(items, p.skip, None if p.take is None else p.skip + p.take)

        def one(item: tuple[tuple, RowContext]) -> tuple[tuple, tuple]:
            r, rc = item
            vals = []
            for o in outs:
                if o.column is None:
                    vals.append(self._eval(o.name, o.expr, rc))
                else:
                    vals.append(self._decoded(r, [(o.column, o.decode)])[0])
            rc.close_opened(keep=vals)
            return r, ((r[0], *vals) if self.want_rowids else tuple(vals))

        # Computed outputs (a column computed when read, a function in select) run on the
        # compute threads, one per core, as computed columns do.
        for r, out in _mapped(one, items, py_outputs):
            if err_outs:
                self._note_errors(n, r, err_outs)
                n += 1
            yield out

    def _note_errors(self, n: int, r: tuple, err_outs: list[tuple[int, int]]) -> None:
        """Output row ``n``'s cells that hold an error: errortype and errormsg, by output."""
        found = {j: (r[k], r[k + 1]) for j, k in err_outs if r[k] is not None}
        if found:
            self.errors[n] = found

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
        decode = row_decoder([(o.column, o.decode) for o in p.outputs if o.column is not None])
        err = p.errors_column
        for r in cursor:
            if err is not None and r[err]:
                self.skipped += r[err]
            yield decode(r)

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

        for item in _mapped(prepare, cursor, python_heavy):
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
            row = GroupRow(dict(raw), dict(errors), self.resolver, rowid, values)
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


def _mapped(fn: Callable[[Any], Any], items: Iterable[Any], parallel: bool) -> Iterator[Any]:
    """``fn`` over ``items``, in order, :data:`BATCH` at a time: on the compute threads when
    ``parallel`` (Python functions per row; Pillow and file reads release the GIL)."""
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="pxlite-query") as pool:
        while batch := list(itertools.islice(it, BATCH)):
            if not (parallel and len(batch) > 1):
                yield from map(fn, batch)
                continue
            try:
                results = list(pool.map(fn, batch))
            except PxliteError as e:  # the worker thread's frames add nothing to it
                raise e.with_traceback(None) from e.__cause__
            yield from results


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


@functools.lru_cache(maxsize=256)
def _compiled(body: str) -> Any:
    """A row decoder's code, compiled once per shape of query (a compile costs ~0.1 ms, more
    than a similarity search's own query spends decoding its ten rows)."""
    return compile(body, "<pxlite row decoder>", "exec")


def row_decoder(specs: list[tuple[int, Any]]) -> Callable[[tuple], tuple]:
    """One function turning a SQL row into the output values ``specs`` ((column, decoder or
    None) each; a decoder is not called for None, which stays None): a tuple slice when
    nothing is decoded and the columns are consecutive, else a function compiled once for the
    query (``(r[1], d2(r[2]), ...)``): a query of 30 outputs over 100,000 rows otherwise spends
    as long in a per-value Python loop as SQLite spends computing them. A crafted cell's error
    names its row (the first column)."""
    cols = [i for i, _ in specs]
    if not cols:
        return lambda r: ()
    start, stop = cols[0], cols[0] + len(cols)
    if all(d is None for _, d in specs) and cols == list(range(start, stop)):
        return lambda r: r[start:stop]
    decoders = {f"d{j}": d for j, (_, d) in enumerate(specs) if d is not None}
    items = ", ".join(f"r[{i}]" if d is None else f"(None if r[{i}] is None else d{j}(r[{i}]))"
                      for j, (i, d) in enumerate(specs))
    # Only integers and names made here reach the source: no value of any row or user.
    body = f"def decode(r):\n    return ({items},)\n"
    namespace: dict[str, Any] = dict(decoders)
    exec(_compiled(body), namespace)
    compiled = namespace["decode"]

    def decode(r: tuple) -> tuple:
        try:
            return compiled(r)
        except queryplan.BadCell as e:
            raise SchemaError(f"column {e.column!r}, row {r[0]}: {e.reason}") from None

    return decode

