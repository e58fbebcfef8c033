"""Aggregates: ``@pxl.uda`` classes, and calls of aggregate functions in expressions.

An aggregate turns the values of many rows (a group, or the whole query) into one value. Its
shape is Pixeltable's: a class derived from :class:`Aggregator` whose ``update(self, ...)`` is
called once per row with that row's values and whose ``value(self)`` gives the result;
``__init__`` parameters become keyword-only options of the call, fixed for the whole query::

    @pxl.uda
    class longest(pxl.Aggregator):
        def __init__(self) -> None:
            self.best: str | None = None

        def update(self, s: str) -> None:
            if s is not None and (self.best is None or len(s) > len(self.best)):
                self.best = s

        def value(self) -> str | None:
            return self.best

    t.group_by(t.label).select(t.label, longest(t.caption))

Calling the decorated class with expressions builds an :class:`AggregateCall`. A query computes
it per group: in SQL when the function has a SQL form and SQLite can compute its arguments (the
built-ins of ``pxlite.functions`` over stored columns), else in Python, one row at a time, so
memory stays constant however many rows there are.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .errors import SchemaError
from .exprs import Expr, RowContext, lit
from .types import ColumnType
from .udf import hint_type

#: SQL form of an aggregate: the SQL of its arguments (fragment, parameters) as they compare
#: (``sql()``) and as values (:func:`value_sql`), and their types, to the SQL of the aggregate,
#: or None when SQLite would not give Python's result for them.
SqlForm = Callable[[list[tuple[str, list[Any]]], list[tuple[str, list[Any]]], list[ColumnType]],
                   tuple[str, list[Any]] | None]


def value_sql(e: Expr) -> tuple[str, list[Any]] | None:
    """SQL of ``e``'s value, for a query's output or an aggregate's argument: the expression's
    ``sql_value()`` where it has one (a JSON path gives the JSON text there, while its
    ``sql()`` is the SQL scalar it compares as), else ``sql()``."""
    form = getattr(e, "sql_value", None)
    return form() if callable(form) else e.sql()


def value_decoder(e: Expr) -> Callable[[Any], Any] | None:
    """How a value :func:`value_sql` computed becomes ``e``'s Python value (None: as it is;
    a None value stays None): the expression's own ``decoder()`` where it has one, else its
    type's ``from_sql``."""
    form = getattr(e, "decoder", None)
    if callable(form):
        d = form()  # for values that are not None: the query skips None
        return None if d is None else (lambda v: None if v is None else d(v))
    t = e.type
    if t.from_sql.__func__ is ColumnType.from_sql:  # type: ignore[attr-defined]
        return None
    return lambda v: None if v is None else t.from_sql(v)

#: Result type of an aggregate from the types of its arguments (raises SchemaError for types
#: it does not take).
ResultRule = Callable[[list[ColumnType]], ColumnType]


class Aggregator:
    """Base of an aggregate's state (Pixeltable's ``pxt.Aggregator``): ``update`` takes one
    row's values, ``value`` returns the result for all rows seen."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def value(self) -> Any:
        raise NotImplementedError


class AggregateFunction:
    """An aggregate usable in queries: call it with expressions (``count(t.image)``)."""

    def __init__(self, cls: Any, *, name: str | None = None, method_name: str | None = None,
                 sql: SqlForm | None = None, result: ResultRule | None = None) -> None:
        if not isinstance(cls, type) or not callable(getattr(cls, "update", None)) or \
                not callable(getattr(cls, "value", None)):
            raise SchemaError(f"@uda decorates a class with update(self, ...) and value(self) "
                              f"methods (a pxl.Aggregator), got {cls!r}")
        self.cls: Any = cls
        self.name = name or f"{cls.__module__}.{cls.__qualname__}"
        self.method_name = method_name or cls.__name__
        self.__doc__ = cls.__doc__
        self.__name__ = self.method_name
        klass: Any = cls
        params = list(inspect.signature(klass.update).parameters.values())[1:]  # without self
        if not params:
            raise SchemaError(f"@uda {self.name}: update() needs a parameter for the values it "
                              "aggregates, e.g. def update(self, val: int) -> None")
        self.signature = inspect.Signature(params)
        init = list(inspect.signature(klass.__init__).parameters.values())[1:]
        self.options = {p.name: p for p in init if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        both = sorted(set(self.options) & {p.name for p in params})
        if both:
            raise SchemaError(f"@uda {self.name}: __init__() and update() cannot share parameter "
                              f"names ({', '.join(both)})")
        self.accepts_none = _accepts_none(klass.update, params)
        self._positional = [p.name for p in params
                            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._sql = sql
        if result is None:
            hints = typing.get_type_hints(klass.value)
            if "return" not in hints:
                raise SchemaError(f"@uda {self.name}: add a return type hint to value() (e.g. "
                                  "'-> int') so pxlite knows the result's type")
            fixed = hint_type(hints["return"], f"@uda {self.name}").with_nullable(True)
            result = lambda types: fixed  # noqa: E731
        self._result = result

    def __call__(self, *args: Any, **kwargs: Any) -> AggregateCall:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in self.options}
        for k, v in options.items():
            if isinstance(v, Expr):
                raise SchemaError(f"{self.method_name}(): the option {k}= is fixed for the whole "
                                  f"query: pass a constant, not the expression {v!r}")
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise SchemaError(f"{self.method_name}(): {e}") from None
        return AggregateCall(self, list(args), kwargs, options)

    def skips(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        """Whether a row's values are skipped: a None for a parameter that does not accept it
        (not hinted ``X | None``, no default of None), as Pixeltable does."""
        return any(v is None and (i >= len(self._positional)
                                  or self._positional[i] not in self.accepts_none)
                   for i, v in enumerate(args)) or any(
            v is None and k not in self.accepts_none for k, v in kwargs.items())

    def result_type(self, types: list[ColumnType]) -> ColumnType:
        return self._result(types)

    def sql_form(self, args: list[tuple[str, list[Any]]], values: list[tuple[str, list[Any]]],
                 types: list[ColumnType]) -> tuple[str, list[Any]] | None:
        return None if self._sql is None else self._sql(args, values, types)

    def start(self, options: dict[str, Any]) -> Aggregator:
        """A fresh state for one group."""
        try:
            return self.cls(**options)
        except TypeError as e:
            raise SchemaError(f"{self.method_name}(): {e}") from None

    def __repr__(self) -> str:
        return f"<pxlite aggregate {self.name}>"


@typing.overload
def uda(cls: type, /) -> AggregateFunction: ...
@typing.overload
def uda(*, name: str | None = ..., allows_window: bool = ..., requires_order_by: bool = ...
        ) -> Callable[[type], AggregateFunction]: ...


def uda(cls: type | None = None, /, *, name: str | None = None, allows_window: bool = False,
        requires_order_by: bool = False) -> Any:
    """Make an :class:`Aggregator` class an aggregate usable in queries (Pixeltable's
    ``@pxt.uda``). ``allows_window`` is accepted for Pixeltable code and changes nothing
    (pxlite has no window functions); ``requires_order_by=True`` is refused for that reason."""
    if requires_order_by:
        raise SchemaError("@uda(requires_order_by=True): pxlite has no window functions, so an "
                          "aggregate cannot ask for ordered rows; drop requires_order_by")
    del allows_window

    def wrap(c: type) -> AggregateFunction:
        return AggregateFunction(c, name=name)

    return wrap(cls) if cls is not None else wrap


def _accepts_none(fn: Callable[..., Any], params: list[inspect.Parameter]) -> frozenset[str]:
    """Parameters a None may be passed to: hinted Optional (or Any), or defaulting to None."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    return frozenset(
        p.name for p in params
        if p.default is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        or hints.get(p.name) is Any or type(None) in typing.get_args(hints.get(p.name)))


def contains_aggregate(e: Expr) -> bool:
    """Whether an aggregate is called anywhere in ``e``."""
    return any(isinstance(n, AggregateCall) for n in e.walk())


class AggregateCall(Expr):
    """A call of an aggregate in an expression: one value per group of rows."""

    def __init__(self, fn: AggregateFunction, args: list[Any], kwargs: dict[str, Any],
                 options: dict[str, Any]) -> None:
        self.fn = fn
        self.args = [lit(a) for a in args]
        self.kwargs = {k: lit(v) for k, v in kwargs.items()}
        self.options = options
        for a in self.children():
            if contains_aggregate(a):
                raise SchemaError(f"{fn.method_name}(): an aggregate's argument cannot itself "
                                  f"call an aggregate ({a!r})")
        self.type = fn.result_type([a.type for a in self.args])

    def children(self) -> list[Expr]:
        return [*self.args, *self.kwargs.values()]

    def default_name(self) -> str:
        return self.fn.method_name

    def sql(self) -> tuple[str, list[Any]] | None:
        if self.kwargs:
            return None
        parts = [a.sql() for a in self.args]
        values = [value_sql(a) for a in self.args]
        if any(p is None for p in parts) or any(v is None for v in values):
            return None
        return self.fn.sql_form([p for p in parts if p is not None],
                                [v for v in values if v is not None], [a.type for a in self.args])

    def skips(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        """Whether ``update`` is skipped for these values (see AggregateFunction.skips)."""
        return self.fn.skips(args, kwargs)

    def arguments(self, row: RowContext) -> tuple[list[Any], dict[str, Any]]:
        """The values one row passes to ``update``."""
        return [a.eval(row) for a in self.args], {k: v.eval(row) for k, v in self.kwargs.items()}

    def eval(self, row: RowContext) -> Any:
        values = getattr(row, "aggregates", None)
        if values is None or id(self) not in values:
            raise SchemaError(
                f"{self!r} is an aggregate: it has a value per group of rows, in select() or "
                "order_by() of a query (whole, or with group_by()), not in where(), update() "
                "or a computed column")
        return values[id(self)]

    def to_json(self) -> dict[str, Any]:
        raise SchemaError(f"{self!r} is an aggregate (one value for many rows): it cannot define "
                          "a computed column; query it with t.select(...) or "
                          "t.group_by(...).select(...)")

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        shown += [f"{k}={v!r}" for k, v in self.options.items()]
        return f"{self.fn.method_name}({', '.join(shown)})"


def aggregates_in(exprs: Iterable[Expr]) -> list[AggregateCall]:
    """Every aggregate call in ``exprs``, each node once, in the order met."""
    seen: dict[int, AggregateCall] = {}
    for e in exprs:
        for n in e.walk():
            if isinstance(n, AggregateCall):
                seen.setdefault(id(n), n)
    return list(seen.values())
