"""The scan index (pxlite/scanindex.py): a table whose rows hold a wide Array gets a covering
index of its narrow columns, which SQLite reads instead of the table for queries that need
nothing else (counts, filters, a filtered search's where); it follows every schema change,
versions and reverts, and answers exactly what the table does."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from udfs.embed import embed_image

import pxlite as pxl
from pxlite import catalog, scanindex, vecsearch
from pxlite.catalog import ColumnMeta
from pxlite.types import ArrayType, IntType

WIDE = pxl.Array[(256,), pxl.Float]  # 1 KB a row


def _meta(db, path="t"):
    return catalog.load_table(db.db, path)


def _held(db, path="t"):
    """The names of the columns the table's scan index holds after the rowid, in order (None:
    no index)."""
    meta = _meta(db, path)
    by_sql = {c.sql: c.name for c in meta.columns}
    held = scanindex.current(db.db, meta.store)
    if not held:
        return None
    assert held[0] == "_rowid"  # first: entries in the table's order
    return [by_sql[s] for s in held[1:]]


def _plan(db, sql):
    return " ".join(r[-1] for r in db.db.query("EXPLAIN QUERY PLAN " + sql))


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"vec": rng.standard_normal(256).astype(np.float32), "k": i, "cat": "abc"[i % 3],
             "score": i / 2, "meta": {"i": i}} for i in range(n)]


@pytest.fixture
def wide(db):
    t = db.create_table("t", {"vec": WIDE, "k": pxl.Int, "cat": pxl.String,
                              "score": pxl.Float, "meta": pxl.Json})
    t.insert(_rows(300))
    return t


def test_a_wide_table_gets_an_index_of_its_narrow_columns_which_scans_use(db, wide):
    assert _held(db) == ["k", "cat", "score"]  # not the Array, the Json or the error columns
    meta = _meta(db)
    cat, k, vec = (meta.column(n).sql for n in ("cat", "k", "vec"))
    index = f"COVERING INDEX {meta.store}_scan"
    assert index in _plan(db, f"SELECT count(*) FROM {meta.store}")
    assert index in _plan(db, f"SELECT _rowid FROM {meta.store} WHERE {cat} = 'b'")
    assert index in _plan(db, f"SELECT {cat}, count(*) FROM {meta.store} GROUP BY {cat}")
    assert index not in _plan(db, f"SELECT {vec} FROM {meta.store} WHERE {cat} = 'b'")
    # led by the rowid: in the table's order, so a query in rowid order reads it too
    assert index in _plan(db, f"SELECT _rowid, {k} FROM {meta.store} WHERE {cat} = 'b' "
                              "ORDER BY _rowid")
    assert "TEMP B-TREE" not in _plan(db, f"SELECT _rowid FROM {meta.store} WHERE {cat} = 'b' "
                                          "ORDER BY _rowid")
    # the answers are the table's
    assert wide.count() == 300 and wide.where(wide.cat == "b").count() == 100
    assert wide.where(wide.cat == "b").select(wide.k).collect()["k"] == list(range(1, 300, 3))
    got = wide.group_by(wide.cat).select(wide.cat, n=pxl.functions.count(wide.k)) \
        .order_by(wide.cat).collect()
    assert got["n"] == [100, 100, 100]
    not_indexed = db.db.query(f"SELECT _rowid, {k} FROM {meta.store} NOT INDEXED "
                              f"WHERE {cat} = 'c' ORDER BY _rowid")
    assert db.db.query(f"SELECT _rowid, {k} FROM {meta.store} WHERE {cat} = 'c' "
                       "ORDER BY _rowid") == not_indexed


@pytest.mark.parametrize("vec_type,has_index", [
    (pxl.Array[(4,), pxl.Float], False),         # 16 bytes: a narrow row
    (pxl.Array[(127,), pxl.Float], False),       # 508 bytes: just under WIDE_BYTES
    (pxl.Array[(128,), pxl.Float], True),        # 512 bytes
    (pxl.Array[(512,), pxl.Bool], True),         # 1 byte an element
    (pxl.Array[(None, 3), pxl.Float], True),     # a free dimension: size unknown
    (pxl.Array[pxl.Float], True),                # any shape
])
def test_which_tables_are_wide(db, vec_type, has_index):
    db.create_table("t", {"vec": vec_type, "k": pxl.Int})
    assert _held(db) == (["k"] if has_index else None)


def test_narrow_tables_have_none(db):
    db.create_table("t", {"k": pxl.Int, "s": pxl.String, "j": pxl.Json, "img": pxl.Image})
    assert _held(db) is None
    db.create_table("only_vectors", {"vec": WIDE, "j": pxl.Json})  # the rowid: for counts
    assert _held(db, "only_vectors") == []
    assert "COVERING INDEX" in _plan(db, "SELECT count(*) FROM t_2")


@pytest.mark.parametrize("versioned", [True, False])
def test_it_follows_columns_added_and_dropped(db, versioned):
    wide = db.create_table("t", {"vec": WIDE, "k": pxl.Int, "cat": pxl.String,
                                 "score": pxl.Float, "meta": pxl.Json}, versioned=versioned)
    wide.insert(_rows(300))
    wide.add_column(label=pxl.String)
    wide.add_column(extra=pxl.Json)  # not narrow: the index stays as it is
    wide.add_computed_column(twice=wide.k * 2)
    assert _held(db) == ["k", "cat", "score", "label", "twice"]
    wide.drop_column("cat")  # SQLite refuses to drop an indexed column: released, then remade
    assert _held(db) == ["k", "score", "label", "twice"]
    wide.update({"label": "first"}, where=wide.k < 3)
    assert wide.where(wide.label == "first").count() == 3
    wide.drop_column("vec")  # no wide column left: no index
    assert _held(db) is None
    wide.add_column(vec2=pxl.Array[(None,), pxl.Float])
    assert _held(db) == ["k", "score", "label", "twice"]
    assert wide.where(wide.twice == 10).select(wide.k).collect()["k"] == [5]
    assert db.check().ok


def test_versions_hide_restore_and_prune_columns_with_it(tmp_path):
    with pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30}) as db:
        t = db.create_table("t", {"vec": WIDE, "k": pxl.Int, "cat": pxl.String})
        t.insert([{"vec": r["vec"], "k": r["k"], "cat": r["cat"]} for r in _rows(30)])
        dropped = _meta(db).column("cat")
        t.drop_column("cat")  # hidden: its SQL column stays while a version names it
        assert _held(db) == ["k"]
        assert dropped.sql in catalog.sql_columns(db.db, _meta(db).store)
        t.revert()  # the column is back, and so in the index
        assert _held(db) == ["k", "cat"]
        assert t.where(t.cat == "a").count() == 10
        t.drop_column("cat")
        t.set_version_retention(count=1)  # the versions naming it go: the column goes
        assert dropped.sql not in catalog.sql_columns(db.db, _meta(db).store)
        assert _held(db) == ["k"]
        t.set_version_retention(count=10)
        t.delete(where=t.k < 10)
        t.revert()  # rows back, through the index too
        assert t.where(t.k < 10).count() == 10 and t.count() == 30
        assert db.check().ok


def test_an_embedding_index_makes_the_table_wide_and_takes_it_back(db):
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), (i * 9, 0, 0)), "n": i} for i in range(12)])
    assert _held(db) is None
    t.add_embedding_index("img", embedding=embed_image, precision="fp32")
    # the hidden vectors are 16 floats in the tests (64 bytes): not wide by themselves
    assert _held(db) is None
    t.drop_embedding_index(column="img")
    t.add_column(big=pxl.Array[(None,), pxl.Float])
    assert _held(db) == ["img", "n"]  # a media column holds its reference (a short string)
    assert t.where(t.n >= 6).count() == 6


def test_a_table_from_before_the_index_gets_it_with_an_embedding_index(db, wide):
    meta = _meta(db)
    db.db.execute(f"DROP INDEX {scanindex.index_name(meta.store)}")  # as an older file
    assert _held(db) is None
    wide.add_embedding_index("vec", precision="fp32")
    assert _held(db) == ["k", "cat", "score"]
    q = _rows(1, seed=5)[0]["vec"]
    sim = wide.vec.similarity(vector=q)
    got = wide.where(wide.cat == "a").order_by(sim, asc=False).limit(5).select(wide.k).collect()
    data = np.stack([r["vec"] for r in _rows(300)])
    cos = data @ q / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))
    assert got["k"] == [int(i) for i in np.argsort(-cos) if i % 3 == 0][:5]


def test_wanted_orders_by_position_and_skips_other_tables_columns():
    cols = [ColumnMeta(3, "b", 2, IntType()), ColumnMeta(5, "a", 0, IntType()),
            ColumnMeta(7, "v", 1, ArrayType((300,), "float16")),
            ColumnMeta(9, "virtual", 3, IntType(), expr="{}", stored=False),
            ColumnMeta(11, "base", 4, IntType(), base_table=1)]
    assert scanindex.wanted(cols) == ["_rowid", "c5", "c3"]
    cols[2] = ColumnMeta(7, "v", 1, ArrayType((200,), "float16"))  # 400 bytes
    assert scanindex.wanted(cols) == []


def test_a_filtered_search_reads_the_rowids_from_the_index_in_its_order(db):
    """The where() of a search selects rowids without an ORDER BY (one would make SQLite read
    the table to skip a sort): the index gives them in its own order, here the reverse of the
    rowids', and the search sorts them (rowid_array)."""
    rows = _rows(300, seed=2)
    t = db.create_table("t", {"k": pxl.Int, "vec": WIDE, "cat": pxl.String})
    t.insert([{"k": 1000 - r["k"], "vec": r["vec"], "cat": r["cat"]} for r in rows])
    t.add_embedding_index("vec", metric="ip", precision="fp32")
    data = np.stack([r["vec"] for r in rows])
    meta = _meta(db)
    plan = _plan(db, f"SELECT _rowid FROM {meta.store} WHERE {meta.column('cat').sql} = 'b'")
    assert f"COVERING INDEX {meta.store}_scan" in plan
    seen: list[str] = []
    db.db.sqlite.set_profile(lambda sql, ns: seen.append(sql))
    try:
        # (a condition numpy cannot evaluate, pxlite.vecfilter: SQLite finds its rows)
        t.where(t.cat.upper() == "B").order_by(t.vec.similarity(vector=data[0]), asc=False) \
            .limit(3).collect()
    finally:
        db.db.sqlite.set_profile(None)
    found = [sql for sql in seen if sql.startswith("WITH m(r)")]
    assert len(found) == 1 and f"COVERING INDEX {meta.store}_scan" in _plan(
        db, found[0].replace("?", "'B'"))
    for q in data[:3]:
        sim = t.vec.similarity(vector=q)
        got = t.where(t.cat == "b").order_by(sim, asc=False).limit(7).select(t.k, s=sim).collect()
        want = [int(i) for i in np.argsort(-(data @ q)) if i % 3 == 1][:7]
        assert got["k"] == [1000 - i for i in want]
        assert np.allclose(got["s"], (data @ q)[want], rtol=1e-5)
    # a where() Python evaluates still reads the rows themselves
    got = t.where(_even(t.k)) \
        .order_by(t.vec.similarity(vector=data[0]), asc=False).limit(3).select(t.k).collect()
    assert got["k"] == [1000 - int(i) for i in np.argsort(-(data @ data[0]))
                        if (1000 - i) % 2 == 0][:3]


@pxl.udf
def _even(k: int) -> bool:
    return k % 2 == 0


def test_rowid_array_sorts_what_an_index_gives_in_its_order(db):
    """The rowids a search scores come sorted (the vectors are gathered in memory order)."""
    db.db.execute("CREATE TABLE temp.r (k INTEGER)")
    db.db.executemany("INSERT INTO temp.r VALUES (?)", [(5,), (2,), (9,), (1,)])
    assert vecsearch.rowid_array(db.db, "SELECT k FROM temp.r", ()).tolist() == [1, 2, 5, 9]
    assert vecsearch.rowid_array(db.db, "SELECT k FROM temp.r WHERE k > 100", ()).tolist() == []
