"""The filter cache of similarity searches (vecsearch.filtered_rowids): a where() repeated over
many searches is evaluated once while the database is unchanged, and any change (this
connection's, another connection's, a revert) makes it evaluated again."""

from __future__ import annotations

import numpy as np
import pytest

import pxlite as pxl
from pxlite import vecfilter, vecsearch

DIM = 8


@pytest.fixture(autouse=True)
def _sqlite_evaluates(monkeypatch):
    """These conditions (on Int columns) would be evaluated by numpy (pxlite.vecfilter): here
    SQLite evaluates them, whose rows the filter cache keeps."""
    monkeypatch.setattr(vecfilter, "matching", lambda *args: None)


def _table(db, n=60, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, DIM)).astype(np.float32)
    t = db.create_table("t", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int, "cat": pxl.Int})
    t.insert([{"vec": v, "k": i, "cat": i % 3} for i, v in enumerate(data)])
    t.add_embedding_index("vec", metric="ip", precision="fp32")
    return t, data


def _search(t, q, cat=1, k=5):
    sim = t.vec.similarity(vector=q)
    return t.where(t.cat == cat).order_by(sim, asc=False).limit(k).select(t.k).collect()["k"]


def _expected(data, cats, q, cat=1, k=5):
    scores = data @ q
    return [int(i) for i in np.argsort(-scores, kind="stable") if cats[i] == cat][:k]


class _Count:
    """Counts the where() evaluations (the statement rowid_array runs) on a connection."""

    def __init__(self, db):
        self.n, self.db = 0, db

    def __enter__(self):
        self.db.db.sqlite.set_profile(lambda sql, ns: self._seen(sql))
        return self

    def _seen(self, sql):
        if sql.startswith("WITH m(r)"):
            self.n += 1

    def __exit__(self, *exc):
        self.db.db.sqlite.set_profile(None)


def test_a_repeated_where_is_evaluated_once_while_nothing_changes(db):
    t, data = _table(db)
    cats = np.arange(60) % 3
    with _Count(db) as c:
        for q in data[:4]:
            assert _search(t, q) == _expected(data, cats, q)
        assert c.n == 1
        _search(t, data[0], cat=2)  # other parameters: another entry
        _search(t, data[1], cat=1)
        assert c.n == 2


@pytest.mark.parametrize("change", ["insert", "update", "delete", "revert"])
def test_a_change_by_this_connection_is_seen(tmp_path, change):
    with pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30}) as db:
        t, data = _table(db)
        cats = list(np.arange(60) % 3)
        q = data[7]
        assert _search(t, q) == _expected(data, np.array(cats), q)
        if change == "insert":
            new = (10 * q).astype(np.float32)  # scores above every row
            t.insert([{"vec": new, "k": 60, "cat": 1}])
            data, cats = np.vstack([data, new]), [*cats, 1]
        elif change == "update":
            t.update({"cat": 1}, where=t.k == 2)  # row 2 joins category 1
            cats[2] = 1
        elif change == "delete":
            gone = _expected(data, np.array(cats), q)[0]
            t.delete(where=t.k == gone)
            cats[gone] = -1
        else:
            t.update({"cat": 0}, where=t.cat == 1)
            assert _search(t, q) == []
            t.revert()
        assert _search(t, q) == _expected(data, np.array(cats), q)


def test_another_connections_commit_is_seen(tmp_path):
    with pxl.connect(tmp_path / "a.pxl") as a, pxl.connect(tmp_path / "a.pxl") as b:
        t, data = _table(a)
        q = data[3]
        tb = b.get_table("t")
        before = _search(tb, q)
        assert before == _expected(data, np.arange(60) % 3, q)
        t.update({"cat": 2}, where=t.k == before[0])  # the best match leaves category 1
        assert _search(tb, q) == before[1:] + _expected(data, np.arange(60) % 3, q, k=6)[5:]


def test_bounds_and_what_is_never_kept(db, monkeypatch):
    _table(db)
    sql = "SELECT _rowid FROM t_1 WHERE c3 = ?"
    monkeypatch.setattr(vecsearch, "_FILTER_ENTRIES", 2)
    for cat in (0, 1, 2):
        got = vecsearch.filtered_rowids(db.db, sql, [cat])
        assert got.tolist() == [r for r in range(1, 61) if (r - 1) % 3 == cat]
        assert not got.flags.writeable  # shared: nobody may change it
    kept = vecsearch._FILTERS[db.db]
    assert [k[1] for k in kept] == [(1,), (2,)]  # the oldest went
    vecsearch.filtered_rowids(db.db, sql, [1])  # used again: now the most recent
    vecsearch.filtered_rowids(db.db, sql, [0])
    assert [k[1] for k in kept] == [(1,), (0,)]
    monkeypatch.setattr(vecsearch, "_FILTER_ROWS", 10)
    big = "SELECT _rowid FROM t_1 WHERE c2 >= ?"
    assert len(vecsearch.filtered_rowids(db.db, big, [0])) == 60
    assert (big, (0,)) not in kept and len(kept) == 2  # too many rowids to keep
    monkeypatch.setattr(vecsearch, "_FILTER_ROWS", 1_000_000)
    # SQL that answers differently each time, and writes in progress: evaluated, not kept
    vecsearch.filtered_rowids(db.db, "SELECT _rowid FROM t_1 WHERE random() % 2 = 0", [])
    assert not any("random" in k[0] for k in kept)
    with db.db.transaction():
        db.db.execute("UPDATE t_1 SET c3 = 5 WHERE _rowid = 1")
        inside = vecsearch.filtered_rowids(db.db, sql, [5])
        assert inside.tolist() == [1]
        db.db.execute("UPDATE t_1 SET c3 = 0 WHERE _rowid = 1")
    assert not any(k[1] == (5,) for k in kept)
    assert vecsearch.filtered_rowids(db.db, sql, [5]).tolist() == []
