"""plan.py: "which rows" is one typed value, and statements are plans to inspect before running."""

from __future__ import annotations

import json

import pxlite as pxl
from pxlite import catalog, plan
from pxlite.plan import Rows


def _table(tmp_path):
    db = pxl.connect(tmp_path / "p.pxl")
    t = db.create_table("t", {"n": pxl.Int, "s": pxl.String})
    t.insert([{"n": i, "s": f"v{i}"} for i in range(10)])
    return db, t, catalog.load_table(db.db, "t")


def test_rows_say_which_rows():
    assert Rows.all().condition() == ("1", [])
    assert Rows.matching("c1 > ?", [3]).condition() == ("c1 > ?", [3])
    ids = Rows.ids([5, 2])
    assert ids.condition() == ("_rowid IN (SELECT value FROM json_each(?))", ["[5, 2]"])
    both = Rows.ids([1, 2, 3]).where("c1 > ?", [1]).where("c2 IS NULL")
    sql, params = both.condition()
    assert sql == "_rowid IN (SELECT value FROM json_each(?)) AND ((c1 > ?) AND (c2 IS NULL))"
    assert params == ["[1, 2, 3]", 1]
    assert [r.rowids for r in Rows.ids(range(5)).chunks(2)] == [(0, 1), (2, 3), (4,)]


def test_statements_are_built_without_running(tmp_path):
    db, _, meta = _table(tmp_path)
    n, s = meta.column("n"), meta.column("s")
    sql, params = plan.select(meta, [n], Rows.matching(f"{n.sql} >= ?", [7]), after=7, limit=2)
    assert sql == (f"SELECT _rowid, {n.sql} FROM {meta.sql} WHERE _rowid > ? AND "
                   f"({n.sql} >= ?) ORDER BY _rowid LIMIT ?")
    assert params == [7, 7, 2]
    assert db.db.query(sql, params) == [(8, 7), (9, 8)]
    assert plan.update_cells(meta, [n, s]) == (
        f"UPDATE {meta.sql} SET {n.sql} = ?, {n.sql}_et = ?, {n.sql}_em = ?, {s.sql} = ?, "
        f"{s.sql}_et = ?, {s.sql}_em = ? WHERE _rowid = ?")
    assert plan.insert(meta, [n]) == f"INSERT INTO {meta.sql} (_rowid, {n.sql}) VALUES (?, ?)"
    assert plan.delete(meta, Rows.ids([1])) == (
        f"DELETE FROM {meta.sql} WHERE _rowid IN (SELECT value FROM json_each(?))",
        [json.dumps([1])])
    assert db.db.query(*plan.count(meta, Rows.ids([1, 2, 99]))) == [(2,)]
    # nothing above ran but the two queries asked for
    assert db.get_table("t").count() == 10


def test_update_reads_the_matched_rows_in_one_query(tmp_path):
    db, t, meta = _table(tmp_path)
    seen: list[str] = []

    def trace(cursor, sql, bindings):
        seen.append(sql)
        return True

    db.db.sqlite.exec_trace = trace
    try:
        st = t.update({"s": t.s + "!"}, where=t.n >= 2)
    finally:
        db.db.sqlite.exec_trace = None
    assert st.num_rows == 8
    # (The version's bookkeeping, pxlite/versions.py, reads its own undo log: not the rows.)
    reads = [q for q in seen if q.startswith("SELECT") and f"FROM {meta.sql}" in q
             and f"FROM {meta.log_sql}" not in q]
    assert len(reads) == 1, reads
    assert sorted(r["s"] for r in t.where(t.n >= 8).collect()) == ["v8!", "v9!"]
