"""Aggregate functions with Pixeltable's names: ``count``, ``sum``, ``min``, ``max``, ``mean``
and ``make_list`` (``import pxlite.functions as pxlf``; ``pxlf.count(t.image)``).

Each skips None, as SQL does (and so the cells that hold an error, whose value is None; a query
reports how many of those it skipped). Over stored columns and other expressions SQLite can
compute, a query runs them as SQL's ``count``, ``sum``, ``min``, ``max``, ``avg`` and
``json_group_array``; over values that need Python (a UDF's output, a column computed when read,
an image's width) the classes below run, one row at a time. Both give the same results: floats
are summed with the same compensated (Kahan-Babuska-Neumaier) sum SQLite uses.
"""

from __future__ import annotations

import builtins
from typing import Any

from ..errors import SchemaError
from ..types import ColumnType, Int, Json
from ..types import Float as FloatType
from ..uda import AggregateFunction, Aggregator

__all__ = ["count", "make_list", "max", "mean", "min", "sum"]

#: Types SQLite orders as Python does (Timestamps are ISO text of one form; Date, when present,
#: too).
_ORDERED = frozenset({"Int", "Float", "String", "Bool", "Timestamp", "Date"})
_NUMERIC = frozenset({"Int", "Float"})
#: Types json_group_array renders as Python's json would read them back.
_JSON_AS_IS = frozenset({"Int", "Float", "String"})


def _one(types: list[ColumnType], fn: str, allowed: frozenset[str], what: str) -> ColumnType:
    if len(types) != 1:
        raise SchemaError(f"{fn}() takes one value, got {len(types)}")
    t = types[0]
    if t.name not in allowed:
        raise SchemaError(f"{fn}() takes {what}, got a {t.name} value")
    return t.with_nullable(True)


def _sql(fn: str) -> Any:
    def form(args: list[tuple[str, list[Any]]], values: list[tuple[str, list[Any]]],
             types: list[ColumnType]) -> tuple[str, list[Any]]:
        return f"{fn}({args[0][0]})", list(args[0][1])
    return form


class _Sum:
    """A sum as SQLite's ``sum()`` computes it: integers exactly, floats with a compensated
    (Kahan-Babuska-Neumaier) sum, so the Python path gives the SQL path's result."""

    __slots__ = ("err", "n", "total")

    def __init__(self) -> None:
        self.total: Any = None
        self.err = 0.0
        self.n = 0

    def add(self, v: Any) -> None:
        self.n += 1
        if self.total is None:
            self.total = v
        elif isinstance(v, float) or isinstance(self.total, float):
            s = float(self.total)
            t = s + v
            self.err += (s - t) + v if builtins.abs(s) > builtins.abs(v) else (v - t) + s
            self.total = t
        else:
            self.total += v

    def result(self) -> Any:
        return self.total + self.err if isinstance(self.total, float) else self.total


class _CountState(Aggregator):
    def __init__(self) -> None:
        self.count = 0

    def update(self, val: Any) -> None:
        if val is not None:
            self.count += 1

    def value(self) -> int:
        return self.count


class _SumState(Aggregator):
    def __init__(self) -> None:
        self.sum = _Sum()

    def update(self, val: Any) -> None:
        if val is not None:
            self.sum.add(val)

    def value(self) -> Any:
        return self.sum.result()


class _MeanState(_SumState):
    def value(self) -> float | None:
        if self.sum.n == 0:
            return None
        return float(self.sum.result()) / self.sum.n  # as SQLite's avg(): a double over the count


class _MinState(Aggregator):
    def __init__(self) -> None:
        self.val: Any = None

    def update(self, val: Any) -> None:
        if val is not None and (self.val is None or val < self.val):
            self.val = val

    def value(self) -> Any:
        return self.val


class _MaxState(_MinState):
    def update(self, val: Any) -> None:
        if val is not None and (self.val is None or val > self.val):
            self.val = val


class _ListState(Aggregator):
    def __init__(self) -> None:
        self.items: list[Any] = []

    def update(self, val: Any) -> None:
        if val is not None:
            self.items.append(val)

    def value(self) -> list[Any]:
        return self.items


def _list_sql(args: list[tuple[str, list[Any]]], values: list[tuple[str, list[Any]]],
              types: list[ColumnType]) -> tuple[str, list[Any]] | None:
    frag, params = args[0]
    if types[0].name == "Json":  # the JSON text, embedded as JSON (not as a string)
        item, item_params = f"json({values[0][0]})", values[0][1]
    elif types[0].name in _JSON_AS_IS:
        item, item_params = frag, params
    else:
        return None  # Bool (0/1), Timestamp (text), media: Python gives other values
    return (f"json_group_array({item}) FILTER (WHERE {frag} IS NOT NULL)",
            [*item_params, *params])


def _any(fn: str, result: ColumnType | None = None) -> Any:
    """Result rule: one value of any type; the result is ``result`` (else the value's type)."""
    def rule(types: list[ColumnType]) -> ColumnType:
        t = _one(types, fn, frozenset({t.name for t in types}), "a value")
        return t if result is None else result
    return rule


def _of(fn: str, allowed: frozenset[str], what: str, result: ColumnType | None = None) -> Any:
    """Result rule: one value of an ``allowed`` type; the result is ``result`` (else its type)."""
    def rule(types: list[ColumnType]) -> ColumnType:
        t = _one(types, fn, allowed, what)
        return t if result is None else result
    return rule


_P = __name__
_ORDERED_WHAT = "numbers, strings, booleans or timestamps"

count = AggregateFunction(_CountState, name=f"{_P}.count", method_name="count",
                          sql=_sql("count"), result=_any("count", Int))
count.__doc__ = """The number of values that are not None (Pixeltable's ``count``):
``t.select(pxlf.count(t.image))``, or per group: ``t.group_by(t.label).select(t.label,
n=pxlf.count(t.image))``."""

sum = AggregateFunction(
    _SumState, name=f"{_P}.sum", method_name="sum", sql=_sql("sum"),
    result=_of("sum", _NUMERIC, "numbers (Int or Float)"))
sum.__doc__ = """The sum of the values that are not None (None when there are none), an Int for
Int values (Pixeltable's ``sum``)."""

min = AggregateFunction(
    _MinState, name=f"{_P}.min", method_name="min", sql=_sql("min"),
    result=_of("min", _ORDERED, _ORDERED_WHAT))
min.__doc__ = """The smallest value that is not None (None when there are none); Pixeltable's
``min``."""

max = AggregateFunction(
    _MaxState, name=f"{_P}.max", method_name="max", sql=_sql("max"),
    result=_of("max", _ORDERED, _ORDERED_WHAT))
max.__doc__ = """The largest value that is not None (None when there are none); Pixeltable's
``max``."""

mean = AggregateFunction(
    _MeanState, name=f"{_P}.mean", method_name="mean", sql=_sql("avg"),
    result=_of("mean", _NUMERIC, "numbers (Int or Float)", FloatType))
mean.__doc__ = """The mean of the values that are not None, a Float (None when there are none);
Pixeltable's ``mean``."""

make_list = AggregateFunction(_ListState, name=f"{_P}.make_list", method_name="make_list",
                              sql=_list_sql, result=_any("make_list", Json))
make_list.__doc__ = """The values that are not None, as a list in row order (Pixeltable's
``make_list``, which it keeps in ``functions.json``)."""
