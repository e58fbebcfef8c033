"""Date functions, as properties and methods of Date expressions (Pixeltable's names, each the
``datetime.date`` attribute or method of the same name): ``t.d.year``, ``t.d.weekday()``,
``t.d.add_days(7)``, ``t.d.strftime('%d/%m/%Y')``; and ``make_date(year, month, day)``.

A Date is stored as ISO text ``YYYY-MM-DD``: fields are substrings in SQL, weekdays and day
arithmetic come from SQLite's calendar (proleptic Gregorian, as Python's). Date arithmetic is
``add_days``, as in Pixeltable (``date + int`` is not an expression there either).
"""

from __future__ import annotations

import datetime
from typing import Any

from ..types import Date, Int
from .builtin import NoSql, SqlArgs, builtin, guarded, sql_for, sql_template
from .timestamp import strftime_sql, toordinal_sql, weekday_sql

Frag = tuple[str, list[Any]]


def _date(fn: Any) -> Any:
    return builtin("date", Date)(fn)


@builtin("date", Date, is_property=True)
def year(self: datetime.date) -> int:
    """The year (``date.year``)."""
    return self.year


@builtin("date", Date, is_property=True)
def month(self: datetime.date) -> int:
    """The month, 1 to 12 (``date.month``)."""
    return self.month


@builtin("date", Date, is_property=True)
def day(self: datetime.date) -> int:
    """The day of the month (``date.day``)."""
    return self.day


def _field(start: int, length: int) -> Any:
    return lambda a: sql_template("CAST(substr({d}, {start}, {length}) AS INTEGER)",
                                  d=a.sql("self"), start=("?", [start]), length=("?", [length]))


for _fn, _at in ((year, (1, 4)), (month, (6, 2)), (day, (9, 2))):
    sql_for(_fn)(_field(*_at))


@_date
def weekday(self: datetime.date) -> int:
    """The day of the week, Monday 0 to Sunday 6 (``date.weekday()``)."""
    return self.weekday()


@_date
def isoweekday(self: datetime.date) -> int:
    """The day of the week, Monday 1 to Sunday 7 (``date.isoweekday()``)."""
    return self.isoweekday()


sql_for(weekday)(lambda a: weekday_sql(a.sql("self")))
sql_for(isoweekday)(lambda a: sql_template("({w} + 1)", w=weekday_sql(a.sql("self"))))


@_date
def isocalendar(self: datetime.date) -> dict:
    """The ISO year, week number and weekday, as ``{'year', 'week', 'weekday'}``
    (``date.isocalendar()``, as Pixeltable returns it)."""
    y, w, d = self.isocalendar()
    return {"year": y, "week": w, "weekday": d}


@_date
def isoformat(self: datetime.date) -> str:
    """The ISO 8601 text, ``YYYY-MM-DD`` (``date.isoformat()``)."""
    return self.isoformat()


sql_for(isoformat)(lambda a: a.sql("self"))  # the stored text itself


@_date
def toordinal(self: datetime.date) -> int:
    """The proleptic Gregorian ordinal (``date.toordinal()``)."""
    return self.toordinal()


sql_for(toordinal)(lambda a: toordinal_sql(a.sql("self")))


@_date
def strftime(self: datetime.date, format: str) -> str:
    """The date formatted by ``format`` (``date.strftime``)."""
    return self.strftime(format)


sql_for(strftime)(lambda a: strftime_sql(a, a.sql("self")))


@_date
def add_days(self: datetime.date, n: int) -> datetime.date:
    """The date ``n`` days later (earlier for a negative ``n``): ``date + timedelta(days=n)``;
    an error past year 9999 or before year 1."""
    return self + datetime.timedelta(days=n)


@sql_for(add_days)
def _(a: SqlArgs) -> Frag:
    if a.expr("n").type.name != Int.name:
        raise NoSql  # timedelta(days=1.5) moves a date by one day; julian days would not
    # 1721425.5 and 5373483.5 are the julian days of 0001-01-01 and 9999-12-31.
    return guarded(a, "coalesce(julianday({d}) + {n} BETWEEN 1721425.5 AND 5373483.5, 1)",
                   "date(julianday({d}) + {n})", d=a.sql("self"), n=a.sql("n"))


@_date
def replace(self: datetime.date, year: int | None = None, month: int | None = None,
            day: int | None = None) -> datetime.date:
    """The date with the given fields replaced (``date.replace``)."""
    given = {"year": year, "month": month, "day": day}
    return self.replace(**{k: v for k, v in given.items() if v is not None})


@builtin("date", None)
def make_date(year: int, month: int, day: int) -> datetime.date:
    """A date from its fields (``datetime.date(year, month, day)``)."""
    return datetime.date(year, month, day)
