"""Filtered views (create_view(path, t.where(...))): queried like a table with the base's
columns, computed columns of their own, following the base's inserts, updates and deletes in
the same commit, views of views, the drop rules, list_views, and every bad input's error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
import pxlite.functions as pxlf
from pxlite import catalog, faults
from pxlite.errors import (
    AlreadyExistsError,
    ComputeError,
    NotFoundError,
    SchemaError,
    VersionError,
)

ROOT = Path(__file__).resolve().parents[1]


@pxl.udf
def is_even(n: int) -> bool:
    return n % 2 == 0


CALLS: list[int] = []


@pxl.udf
def counted(n: int) -> int:
    CALLS.append(n)
    return n + 1000


@pxl.udf
def boom_at_13(n: int) -> int:
    if n == 13:
        raise ValueError("thirteen")
    return n


@pytest.fixture
def t(db):
    t = db.create_table("t", {"n": pxl.Int, "s": pxl.String})
    t.insert([{"n": i, "s": f"s{i % 3}"} for i in range(10)])
    return t


def _ns(q) -> list:
    return q.select(n=q.n).collect()["n"] if hasattr(q, "select") else q


def test_a_filtered_view_is_queried_like_a_table(db, t):
    v = db.create_view("big", t.where(t.n > 5), additional_columns={"twice": t.n * 2,
                                                                     "note": pxl.String})
    assert v.columns() == ["note", "twice", "n", "s"]  # its own, then its base's
    assert v.count() == 4 and _ns(v) == [6, 7, 8, 9]
    assert v.select(v.twice).collect()["twice"] == [12, 14, 16, 18]
    assert v.where(v.s == "s0").select(v.n).collect()["n"] == [6, 9]
    assert v.where(t.n >= 8).select(t.n).collect()["n"] == [8, 9]  # the base's own references
    assert v.order_by(v.n, asc=False).limit(2).collect()["n"] == [9, 8]
    grouped = v.group_by(v.s).select(v.s, k=pxlf.count(v.n)).collect()
    assert dict(zip(grouped["s"], grouped["k"], strict=True)) == {"s0": 2, "s1": 1, "s2": 1}
    other = db.create_table("labels", {"s": pxl.String, "label": pxl.String})
    other.insert([{"s": "s0", "label": "zero"}])
    assert v.join(other, on=v.s == other.s).select(v.n, other.label).collect()["n"] == [6, 9]
    assert v.tail(1)["n"] == [9] and v.head(1)["n"] == [6]
    meta = v.get_metadata()
    assert meta["kind"] == "view" and meta["base"] == "t" and t.get_metadata()["base"] is None
    assert "View 'big' of 't' where n > 5 (4 rows)" in repr(v)
    assert t.list_views() == ["big"]


def test_the_view_follows_inserts_updates_and_deletes(db, t):
    v = db.create_view("big", t.where(t.n > 5), additional_columns={"twice": t.n * 2})
    t.insert([{"n": 20, "s": "new"}, {"n": 1, "s": "small"}])
    assert _ns(v) == [6, 7, 8, 9, 20]
    t.update({"n": 0}, where=t.n == 7)       # leaves the view
    t.update({"n": 30}, where=t.n == 2)      # enters it
    t.update({"s": "changed"}, where=t.n == 8)  # stays, its base column shows the new value
    assert _ns(v) == [30, 6, 8, 9, 20]       # in the base's row order
    assert v.where(v.n == 8).select(v.s).collect()["s"] == ["changed"]
    assert v.select(v.twice).collect()["twice"] == [60, 12, 16, 18, 40]
    t.update({"n": t.n + 1}, where=t.n == 6)  # stays, its computed cell follows
    assert v.where(v.n == 7).select(v.twice).collect()["twice"] == [14]
    t.delete(where=t.n >= 9)
    assert _ns(v) == [7, 8]
    t.delete()
    assert v.count() == 0
    assert db.check().ok


def test_view_and_base_change_in_one_commit(db, t, tmp_path, monkeypatch):
    """Another connection sees the base and the view in step at every commit."""
    v = db.create_view("big", t.where(t.n > 5))
    seen = []

    def point(name: str) -> None:
        if name == "after_commit":
            with pxl.connect(db.path) as other:
                base = other.get_table("t")
                view = other.get_table("big")
                seen.append((base.where(base.n > 5).count(), view.count()))

    monkeypatch.setattr(faults, "point", point)
    t.insert([{"n": 50, "s": "a"}, {"n": 51, "s": "b"}])
    t.update({"n": 3}, where=t.n == 50)
    t.delete(where=t.n == 51)
    monkeypatch.undo()
    assert seen and all(a == b for a, b in seen), seen
    assert v.count() == 4


def test_a_failing_view_column_takes_the_base_write_back(db, t):
    v = db.create_view("big", t.where(t.n > 5))
    v.add_computed_column(checked=boom_at_13(v.n))
    with pytest.raises(ComputeError, match="thirteen"):
        t.insert([{"n": 12, "s": "ok"}, {"n": 13, "s": "bad"}])
    assert t.count() == 10 and v.count() == 4  # nothing of the insert was committed
    with pytest.raises(ComputeError, match="thirteen"):
        t.update({"n": 13}, where=t.n == 0)
    assert t.where(t.n == 13).count() == 0


def test_a_where_sqlite_cannot_evaluate_runs_in_python(db, tmp_path):
    t = db.create_table("photos", {"image": pxl.Image, "n": pxl.Int})
    sizes = [(40, 30), (120, 30), (300, 10), (20, 20)]
    paths = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"p{i}.png"
        Image.new("RGB", size, "red").save(p)
        paths.append(str(p))
    t.insert([{"image": p, "n": i} for i, p in enumerate(paths)])
    wide = db.create_view("wide", t.where((t.image.width > 100) & is_even(t.n)))
    assert wide.select(wide.n).collect()["n"] == [2]
    t.insert([{"image": paths[1], "n": 10}, {"image": paths[1], "n": 11}])
    assert wide.select(wide.n).collect()["n"] == [2, 10]
    t.update({"image": paths[0]}, where=t.n == 10)  # now narrow: leaves the view
    t.update({"n": 4}, where=t.n == 1)             # wide and even now: enters
    assert wide.select(wide.n).collect()["n"] == [4, 2]


def test_computed_columns_of_a_view_with_a_destination(db, tmp_path):
    t = db.create_table("photos", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8 + i, 6), (i * 40, 0, 0)), "n": i} for i in range(5)])
    v = db.create_view("odd", t.where(t.n % 2 == 1))  # % runs in Python
    dest = tmp_path / "rotated"
    st = v.add_computed_column(rot=v.image.transpose(pxl.ROTATE_90), destination=str(dest))
    assert st.num_rows == 2
    uid = v.get_metadata()["id"]
    files = sorted(dest.rglob("*.jpg"))
    assert len(files) == 2 and all(uid in str(f) for f in files)  # the view's own key space
    assert v.select(v.rot.width).collect()["width"] == [6, 6]
    t.insert([{"image": Image.new("RGB", (20, 10)), "n": 7}])  # its cell comes with it
    assert v.where(v.n == 7).select(v.rot.width).collect()["width"] == [10]
    old = set(dest.rglob("*.jpg"))
    t.update({"image": Image.new("RGB", (30, 12), "blue")}, where=t.n == 7)  # recomputed
    assert v.where(v.n == 7).select(v.rot.width).collect()["width"] == [12]
    assert len(old - set(dest.rglob("*.jpg"))) == 1  # the replaced file was deleted
    t.delete(where=t.n == 7)
    assert len(list(dest.rglob("*.jpg"))) == 2
    assert db.check().ok
    v.describe()


def test_views_of_views_follow_all_the_way_down(db, t):
    big = db.create_view("big", t.where(t.n > 3))
    bigger = db.create_view("bigger", big.where(big.n > 6), additional_columns={"m": big.n + 100})
    picked = db.create_view("picked", bigger.where(t.s == "s0"))  # a column two levels up
    assert _ns(bigger) == [7, 8, 9] and _ns(picked) == [9]
    assert bigger.columns() == ["m", "n", "s"]
    t.insert([{"n": 12, "s": "s0"}])
    assert _ns(picked) == [9, 12] and bigger.where(bigger.n == 12).select(bigger.m).collect(
    )["m"] == [112]
    t.update({"s": "s0"}, where=t.n == 7)     # changes only the root: picked follows
    assert _ns(picked) == [7, 9, 12]
    t.update({"n": 5}, where=t.n == 8)        # leaves bigger (and picked), stays in big
    assert _ns(big) == [4, 5, 6, 7, 5, 9, 12] and _ns(bigger) == [7, 9, 12]
    t.delete(where=t.n == 9)
    assert _ns(picked) == [7, 12]
    assert t.list_views() == ["big", "bigger", "picked"]
    assert t.list_views(recursive=False) == ["big"]
    assert big.list_views() == ["bigger", "picked"]
    assert db.check().ok


def test_drop_rules(db, t, tmp_path):
    big = db.create_view("big", t.where(t.n > 3))
    db.create_view("imgs", big, additional_columns={"label": pxl.String})
    with pytest.raises(SchemaError, match=r"cannot drop 't': the following depend on it: "
                                          r"'big', 'imgs'; .*force=True"):
        db.drop_table("t")
    with pytest.raises(SchemaError, match="'imgs'"):
        db.drop_table("big")
    with pytest.raises(SchemaError, match="depend on it"):
        db.create_table("t", {"x": pxl.Int}, if_exists="replace")
    with pytest.raises(SchemaError, match=r"view\(s\) 'big' depend on it"):
        t.drop_column("n")
    t.add_column(extra=pxl.Int)
    t.drop_column("extra")  # a column no view reads
    db.drop_table("imgs")
    assert t.list_views() == ["big"]
    db.drop_table("t", force=True)
    assert db.list_tables() == []
    with pytest.raises(NotFoundError):
        big.count()
    assert db.check().ok


def test_drop_dir_with_force_drops_the_views_too(db):
    db.create_dir("d")
    t = db.create_table("d.t", {"n": pxl.Int})
    t.insert([{"n": 1}])
    db.create_view("outside", t)
    db.create_view("d.inside", t)
    with pytest.raises(SchemaError, match="not empty"):
        db.drop_dir("d")
    db.drop_dir("d", force=True)
    assert db.list_tables() == []


def test_module_level_create_view_and_drop(tmp_path):
    t = pxl.create_table("t", {"n": pxl.Int})
    t.insert([{"n": 1}, {"n": 5}])
    v = pxl.create_view("v", t.where(t.n > 2))
    assert v.count() == 1 and pxl.list_tables() == ["t", "v"]
    with pytest.raises(SchemaError, match="force=True"):
        pxl.drop_table("t")
    pxl.drop_table("t", force=True)
    assert pxl.list_tables() == []
    other = pxl.connect(tmp_path / "other.pxl")  # a table of another database: its own
    u = other.create_table("u", {"n": pxl.Int})
    pxl.create_view("uv", u.where(u.n > 1))
    assert other.list_tables() == ["u", "uv"] and pxl.list_tables() == []


def test_if_exists(db, t):
    v = db.create_view("v", t.where(t.n > 5))
    with pytest.raises(AlreadyExistsError, match="a view named 'v' exists already"):
        db.create_view("v", t.where(t.n > 5))
    assert db.create_view("v", t.where(t.n > 7), if_exists="ignore") == v  # as it is
    assert v.count() == 4
    other = db.create_table("other", {"n": pxl.Int})
    with pytest.raises(AlreadyExistsError, match="not a view of 'other'"):
        db.create_view("v", other, if_exists="ignore")
    v2 = db.create_view("v", t.where(t.n > 7), if_exists="replace")
    assert v2.count() == 2 and v2 != v
    db.create_view("vv", v2)
    with pytest.raises(SchemaError, match="'vv'"):
        db.create_view("v", t, if_exists="replace")
    v3 = db.create_view("v", t, if_exists="replace_force")
    assert v3.count() == 10 and db.list_tables() == ["other", "t", "v"]
    with pytest.raises(AlreadyExistsError, match="a table named 'other'"):
        db.create_view("other", t)
    with pytest.raises(SchemaError, match="it is the view's base"):
        db.create_view("t", v3, if_exists="replace")
    with pytest.raises(SchemaError, match="if_exists"):
        db.create_view("w", t, if_exists="overwrite")
    db.create_dir("d")
    with pytest.raises(AlreadyExistsError, match="a directory named 'd'"):
        db.create_view("d", t)


def test_writes_a_view_refuses_and_those_it_takes(db, t):
    v = db.create_view("v", t.where(t.n > 5), additional_columns={"note": pxl.String})
    for call, words in [(lambda: v.insert(n=1), "cannot insert into view 'v'"),
                        (lambda: v.delete(where=v.n > 6), "cannot delete from view 'v'"),
                        (lambda: v.batch_update([{"n": 1}]), "cannot batch_update view"),
                        (lambda: v.update({"n": 1}), "belongs to its base 't'"),
                        (lambda: v.drop_column("s"), "belongs to its base 't'"),
                        (lambda: v.rename_column("s", "x"), "belongs to its base 't'"),
                        (lambda: v.add_btree_index("n"), "belongs to its base 't'")]:
        with pytest.raises(SchemaError, match=words):
            call()
    v.update({"note": "hi"}, where=v.n > 7)  # its own column
    assert v.select(v.note).collect()["note"] == [None, None, "hi", "hi"]
    t.update({"s": "x"})  # base changes leave the view's own cells alone
    assert v.select(v.note).collect()["note"] == [None, None, "hi", "hi"]
    v.add_btree_index("note")
    v.rename_column("note", "remark")
    v.add_column(extra=pxl.Int)
    v.drop_column("extra")
    assert v.columns() == ["remark", "n", "s"]


def test_bad_definitions_are_clear_errors(db, t, tmp_path):
    other_db = pxl.connect(tmp_path / "other.pxl")
    elsewhere = other_db.create_table("e", {"n": pxl.Int})
    u = db.create_table("u", {"n": pxl.Int})
    cases = [
        (lambda: db.create_view("v", t.select(t.n)), "select\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.join(u, on=t.n == u.n)), "join\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.group_by(t.s)), "group_by\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.order_by(t.n)), "order_by\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.limit(3)), "limit\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.sample(n=2)), "sample\\(\\) cannot be used"),
        (lambda: db.create_view("v", t.distinct()), "distinct\\(\\) cannot be used"),
        (lambda: db.create_view("v", "t"), "takes a table or a query"),
        (lambda: db.create_view("v", elsewhere), "another database"),
        (lambda: db.create_view("bad name", t), "invalid view path"),
        (lambda: db.create_view("v", t.where(t.n > 1), is_snapshot=True), "create_snapshot"),
        (lambda: db.create_view("v", t, is_snapshot=True, iterator=t.n), "given: iterator"),
        (lambda: db.create_view("v", t, iterator=t.n), "iterator call such as"),
        (lambda: db.create_view("v", t, store_media=False), "has no iterator"),
        (lambda: db.create_view("v", t, store_media="no"), "True or False"),
        (lambda: db.create_view("v", t, destination="/tmp/x"), "has none"),
        (lambda: db.create_view("v", t, additional_columns=[1]), "a dict of"),
        (lambda: db.create_view("v", t, additional_columns={"n": pxl.Int}),
         "already exists in the base table 't'"),
        (lambda: db.create_view("v", t, additional_columns={"x": "nope"}),
         "additional column 'x'"),
        (lambda: db.create_view("v", t, additional_columns={"x": {"value": t.n, "k": 1}}),
         "a column spec is a dict"),
        (lambda: db.create_view("v", t, additional_columns={"x": {"type": pxl.Int,
                                                                   "stored": False}}),
         "apply to computed columns"),
        (lambda: db.create_view("v", t, additional_columns={"count": pxl.Int}),
         "Table method or attribute"),
        (lambda: db.create_view("v", t, additional_columns={"x": u.n + 1}),
         "belongs to table 'u', not to the view's base 't'"),
        (lambda: db.create_view("v", t, additional_columns={"x": pxlf.sum(t.n)}),
         "calls an aggregate"),
        (lambda: db.drop_table("t", force="yes"), "True or False"),
    ]
    for call, words in cases:
        with pytest.raises((SchemaError, NotFoundError, AlreadyExistsError), match=words):
            call()
    assert db.list_tables() == ["t", "u"]
    other_db.close()


def test_a_view_persists_and_follows_in_a_new_process(db, t):
    db.create_view("big", t.where(t.n > 5), additional_columns={"twice": t.n * 2})
    db.close()
    code = textwrap.dedent(f"""
        import pxlite as pxl
        db = pxl.connect({str(db.path)!r})
        t, v = db.get_table("t"), db.get_table("big")
        t.insert([{{"n": 40, "s": "x"}}])
        print(v.select(v.twice).collect()["twice"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[12, 14, 16, 18, 80]"


def test_the_catalog_records_the_view(db, t):
    v = db.create_view("big", t.where(t.n > 5))
    meta = catalog.load_table(db.db, "big")
    assert meta.base_id == catalog.load_table(db.db, "t").id
    assert meta.sql.startswith("v_") and meta.store.startswith("t_")
    assert [c.name for c in meta.own_columns] == [] and {c.name for c in meta.columns} == {"n",
                                                                                            "s"}
    (row,) = db.db.query("SELECT predicate IS NOT NULL, iterator, built FROM px_views "
                         "WHERE table_id = ?", (meta.id,))
    assert row == (1, None, 1)
    assert v.count() == 4


def test_a_revert_of_the_base_brings_the_view_back(db):
    t = db.create_table("kept", {"n": pxl.Int, "s": pxl.String}, version_retention_days=30)
    t.insert([{"n": i, "s": f"s{i % 3}"} for i in range(10)])
    v = db.create_view("big", t.where(t.n > 5), additional_columns={"twice": t.n * 2})

    def rows() -> list[dict]:
        return [dict(r) for r in v.select(v.n, v.s, v.twice).collect()]

    before = rows()
    t.delete(where=t.n >= 8)
    t.insert([{"n": 40, "s": "late"}])
    after_insert = rows()
    t.update({"s": "other"}, where=t.n == 6)
    t.revert()  # the update
    assert rows() == after_insert
    t.revert()  # the insert
    t.revert()  # the delete
    assert rows() == before
    updated = next(x["version"] for x in t.get_versions() if x["kind"] == "update")
    t.revert(to=updated)  # forward again: the content right after the update
    assert [r["s"] for r in rows()] == ["other", "s1", "late"]
    assert v.get_versions() == [] and db.check().ok
    with pytest.raises(SchemaError, match="revert its base 'kept' and the view follows"):
        v.revert()
    t.add_column(flag=pxl.Bool)
    w = db.create_view("flagged", t.where(t.flag == True))  # noqa: E712 (a SQL comparison)
    with pytest.raises(SchemaError, match=r"would take away column.* 'flagged'"):
        t.revert()  # back before the column the view reads was added
    assert w.count() == 0 and "flag" in t.columns()
    snap = db.create_view("snap", t, is_snapshot=True)
    assert snap.count() == t.count() and "snap" in db.list_tables()


def test_a_view_keeps_no_versions_and_says_to_ask_its_base(db, t):
    v = db.create_view("big", t.where(t.n > 5))
    ask_base = r"view 'big' keeps no versions of its own .* so no {}; ask its base 't'"
    with pytest.raises(VersionError, match=ask_base.format("versions to snapshot")):
        db.create_snapshot("vsnap", v)
    with pytest.raises(VersionError, match=ask_base.format("earlier versions")):
        db.get_table("big:1")
    with pytest.raises(VersionError, match=ask_base.format("versions to retain")):
        v.set_version_retention(days=1)
    assert "vsnap" not in db.list_tables() and v.count() == t.where(t.n > 5).count()


def test_a_view_computes_its_columns_for_its_new_rows_only(db, t):
    v = db.create_view("big", t.where(t.n > 5), additional_columns={"c": counted(t.n)})
    assert sorted(CALLS) == [6, 7, 8, 9]
    CALLS.clear()
    t.insert([{"n": 50, "s": "x"}, {"n": 2, "s": "y"}])  # one enters the view
    assert CALLS == [50]
    t.update({"s": "z"}, where=t.n == 6)  # a column c does not read: nothing computed
    t.update({"n": 60}, where=t.n == 50)  # its input: recomputed for that row only
    assert CALLS == [50, 60] and v.where(v.n == 60).select(v.c).collect()["c"] == [1060]
    CALLS.clear()
    t.update({"n": 3}, where=t.n == 7)  # leaves the view: nothing computed
    assert CALLS == []
