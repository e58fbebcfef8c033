"""An update of a versioned table copies the old images of the rows it changes in the same
pass over the table that finds them, and reads those rows back from the undo log
(versions.capture_found); where that cannot hold it reads the table and copies by rowid as
before. Either way each version reads back exactly as it was."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite import catalog, versions, writes
from pxlite.errors import PxliteError
from pxlite.plan import Rows


@pytest.fixture
def vdb(tmp_path):
    conn = pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30})
    yield conn
    conn.close()


def _rows(t: pxl.Table) -> list[tuple[int, int, str]]:
    return [(r["k"], r["n"], r["s"]) for r in t.order_by(t.k).collect()]


@pxl.udf
def is_odd(n: int) -> bool:
    return n % 2 == 1


def test_an_update_computes_from_the_rows_it_found_and_reverts(vdb):
    t = vdb.create_table("t", {"k": pxl.Int, "n": pxl.Int, "s": pxl.String})
    t.insert([{"k": i, "n": i * 10, "s": f"s{i}"} for i in range(20)])
    before = _rows(t)
    status = t.update({"n": t.n + t.k, "s": t.s + "!"}, where=t.k >= 15)  # SQL condition
    assert status.num_rows == 5
    after = _rows(t)
    assert after[:15] == before[:15]
    assert after[15:] == [(k, k * 10 + k, f"s{k}!") for k in range(15, 20)]
    assert t.get_versions()[0]["updates"] == 5
    old = vdb.get_table("t:1")
    assert [(r["k"], r["n"], r["s"]) for r in old.order_by(old.k).collect()] == before
    # a condition only Python evaluates: the rows come as rowids, read from the table
    t.update({"n": 0}, where=is_odd(t.k))
    assert [r[1] for r in _rows(t)] == [0 if k % 2 else n for k, n, _ in after]
    t.revert()
    assert _rows(t) == after
    t.revert()
    assert _rows(t) == before
    assert pxl.check(db=vdb).ok


def test_a_failed_update_leaves_no_image_and_no_version(vdb):
    t = vdb.create_table("t", {"k": pxl.Int, "n": pxl.Int})
    t.insert([{"k": i, "n": i} for i in range(5)])
    versions_before = t.get_versions()
    with pytest.raises(PxliteError):
        t.update({"n": "not a number"}, where=t.k >= 2)  # refused at the first row found
    assert [r["n"] for r in t.order_by(t.k).collect()] == [0, 1, 2, 3, 4]
    assert t.get_versions() == versions_before
    meta = catalog.load_table(vdb.db, "t")
    assert vdb.db.query(f"SELECT count(*) FROM {meta.log_sql}")[0][0] == 0


def _found(conn: pxl.Connection, meta: catalog.TableMeta, rows: Rows, before=None):
    """capture_found inside an update operation of ``meta``'s table (``before`` runs first)."""
    with writes.operation(conn.places, meta, kind="update", capture="statements"):
        if before is not None:
            before()
        raise _Rollback(versions.capture_found(conn.db, meta, rows, meta.columns))


class _Rollback(Exception):
    def __init__(self, found):
        self.found = found


def _try(conn, meta, rows, before=None):
    with pytest.raises(_Rollback) as info:
        _found(conn, meta, rows, before)
    return info.value.found


def test_where_the_log_cannot_give_the_rows_it_is_not_used(vdb, tmp_path):
    t = vdb.create_table("t", {"k": pxl.Int})
    t.insert([{"k": i} for i in range(5)])
    meta = catalog.load_table(vdb.db, "t")
    cond = Rows.matching("c1 >= ?", [2])
    assert meta.columns[0].sql == "c1"
    assert _try(vdb, meta, cond) is not None  # the usual case
    assert _try(vdb, meta, Rows.ids([1, 2])) is None  # an explicit rowid set
    log_row = (f"INSERT INTO {meta.log_sql}(_v, _rowid, _op, c1) "
               "SELECT (SELECT max(version) + 1 FROM px_versions WHERE table_id = "
               f"{meta.id}), 1, 'u', 0")
    assert _try(vdb, meta, cond, lambda: vdb.db.execute(log_row)) is None  # images already
    new_row = f"INSERT INTO {meta.sql}(_rowid, c1) VALUES (1000, 7)"
    assert _try(vdb, meta, cond, lambda: vdb.db.execute(new_row)) is None  # rows above the mark
    plain = pxl.connect(tmp_path / "p.pxl", config={"version_retention_days": 30})
    u = plain.create_table("u", {"k": pxl.Int}, versioned=False)
    u.insert([{"k": 1}])
    assert _try(plain, catalog.load_table(plain.db, "u"), cond) is None  # no versions
    plain.close()
    assert [r["k"] for r in t.order_by(t.k).collect()] == [0, 1, 2, 3, 4]  # all rolled back
