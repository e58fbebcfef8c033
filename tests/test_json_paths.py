"""JSON paths (``t.meta.camera.model``, ``['k']``, ``[0]``, ``[-1]``, ``[:2]``) and the Json
functions: SQLite and Python give the same values (a missing key or a step into the wrong kind
of value is None), in select, where and order_by, and they survive in stored definitions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlcheck import Failed, by_python, by_sql, check, python_calls

import pxlite as pxl
from pxlite.errors import SchemaError
from pxlite.exprs import JsonPath, RowContext, from_json
from pxlite.functions import json as pjson

DOCS = [
    {"camera": {"model": "X100", "make": "Fuji", "iso": 200}, "tags": ["cat", "dog", "sun"],
     "w": 1.5, "ok": True, "items": [{"name": "a", "n": 1}, {"name": "b"}, 3]},
    {"camera": {"model": "Y", "iso": 3200.0}, "tags": [], "w": -2, "ok": False,
     "items": "not a list"},
    {"camera": "just text", "tags": ["only"], "w": None, "a b": {"c.d": 1, 'q"t': 2},
     "é": "accent", "": "empty key"},
    None,
    {"camera": {"model": None}, "tags": {"0": "zero"}, "w": "1.5", "ok": 1},
    ["a", "list", "at", "the", "top"],
    "a string",
    7,
    {"camera": {"model": "[bracketed]"}, "tags": ["x", ["nested", 1], {"k": "v"}], "w": 10},
]


@pytest.fixture
def t(db):
    t = db.create_table("j", {"meta": pxl.Json, "k": pxl.Int})
    t.insert([{"meta": d, "k": i} for i, d in enumerate(DOCS)])
    return t


def walk(doc, *path):
    """Pixeltable's path evaluation, written out for the expected values."""
    for p in path:
        if isinstance(p, str):
            doc = doc.get(p) if isinstance(doc, dict) else None
        elif isinstance(p, int):
            doc = doc[p] if isinstance(doc, list) and -len(doc) <= p < len(doc) else None
    return doc


def test_path_forms_give_pythons_values(t):
    m = t.meta
    assert check(t, m["camera"]["model"]) == [walk(d, "camera", "model") for d in DOCS]
    assert check(t, m.camera.model) == check(t, m["camera"]["model"])
    assert check(t, m.tags[0]) == [walk(d, "tags", 0) for d in DOCS]
    assert check(t, m.tags[-1]) == [walk(d, "tags", -1) for d in DOCS]
    assert check(t, m.tags[5]) == [None] * len(DOCS)
    assert check(t, m[0]) == [walk(d, 0) for d in DOCS]
    assert check(t, m["a b"]["c.d"]) == [walk(d, "a b", "c.d") for d in DOCS]
    assert check(t, m["a b"]['q"t']) == [walk(d, "a b", 'q"t') for d in DOCS]
    assert check(t, m["é"]) == [walk(d, "é") for d in DOCS]
    assert check(t, m[""]) == [walk(d, "") for d in DOCS]
    assert check(t, m.tags["0"]) == [walk(d, "tags", "0") for d in DOCS]
    assert check(t, m.camera) == [walk(d, "camera") for d in DOCS]  # objects come back whole
    assert check(t, m.tags[1][0]) == [walk(d, "tags", 1, 0) for d in DOCS]
    for e in (m.camera.model, m.tags[-1], m["a b"]['q"t']):
        assert python_calls(t, e) == 0


@pytest.mark.parametrize("sl", [slice(None, 2), slice(1, None), slice(-2, None),
                                slice(None, -1), slice(-100, 100), slice(2, 1), slice(None),
                                slice(None, None, 2), slice(None, None, -1), slice(1, -1, 1)])
def test_slices(t, sl):
    want = [d["tags"][sl] if isinstance(d, dict) and isinstance(d.get("tags"), list) else None
            for d in DOCS]
    assert check(t, t.meta.tags[sl]) == want
    top = [d[sl] if isinstance(d, list) else None for d in DOCS]
    assert check(t, t.meta[sl]) == top
    if sl.step in (None, 1):
        assert python_calls(t, t.meta.tags[sl]) == 0


def test_a_step_after_a_slice_applies_to_each_element(t):
    want = [[walk(x, "name") for x in d["items"][:2]] if isinstance(d, dict) and isinstance(
        d.get("items"), list) else None for d in DOCS]
    assert want[0] == ["a", "b"]
    assert check(t, t.meta["items"][:2].name) == want
    assert check(t, t.meta["items"]["*"].n) == [
        [walk(x, "n") for x in d["items"]] if isinstance(d, dict) and isinstance(
            d.get("items"), list) else None for d in DOCS]
    assert check(t, t.meta.tags[:][0]) == [
        [walk(x, 0) for x in d["tags"]] if isinstance(d, dict) and isinstance(
            d.get("tags"), list) else None for d in DOCS]
    assert check(t, t.meta.tags[1:][:1]) == [
        [x[:1] if isinstance(x, list) else None for x in d["tags"][1:]]
        if isinstance(d, dict) and isinstance(d.get("tags"), list) else None for d in DOCS]


def test_astype(t):
    m = t.meta
    got = check(t, m.camera.model.astype(pxl.String))
    assert got[:2] == ["X100", "Y"] and got[2:5] == [None, None, None]
    assert [isinstance(v, Failed) for v in check(t, m.w.astype(pxl.Int))] == [
        isinstance(walk(d, "w"), (float, str)) for d in DOCS]  # 1.5, "1.5": not an Int
    assert check(t, m.camera.iso.astype(pxl.Float)) == [200.0, 3200.0] + [None] * 7
    assert check(t, m.ok.astype(pxl.Bool))[:2] == [True, False]
    assert isinstance(check(t, m.ok.astype(pxl.Bool))[4], Failed)  # 1 is not a Bool
    assert check(t, m.camera.model.astype(pxl.String).lower())[:2] == ["x100", "y"]
    assert check(t, m.tags.astype(pxl.Json)) == check(t, m.tags)
    d = check(t, m.camera.model.astype(pxl.Date))
    assert isinstance(d[0], Failed) and d[3] is None
    for e in (m.camera.model.astype(pxl.String), m.camera.iso.astype(pxl.Float)):
        assert python_calls(t, e) == 0  # SQLite converts whenever Python would


def test_where_on_paths(t):
    def ks(pred):
        got = sorted(t.where(pred).select(t.k).collect()["k"])
        rows = [(k, rc) for k, rc in enumerate(_contexts(t))]
        want = sorted(k for k, rc in rows if pred.eval(rc) is True)
        assert got == want, pred
        return got

    m = t.meta
    assert ks(m.camera.model == "X100") == [0]
    assert ks(m.camera.model != "X100") == [1, 8]  # missing and null are None: neither
    assert ks(m.camera.model == None) == [2, 3, 4, 5, 6, 7]  # noqa: E711
    assert ks(m.camera.model == "[bracketed]") == [8]
    assert ks(m.tags == "[]") == []          # an array never equals a string
    assert ks(m.tags != "[]") == [0, 1, 2, 4, 8]
    assert ks(m.w == 1.5) == [0]             # the string "1.5" is not 1.5
    assert ks(m.ok == True) == [0, 4]        # noqa: E712 (1 == True, as in Python)
    assert ks(m.ok == 1) == [0, 4]
    assert ks(m.camera.iso >= 3200) == [1]
    assert ks(m.camera.model.isin(["X100", "Y", "Z"])) == [0, 1]
    assert ks(m.tags[0].isin(["cat", "only", "x"])) == [0, 2, 8]
    assert ks(m.tags[-1] == "sun") == [0]
    assert ks(~(m.camera.model == "Y")) == [0, 8]
    assert ks((m.camera.model == "Y") | (m.w == 10)) == [1, 8]
    assert ks(m.camera.model.astype(pxl.String).startswith("X")) == [0]
    assert (m.camera.model == "X100").sql() is not None
    # an order across kinds is Python's error on both paths
    with pytest.raises(SchemaError, match="cannot compare"):
        t.where(m.w > 0).count()
    with pytest.raises(SchemaError, match="cannot compare"):
        t.where(m.w > 0).where(t.k == 4).select(t.k).collect()


def _contexts(t):
    meta = t._meta()
    col = meta.column("meta")
    rows = t._conn.db.query(f"SELECT {col.sql} FROM {meta.sql} ORDER BY _rowid")
    return [RowContext({col.col_id: r[0], meta.column("k").col_id: i}) for i, r in
            enumerate(rows)]


def test_order_by_a_path_sorts_like_python(db):
    t = db.create_table("o", {"meta": pxl.Json})
    t.insert([{"meta": {"n": v}} for v in (10, 9, -1.5, None, 100, 2)] + [{"meta": {}}])
    got = t.order_by(t.meta.n).select(t.meta.n).collect()["meta_n"]
    assert got[-2:] == [None, None] and got[:-2] == [-1.5, 2, 9, 10, 100]  # None last ascending
    got = t.order_by(t.meta.n, asc=False).select(n=t.meta.n).collect()["n"]
    assert got[:2] == [None, None] and got[2:] == [100, 10, 9, 2, -1.5]  # and first descending


def test_select_outputs_are_json_values(t):
    rs = t.where(t.k < 3).order_by(t.k).select(t.meta.camera.model, t.meta.tags[:2],
                                              iso=t.meta.camera.iso).collect()
    assert rs.names == ["meta_camera_model", "meta_tags2", "iso"]
    assert rs.to_dicts() == [
        {"meta_camera_model": "X100", "meta_tags2": ["cat", "dog"], "iso": 200},
        {"meta_camera_model": "Y", "meta_tags2": [], "iso": 3200.0},
        {"meta_camera_model": None, "meta_tags2": ["only"], "iso": None}]
    assert check(t, t.meta.camera.iso) == [walk(d, "camera", "iso") for d in DOCS]
    assert type(check(t, t.meta.camera.iso)[1]) is float  # 3200.0 stays a float


def test_attributes_do_not_shadow_methods(t):
    m = t.meta
    assert callable(m.astype) and callable(m.isin) and callable(m.is_null)
    assert isinstance(m["astype"], JsonPath) and isinstance(m["type"], JsonPath)
    assert m.type.name == "Json"             # the expression's type, not a field
    assert isinstance(m.keys(), pxl.Expr)    # a Json method wins over a field (Pixeltable)
    assert isinstance(m["keys"], JsonPath)
    assert isinstance(m.camera.errortype, pxl.Expr)  # a field of a path
    assert repr(m["a b"]['q"t'].tags[0][1:3]) == "meta['a b']['q\"t'].tags[0][1:3]"
    with pytest.raises(SchemaError, match=r"'in' cannot test"):
        "x" in m  # noqa: B015
    with pytest.raises(TypeError):
        list(m)
    for bad in (1.5, True, None, (1, 2), slice("a", None), slice(None, None, 0)):
        with pytest.raises(SchemaError, match="JSON path"):
            m[bad]


def test_paths_survive_serialization_and_reopen(tmp_path):
    path = tmp_path / "p.pxl"
    db = pxl.connect(path)
    t = db.create_table("p", {"meta": pxl.Json})
    t.insert([{"meta": DOCS[0]}, {"meta": DOCS[2]}])
    t.add_computed_column(model=t.meta.camera.model.astype(pxl.String))
    t.add_computed_column(first=t.meta.tags[:2])
    t.add_computed_column(names=t.meta["items"][-2:].name)
    t.add_computed_column(ab=t.meta["a b"]['q"t'])
    db.close()
    db = pxl.connect(path)
    t = db.get_table("p")
    t.insert([{"meta": {"camera": {"model": "Z"}, "tags": [1, 2, 3]}}])
    assert t.select(t.model, t.first, t.names, t.ab).collect().to_dicts() == [
        {"model": "X100", "first": ["cat", "dog"], "names": ["b", None], "ab": None},
        {"model": None, "first": ["only"], "names": None, "ab": 2},
        {"model": "Z", "first": [1, 2], "names": None, "ab": None}]
    assert "meta.camera.model.astype(String)" in repr(t)
    db.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["a", "b", "", "x y", "é", '"', "0"]), inner, max_size=4),
    max_leaves=12)
elements = st.sampled_from(["a", "b", "", "x y", "é", '"', "0", "zz"]) | st.integers(-4, 4) | \
    st.builds(slice, st.none() | st.integers(-4, 4), st.none() | st.integers(-4, 4),
              st.sampled_from([None, None, 1, 2, -1]))
_SETTINGS = settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(st.lists(json_values, min_size=1, max_size=6), st.lists(elements, min_size=1,
                                                                 max_size=4))
def test_any_path_on_any_document(tmp_path_factory, docs, path):
    db = pxl.connect(tmp_path_factory.mktemp("h") / "h.pxl")
    t = db.create_table("h", {"meta": pxl.Json})
    t.insert([{"meta": d} for d in docs])
    e = t.meta
    for p in path:
        e = e[p]
    values = check(t, e)
    data = json.loads(json.dumps(e.to_json()))
    back = from_json(data, t._meta())
    assert repr(back) == repr(e) and by_python(t, back) == values
    # every scalar found is found again by an equality pushed to SQL
    for v in {json.dumps(v) for v in values if isinstance(v, (str, int, float, bool))}:
        want = json.loads(v)
        sql_rows = t.where(e == want).count()
        assert sql_rows == sum(1 for x in values if x == want and x is not None and
                               not isinstance(x, (list, dict))), (e, want)
    db.close()


@_SETTINGS
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63),
                                                                               2**63 - 1),
                min_size=1, max_size=10))
def test_sqlite_reads_json_numbers_as_python_does(tmp_path_factory, xs):
    db = pxl.connect(tmp_path_factory.mktemp("f") / "f.pxl")
    t = db.create_table("f", {"meta": pxl.Json})
    t.insert([{"meta": {"x": x}} for x in xs])
    assert by_sql(t, t.meta.x, key=True) == xs  # the SQL scalar is the Python number
    for x in xs:
        assert t.where(t.meta.x == x).count() == sum(1 for y in xs if y == x)
    db.close()


# ---- Json functions --------------------------------------------------------------------------
def test_json_functions(t):
    m = t.meta

    def ref(fn, path=(), takes_none=False):
        out = []
        for d in DOCS:
            v = walk(d, *path)
            if v is None and not takes_none:
                out.append(None)
                continue
            try:
                out.append(fn(v))
            except Exception as e:
                out.append(Failed(e))
        return out

    assert check(t, m.len()) == ref(pjson.len.fn)
    assert check(t, m.tags.len()) == ref(pjson.len.fn, ("tags",))
    assert check(t, m.is_empty()) == ref(pjson.is_empty.fn, takes_none=True)
    assert check(t, m.tags.is_empty()) == ref(pjson.is_empty.fn, ("tags",), takes_none=True)
    assert python_calls(t, m.tags.is_empty()) == 0
    assert check(t, m.tags.contains("dog")) == ref(lambda v: pjson.contains.fn(v, "dog"),
                                                    ("tags",))
    assert check(t, m.camera.get("make", "unknown")) == ref(
        lambda v: v.get("make", "unknown") if isinstance(v, dict) else "unknown", ("camera",),
        takes_none=True)
    assert check(t, m.keys()) == ref(pjson.keys.fn)
    assert check(t, m.camera.values()) == ref(pjson.values.fn, ("camera",))
    assert check(t, m.camera.items()) == ref(pjson.items.fn, ("camera",))
    assert check(t, m.tags.flatten()) == ref(pjson.flatten.fn, ("tags",))
    assert check(t, m.tags.count("x")) == ref(lambda v: pjson.count.fn(v, "x"), ("tags",))
    assert check(t, m.tags.concat(m.tags)) == ref(lambda v: pjson.concat.fn(v, v), ("tags",))
    assert check(t, m.camera.merge(m.camera)) == ref(lambda v: pjson.merge.fn(v, v),
                                                      ("camera",))
    assert check(t, pjson.dumps(m.camera)) == ref(json.dumps, ("camera",))


def test_json_number_functions(db):
    t = db.create_table("n", {"xs": pxl.Json})
    t.insert([{"xs": [1, 2.5, -3]}, {"xs": []}, {"xs": None}, {"xs": [True]}, {"xs": "1"}])
    assert check(t, t.xs.sum())[:3] == [0.5, 0.0, None]
    assert check(t, t.xs.min())[:3] == [-3.0, None, None]
    assert check(t, t.xs.max())[:3] == [2.5, None, None]
    assert check(t, t.xs.mean())[:3] == [0.5 / 3, None, None]
    assert all(isinstance(v, Failed) for v in check(t, t.xs.sum())[3:])


def test_json_paths_in_functions_of_other_families(db):
    t = db.create_table("f", {"meta": pxl.Json})
    t.insert([{"meta": {"when": "2024-05-17T10:00:00", "day": "2024-05-17", "name": "Ann"}}])
    assert check(t, t.meta.when.astype(pxl.Timestamp).year) == [2024]
    assert check(t, t.meta.day.astype(pxl.Date).weekday()) == [dt.date(2024, 5, 17).weekday()]
    assert check(t, t.meta.name.astype(pxl.String) + "!") == ["Ann!"]


def test_a_json_column_compares_as_its_value(db):
    t = db.create_table("c", {"meta": pxl.Json, "k": pxl.Int})
    t.insert([{"meta": m, "k": i} for i, m in enumerate(
        ["a string", 7, 7.0, True, {"b": 1, "a": 2}, ["x"], None, '{"a": 2}', "[x]"])])

    def ks(pred):
        got = sorted(t.where(pred).select(t.k).collect()["k"])
        want = sorted(k for k, rc in enumerate(_contexts(t)) if pred.eval(rc) is True)
        assert got == want, pred
        return got

    assert ks(t.meta == "a string") == [0]
    assert ks(t.meta == 7) == [1, 2]           # 7 == 7.0, as in Python
    assert ks(t.meta != "a string") == [1, 2, 3, 4, 5, 7, 8]
    assert ks(t.meta == {"a": 2, "b": 1}) == [4]  # key order does not matter (Python compares)
    assert ks(t.meta == '{"a": 2}') == [7]    # a string, not the object
    assert ks(t.meta == "[x]") == [8]
    assert ks(t.meta.isin(["a string", 7])) == [0, 1, 2]
    assert ks(t.meta == True) == [3]  # noqa: E712
    assert ks(t.meta == None) == [6]  # noqa: E711
    assert ks(t.meta.is_empty()) == [6]
    assert (t.meta == "a string").sql() is not None


def test_update_and_delete_where_paths_and_functions(db):
    t = db.create_table("w", {"s": pxl.String, "meta": pxl.Json, "k": pxl.Int})
    t.insert([{"s": "Straße", "meta": {"a": "x"}, "k": 1}, {"s": "abc", "meta": {"a": "y"}, "k": 2},
              {"s": "ABC", "meta": None, "k": 3}])
    assert t.update({"k": 99}, where=t.s.upper() == "STRASSE").num_rows == 1
    assert t.delete(where=(t.meta.a == "y") | t.s.match("A")).num_rows == 2
    assert t.select(t.s, t.k).collect().to_dicts() == [{"s": "Straße", "k": 99}]


def test_crafted_path_definitions_are_refused(t):
    meta = t._meta()
    with pytest.raises(SchemaError, match="unreadable JSON path"):
        from_json({"jpath": "camera", "of": {"col": meta.column("meta").col_id}}, meta)
    with pytest.raises(SchemaError, match="JSON path"):
        from_json({"jpath": [{"slice": [None, None, 0]}], "of": {"col": 1}}, meta)
    with pytest.raises(SchemaError, match="JSON path"):
        from_json({"jpath": [1.5], "of": {"col": 1}}, meta)


def test_sql_calling_an_unknown_python_function_is_a_clear_error(t):
    from pxlite.errors import ComputeError

    with pytest.raises(ComputeError, match=r"'no\.such\.key', which is not registered"):
        t._conn.db.query("SELECT pxl_call('no.such.key', 1)")


def test_arithmetic_on_a_path_asks_for_a_type(t):
    with pytest.raises(SchemaError, match=r"takes \.astype\(pxl\.Float\)"):
        t.meta.w + 1
    assert check(t, t.meta.camera.iso.astype(pxl.Float) * 2)[:2] == [400.0, 6400.0]
