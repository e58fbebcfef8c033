"""The database file itself: foreign, corrupt, newer and read-only files, and two processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite.db import SCHEMA_VERSION
from pxlite.errors import DatabaseError, NotFoundError


def test_created_with_markers(tmp_path):
    pxl.connect(tmp_path / "a.pxl").close()
    con = sqlite3.connect(tmp_path / "a.pxl")
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x50584C54
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_not_sqlite_file(tmp_path):
    p = tmp_path / "junk.pxl"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError, match="not a pxlite database"):
        pxl.connect(p)
    assert p.read_bytes() == b"this is not a database" * 100  # untouched


def test_corrupt_database(tmp_path):
    p = tmp_path / "c.pxl"
    with pxl.connect(p) as db:
        db.create_table("t", {"a": pxl.String}).insert([{"a": "x" * 500} for _ in range(200)])
    data = bytearray(p.read_bytes())
    data[100:4096 * 3] = b"\xff" * (4096 * 3 - 100)  # smash the header and first pages
    p.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(str(p) + suffix).unlink(missing_ok=True)
    with pytest.raises(DatabaseError, match=r"corrupt|not a pxlite database"):
        pxl.connect(p).get_table("t").count()


def test_other_sqlite_file(tmp_path):
    p = tmp_path / "other.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE x (a)")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="not a pxlite database"):
        pxl.connect(p)


def test_newer_schema_refused(tmp_path):
    p = tmp_path / "new.pxl"
    pxl.connect(p).close()
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match=r"newer pxlite.*pip install -U pxlite"):
        pxl.connect(p)


def test_folder_given_as_database(tmp_path):
    with pytest.raises(DatabaseError, match="is a folder"):
        pxl.connect(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match="not a folder"):
        pxl.connect(tmp_path / "file" / "db.pxl")


def test_read_only_database_file(tmp_path):
    p = tmp_path / "ro.pxl"
    with pxl.connect(p) as db:
        db.create_table("t", {"a": pxl.Int}).insert(a=1)
    os.chmod(p, 0o444)
    try:
        db = pxl.connect(p)
        t = db.get_table("t")
        assert t.collect().to_dicts() == [{"a": 1}]  # reads work
        with pytest.raises(DatabaseError, match="read-only"):
            t.insert(a=2)
        with pytest.raises(DatabaseError, match="read-only"):
            db.create_table("u", {"a": pxl.Int})
        assert t.count() == 1
        db.close()
    finally:
        os.chmod(p, 0o644)
    with pxl.connect(p) as db:  # nothing was lost
        assert db.get_table("t").count() == 1


def test_empty_read_only_file(tmp_path):
    p = tmp_path / "empty.pxl"
    p.write_bytes(b"")
    os.chmod(p, 0o444)
    with pytest.raises(DatabaseError, match="read-only"):
        pxl.connect(p)


_WRITER = textwrap.dedent("""
    import sys, pxlite as pxl
    db = pxl.connect(sys.argv[1])
    t = db.get_table("t")
    who = int(sys.argv[2])
    for i in range(40):
        t.insert([{"who": who, "i": i * 10 + k} for k in range(10)])
    print("ok")
""")


def test_two_processes_write_while_reading(tmp_path):
    """Two writer processes and a reader at once: all succeed, no row lost or duplicated."""
    p = tmp_path / "shared.pxl"
    with pxl.connect(p) as db:
        db.create_table("t", {"who": pxl.Int, "i": pxl.Int})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(p), str(w)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in (1, 2)]
    reader = pxl.connect(p)
    t = reader.get_table("t")
    seen = []
    while any(pr.poll() is None for pr in procs):
        seen.append(t.count())  # reads succeed while the others write
    outs = [pr.communicate(timeout=120) for pr in procs]
    assert all(pr.returncode == 0 for pr in procs), outs
    assert seen == sorted(seen)
    rows = t.select(t.who, t.i).collect().to_dicts()
    assert len(rows) == 800
    assert sorted((r["who"], r["i"]) for r in rows) == sorted(
        (w, i) for w in (1, 2) for i in range(400))
    reader.close()


def test_migration_ladder_runs(tmp_path, monkeypatch):
    """An older file is migrated step by step (simulated with a version-0 marker)."""
    from pxlite import db as dbmod

    p = tmp_path / "old.pxl"
    pxl.connect(p).close()
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    con.commit()
    con.close()
    monkeypatch.setitem(dbmod.MIGRATIONS, SCHEMA_VERSION - 1,
                        "INSERT INTO px_meta(key, value) VALUES ('migrated', 'yes')")
    with pxl.connect(p) as db:
        assert db.db.query("SELECT value FROM px_meta WHERE key = 'migrated'") == [("yes",)]
        assert db.db.sqlite.pragma("user_version") == SCHEMA_VERSION


def test_connect_creates_the_file_but_never_missing_folders(tmp_path):
    """connect() makes a missing file in an existing folder; a missing folder is an error (a
    typo must not become a new empty database), and create=False refuses a missing file."""
    typo = tmp_path / "phtos" / "photos.pxl"
    with pytest.raises(NotFoundError, match=f"the folder {typo.parent} does not exist"):
        pxl.connect(typo)
    assert not typo.parent.exists()
    p = tmp_path / "photos.pxl"
    with pytest.raises(NotFoundError, match=rf"no database file at {p}; .*connect\("):
        pxl.connect(p, create=False)
    assert not p.exists()
    pxl.connect(p).close()  # create=True (the default): the file is made
    assert p.is_file()
    with pxl.connect(p, create=False) as db:
        assert db.list_tables() == []


def test_home_database_is_created_with_its_folder(monkeypatch, tmp_path):
    home = tmp_path / "deep" / "er" / "home"
    monkeypatch.setenv("PXLITE_HOME", str(home))
    assert pxl.default().path == home / "pxlite.db"
    assert (home / "pxlite.db").is_file()


def test_mapped_reads_only_inside_its_block(tmp_path):
    """Database.mapped: SQLite reads through a memory map inside the block (nested blocks
    included) and never after it, also when the block fails; versioned deletes and reverts use
    it and leave the connection unmapped."""
    from pxlite.db import MMAP_BYTES

    conn = pxl.connect(tmp_path / "m.pxl", config={"version_retention_days": 30})
    db = conn.db

    def size() -> int:
        return db.query("PRAGMA mmap_size")[0][0]

    assert size() == 0
    with db.mapped():
        assert size() == MMAP_BYTES
        with db.mapped():
            assert size() == MMAP_BYTES
        assert size() == MMAP_BYTES  # the inner block does not unmap the outer one
    assert size() == 0
    with pytest.raises(RuntimeError, match="the block failed"), db.mapped():
        raise RuntimeError("the block failed")
    assert size() == 0
    t = conn.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(100)])
    assert t.delete(where=t.n % 3 == 0).num_rows == 34 and size() == 0
    t.revert()
    assert t.count() == 100 and size() == 0
    conn.close()
