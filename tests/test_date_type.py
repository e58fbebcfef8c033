"""The Date column type: what it stores and refuses, comparisons and order in SQL, literals in
stored definitions, UDF hints, the catalog and results."""

from __future__ import annotations

import datetime as dt

import pytest

import pxlite as pxl
from pxlite.errors import ComputeError, SchemaError
from pxlite.types import Date, as_type, parse_type, type_of_value


@pytest.fixture
def t(db):
    t = db.create_table("d", {"d": pxl.Date, "k": pxl.Int})
    t.insert([{"d": dt.date(2024, 2, 29), "k": 1}, {"d": "2023-12-31", "k": 2},
              {"d": dt.datetime(2024, 3, 1), "k": 3}, {"d": None, "k": 4},
              {"d": dt.date(1, 1, 1), "k": 5}, {"d": dt.date(9999, 12, 31), "k": 6}])
    return t


def test_values_come_back_as_dates(t):
    assert t.order_by(t.k).select(t.d).collect()["d"] == [
        dt.date(2024, 2, 29), dt.date(2023, 12, 31), dt.date(2024, 3, 1), None,
        dt.date(1, 1, 1), dt.date(9999, 12, 31)]
    assert all(type(v) is dt.date for v in t.select(t.d).collect()["d"] if v is not None)
    assert t._conn.db.query(f"SELECT {t.d.col.sql} FROM {t._meta().sql} WHERE _rowid = 1"
                            )[0][0] == "2024-02-29"  # ISO text: text order is date order


def test_refused_values_say_what_to_do(t):
    with pytest.raises(ComputeError, match=r"no time of day; pass value\.date\(\)"):
        t.insert(d=dt.datetime(2024, 1, 1, 12, 30))
    with pytest.raises(ComputeError, match="no time of day"):
        t.insert(d=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ComputeError, match="expected a date"):
        t.insert(d="yesterday")
    with pytest.raises(ComputeError, match="expected a date"):
        t.insert(d=20240101)
    assert t.count() == 6
    st = t.insert([{"d": "2024-13-01"}], on_error="ignore")
    assert st.num_errors == 1


def test_comparisons_and_order_run_in_sql(t):
    k = lambda q: sorted(q.select(t.k).collect()["k"])  # noqa: E731
    assert k(t.where(t.d == dt.date(2024, 2, 29))) == [1]
    assert k(t.where(t.d == "2024-02-29")) == [1]          # an ISO string, as stored
    assert k(t.where(t.d < dt.date(2024, 1, 1))) == [2, 5]
    assert k(t.where(t.d >= "2024-03-01")) == [3, 6]
    assert k(t.where(t.d.isin([dt.date(1, 1, 1), dt.date(9999, 12, 31)]))) == [5, 6]
    assert k(t.where(t.d == None)) == [4]  # noqa: E711
    assert (t.d < dt.date(2024, 1, 1)).sql() is not None
    assert t.where(t.d != None).order_by(t.d, asc=False).select(t.k).collect()["k"] == [  # noqa: E711
        6, 3, 1, 2, 5]


def test_the_type_in_the_catalog_and_api(tmp_path):
    assert pxl.Date is Date and as_type(dt.date) == Date and parse_type("Required[Date]") == \
        Date.with_nullable(False)
    assert type_of_value(dt.date(2024, 1, 1)) == Date
    assert type_of_value(dt.datetime(2024, 1, 1)).name == "Timestamp"
    path = tmp_path / "c.pxl"
    db = pxl.connect(path)
    t = db.create_table("c", {"d": pxl.Required[pxl.Date]})
    with pytest.raises((ComputeError, SchemaError), match="Required"):
        t.insert(d=None)
    t.insert(d=dt.date(2020, 5, 17))
    db.close()
    db = pxl.connect(path)
    t = db.get_table("c")
    assert t.d.col.type == Date.with_nullable(False)
    assert "Required[Date]" in repr(t)
    rs = t.collect()
    assert rs.schema["d"] == Date.with_nullable(False) and "2020-05-17" in repr(rs)
    db.close()


def test_date_literals_persist_in_computed_columns(tmp_path):
    path = tmp_path / "l.pxl"
    db = pxl.connect(path)
    t = db.create_table("l", {"d": pxl.Date})
    t.insert([{"d": dt.date(2024, 1, 1)}, {"d": dt.date(2025, 6, 1)}])
    t.add_computed_column(late=t.d > dt.date(2024, 12, 31))
    db.close()
    db = pxl.connect(path)
    t = db.get_table("l")
    t.insert([{"d": dt.date(2030, 1, 1)}])
    assert t.select(t.late).collect()["late"] == [False, True, True]
    db.close()


def test_udfs_take_and_return_dates(db):
    @pxl.udf
    def next_day(d: dt.date) -> dt.date:
        return d + dt.timedelta(days=1)

    t = db.create_table("u", {"d": pxl.Date})
    t.insert([{"d": dt.date(2024, 2, 28)}, {"d": None}])
    assert next_day(t.d).type == Date
    t.add_computed_column(n=next_day(t.d))
    assert t.select(t.n).collect()["n"] == [dt.date(2024, 2, 29), None]


def test_timestamp_and_date_are_different_types(db):
    t = db.create_table("x", {"ts": pxl.Timestamp, "d": pxl.Date})
    t.insert([{"ts": dt.date(2024, 1, 1), "d": dt.date(2024, 1, 1)}])  # a date in a Timestamp
    row = t.collect()[0]
    assert row["ts"] == dt.datetime(2024, 1, 1) and row["d"] == dt.date(2024, 1, 1)
    assert t.where(t.ts.date() == t.d).count() == 1


def test_quick_decoders_decode_as_the_types_do(db):
    from pxlite.exprs import Literal

    for v in (True, dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
              {"a": [1, "x"]}, 5, 2.5, "s"):
        e = Literal(v)
        stored = e.type.to_sql(v)
        dec = e.decoder()
        assert (stored if dec is None else dec(stored)) == e.type.from_sql(stored) == v
