"""Joins (Pixeltable's Query.join): inner, left, full_outer and cross, on a condition or on
columns matched by name; select/where/order_by/group_by over both tables, media columns and
Python functions included; one SQL statement; mistakes refused."""

from __future__ import annotations

import pytest

import pxlite as pxl
import pxlite.functions as pxlf
from pxlite.errors import NotFoundError, SchemaError

N = 40


@pxl.udf
def both(a: int, b: float) -> float:
    return a * 1000 + b


@pytest.fixture
def tables(db):
    t1 = db.create_table("t1", {"id": pxl.Int, "i": pxl.Int, "s": pxl.String})
    t2 = db.create_table("t2", {"id": pxl.Int, "f": pxl.Float, "s": pxl.String})
    t3 = db.create_table("t3", {"id": pxl.Int, "f": pxl.Float})
    t1.insert([{"id": k, "i": k, "s": f"ü{k % 3}"} for k in range(N)])
    t2.insert([{"id": k, "f": float(N - k), "s": f"ü{k % 3}"} for k in range(N)])
    t3.insert([{"id": k * 10, "f": float(k)} for k in range(N)])  # ids 0, 10, ..., 390
    return t1, t2, t3


def test_inner_join(tables):
    t1, t2, _ = tables
    q = t1.join(t2, on=t1.id, how="inner").select(t1.i, t2.f, out=t1.i + t2.f).order_by(t2.f)
    rs = q.collect()
    assert len(rs) == N and rs["f"] == sorted(rs["f"]) and set(rs["out"]) == {float(N)}
    assert " JOIN t_2 ON " in q.collect_sql()[0] and q.plan().python == []
    # an explicit condition, also a redundant one, gives the same rows
    q2 = t1.join(t2, on=(t1.id == t2.id) & (t1.i == t2.id)).select(t1.i, t2.f, out=t1.i + t2.f) \
        .order_by(t2.f)
    assert q2.collect().to_dicts() == rs.to_dicts()
    # on= a column of the joined table, matched by name in the first
    assert t1.join(t2, on=t2.id).count() == N
    assert t1.join(t2, on=[t1.id, t1.s]).count() == N
    assert t1.join(t2, on=[t1.id, t2.s]).select(t1.id).order_by(t1.id).limit(3) \
        .collect()["id"] == [0, 1, 2]


def test_left_full_outer_and_cross_joins(tables):
    t1, _, t3 = tables
    left = t1.join(t3, on=t1.id, how="left").select(t1.i, t3.f, out=t1.i + t3.f) \
        .order_by(t1.i).collect()
    assert len(left) == N and sum(f is not None for f in left["f"]) == 4  # ids 0, 10, 20, 30
    assert [o for o in left["out"] if o is not None] == [0.0, 11.0, 22.0, 33.0]
    full = t1.join(t3, on=t1.id == t3.id, how="full_outer").select(left_i=t1.i, right_f=t3.f) \
        .collect()
    assert len(full) == N + N - 4
    assert sum(r["left_i"] is None for r in full) == N - 4   # t3-only rows
    assert sum(r["right_f"] is None for r in full) == N - 4  # t1-only rows
    cross = t1.join(t3, how="cross")
    assert cross.count() == N * N
    assert len(cross.select(t1.i, t3.f).limit(25).collect()) == 25
    assert t1.join(t3, on=t3.id, how="inner").limit(2, offset=1).select(t3.id).collect()["id"] \
        == [10, 20]


def test_where_order_and_group_over_both_tables(tables):
    t1, t2, _ = tables
    j = t1.join(t2, on=t1.id == t2.id)
    rs = j.where((t1.i < 10) & (t2.f > 35)).select(t1.i, t2.f).order_by(t2.f, asc=False) \
        .collect()
    assert rs.to_dicts() == [{"i": k, "f": float(N - k)} for k in range(5)]
    total = j.select(pxlf.sum(t1.i + t2.id)).collect()[0, 0]
    assert total == 2 * sum(range(N))
    grouped = t1.join(t2, on=t2.id).group_by(t2.s).select(t2.s, n=pxlf.count(t1.i),
                                                          v=pxlf.sum(t1.i + t2.id)).collect()
    assert grouped["s"] == ["ü0", "ü1", "ü2"] and sum(grouped["n"]) == N
    assert grouped["v"][0] == 2 * sum(k for k in range(N) if k % 3 == 0)
    assert "GROUP BY t_2.c3" in t1.join(t2, on=t2.id).group_by(t2.s).select(t2.s) \
        .collect_sql()[0]
    # a Python function of both tables: evaluated on the joined rows
    py = j.where(both(t1.i, t2.f) > 3000).select(v=both(t1.i, t2.f)).order_by(t1.i).collect()
    assert py["v"] == [k * 1000 + float(N - k) for k in range(3, N)]
    assert t1.join(t2, on=t1.id == t2.id).group_by(t1.i % 2).select(
        m=pxlf.max(both(t1.i, t2.f))).collect()["m"] == [38 * 1000 + 2.0, 39 * 1000 + 1.0]


def test_default_outputs_and_nulls_in_keys(db):
    a = db.create_table("a", {"k": pxl.String, "v": pxl.Int})
    b = db.create_table("b", {"k": pxl.String, "v": pxl.Int})
    a.insert([{"k": "日本", "v": 1}, {"k": None, "v": 2}, {"k": "x", "v": 3}])
    b.insert([{"k": "日本", "v": 10}, {"k": None, "v": 20}])
    rs = a.join(b, on=a.k).collect()
    assert rs.names == ["k", "v", "k_1", "v_1"]
    assert rs.to_dicts() == [{"k": "日本", "v": 1, "k_1": "日本", "v_1": 10}]  # NULL never equals
    left = a.join(b, on=a.k, how="left").select(a.v, b.v).collect()
    assert left.to_dicts() == [{"v": 1, "v_1": 10}, {"v": 2, "v_1": None}, {"v": 3, "v_1": None}]


def test_media_columns_in_a_join(db, jpegs, pngs):
    photos = db.create_table("photos", {"key": pxl.Int, "image": pxl.Image})
    notes = db.create_table("notes", {"key": pxl.Int, "min_w": pxl.Int, "note": pxl.String})
    photos.insert([{"key": k, "image": p} for k, p in enumerate(jpegs[:2] + pngs[:2])])
    notes.insert([{"key": k, "min_w": 50, "note": f"n{k}"} for k in range(4)])
    notes.add_computed_column(wide=notes.min_w * 2, stored=False)
    j = photos.join(notes, on=photos.key == notes.key)
    rs = j.select(notes.note, w=photos.image.width, url=photos.image.fileurl,
                  lp=photos.image.localpath, img=photos.image, wide=notes.wide) \
        .order_by(photos.key).collect()
    assert rs["w"] == [64, 64, 40, 40] and rs["wide"] == [100] * 4
    assert all(u.startswith("file://") for u in rs["url"]) and rs["lp"][0].endswith(".jpg")
    assert rs[0]["img"].size == (64, 48)
    # a condition reading an image of one table and a column of the other: in Python
    q = j.where(photos.image.width > notes.min_w).select(notes.note)
    assert q.collect()["note"] == ["n0", "n1"] and q.plan().python
    assert j.group_by(photos.image.width).select(w=photos.image.width,
                                                 n=pxlf.count(notes.note)).collect() \
        .to_dicts() == [{"w": 40, "n": 2}, {"w": 64, "n": 2}]
    assert j.head(1)["note"] == ["n0"]


def test_join_mistakes_are_refused(tables, tmp_path):
    t1, t2, t3 = tables
    with pytest.raises(SchemaError, match="takes a condition, or a column or a list"):
        t1.join(t2, on=(t2.id, 17))
    with pytest.raises(SchemaError, match="takes a condition, or a column or a list"):
        t1.join(t2, on=(15, 27))
    with pytest.raises(SchemaError, match="cross join takes no on="):
        t1.join(t2, how="cross", on=t2.id)
    with pytest.raises(SchemaError, match=r"join\(how='inner'\) needs on="):
        t1.join(t2)
    with pytest.raises(SchemaError, match="how must be one of"):
        t1.join(t2, on=t2.id, how="right")
    with pytest.raises(NotFoundError, match="column 'f' is not in any of 't1'"):
        t1.join(t2, on=t2.f)
    with pytest.raises(SchemaError, match="belongs to table 't3'"):
        t1.join(t2, on=t3.id)
    with pytest.raises(SchemaError, match="takes a condition \\(a Bool\\)"):
        t1.join(t2, on=t2.id + 1)
    with pytest.raises(SchemaError, match="ambiguous column 'id'"):
        t1.join(t2, on=t2.id).join(t3, on=t3.id)
    with pytest.raises(NotFoundError, match="column 'i' is not in the joined table 't2'"):
        t1.join(t2, on=t1.i)
    with pytest.raises(SchemaError, match="does not join a table with itself"):
        t1.join(t1, on=t1.id)
    with pytest.raises(SchemaError, match="join\\(\\) takes a table"):
        t1.join("t2", on=t2.id)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="cannot run in SQL"):
        t1.join(t2, on=both(t1.i, t2.f) > 1).collect()
    with pytest.raises(SchemaError, match="tail\\(\\) cannot be used with join"):
        t1.join(t2, on=t2.id).tail(2)
    with pytest.raises(SchemaError, match="after sample"):
        t1.sample(n=3, seed=1).join(t2, on=t2.id)
    with pytest.raises(SchemaError, match="sample\\(\\) cannot be used with join"):
        t1.join(t2, on=t2.id).sample(n=3)
    with pytest.raises(SchemaError, match="belongs to table 't3'"):
        t1.join(t2, on=t2.id).select(t3.f)
    other = pxl.connect(tmp_path / "other.pxl")
    elsewhere = other.create_table("t9", {"id": pxl.Int})
    with pytest.raises(SchemaError, match="another database"):
        t1.join(elsewhere, on=elsewhere.id)
    other.close()
