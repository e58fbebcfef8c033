"""A search's where() evaluated by numpy over columns held in memory (pxlite.vecfilter): the
same rows as SQLite selects, for random conditions over random data with NULLs, kept current
through every kind of change, and SQLite again for everything else."""

from __future__ import annotations

import numpy as np
import pytest

import pxlite as pxl
from pxlite import queryplan, vecfilter, vecsearch
from pxlite.exprs import Compare, Literal

DIM = 8
N = 300
#: Strings whose order tests the code-point order (upper before lower case, accents, an emoji
#: beyond the BMP, an empty string, a NUL inside).
STRINGS = ["", "a", "ab", "b", "B", "\u00e9", "\U0001f600", "a\x00b", "z", "Zz"]


@pytest.fixture
def checked(monkeypatch):
    """Every vecfilter.matching answer is compared with SQLite's for the same clauses; the
    list of answers (None: not evaluated here) is returned."""
    answers: list = []
    real = vecfilter.matching

    def both(db, clauses, index_id):
        got = real(db, clauses, index_id)
        answers.append(got)
        if got is not None:
            sql = queryplan.matching_rowids(clauses)
            assert sql is not None
            want = vecsearch.rowid_array(db, *sql)
            assert got.tolist() == want.tolist(), repr(clauses.where)
        return got

    monkeypatch.setattr(vecfilter, "matching", both)
    return answers


def _rows(rng, n, start=0):
    out = []
    for i in range(start, start + n):
        out.append({"vec": rng.standard_normal(DIM).astype(np.float32), "k": i,
                    "n": None if rng.random() < 0.15 else int(rng.integers(-5, 6)),
                    "f": None if rng.random() < 0.15 else float(rng.choice(
                        [-1.5, 0.0, 0.5, 2.0, 1e300, -np.inf, np.inf, 3.25])),
                    "b": None if rng.random() < 0.2 else bool(rng.random() < 0.5),
                    "s": None if rng.random() < 0.15 else str(rng.choice(STRINGS))})
    return out


def _table(db, seed=0, **opts):
    rng = np.random.default_rng(seed)
    t = db.create_table("t", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int, "n": pxl.Int,
                              "f": pxl.Float, "b": pxl.Bool, "s": pxl.String}, **opts)
    t.insert(_rows(rng, N))
    t.add_embedding_index("vec", metric="ip", precision="fp32")
    return t, rng


def _random_condition(t, rng, depth=0):
    kind = rng.integers(0, 7 if depth < 3 else 4)
    which = int(rng.integers(0, 5))
    col = [t.n, t.f, t.b, t.k, t.s][which]
    if which == 4:
        lit = str(rng.choice([*STRINGS, "aa", "c", "\u00e8", "a\x00"]))
    elif which == 2:
        lit = bool(rng.random() < 0.5)
    elif which == 1:  # a Float column compares with floats and ints alike
        lit = float(rng.choice([-1.5, 0.0, 0.5, 2.0, 1e300, np.inf, 1.0])) \
            if rng.random() < 0.7 else int(rng.integers(-2, 3))
    else:
        lit = int(rng.integers(-6, 7))
    if kind == 0:
        op = ["==", "!=", "<", "<=", ">", ">="][rng.integers(0, 6)]
        pred = {"==": col == lit, "!=": col != lit, "<": col < lit, "<=": col <= lit,
                ">": col > lit, ">=": col >= lit}[op]
        return pred
    if kind == 1:  # the literal first (Python's operators put the column first: built here)
        op = ["==", "!=", "<", "<=", ">", ">="][rng.integers(0, 6)]
        return Compare(op, Literal(lit), col)
    if kind == 2:
        return col == None if rng.random() < 0.5 else col != None  # noqa: E711
    if kind == 3:
        pool = {2: [True, lit, False], 4: [lit, "b", "nowhere"]}.get(which, [lit, lit, -1, 2])
        return col.isin(pool[: int(rng.integers(0, 4))])
    if kind == 4:
        return _random_condition(t, rng, depth + 1) & _random_condition(t, rng, depth + 1)
    if kind == 5:
        return _random_condition(t, rng, depth + 1) | _random_condition(t, rng, depth + 1)
    return ~_random_condition(t, rng, depth + 1)


def _search(t, where, q, k=5):
    sim = t.vec.similarity(vector=q)
    return t.where(where).order_by(sim, asc=False).limit(k).select(t.k).collect()["k"]


def test_random_conditions_select_what_sqlite_selects(db, checked):
    t, rng = _table(db)
    q = rng.standard_normal(DIM).astype(np.float32)
    for _ in range(150):
        _search(t, _random_condition(t, rng), q)
    assert sum(a is not None for a in checked) == 150  # all evaluated here, all equal to SQL


def test_changes_are_seen(tmp_path, checked):
    with pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30}) as db:
        t, rng = _table(db, seed=1)
        q = rng.standard_normal(DIM).astype(np.float32)
        where = (t.n >= 0) & (t.b == True)  # noqa: E712
        _search(t, where, q)
        t.insert(_rows(rng, 5, start=N))                     # appended rows
        _search(t, where, q)
        t.update({"n": 5, "b": True}, where=t.k < 20)        # rows changed in place
        assert set(range(20)) <= set(_search(t, where, q, k=400))
        t.delete(where=t.k % 7 == 0)                          # rows gone
        assert not any(k % 7 == 0 for k in _search(t, where, q, k=400))
        t.revert()                                            # rows back, in the middle
        assert {0, 7, 14} <= set(_search(t, where, q, k=400))
        t.update({"n": None}, where=t.k < 250)               # many: read anew
        _search(t, where, q, k=400)
        t.add_column(extra=pxl.Int)                           # another schema: read anew
        _search(t, (t.extra == None) & where, q)  # noqa: E711
        assert all(a is not None for a in checked) and len(checked) == 7


def test_another_connection_and_a_trimmed_log(tmp_path, checked, monkeypatch):
    with pxl.connect(tmp_path / "a.pxl") as a, pxl.connect(tmp_path / "a.pxl") as b:
        t, rng = _table(a, seed=2)
        tb = b.get_table("t")
        q = rng.standard_normal(DIM).astype(np.float32)
        _search(tb, tb.n == 3, q)
        t.update({"n": 3}, where=t.k < 50)
        assert set(range(50)) <= set(_search(tb, tb.n == 3, q, k=400))
        t.update({"n": 4}, where=t.k < 10)
        # the log trimmed past what b saw (as writes trim it after a million entries): b
        # cannot tell which rows changed, and reads them all again
        a.db.execute("DELETE FROM x_1 WHERE seq < (SELECT max(seq) FROM x_1)")
        got = _search(tb, tb.n == 3, q, k=400)
        assert not set(range(10)) & set(got) and set(range(10, 50)) <= set(got)
        assert all(x is not None for x in checked)


def test_what_sqlite_still_evaluates(db, checked):
    t, rng = _table(db, seed=3)
    q = rng.standard_normal(DIM).astype(np.float32)
    for where in (t.n + 1 > 2, t.n == t.k, t.n == 2.5, t.n.isin([1, "x"]), t.s == 3,
                  (t.n == 1) & (t.s.upper() == "B")):
        _search(t, where, q)
    assert checked == [None] * 6
    # a cell of another type than its column's (written behind pxlite's back): SQLite decides
    db.db.execute("UPDATE t_1 SET c3 = 2.5 WHERE _rowid = 1")
    vecfilter._CACHES.clear()
    _search(t, t.n == 2, q)
    assert checked[-1] is None


def test_a_search_in_a_write_transaction_asks_sqlite(db):
    t, _ = _table(db, seed=4)
    meta = t._meta()
    clauses = t.where(t.n == 1)._clauses([meta])
    assert vecfilter.matching(db.db, clauses, 1) is not None
    with db.db.transaction():
        assert vecfilter.matching(db.db, clauses, 1) is None


def test_strings_beyond_the_distinct_bound_go_to_sqlite(db, checked, monkeypatch):
    t, rng = _table(db, seed=5)
    q = rng.standard_normal(DIM).astype(np.float32)
    monkeypatch.setattr(vecfilter, "_MAX_DISTINCT", 4)
    _search(t, t.s == "a", q)
    assert checked[-1] is None
    monkeypatch.setattr(vecfilter, "_MAX_DISTINCT", 13)
    _search(t, t.s >= "b", q)  # held now (10 distinct values): new ones join its list
    assert checked[-1] is not None
    t.insert([{**r, "s": f"new{i}"} for i, r in enumerate(_rows(rng, 3, start=N))])
    _search(t, t.s >= "b", q)
    assert checked[-1] is not None
    t.insert([{**r, "s": "\u00e9"} for r in _rows(rng, 2, start=N + 3)])  # one it has
    _search(t, t.s == "\u00e9", q)
    assert checked[-1] is not None
    t.insert([{**r, "s": "one too many"} for r in _rows(rng, 1, start=N + 5)])
    _search(t, t.s == "\u00e9", q)
    assert checked[-1] is None


def test_every_string_comparison_against_sqlite(db, checked):
    """Each operator against each value (present, absent, between two present ones)."""
    t, rng = _table(db, seed=6)
    q = rng.standard_normal(DIM).astype(np.float32)
    for lit in [*STRINGS, "aa", "c", "\u00e8", "a\x00", "\U0001f601"]:
        for where in (t.s == lit, t.s != lit, t.s < lit, t.s <= lit, t.s > lit, t.s >= lit,
                      ~(t.s == lit), t.s.isin([lit, "z"])):
            _search(t, where, q, k=400)
    assert len(checked) == 15 * 8 and all(a is not None for a in checked)
