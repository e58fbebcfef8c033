"""Queries: select, where, order_by, limit, count/head/show, SQL push-down, ResultSet."""

from __future__ import annotations

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import NotFoundError, SchemaError


@pytest.fixture
def t(db):
    t = db.create_table("t", {"n": pxl.Int, "label": pxl.String, "score": pxl.Float,
                              "ok": pxl.Bool})
    t.insert([{"n": i, "label": None if i == 3 else f"l{i % 3}", "score": i * 1.5, "ok": i % 2 == 0}
              for i in range(10)])
    return t


def test_select_named_and_expressions(t):
    rs = t.select(t.n, t.n * 2, double=t.score + t.score).where(t.n < 3).collect()
    assert rs.names == ["n", "n_1", "double"]
    assert rs.to_dicts() == [{"n": 0, "n_1": 0, "double": 0.0}, {"n": 1, "n_1": 2, "double": 3.0},
                             {"n": 2, "n_1": 4, "double": 6.0}]


def test_where_operators(t):
    n = lambda q: q.select(t.n).collect()["n"]  # noqa: E731
    assert n(t.where((t.n > 2) & (t.n <= 5))) == [3, 4, 5]
    assert n(t.where((t.n == 1) | (t.n == 8))) == [1, 8]
    assert n(t.where(~(t.n >= 2))) == [0, 1]
    assert n(t.where(t.label.isin(["l1"]))) == [1, 4, 7]
    assert n(t.where(t.label == None)) == [3]  # noqa: E711
    assert n(t.where(t.label != None).where(t.n < 3)) == [0, 1, 2]  # noqa: E711
    assert n(t.where(t.label.is_null())) == [3]
    assert n(t.where(t.ok == True).where(t.n > 5)) == [6, 8]  # noqa: E712
    assert n(t.where(t.n.isin([]))) == []
    assert n(t.where(t.n % 4 == 1)) == [1, 5, 9]  # Python-side (SQL's % differs)


def test_order_limit_head_show(t):
    assert t.order_by(t.score, asc=False).limit(3).select(t.n).collect()["n"] == [9, 8, 7]
    # None sorts last ascending (Pixeltable's and PostgreSQL's order)
    assert t.order_by(t.label, t.n).limit(4).select(t.n).collect()["n"] == [0, 6, 9, 1]
    assert len(t.head(4)) == 4 and len(t.show(2)) == 2 and len(t.limit(0).collect()) == 0
    assert t.where(t.n % 2 == 0).limit(2).select(t.n).collect()["n"] == [0, 2]
    with pytest.raises(SchemaError, match="limit"):
        t.limit(-1)


def test_count(t):
    assert t.count() == 10
    assert t.where(t.n > 6).count() == 3
    assert t.where(t.n % 3 == 0).count() == 4


def test_sql_pushdown(t):
    """Predicates and ordering on plain columns run in SQLite, not in Python."""
    q = t.where((t.n > 2) & t.label.isin(["l0", "l1"]) & (t.label != None)).order_by(t.n)  # noqa: E711
    p = q.plan()
    assert p.py_where == [] and p.py_order == [] and p.python == []
    assert "WHERE" in p.sql and "ORDER BY t_1.c1 ASC NULLS LAST" in p.sql and "l0" in p.params
    assert "l0" not in p.sql  # values are bound, never spliced
    assert q.collect_sql() == (p.sql, p.params)
    q2 = t.where((t.n > 2) & (t.n % 2 == 0))
    p2 = q2.plan()
    assert len(p2.py_where) == 1 and "WHERE (t_1.c1 > ?)" in p2.sql  # the SQL-able half: SQL
    assert "%" in p2.python[0] and "differs from SQL" in p2.python[0]


def test_bad_queries(t, db):
    other = db.create_table("o", {"x": pxl.Int})
    with pytest.raises(SchemaError, match="belongs to table 'o'"):
        t.select(other.x).collect()
    with pytest.raises(SchemaError, match="condition"):
        t.where(t.n + 1)
    with pytest.raises(SchemaError, match="truth value"):
        t.where((t.n > 1) and (t.n < 3))
    with pytest.raises(SchemaError, match="numbers"):
        t.select(t.label * t.ok)
    with pytest.raises(AttributeError, match="no attribute or method 'nope'"):
        t.n.nope  # noqa: B018


def test_resultset_api(t):
    rs = t.select(t.n, t.label).where(t.n < 3).collect()
    assert len(rs) == 3 and rs[1] == {"n": 1, "label": "l1"} and rs["n"] == [0, 1, 2]
    assert [r["n"] for r in rs] == [0, 1, 2] and len(rs[1:]) == 2
    assert "n  label" in repr(rs) and "(3 rows)" in repr(rs)
    with pytest.raises(NotFoundError):
        rs["zzz"]
    df = rs.to_pandas()
    assert list(df.columns) == ["n", "label"] and df["n"].tolist() == [0, 1, 2]
    assert "<table" in rs._repr_html_()


def test_images_come_back_lazily(db, jpegs, pngs):
    t = db.create_table("im", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": p, "k": i} for i, p in enumerate(jpegs[:2] + pngs[:1])])
    rs = t.collect()
    assert rs._rows[0][0].startswith("file://")  # stored as a URI until read
    img = rs[0]["image"]
    assert isinstance(img, Image.Image) and img.size == (64, 48)
    html = rs._repr_html_()
    assert html.count("data:image/") == 3  # one thumbnail per image (JPEG, or WebP for alpha)
    assert "data:image/png" not in html
    assert "img_00000.jpg" in repr(rs)
