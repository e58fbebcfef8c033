"""Column values: what each column type stores, what it refuses, and how a refusal looks.

Arbitrary Python values go into every column type and are checked against an oracle of what the
type accepts and what it must read back as; a refused value is a ComputeError naming the row and
column, caused by a PxliteError, and an aborted insert writes nothing. Then the edges found that
way, one test each: floats and timestamps that overflow, JSON with non-string keys, lone
surrogates or deep nesting, and NUL in a media path.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from pathlib import Path

import pytest
from hostile_inputs import HYP, INJECTIONS
from hypothesis import given, settings
from hypothesis import strategies as st

import pxlite as pxl
from pxlite.errors import ComputeError, PxliteError

REFUSE = object()
def _json_norm(v, seen=()):
    """What a Json cell must read back as, or REFUSE."""
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            return REFUSE  # a lone surrogate cannot be stored as UTF-8 text
        return v
    if v is None or isinstance(v, bool):
        return v
    if type(v) is int:
        return v if len(str(abs(v))) < 4300 else REFUSE
    if type(v) is float:
        return v if math.isfinite(v) else REFUSE
    if isinstance(v, (list, tuple)):
        out = [_json_norm(x) for x in v]
    elif isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            return REFUSE  # JSON would turn them into strings: a different value
        keys = [_json_norm(k) for k in v]
        out = [_json_norm(x) for x in v.values()]
        out += keys
    else:
        return REFUSE
    if any(x is REFUSE for x in out):
        return REFUSE
    if isinstance(v, dict):
        return {k: _json_norm(x) for k, x in v.items()}
    return [_json_norm(x) for x in v]


def _oracle(tname: str, v):
    """What a column of type ``tname`` must do with ``v``: the value read back, or REFUSE."""
    if v is None:
        return None
    if tname == "Int":
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return REFUSE
        return int(v) if -(2**63) <= v < 2**63 else REFUSE
    if tname == "Float":
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return REFUSE
        try:
            f = float(v)
        except OverflowError:
            return REFUSE  # does not fit in 64 bits
        return REFUSE if math.isnan(f) else f
    if tname == "String":
        if not isinstance(v, str):
            return REFUSE
        return REFUSE if any(0xD800 <= ord(c) <= 0xDFFF for c in v) else v
    if tname == "Bool":
        return v if isinstance(v, bool) else REFUSE
    if tname == "Timestamp":
        if isinstance(v, str):
            try:
                v = dt.datetime.fromisoformat(v)
            except ValueError:
                return REFUSE
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            v = dt.datetime(v.year, v.month, v.day)
        if not isinstance(v, dt.datetime):
            return REFUSE
        if v.tzinfo is not None:
            try:
                v = v.astimezone(dt.UTC)
            except OverflowError:
                return REFUSE  # outside years 1..9999 in UTC
        return v
    if tname == "Date":
        if isinstance(v, str):
            try:
                v = dt.date.fromisoformat(v)
            except ValueError:
                return REFUSE
        if isinstance(v, dt.datetime):  # only at midnight, naive: no time of day is lost
            return v.date() if v.time() == dt.time() and v.tzinfo is None else REFUSE
        return v if isinstance(v, dt.date) else REFUSE
    if tname == "Json":
        return _json_norm(v)
    raise AssertionError(tname)


offsets = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                                               max_value=dt.timedelta(hours=23, minutes=59)))
ANY_VALUE = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70),
        st.floats(), st.text(max_size=12), st.binary(max_size=8),
        st.datetimes(timezones=st.none() | offsets), st.dates(),
        st.fractions(max_denominator=50), st.decimals(), st.complex_numbers(),
        st.sampled_from([*INJECTIONS, "2024-05-01T12:00:00+02:00", "2024-05-01", "nan", "1",
                         "true", "\x00", "NULL", "s3://bucket/x.jpg"]),
        st.just(object()), st.just(Ellipsis), st.just(float("nan")), st.just(10**400),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3)
    | st.frozensets(st.integers(), max_size=2),
    max_leaves=6,
)


def _same(tname: str, got, want) -> bool:
    if tname == "Float":
        return got == want and isinstance(got, float)
    if tname == "Timestamp":
        return got == want and (got.tzinfo is None) == (want.tzinfo is None)
    if tname == "Bool":
        return got is want
    return got == want and type(got) is type(want)


#: Per type, values near its domain (edges, look-alikes) so each property sees many accepted ones.
NEAR = {
    "Int": st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**63, -(2**63) - 1, True, 1.0]),
    "Float": st.floats() | st.fractions() | st.integers(-(2**64), 2**64),
    "String": st.text(),
    "Bool": st.booleans() | st.sampled_from([0, 1, "True", None]),
    "Timestamp": st.datetimes(timezones=st.none() | offsets) | st.dates()
    | st.datetimes().map(dt.datetime.isoformat) | st.text(max_size=12),
    "Date": st.dates() | st.dates().map(dt.date.isoformat) | st.datetimes()
    | st.dates().map(lambda d: dt.datetime(d.year, d.month, d.day)) | st.text(max_size=10),
    "Json": ANY_VALUE,
}


@pytest.mark.parametrize("tname", ["Int", "Float", "String", "Bool", "Timestamp", "Date",
                                   "Json"])
def test_any_value_is_stored_as_its_type_or_refused(db, tname):
    t = db.create_table("t", {"a": getattr(pxl, tname), "k": pxl.Int})
    good = {"Int": 1, "Float": 1.5, "String": "s", "Bool": True,
            "Timestamp": dt.datetime(2020, 1, 1), "Date": dt.date(2020, 1, 1),
            "Json": {"g": 1}}[tname]
    counter = iter(range(1, 10**9))
    seen = {"stored": 0, "refused": 0}

    @settings(HYP, max_examples=80)
    @given(v=ANY_VALUE | NEAR[tname])
    def check(v):
        want = _oracle(tname, v)
        k = next(counter)
        n = t.count()
        try:
            t.insert([{"a": good, "k": k}, {"a": v, "k": k}])  # abort: all or nothing
        except ComputeError as e:
            assert want is REFUSE, f"{v!r} refused: {e}"
            assert e.column == "a" and e.row == 1 and "column 'a'" in str(e)
            assert isinstance(e.error, PxliteError)
            assert t.count() == n, "partial write"
            # on_error='ignore': the cell is NULL and keeps its error
            st_ = t.insert([{"a": v, "k": k}], on_error="ignore")
            assert st_.num_errors == 1
            row = t.where(t.k == k).select(t.a, t.a.errortype, t.a.errormsg).collect()[0]
            assert row["a"] is None and row["a_errortype"] and row["a_errormsg"]
            seen["refused"] += 1
            return
        assert want is not REFUSE, f"{v!r} was stored as {t.where(t.k == k).collect()['a']!r}"
        got = t.where(t.k == k).collect()["a"]
        assert _same(tname, got[0], _oracle(tname, good))
        assert _same(tname, got[1], want) if want is not None else got[1] is None, (v, got[1])
        seen["stored"] += 1

    check()
    print(f"{tname} values: {seen}")


def test_any_value_into_an_image_column_is_stored_or_refused(db, tmp_path, monkeypatch):
    """Arbitrary values into an Image column: a reference stored as given, a file written, or a
    PxliteError; a refused call leaves no row and no file."""
    monkeypatch.chdir(tmp_path)
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    media = Path(str(db.path) + ".media")
    counter = iter(range(1, 10**9))

    def files() -> set:
        return {p for p in media.rglob("*") if p.is_file()} if media.exists() else set()

    @HYP
    @given(v=ANY_VALUE | st.binary(max_size=40).map(lambda b: b"\x89PNG\r\n\x1a\n" + b)
           | st.text(max_size=20).map(lambda s: "https://example.com/" + s))
    def check(v):
        k = next(counter)
        n, before = t.count(), files()
        try:
            t.insert([{"image": v, "k": k}])
        except ComputeError as e:
            assert isinstance(e.error, PxliteError) and e.column == "image"
            assert t.count() == n and files() == before
            return
        got = t.where(t.k == k).select(t.image.fileurl).collect()[0]["image_fileurl"]
        if v is None:
            assert got is None
        elif isinstance(v, str):
            assert got == v  # a URL is stored exactly as given, never fetched now
        else:
            assert isinstance(v, (bytes, bytearray)) and got.startswith(media.as_uri())

    check()


# ---------------------------------------------------------------------------------------------
# Edges: each was once stored wrongly or crashed (SECURITY.md has the history)


def test_float_overflow_is_refused(db):
    t = db.create_table("t", {"a": pxl.Float})
    with pytest.raises(ComputeError):
        t.insert(a=10**400)


@pytest.mark.parametrize("v", [dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
                               "0001-01-01T00:00:00+05:00",
                               dt.datetime.max.replace(tzinfo=dt.timezone(-dt.timedelta(hours=5)))])
def test_timestamp_overflow_is_refused(db, v):
    t = db.create_table("t", {"a": pxl.Timestamp})
    with pytest.raises(ComputeError):
        t.insert(a=v)


def test_json_non_string_keys_are_refused_or_kept(db):
    t = db.create_table("t", {"a": pxl.Json})
    try:
        t.insert(a={1: "int key", "1": "str key"})
    except ComputeError:
        return  # refused: fine
    assert t.collect()["a"] == [{1: "int key", "1": "str key"}]


@pytest.mark.parametrize("kind", ["surrogate", "key-surrogate", "deep"])
def test_json_lone_surrogate_or_deep_nesting_is_refused(db, kind):
    deep: list = []
    cur = deep
    for _ in range(50_000):
        cur.append([])
        cur = cur[0]
    v = {"surrogate": "a\ud800", "key-surrogate": {"\udfff": 1}, "deep": deep}[kind]
    t = db.create_table("t", {"a": pxl.Json})
    with pytest.raises(ComputeError):
        t.insert(a=v)
    assert t.count() == 0



@pytest.mark.parametrize("v", ["a\x00b.jpg", "file:///tmp/a%00b.jpg"])
def test_nul_in_media_path_is_refused(db, v):
    t = db.create_table("t", {"image": pxl.Image})
    with pytest.raises(ComputeError, match=r"NUL|null"):
        t.insert(image=v)
    s = t.insert([{"image": v}], on_error="ignore")
    assert s.num_errors == 1
