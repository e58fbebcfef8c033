"""Table metadata is cached per connection between catalog changes (catalog.load_table): every
change, by this connection, another one, another process or raw SQL, and every rollback, is
seen by the next read; and what a caller gets is its own copy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pxlite as pxl
from pxlite import catalog


def test_changes_by_this_and_other_connections_are_seen_at_once(tmp_path):
    path = tmp_path / "c.pxl"
    a = pxl.connect(path)
    t = a.create_table("t", {"n": pxl.Int})
    t.insert(n=1)
    assert t.columns() == ["n"]
    b = pxl.connect(path)
    b.get_table("t").add_column(s=pxl.String)  # another connection of this process
    assert t.columns() == ["n", "s"]
    subprocess.run([sys.executable, "-c", "import pxlite as pxl, sys; "
                    "pxl.connect(sys.argv[1]).get_table('t').add_column(f=pxl.Float)",
                    str(path)], check=True)  # another process
    assert t.columns() == ["n", "s", "f"]
    t.rename_column("s", "text")  # this connection
    assert b.get_table("t").columns() == ["n", "text", "f"] == t.columns()
    with a.db.transaction():  # raw SQL on this connection's catalog
        a.db.execute("UPDATE px_columns SET name = 'num' WHERE name = 'n'")
    assert t.columns()[0] == "num"
    a.close()
    b.close()


def test_a_change_rolled_back_is_not_seen(db):
    t = db.create_table("t", {"n": pxl.Int})
    assert t.columns() == ["n"]
    with pytest.raises(RuntimeError), db.db.transaction():
        db.db.execute("UPDATE px_columns SET name = 'gone'")
        assert catalog.load_table(db.db, "t").columns[0].name == "gone"  # inside: as is
        raise RuntimeError("roll back")
    assert t.columns() == ["n"]


def test_each_load_is_a_copy_of_its_own(db):
    db.create_table("t", {"n": pxl.Int, "s": pxl.String})
    first = catalog.load_table(db.db, "t")
    first.columns[0].name = "changed"
    first.columns.pop()
    first.version = 7
    again = catalog.load_table(db.db, "t")
    assert [c.name for c in again.columns] == ["n", "s"] and again.version is None


def test_inside_a_read_the_cache_serves_its_snapshot(tmp_path):
    """A read transaction sees the catalog as at its start, cached or not: another connection's
    change committed meanwhile is not seen inside it (nor served from a cache made outside it
    earlier), and is seen right after it."""
    path = tmp_path / "r.pxl"
    a, b = pxl.connect(path), pxl.connect(path)
    a.create_table("t", {"n": pxl.Int})
    assert [c.name for c in catalog.load_table(a.db, "t").columns] == ["n"]  # cached
    with a.db.read():
        assert [c.name for c in catalog.load_table(a.db, "t").columns] == ["n"]
        b.get_table("t").add_column(s=pxl.String)
        assert [c.name for c in catalog.load_table(a.db, "t").columns] == ["n"]
    assert [c.name for c in catalog.load_table(a.db, "t").columns] == ["n", "s"]
    with a.db.read():  # a read begun after the change, the cache made before it
        assert [c.name for c in catalog.load_table(a.db, "t").columns] == ["n", "s"]
    a.close()
    b.close()


def test_a_write_transaction_is_never_served_from_the_cache(db):
    """Inside a transaction that has written, the stamp is None: what it reads is its own
    uncommitted state, which a rollback may undo."""
    t = db.create_table("t", {"n": pxl.Int})
    t.add_btree_index("n")
    meta = catalog.load_table(db.db, "t")
    assert len(catalog.indexes(db.db, meta)) == 1  # cached
    with pytest.raises(RuntimeError), db.db.transaction():
        db.db.execute("UPDATE px_indexes SET name = 'renamed'")
        assert db.db.catalog_stamp() is None
        assert [i.name for i in catalog.indexes(db.db, meta)] == ["renamed"]
        raise RuntimeError("roll back")
    assert [i.name for i in catalog.indexes(db.db, meta)] != ["renamed"]


def test_index_lists_follow_other_connections(tmp_path):
    path = tmp_path / "i.pxl"
    a, b = pxl.connect(path), pxl.connect(path)
    t = a.create_table("t", {"n": pxl.Int, "m": pxl.Int})
    meta = catalog.load_table(a.db, "t")
    assert catalog.indexes(a.db, meta) == []  # cached
    b.get_table("t").add_btree_index("m")
    assert [i.col_id for i in catalog.indexes(a.db, meta)] == [t._meta().column("m").col_id]
    a.close()
    b.close()
