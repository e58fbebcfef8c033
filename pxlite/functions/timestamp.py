"""Timestamp functions, as properties and methods of Timestamp expressions (Pixeltable's names,
each the ``datetime`` attribute or method of the same name): ``t.ts.year``, ``t.ts.hour``,
``t.ts.weekday()``, ``t.ts.strftime('%Y-%m')``, ``t.ts.date()``; and
``make_timestamp(year, month, day, ...)``.

A Timestamp is stored as fixed-width ISO text (``YYYY-MM-DDTHH:MM:SS.ffffff``, ``+00:00`` after
an aware value, which is kept in UTC), so its fields are substrings in SQL; weekdays and day
numbers come from SQLite's calendar, the same proleptic Gregorian one as Python's. ``strftime``
runs in SQLite for the directives it formats as Python does (``%Y %m %d %H %M %S %j %w %W %F
%T %R %%``, for years from 1000); others (names of days and months, ``%f``, ``%z``...) are
Python's. Unlike Pixeltable, a naive timestamp stays naive (no default time zone).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from ..types import Timestamp
from .builtin import NoSql, SqlArgs, builtin, guarded, sql_for, sql_template

Frag = tuple[str, list[Any]]

#: strftime directives SQLite formats exactly as Python (glibc) does, for years >= 1000.
_SAME_DIRECTIVES = set("YmdHMSjwWFTR%")
_DIRECTIVE = re.compile(r"%(.)", re.DOTALL)


def _ts(fn: Any) -> Any:
    return builtin("timestamp", Timestamp)(fn)


def _field(start: int, length: int) -> Any:
    return lambda a: sql_template("CAST(substr({t}, {start}, {length}) AS INTEGER)",
                                  t=a.sql("self"), start=("?", [start]), length=("?", [length]))


@builtin("timestamp", Timestamp, is_property=True)
def year(self: datetime.datetime) -> int:
    """The year (``datetime.year``)."""
    return self.year


@builtin("timestamp", Timestamp, is_property=True)
def month(self: datetime.datetime) -> int:
    """The month, 1 to 12 (``datetime.month``)."""
    return self.month


@builtin("timestamp", Timestamp, is_property=True)
def day(self: datetime.datetime) -> int:
    """The day of the month (``datetime.day``)."""
    return self.day


@builtin("timestamp", Timestamp, is_property=True)
def hour(self: datetime.datetime) -> int:
    """The hour, 0 to 23 (``datetime.hour``)."""
    return self.hour


@builtin("timestamp", Timestamp, is_property=True)
def minute(self: datetime.datetime) -> int:
    """The minute, 0 to 59 (``datetime.minute``)."""
    return self.minute


@builtin("timestamp", Timestamp, is_property=True)
def second(self: datetime.datetime) -> int:
    """The second, 0 to 59 (``datetime.second``)."""
    return self.second


@builtin("timestamp", Timestamp, is_property=True)
def microsecond(self: datetime.datetime) -> int:
    """The microsecond, 0 to 999999 (``datetime.microsecond``)."""
    return self.microsecond


for _fn, _at in ((year, (1, 4)), (month, (6, 2)), (day, (9, 2)), (hour, (12, 2)),
                 (minute, (15, 2)), (second, (18, 2)), (microsecond, (21, 6))):
    sql_for(_fn)(_field(*_at))


@_ts
def date(self: datetime.datetime) -> datetime.date:
    """The date part (``datetime.date()``)."""
    return self.date()


sql_for(date)(lambda a: sql_template("substr({t}, 1, 10)", t=a.sql("self")))


def weekday_sql(day: Frag) -> Frag:
    """SQL for Python's ``weekday()`` (Monday 0) of an ISO date's text."""
    return sql_template("((CAST(strftime('%w', {d}) AS INTEGER) + 6) % 7)", d=day)


def _day(a: SqlArgs) -> Frag:
    """The date part of a timestamp argument."""
    return sql_template("substr({t}, 1, 10)", t=a.sql("self"))


@_ts
def weekday(self: datetime.datetime) -> int:
    """The day of the week, Monday 0 to Sunday 6 (``datetime.weekday()``)."""
    return self.weekday()


@_ts
def isoweekday(self: datetime.datetime) -> int:
    """The day of the week, Monday 1 to Sunday 7 (``datetime.isoweekday()``)."""
    return self.isoweekday()


@_ts
def isocalendar(self: datetime.datetime) -> dict:
    """The ISO year, week number and weekday, as ``{'year', 'week', 'weekday'}``
    (``datetime.isocalendar()``, as Pixeltable returns it)."""
    y, w, d = self.isocalendar()
    return {"year": y, "week": w, "weekday": d}


sql_for(weekday)(lambda a: weekday_sql(_day(a)))
sql_for(isoweekday)(lambda a: sql_template("({w} + 1)", w=weekday_sql(_day(a))))

#: isoformat(timespec=...) -> how many characters of the stored text it keeps (auto: 19 or 26).
_TIMESPEC = {"hours": 13, "minutes": 16, "seconds": 19, "milliseconds": 23, "microseconds": 26}


@_ts
def isoformat(self: datetime.datetime, sep: str = "T", timespec: str = "auto") -> str:
    """The ISO 8601 text (``datetime.isoformat(sep, timespec)``)."""
    return self.isoformat(sep=sep, timespec=timespec)


@sql_for(isoformat)
def _(a: SqlArgs) -> Frag:
    sep, spec = a.literal("sep"), a.literal("timespec")
    if not isinstance(sep, str) or len(sep) != 1 or (spec != "auto" and spec not in _TIMESPEC):
        raise NoSql
    t = a.sql("self")
    if spec == "auto" and sep == "T":  # the stored text, less zero microseconds
        return sql_template("(CASE WHEN substr({t}, 21, 6) = '000000' THEN substr({t}, 1, 19) "
                            "|| substr({t}, 27) ELSE {t} END)", t=t)
    if spec == "auto":  # microseconds only when there are some; then the time zone, if any
        return sql_template(
            "(substr({t}, 1, 10) || {sep} || CASE WHEN substr({t}, 21, 6) = '000000' THEN "
            "substr({t}, 12, 8) ELSE substr({t}, 12, 15) END || substr({t}, 27))", t=t,
            sep=("?", [sep]))
    return sql_template("(substr({t}, 1, 10) || {sep} || substr({t}, 12, {n}) || substr({t}, 27))",
                        t=t, sep=("?", [sep]), n=("?", [_TIMESPEC[spec] - 11]))


@_ts
def strftime(self: datetime.datetime, format: str) -> str:
    """The time formatted by ``format`` (``datetime.strftime``)."""
    return self.strftime(format)


def strftime_sql(a: SqlArgs, value: Frag) -> Frag:
    """SQLite's strftime for a literal format of directives it shares with Python, for years
    from 1000 (glibc writes year 999 as '999', SQLite as '0999'); Python's otherwise."""
    fmt = a.literal("format")
    if not isinstance(fmt, str) or "\x00" in fmt or "%" in _DIRECTIVE.sub("", fmt) or any(
            d not in _SAME_DIRECTIVES for d in _DIRECTIVE.findall(fmt)):
        raise NoSql
    return guarded(a, "coalesce({t} >= '1000', 1)", "strftime({f}, {t})", t=value,
                   f=("?", [fmt]))


sql_for(strftime)(lambda a: strftime_sql(a, a.sql("self")))


def toordinal_sql(day: Frag) -> Frag:
    """SQL for ``toordinal()`` of an ISO date's text (1 January of year 1 is day 1)."""
    return sql_template("CAST(julianday({d}) - 1721424.5 AS INTEGER)", d=day)


@_ts
def toordinal(self: datetime.datetime) -> int:
    """The proleptic Gregorian ordinal of the date (``datetime.toordinal()``)."""
    return self.toordinal()


sql_for(toordinal)(lambda a: toordinal_sql(_day(a)))


@_ts
def posix_timestamp(self: datetime.datetime) -> float:
    """Seconds since the epoch (``datetime.timestamp()``; a naive value is local time)."""
    return self.timestamp()


@_ts
def astimezone(self: datetime.datetime, tz: str) -> datetime.datetime:
    """The same instant in the IANA time zone ``tz`` (``datetime.astimezone``). (Stored, an
    aware timestamp is kept in UTC.)"""
    from zoneinfo import ZoneInfo

    return self.astimezone(ZoneInfo(tz))


@_ts
def strip_timezone(self: datetime.datetime) -> datetime.datetime:
    """The naive wall-clock time (``datetime.replace(tzinfo=None)``; a stored aware value is
    in UTC)."""
    return self.replace(tzinfo=None)


sql_for(strip_timezone)(lambda a: sql_template("substr({t}, 1, 26)", t=a.sql("self")))


@_ts
def replace(self: datetime.datetime, year: int | None = None, month: int | None = None,
            day: int | None = None, hour: int | None = None, minute: int | None = None,
            second: int | None = None, microsecond: int | None = None) -> datetime.datetime:
    """The timestamp with the given fields replaced (``datetime.replace``)."""
    given: dict[str, Any] = {"year": year, "month": month, "day": day, "hour": hour,
                             "minute": minute, "second": second, "microsecond": microsecond}
    return self.replace(**{k: v for k, v in given.items() if v is not None})


@builtin("timestamp", None)
def make_timestamp(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
                   second: int = 0, microsecond: int = 0) -> datetime.datetime:
    """A naive timestamp from its fields (``datetime.datetime(...)``); Pixeltable makes it in
    its default time zone, pxlite leaves it naive."""
    return datetime.datetime(year, month, day, hour, minute, second, microsecond)
