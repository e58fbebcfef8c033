"""B-tree indexes (Pixeltable's add_btree_index / drop_index): where() and order_by() use them
(EXPLAIN QUERY PLAN shows it), results are unchanged, and the catalog keeps them."""

from __future__ import annotations

import datetime
import random
import re

import pytest

import pxlite as pxl
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError


def _plan(q: pxl.Query) -> str:
    text = q._explain()
    return text[text.index("SQLite's plan:"):]


@pytest.mark.parametrize("ctype,make", [
    (pxl.Int, lambda r: r.randint(-(2**63), 2**63 - 1)),
    (pxl.Float, lambda r: r.uniform(-1e300, 1e300)),
    (pxl.String, lambda r: "".join(r.choice("aéZ日0") for _ in range(r.randint(0, 30)))),
    (pxl.Timestamp, lambda r: datetime.datetime(2000, 1, 1)
     + datetime.timedelta(seconds=r.randint(0, 10**9))),
])
def test_comparisons_give_the_same_rows_with_an_index(db, ctype, make):
    rng = random.Random(1)
    data = list({make(rng): None for _ in range(1001)})
    t = db.create_table("b", {"data": ctype})
    t.add_btree_index("data")
    t.insert([{"data": v} for v in data])
    median = sorted(data)[len(data) // 2]
    n = len(data)
    assert t.where(t.data == median).count() == 1
    assert t.where(t.data < median).count() == n // 2
    assert t.where(t.data <= median).count() == n // 2 + 1
    assert t.where(t.data > median).count() == n - n // 2 - 1
    assert t.where(t.data >= median).count() == n - n // 2
    assert t.order_by(t.data).limit(3).collect()["data"] == sorted(data)[:3]
    assert re.search(r"SEARCH t_1 USING (COVERING )?INDEX i_1 \(c1=\?\)",
                     _plan(t.where(t.data == median)))


def test_where_and_order_by_use_the_index(db):
    t = db.create_table("t", {"id": pxl.Int, "name": pxl.String, "n": pxl.Int})
    t.insert([{"id": i, "name": f"n{i}", "n": None if i % 5 == 0 else i % 13} for i in range(500)])
    eq, rng, order = (t.where(t.name == "n7"), t.where(t.n > 10).order_by(t.n),
                      t.order_by(t.n).limit(5))
    for q in (eq, rng, order):
        assert "USING INDEX" not in _plan(q)
    before = [q.collect().to_dicts() for q in (eq, rng, order)]
    t.add_btree_index(t.name, idx_name="name_idx")
    t.add_btree_index("n")
    assert "SEARCH t_1 USING INDEX i_1 (c2=?)" in _plan(eq)
    assert "SEARCH t_1 USING INDEX i_2 (c3>?)" in _plan(rng)
    assert "SCAN t_1 USING INDEX i_2" in _plan(order)
    assert "USING INDEX i_2" in _plan(t.order_by(t.n, asc=False).limit(5))
    assert [q.collect().to_dicts() for q in (eq, rng, order)] == before  # NULLs still last
    assert order.collect()["n"] == [0] * 5
    assert t.order_by(t.n).collect()["n"][-100:] == [None] * 100
    md = t.get_metadata()["indexes"]
    assert md == {"name_idx": {"name": "name_idx", "columns": ["name"], "index_type": "btree",
                               "parameters": None},
                  "idx0": {"name": "idx0", "columns": ["n"], "index_type": "btree",
                           "parameters": None}}
    # kept current by every write
    t.insert(id=1000, name="new", n=99)
    t.update({"name": "renamed"}, where=t.id == 1000)
    assert t.where(t.name == "renamed").select(t.n).collect()["n"] == [99]


def test_add_and_drop_rules(db, tmp_path):
    t = db.create_table("t", {"id": pxl.Int, "name": pxl.String, "data": pxl.Json,
                              "extra": pxl.String})
    t.insert([{"id": i, "name": f"n{i}", "data": {"k": i}, "extra": f"e{i}"} for i in range(10)])
    t.add_btree_index("id")
    assert t.where(t.id == 3).collect()["name"] == ["n3"]
    t.add_btree_index(t.name, idx_name="name_idx")
    assert set(t.get_metadata()["indexes"]) == {"idx0", "name_idx"}
    with pytest.raises(AlreadyExistsError, match="has a B-tree index already"):
        t.add_btree_index("id")
    with pytest.raises(AlreadyExistsError, match="has a B-tree index already"):
        t.add_btree_index("id", idx_name="id_idx2")
    t.add_btree_index("id", if_exists="ignore")
    t.add_btree_index("id", idx_name="id_idx2", if_exists="ignore")
    for ie in ("replace", "replace_force"):
        with pytest.raises(SchemaError, match="if_exists"):
            t.add_btree_index("id", if_exists=ie)
    for ie in ("error", "ignore"):
        with pytest.raises(AlreadyExistsError, match="'idx0' already exists on column 'id'"):
            t.add_btree_index("extra", idx_name="idx0", if_exists=ie)
    with pytest.raises(SchemaError, match="invalid index name"):
        t.add_btree_index("extra", idx_name="bad name")
    with pytest.raises(NotFoundError, match="no column 'nope'"):
        t.add_btree_index("nope")
    assert set(t.get_metadata()["indexes"]) == {"idx0", "name_idx"}
    # drop by name and by column
    t.drop_index(idx_name="name_idx")
    t.drop_index(column="id")
    assert t.get_metadata()["indexes"] == {}
    with pytest.raises(NotFoundError, match="no index on column 'id'"):
        t.drop_index(column=t.id)
    with pytest.raises(NotFoundError, match="no index on the name 'zz'"):
        t.drop_index(idx_name="zz")
    t.drop_index(idx_name="zz", if_not_exists="ignore")
    with pytest.raises(SchemaError, match="either column= or idx_name="):
        t.drop_index()
    with pytest.raises(SchemaError, match="either column= or idx_name="):
        t.drop_index(column="id", idx_name="idx0")
    assert not db.db.query("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name LIKE 'i\\_%'"
                           " ESCAPE '\\'")


def test_ineligible_columns(db, jpegs):
    t = db.create_table("t", {"id": pxl.Int, "flag": pxl.Bool, "data": pxl.Json, "img": pxl.Image})
    t.insert([{"id": 1, "flag": True, "data": {}, "img": jpegs[0]}])
    for col, why in (("flag", "not Bool"), ("data", "not Json")):
        with pytest.raises(SchemaError, match=f"non-boolean scalar type or a media column, {why}"):
            t.add_btree_index(col)
    t.add_computed_column(id_calc=t.id + 1, stored=False)
    with pytest.raises(SchemaError, match=r"'id_calc' .* computed when read"):
        t.add_btree_index("id_calc")
    t.add_computed_column(rot=t.img.rotate(90))
    with pytest.raises(SchemaError, match="computed media column 'rot'"):
        t.add_btree_index("rot")
    assert t.get_metadata()["indexes"] == {}
    t.add_btree_index("img")  # by file reference
    t.add_computed_column(id_calc2=t.id + 2)
    t.add_btree_index("id_calc2")
    assert {i["columns"][0] for i in t.get_metadata()["indexes"].values()} == {"img", "id_calc2"}


def test_dropping_the_column_or_table_drops_the_index(db, tmp_path):
    t = db.create_table("t", {"a": pxl.Int, "b": pxl.Int})
    t.insert([{"a": i, "b": i} for i in range(5)])
    t.add_btree_index("a")
    t.add_btree_index("b")
    t.drop_column("a")  # SQLite refuses to drop an indexed column: the index goes first
    assert list(t.get_metadata()["indexes"]) == ["idx1"] and t.columns() == ["b"]
    t2 = db.create_table("t", {"b": pxl.Int}, if_exists="replace")
    assert t2.get_metadata()["indexes"] == {}
    assert db.db.query("SELECT count(*) FROM px_indexes") == [(0,)]
    t2.add_btree_index("b")
    db.close()
    with pxl.connect(db.path) as again:  # the index is part of the database
        t3 = again.get_table("t")
        assert list(t3.get_metadata()["indexes"]) == ["idx0"]
        assert re.search("USING (COVERING )?INDEX i_", _plan(t3.where(t3.b == 2)))


def test_a_version_4_catalog_gets_the_index_table(tmp_path):
    p = tmp_path / "old.pxl"
    with pxl.connect(p) as db:
        db.create_table("t", {"x": pxl.Int}).insert(x=1)
        with db.db.transaction():
            db.db.execute("DROP TABLE px_indexes")
        db.db.sqlite.pragma("user_version", 4)
    with pxl.connect(p) as db:
        assert db.db.migrated_from == 4
        t = db.get_table("t")
        t.add_btree_index("x")
        assert list(t.get_metadata()["indexes"]) == ["idx0"] and t.where(t.x == 1).count() == 1
