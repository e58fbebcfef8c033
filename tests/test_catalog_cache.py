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
