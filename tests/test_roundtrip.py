"""Property-based round trips: every column type (insert then read back equal) and expression
serialization (to_json -> from_json keeps meaning and text)."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import pxlite as pxl
from pxlite.exprs import RowContext, from_json

_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)
text = st.text().filter(lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s))
timestamps = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)) | \
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                 timezones=st.just(dt.UTC))

STRATEGIES = {
    "Int": st.integers(-(2**63), 2**63 - 1),
    "Float": st.floats(allow_nan=False),
    "String": text,
    "Bool": st.booleans(),
    "Timestamp": timestamps,
    "Date": st.dates(),
    "Json": json_values,
}


@pytest.mark.parametrize("tname", list(STRATEGIES))
def test_scalar_round_trip(tmp_path_factory, tname):
    db = pxl.connect(tmp_path_factory.mktemp("rt") / "rt.pxl")
    t = db.create_table("t", {"v": getattr(pxl, tname), "k": pxl.Int})
    counter = iter(range(10**9))

    @_SETTINGS
    @given(st.lists(STRATEGIES[tname] | st.none(), min_size=1, max_size=5))
    def check(values):
        k = next(counter)
        t.insert([{"v": v, "k": k} for v in values])
        back = t.where(t.k == k).select(t.v).collect()["v"]
        assert back == values
        for v in values:  # and the value is found again by an equality predicate pushed to SQL
            if v is not None and tname != "Json":
                assert t.where((t.k == k) & (t.v == v)).count() >= 1

    check()
    db.close()


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(["RGB", "RGBA", "L"]),
       st.sampled_from(["pil", "png-bytes"]))
@_SETTINGS
def test_image_round_trip(tmp_path_factory, w, h, mode, how):
    db = pxl.connect(tmp_path_factory.mktemp("im") / "im.pxl")
    t = db.create_table("t", {"v": pxl.Image})
    img = Image.effect_noise((w, h), 50).convert(mode)
    if how == "png-bytes":
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        t.insert(v=buf.getvalue())
    else:
        t.insert(v=img)
    back = t.collect()[0]["v"]
    assert back.size == (w, h) and back.mode == mode
    if mode == "RGBA" or how == "png-bytes":  # lossless paths (alpha -> PNG) compare exactly
        assert back.tobytes() == img.tobytes()
    else:  # no alpha -> JPEG quality 90
        assert back.format == "JPEG"
    db.close()


def _table_meta():
    from pxlite.catalog import ColumnMeta, TableMeta
    from pxlite.types import Float, Image, Int, String

    return TableMeta(id=1, uid="u", path="t", columns=[
        ColumnMeta(1, "n", 0, Int), ColumnMeta(2, "x", 1, Float), ColumnMeta(3, "s", 2, String),
        ColumnMeta(4, "image", 3, Image)])


def _exprs():
    from pxlite.exprs import ColumnRef

    meta = _table_meta()
    n, x, s, im = (ColumnRef(meta, c) for c in meta.columns)
    lits = st.integers(-1000, 1000)
    leaves = st.sampled_from([n, x]) | lits.map(lambda v: n + v)
    arith = st.recursive(leaves, lambda e: st.tuples(e, st.sampled_from("+-*"), e | lits).map(
        lambda a: {"+": a[0].__add__, "-": a[0].__sub__, "*": a[0].__mul__}[a[1]](a[2])),
        max_leaves=6)
    cmp = st.tuples(arith, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), lits).map(
        lambda a: {"==": a[0].__eq__, "!=": a[0].__ne__, "<": a[0].__lt__, "<=": a[0].__le__,
                   ">": a[0].__gt__, ">=": a[0].__ge__}[a[1]](a[2]))
    strs = st.sampled_from([s == "a", s.isin(["a", "b"]), s == None, s != None,  # noqa: E711
                            s.upper() == "A", s.len() > 0, s.contains("a", case=False),
                            s.replace("a", "b").startswith("b"), s.split("a")[0] == "",
                            s.format(n) == "a", (s + "!").slice(-2) == "a!",
                            s.strip(" ").count("a") == 1, s.match("[ab]"),
                            x.round() == 2, n.pow(2) > 3, x.abs().floor() < n,
                            n.bitwise_and(3) == 1, n.astype(pxl.Float) == 1.0])
    images = st.sampled_from([im.width > 3, im.rotate(90).height == 4,
                              im.resize((2, 3)).width == 2, im.errortype == None])  # noqa: E711
    preds = st.recursive(cmp | strs | images, lambda p: st.tuples(p, p).map(
        lambda a: a[0] & a[1]) | st.tuples(p, p).map(lambda a: a[0] | a[1]) | p.map(lambda a: ~a),
        max_leaves=5)
    return meta, preds, arith


_META, _PREDS, _ARITH = _exprs()


class _Media:
    settings = None

    def value(self, col, uri):
        return Image.new("RGB", (4, 5))

    def fileurl(self, uri):
        return uri

    def localpath(self, uri):
        return uri


@given(_PREDS | _ARITH, st.integers(-50, 50), st.floats(-50, 50), st.sampled_from(["a", "b", None]))
@settings(max_examples=200, deadline=None)
def test_expression_serialization(expr, n, x, s):
    data = json.loads(json.dumps(expr.to_json()))
    back = from_json(data, _META)
    assert repr(back) == repr(expr)
    assert back.to_json() == expr.to_json()
    row = RowContext({1: n, 2: x, 3: s, 4: "file:///x.jpg"}, None, _Media())
    row2 = RowContext({1: n, 2: x, 3: s, 4: "file:///x.jpg"}, None, _Media())
    assert back.eval(row) == expr.eval(row2)
    assert (back.sql() is None) == (expr.sql() is None)


# ---- Array values and Array expressions ---------------------------------------------------------
_ARRAY_DTYPES = {"float16": st.floats(width=16, allow_nan=False),
                 "float32": st.floats(width=32, allow_nan=False),
                 "float64": st.floats(allow_nan=False),
                 "int8": st.integers(-128, 127), "int64": st.integers(-(2**63), 2**63 - 1),
                 "uint16": st.integers(0, 2**16 - 1), "bool": st.booleans()}


@st.composite
def _array_case(draw):
    import numpy as np

    dtype = draw(st.sampled_from(sorted(_ARRAY_DTYPES)))
    ndim = draw(st.integers(1, 3))
    dims = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    free = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    shape = tuple(None if f else d for d, f in zip(dims, free, strict=True))
    if 0 in shape:  # a type's fixed sizes are positive; a value's free ones may be 0
        shape = tuple(None if d == 0 else d for d in shape)
    size = int(np.prod(dims))
    flat = draw(st.lists(_ARRAY_DTYPES[dtype], min_size=size, max_size=size))
    return shape, dtype, np.array(flat, dtype=dtype).reshape(dims)


@given(_array_case())
@settings(max_examples=150, deadline=None)
def test_array_values_round_trip(case):
    shape, dtype, value = case
    t = pxl.Array[shape, dtype]
    from pxlite.types import parse_type

    assert parse_type(repr(t)) == t
    back = t.from_sql(t.to_sql(value))
    assert back.dtype == value.dtype and back.shape == value.shape
    assert back.tobytes() == value.tobytes()


def test_array_columns_round_trip_through_a_table(tmp_path_factory):
    import numpy as np

    db = pxl.connect(tmp_path_factory.mktemp("arr") / "a.pxl")
    counter = iter(range(10**9))
    tables: dict[tuple, object] = {}

    @_SETTINGS
    @given(_array_case())
    def check(case):
        shape, dtype, value = case
        key = (shape, dtype)
        if key not in tables:
            tables[key] = db.create_table(f"t{len(tables)}", {"v": pxl.Array[shape, dtype],
                                                               "k": pxl.Int})
        t = tables[key]
        k = next(counter)
        t.insert([{"v": value, "k": k}, {"v": None, "k": k}])
        back = t.where(t.k == k).order_by(t.v.is_null()).select(t.v).collect()["v"]
        assert back[1] is None and np.array_equal(back[0], value)

    check()
    db.close()


@given(st.sampled_from(["float16", "float32", "float64"]), st.integers(1, 64))
@settings(max_examples=30, deadline=None)
def test_array_cast_expressions_serialize(dtype, dim):
    from pxlite.catalog import ColumnMeta, TableMeta
    from pxlite.exprs import ColumnRef
    from pxlite.types import ArrayType

    meta = TableMeta(id=1, uid="u", path="t", columns=[
        ColumnMeta(1, "v", 0, ArrayType((dim,), "float32"))])
    expr = ColumnRef(meta, meta.columns[0]).astype(pxl.Array[(dim,), dtype])
    back = from_json(json.loads(json.dumps(expr.to_json())), meta)
    assert repr(back) == repr(expr) and back.type == expr.type
    import numpy as np

    raw = np.arange(dim, dtype=np.float32).tobytes()
    out = back.eval(RowContext({1: raw}))
    assert out.dtype == np.dtype(dtype) and out.tolist() == list(range(dim))
