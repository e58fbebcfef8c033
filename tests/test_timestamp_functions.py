"""Timestamp and Date functions: SQLite and Python give the same values (naive and aware values,
years 1, 999 and 9999, leap days, whole seconds, None)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlcheck import Failed, check, each, python_calls

import pxlite as pxl
from pxlite.functions import date as pdate
from pxlite.functions import timestamp as pts

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
STAMPS = [dt.datetime(2024, 2, 29, 13, 4, 5, 123456), dt.datetime(2024, 1, 1),
          dt.datetime(1, 1, 1), dt.datetime(999, 12, 31, 23, 59, 59, 999999),
          dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None,
          dt.datetime(2023, 6, 15, 0, 0, 1, tzinfo=UTC),
          dt.datetime(2023, 6, 15, 1, 30, tzinfo=PLUS2),  # stored as 2023-06-14T23:30Z
          dt.datetime(2021, 1, 3, 12), dt.datetime(2020, 12, 31, 8, 0, 0, 500000),
          dt.datetime(1970, 1, 1), dt.datetime(2000, 3, 1, 23, 59, 59, 1)]


def stored(v):
    """A timestamp as pxlite reads it back (aware values in UTC)."""
    return None if v is None else v.astimezone(UTC) if v.tzinfo else v


@pytest.fixture
def t(db):
    t = db.create_table("ts", {"ts": pxl.Timestamp, "d": pxl.Date, "n": pxl.Int})
    t.insert([{"ts": v, "d": None if v is None else v.date(), "n": i * 40 - 200}
              for i, v in enumerate(STAMPS)])
    return t


py = each


TS = [stored(v) for v in STAMPS]
DATES = [None if v is None else v.date() for v in STAMPS]


@pytest.mark.parametrize("name", ["year", "month", "day", "hour", "minute", "second",
                                  "microsecond"])
def test_fields_are_properties_computed_in_sqlite(t, name):
    assert check(t, getattr(t.ts, name)) == py(lambda v: getattr(v, name), TS)
    assert python_calls(t, getattr(t.ts, name)) == 0
    if name in ("year", "month", "day"):
        assert check(t, getattr(t.d, name)) == py(lambda v: getattr(v, name), DATES)


@pytest.mark.parametrize("name", ["weekday", "isoweekday", "toordinal", "date", "isocalendar",
                                  "isoformat", "strip_timezone", "posix_timestamp"])
def test_methods(t, name):
    ref = {"isocalendar": lambda v: dict(zip(("year", "week", "weekday"), v.isocalendar(),
                                             strict=True)),
           "strip_timezone": lambda v: v.replace(tzinfo=None),
           "posix_timestamp": lambda v: v.timestamp()}.get(name, lambda v: getattr(v, name)())
    assert check(t, getattr(t.ts, name)()) == py(ref, TS)
    if name not in ("strip_timezone", "posix_timestamp", "date"):
        assert check(t, getattr(t.d, name)()) == py(ref, DATES)
    if name in ("weekday", "isoweekday", "toordinal", "date", "isoformat", "strip_timezone"):
        assert python_calls(t, getattr(t.ts, name)()) == 0


def test_isoformat_arguments(t):
    for sep in ("T", " ", "é"):
        for spec in ("auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"):
            e = t.ts.isoformat(sep, spec)
            assert check(t, e) == py(lambda v, a=sep, b=spec: v.isoformat(a, b), TS)
            assert python_calls(t, e) == 0
    assert [isinstance(v, Failed) for v in check(t, t.ts.isoformat("ab"))] == [
        v is not None for v in TS]  # Python refuses a separator of two characters


@pytest.mark.parametrize("fmt", ["%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%j %w %W", "%F %T %R",
                                 "100%% at %H", "%A %B %a %b", "%f %z", "%y %I %p %e",
                                 "%Y-W%W %s", "plain text", "", "%"])
def test_strftime(t, fmt):
    assert check(t, t.ts.strftime(fmt)) == py(lambda v: v.strftime(fmt), TS)
    assert check(t, t.d.strftime(fmt)) == py(lambda v: v.strftime(fmt), DATES)
    if fmt in ("%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%j %w %W", "%F %T %R", "100%% at %H"):
        # SQLite formats it, but for year 999 (glibc writes '999', SQLite '0999')
        assert python_calls(t, t.ts.strftime(fmt)) == 2


def test_astimezone_replace_make(t):
    got = check(t, t.ts.astimezone("Asia/Tokyo"))
    assert got == py(lambda v: v.astimezone(dt.timezone(dt.timedelta(hours=9))), TS)
    assert check(t, t.ts.replace(year=2001)) == py(lambda v: v.replace(year=2001), TS)
    assert check(t, t.ts.replace(day=t.n)) == [
        None if v is None else py(lambda w, n=n: w.replace(day=n), [v])[0]
        for v, n in zip(TS, [i * 40 - 200 for i in range(len(TS))], strict=True)]
    assert check(t, t.d.replace(month=2, day=29)) == py(lambda v: v.replace(month=2, day=29),
                                                         DATES)
    assert check(t, pts.make_timestamp(t.ts.year, 2, 28, hour=t.ts.hour)) == py(
        lambda v: dt.datetime(v.year, 2, 28, v.hour), TS)
    assert check(t, pdate.make_date(t.d.year, t.d.month, 1)) == py(
        lambda v: v.replace(day=1), DATES)
    bad = check(t, pts.make_timestamp(2024, 13, t.ts.day))
    assert all(isinstance(v, Failed) for v, s in zip(bad, TS, strict=True) if s is not None)
    assert pts.make_timestamp(2024, 1, 2) == dt.datetime(2024, 1, 2)  # plain values: a call


def test_add_days_is_date_arithmetic(t):
    ns = [i * 40 - 200 for i in range(len(STAMPS))]
    assert check(t, t.d.add_days(t.n)) == [
        None if d is None else py(lambda v, n=n: v + dt.timedelta(days=n), [d])[0]
        for d, n in zip(DATES, ns, strict=True)]
    assert check(t, t.d.add_days(30)) == py(lambda v: v + dt.timedelta(days=30), DATES)
    # past year 9999 or before year 1: Python's OverflowError on both paths
    assert sum(isinstance(v, Failed) for v in check(t, t.d.add_days(-1))) == 1
    assert sum(isinstance(v, Failed) for v in check(t, t.d.add_days(1))) == 1
    assert check(t, t.d.add_days(1.5)) == py(lambda v: v + dt.timedelta(days=1.5), DATES)
    assert python_calls(t, t.d.add_days(1)) == 1  # only 9999-12-31 goes to Python


def test_timestamp_functions_in_queries(t):
    rs = t.where(t.ts.year == 2024).order_by(t.ts.month, asc=False).select(
        m=t.ts.month, wd=t.ts.weekday(), day=t.ts.date()).collect()
    assert rs.to_dicts() == [{"m": 2, "wd": 3, "day": dt.date(2024, 2, 29)},
                             {"m": 1, "wd": 0, "day": dt.date(2024, 1, 1)}]
    assert t.where(t.ts.date() == dt.date(2024, 2, 29)).count() == 1
    with pytest.raises(pxl.ComputeError, match=r"add_days\(datetime.date\(9999, 12, 31\), 1\)"):
        t.where(t.d.add_days(1) == "2024-03-01").count()  # the year 10000: Python's error
    t.delete(where=t.ts.year == 9999)
    assert t.where(t.d.add_days(1) == "2024-03-01").count() == 1
    assert t.where(t.ts.strftime("%Y") == "2024").count() == 2


def test_timestamp_functions_persist(tmp_path):
    path = tmp_path / "p.pxl"
    db = pxl.connect(path)
    t = db.create_table("p", {"ts": pxl.Timestamp})
    t.insert([{"ts": dt.datetime(2024, 5, 17, 10)}])
    t.add_computed_column(day=t.ts.date())
    t.add_computed_column(later=t.ts.date().add_days(3))
    t.add_computed_column(label=t.ts.strftime("%d %B"))
    t.add_computed_column(made=pts.make_timestamp(t.ts.year, 1, 1))
    db.close()
    db = pxl.connect(path)
    t = db.get_table("p")
    t.insert([{"ts": dt.datetime(2025, 12, 30)}])
    assert t.select(t.day, t.later, t.label, t.made).collect().to_dicts() == [
        {"day": dt.date(2024, 5, 17), "later": dt.date(2024, 5, 20), "label": "17 May",
         "made": dt.datetime(2024, 1, 1)},
        {"day": dt.date(2025, 12, 30), "later": dt.date(2026, 1, 2), "label": "30 December",
         "made": dt.datetime(2025, 1, 1)}]
    assert t.later.col.type == pxl.Date
    db.close()
