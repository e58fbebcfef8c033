"""Array columns: numpy values in and out, stored compactly, shapes and dtypes checked."""

from __future__ import annotations

import numpy as np
import pytest
from udfs.embed import DIM, embed_bad_shape, embed_text

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import ComputeError, SchemaError
from pxlite.types import ArrayType, parse_type


def test_types_print_and_parse_back():
    cases = {pxl.Array[(512,), pxl.Float]: "Array[(512,), float32]",
             pxl.Array[(None, 3), pxl.Int]: "Array[(None, 3), int64]",
             pxl.Array[pxl.Bool]: "Array[None, bool]",
             pxl.Array[(2, 2), np.float16]: "Array[(2, 2), float16]",
             pxl.Required[pxl.Array[(4,), "uint8"]]: "Required[Array[(4,), uint8]]"}
    for t, text in cases.items():
        assert repr(t) == text
        assert parse_type(text) == t
    assert pxl.Array[(3,), pxl.Float] != pxl.Array[(4,), pxl.Float]
    assert pxl.Array[(3,), pxl.Float] != pxl.Array[(3,), np.float16]


@pytest.mark.parametrize("bad", [lambda: pxl.Array[(0,), pxl.Float],
                                 lambda: pxl.Array[(3,), pxl.String],
                                 lambda: pxl.Array[(3,), np.complex64],
                                 lambda: pxl.Array[(3,)],
                                 lambda: pxl.Array[("a",), pxl.Float]])
def test_bad_array_types_are_refused(bad):
    with pytest.raises(SchemaError, match="Array"):
        bad()


def test_bare_array_in_a_schema_says_what_to_write(db):
    with pytest.raises(SchemaError, match=r"pxl.Array\[\(512,\), pxl.Float\]"):
        db.create_table("t", {"v": pxl.Array})


def test_unknown_catalog_text_is_refused():
    with pytest.raises(SchemaError, match="Array type reads like"):
        parse_type("Array[[3], float32]")


def test_values_round_trip_as_numpy(db):
    t = db.create_table("t", {"v": pxl.Array[(3,), pxl.Float], "m": pxl.Array[(None, 2), pxl.Int],
                              "b": pxl.Array[pxl.Bool], "h": pxl.Array[(2,), np.float16]})
    t.insert([{"v": np.array([1.0, 2.0, 3.5]), "m": [[1, 2], [3, 4], [5, 6]],
               "b": np.array([[True, False]]), "h": [0.5, 1.5]},
              {"v": None, "m": np.zeros((0, 2), dtype=np.int8)}])
    rows = t.order_by(t.m.is_null()).collect()
    v, m, b, h = (rows[0][k] for k in "vmbh")
    assert v.dtype == np.float32 and v.tolist() == [1.0, 2.0, 3.5]
    assert m.dtype == np.int64 and m.shape == (3, 2) and m[2, 1] == 6
    assert b.dtype == bool and b.tolist() == [[True, False]]
    assert h.dtype == np.float16 and h.tolist() == [0.5, 1.5]
    v[0] = 9  # a value of its own, writable
    assert rows[1]["v"] is None and rows[1]["m"].shape == (0, 2)
    assert t.where(t.v.is_null()).count() == 1


def test_stored_compactly(db):
    t = db.create_table("t", {"v": pxl.Array[(512,), pxl.Float],
                              "w": pxl.Array[(None,), np.float16]})
    t.insert(v=np.ones(512, dtype=np.float32), w=np.ones(10, dtype=np.float16))
    meta = catalog.load_table(db.db, "t")
    v, w = meta.column("v"), meta.column("w")
    blob_v, blob_w = db.db.query(f"SELECT {v.sql}, {w.sql} FROM {meta.sql}")[0]
    assert len(blob_v) == 512 * 4  # the bare float32 elements: sqlite-vec's vector format
    assert len(blob_w) == 1 + 4 + 10 * 2  # ndim, the free dimension, then the elements


@pytest.mark.parametrize("value, got", [
    (np.zeros(4, dtype=np.float32), r"shape \(4,\) and dtype float32"),
    (np.zeros((3, 1)), r"shape \(3, 1\)"),
    (np.array(["a", "b", "c"]), r"dtype <U1 \(not numbers\)"),
    ("abc", "got str"),
    ([[1, 2], [3]], "ragged"),
])
def test_bad_values_name_column_row_expected_and_got(db, value, got):
    t = db.create_table("t", {"v": pxl.Array[(3,), pxl.Float], "k": pxl.Int})
    t.insert(k=0, v=[1, 2, 3])
    with pytest.raises(ComputeError, match=r"row 1, column 'v'.*expected an array of shape "
                       rf"\(3,\) and dtype float32.*{got}"):
        t.insert([{"k": 1, "v": [0.0, 0.0, 0.0]}, {"k": 2, "v": value}])
    assert t.count() == 1  # nothing of the failed insert
    t.insert([{"k": 3, "v": value}], on_error="ignore")  # kept as the cell's error
    assert t.where(t.k == 3).select(t.v.errortype).collect()[0]["v_errortype"] == "SchemaError"


@pytest.mark.parametrize("dtype, ok, bad", [
    (pxl.Int, np.array([1, 2], dtype=np.int16), np.array([1.5, 2.0])),
    (np.int8, np.array([1, -128], dtype=np.int64), np.array([1, 300])),
    (pxl.Bool, np.array([True, False]), np.array([1, 0])),
    (pxl.Float, np.array([1, 2], dtype=np.int32), np.array([True, False])),
])
def test_element_types_take_what_fits(db, dtype, ok, bad):
    t = db.create_table("t", {"v": pxl.Array[(2,), dtype]})
    t.insert(v=ok)
    assert t.collect()[0]["v"].tolist() == ok.tolist()
    with pytest.raises(ComputeError, match="expected an array"):
        t.insert(v=bad)


def test_update_checks_too(db):
    t = db.create_table("t", {"v": pxl.Array[(2,), pxl.Float], "k": pxl.Int})
    t.insert(v=[1, 2], k=1)
    t.update({"v": np.array([3.0, 4.0])}, where=t.k == 1)
    assert t.collect()[0]["v"].tolist() == [3.0, 4.0]
    with pytest.raises(ComputeError, match=r"column 'v'.*shape \(2,\)"):
        t.update({"v": np.zeros(5)}, where=t.k == 1)


def test_a_computed_column_returns_an_array(db):
    t = db.create_table("t", {"s": pxl.String})
    t.insert([{"s": "red"}, {"s": "a cat"}])
    t.add_computed_column(e=embed_text(t.s))
    assert repr(t.e.col.type) == f"Array[({DIM},), float32]"
    vals = t.order_by(t.s, asc=False).select(t.e).collect()["e"]
    assert vals[0].shape == (DIM,) and vals[0][0] == pytest.approx(1.0)
    t.add_computed_column(h=t.e.astype(pxl.Array[(DIM,), np.float16]))
    h = t.order_by(t.s, asc=False).select(t.h).collect()["h"][0]
    assert h.dtype == np.float16 and float(h[0]) == 1.0
    # a UDF that returns another shape than it declares: the row's cell error names both
    status = t.add_computed_column(bad=embed_bad_shape(t.s), on_error="ignore")
    assert status.num_errors == 2
    msg = t.select(t.bad.errormsg).collect()[0]["bad_errormsg"]
    assert "expected an array of shape (16,)" in msg and "got an array of shape (3,)" in msg


def test_array_columns_survive_reopening(tmp_path):
    path = tmp_path / "a.pxl"
    with pxl.connect(path) as db:
        t = db.create_table("t", {"v": pxl.Required[pxl.Array[(None, 2), np.uint16]]})
        t.insert(v=np.array([[1, 2]], dtype=np.uint16))
    with pxl.connect(path) as db:
        t = db.get_table("t")
        assert isinstance(t.v.col.type, ArrayType) and not t.v.col.type.nullable
        assert t.collect()[0]["v"].tolist() == [[1, 2]]


def test_a_damaged_blob_is_an_error_naming_the_row(db):
    t = db.create_table("t", {"v": pxl.Array[(3,), pxl.Float]})
    t.insert(v=[1, 2, 3])
    meta = catalog.load_table(db.db, "t")
    with db.db.transaction():
        db.db.execute(f"UPDATE {meta.sql} SET {meta.column('v').sql} = x'0102'")
    with pytest.raises(SchemaError, match=r"column 'v', row 1:.*cannot be read"):
        t.collect()


def test_an_array_cast_column_is_computed_a_batch_at_a_time(db, monkeypatch):
    """A stored column converting an Array column's elements (an embedding index's float16 copy
    of an Array computed elsewhere, or any ``astype``) converts every row of a batch in one
    numpy call, with the same values as row by row; rows without a value stay None."""
    from pxlite import vectors

    t = db.create_table("a", {"v": pxl.Array[(4,), pxl.Float], "k": pxl.Int})
    vals = [np.array([i, i + 0.1, -i / 7, 1e-4 * i], dtype=np.float32) for i in range(300)]
    t.insert([{"v": v, "k": i} for i, v in enumerate(vals)] + [{"k": 300}])
    decoded: list = []
    real = vectors.decode
    monkeypatch.setattr(vectors, "decode", lambda *a: decoded.append(a) or real(*a))
    t.add_computed_column(h=t.v.astype(pxl.Array[(4,), np.float16]))
    t.insert([{"v": vals[1] * 3, "k": 301}, {"k": 302}])
    assert decoded == []  # no value decoded one by one
    monkeypatch.undo()
    rows = t.select(t.k, t.h).order_by(t.k).collect()
    assert len(rows) == 303
    for r in rows:
        if r["k"] in (300, 302):
            assert r["h"] is None
            continue
        want = (vals[r["k"]] if r["k"] < 300 else vals[1] * 3).astype(np.float16)
        assert r["h"].dtype == np.float16 and np.array_equal(r["h"], want)
    assert t.where(t.k == 3).select(t.h).collect()[0]["h"].tolist() == \
        [float(x) for x in t.where(t.k == 3).select(t.v).collect()[0]["v"].astype(np.float16)]


def test_a_damaged_blob_fails_only_its_own_cell_of_a_batch(db):
    t = db.create_table("t", {"v": pxl.Array[(3,), pxl.Float]})
    t.insert([{"v": [i, 2, 3]} for i in range(5)])
    meta = catalog.load_table(db.db, "t")
    with db.db.transaction():
        db.db.execute(f"UPDATE {meta.sql} SET {meta.column('v').sql} = x'0102' "
                      "WHERE _rowid = 3")
    st = t.add_computed_column(h=t.v.astype(pxl.Array[(3,), np.float16]), on_error="ignore")
    assert st.num_excs == 1
    rows = t.select(t.h, et=t.h.errortype, em=t.h.errormsg).order_by(t.h.errortype).collect()
    bad = [r for r in rows if r["et"] is not None]
    assert len(bad) == 1 and bad[0]["h"] is None and "row 3: the stored value" in bad[0]["em"]
    assert sorted(r["h"][0] for r in rows if r["et"] is None) == [0, 1, 3, 4]
    with pytest.raises(ComputeError, match=r"row 3.*cannot be read as an array"):
        t.add_computed_column(h2=t.v.astype(pxl.Array[(3,), np.float16]))


def test_without_numpy_an_array_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(SchemaError, match=r"pip install 'pxlite\[vectors\]'"):
        pxl.Array[(3,), pxl.Float].to_sql([1, 2, 3])
