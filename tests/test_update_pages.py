"""update() reads, computes and writes its rows a page at a time (table.UPDATE_ROWS), so its
memory stays bounded whatever the number of rows. Each row is still updated exactly once while
the query finding them goes on (even through an index on the column being changed), its
dependents are recomputed, and a failure in a later page takes back the earlier pages too:
the update is one transaction and one version."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite import table as table_module


@pytest.fixture
def pages_of_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table_module, "UPDATE_ROWS", 3)


@pytest.fixture
def vdb(tmp_path):
    conn = pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30})
    yield conn
    conn.close()


def _xs(t: pxl.Table) -> list[int]:
    return [r["x"] for r in t.order_by(t.k).collect().to_dicts()]


@pytest.mark.parametrize("versioned", [True, False])
@pytest.mark.parametrize("wide", [False, True])
def test_each_row_is_updated_once_through_an_index_on_the_changed_column(
        vdb, pages_of_3, versioned, wide):
    schema = {"k": pxl.Int, "x": pxl.Int}
    if wide:  # a wide column gives the table a scan index, led by the rowid, holding x too
        schema["v"] = pxl.Array[(256,), pxl.Float]
    t = vdb.create_table("t", schema, versioned=versioned)
    t.insert([{"k": i, "x": i, **({"v": [0.0] * 256} if wide else {})} for i in range(20)])
    t.add_btree_index("x")
    status = t.update({"x": t.x + 100}, where=t.x > 5)
    assert status.num_rows == 14
    assert _xs(t) == list(range(6)) + [i + 100 for i in range(6, 20)]
    if versioned:
        t.revert()
        assert _xs(t) == list(range(20))


@pxl.udf
def is_odd(n: int) -> bool:
    return n % 2 == 1


def test_rows_only_python_finds_keep_their_old_images_page_by_page(vdb, pages_of_3):
    t = vdb.create_table("t", {"k": pxl.Int, "x": pxl.Int})
    t.insert([{"k": i, "x": i} for i in range(20)])
    assert t.update({"x": t.x + 100}, where=is_odd(t.k)).num_rows == 10  # rowids: 4 pages
    changed = [i + 100 if i % 2 else i for i in range(20)]
    assert _xs(t) == changed
    assert t.get_versions()[0]["updates"] == 10
    assert _xs(vdb.get_table(f"t:{t.get_versions()[1]['version']}")) == list(range(20))
    t.revert()
    assert _xs(t) == list(range(20))
    assert pxl.check(db=vdb).ok


def test_dependents_are_recomputed_in_every_page(db, pages_of_3):
    t = db.create_table("t", {"k": pxl.Int, "x": pxl.Int})
    t.insert([{"k": i, "x": i} for i in range(10)])
    t.add_computed_column(y=t.x * 2)
    assert t.update({"x": t.x + 1}).num_rows == 10
    rows = t.order_by(t.k).collect().to_dicts()
    assert [r["y"] for r in rows] == [2 * (i + 1) for i in range(10)]


def test_a_failure_in_a_later_page_takes_back_the_earlier_pages(vdb, pages_of_3):
    t = vdb.create_table("t", {"k": pxl.Int, "x": pxl.Int, "src": pxl.Int,
                               "req": pxl.Required[pxl.Int]})
    t.insert([{"k": i, "x": i, "src": None if i == 10 else i, "req": 1} for i in range(12)])
    before = len(t.get_versions())
    with pytest.raises(pxl.ComputeError, match=r"row 11, column 'req' \(Required"):
        t.update({"x": t.x + 100, "req": t.src})  # k=10 (rowid 11, 4th page): no src
    assert _xs(t) == list(range(12))
    assert len(t.get_versions()) == before


def test_a_duplicate_key_in_a_later_page_takes_back_the_earlier_pages(db, pages_of_3):
    t = db.create_table("t", {"k": pxl.Int, "x": pxl.Int}, primary_key="k")
    t.insert([{"k": i, "x": i} for i in range(1, 11)] + [{"k": 1010, "x": 0}])
    with pytest.raises(pxl.AlreadyExistsError, match="1010"):
        t.update({"k": t.k + 1000}, where=t.k < 1000)  # k=10 (the 4th page) meets 1010
    assert sorted(t.collect()["k"]) == [*range(1, 11), 1010]
