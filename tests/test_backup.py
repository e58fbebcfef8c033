"""Consistent backups (issue 20, point 5): ``db.backup(path)`` copies the database file with
SQLite's online backup API while another program writes, and the media files the copy names;
the pair opens on its own as a new database (issue 17's ownership rules)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import backup as backup_mod
from pxlite import storage
from pxlite.errors import AlreadyExistsError, DatabaseError, NotFoundError, SchemaError


def _hashes(folder) -> dict[str, str]:
    return {os.path.relpath(p, folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _table(db, n: int = 6):
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), (30 * i, 0, 0)), "n": i} for i in range(n)])
    t.add_computed_column(rot=t.img.rotate(90))
    return t


def test_a_backup_opens_on_its_own_with_its_own_media(db, tmp_path):
    t = _table(db)
    rows = t.select(t.n, t.img.fileurl).order_by(t.n).collect().to_dicts()
    status = db.backup(tmp_path / "b.pxl")
    assert status.num_rows == 12 and status.num_errors == 0 and "Backed up 12 files" in str(status)
    original = _hashes(db.media_dir)
    assert _hashes(tmp_path / "b.pxl.media") == original
    assert not [p for p in tmp_path.iterdir() if ".pxlite-backup-" in p.name]
    with pxl.connect(tmp_path / "b.pxl") as b:
        assert b.ownership.db_id != db.ownership.db_id  # a new identity (issue 17's rules)
        assert b.places.unowned() == [] and b.ownership.owns_media
        bt = b.get_table("t")
        got = bt.select(bt.n, bt.img.fileurl).order_by(bt.n).collect().to_dicts()
        assert [r["n"] for r in got] == [r["n"] for r in rows]
        assert all(r["img_fileurl"].startswith((tmp_path / "b.pxl.media").as_uri())
                   for r in got)  # its own media folder
        assert bt.select(bt.rot).order_by(bt.n).collect()[5]["rot"].getpixel((0, 0))[0] > 100
        assert b.check().ok
        bt.delete(where=bt.n >= 3)  # deletes its own copies only (retention 0 here)
        assert len(_hashes(tmp_path / "b.pxl.media")) == 6
        assert b.db.integrity_check() == []
    assert _hashes(db.media_dir) == original
    assert t.count() == 6 and db.check().ok


def test_a_backup_keeps_the_history_and_its_files(tmp_path):
    db = pxl.connect(tmp_path / "h.pxl", config={"version_retention_days": 30})
    t = _table(db)
    t.delete(where=t.n >= 2)
    db.backup(tmp_path / "b.pxl")
    assert len(_hashes(tmp_path / "b.pxl.media")) == 12  # the deleted rows' files too
    db.close()
    with pxl.connect(tmp_path / "b.pxl", config={"version_retention_days": 30}) as b:
        bt = b.get_table("t")
        assert bt.count() == 2 and [v["version"] for v in bt.get_versions()][:2] == [3, 2]
        bt.revert()
        assert bt.count() == 6
        assert bt.select(bt.img).order_by(bt.n).collect()[5]["img"].getpixel((0, 0))[0] > 100
        assert b.check().ok


def test_a_backup_is_consistent_while_another_program_writes(db, tmp_path):
    """Another process inserts batches of 10 rows (each one transaction) without pause; every
    backup holds a whole number of batches and passes its own check."""
    t = db.create_table("w", {"img": pxl.Image, "k": pxl.Int})
    t.insert([{"img": Image.new("RGB", (4, 4), "blue"), "k": -1}])
    writer = textwrap.dedent(f"""
        import sys, time
        import pxlite as pxl
        from PIL import Image
        db = pxl.connect({str(db.path)!r})
        t = db.get_table("w")
        i = 0
        while True:
            t.insert([{{"img": Image.new("RGB", (4, 4), (i % 256, j, 0)), "k": i}}
                      for j in range(10)])
            i += 1
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # it is writing
        counts = []
        for n in range(3):
            target = tmp_path / f"b{n}.pxl"
            status = db.backup(target)
            assert status.num_errors == 0
            with pxl.connect(target) as b:
                c = b.get_table("w").count()
                counts.append(c)
                assert (c - 1) % 10 == 0
                assert b.check().ok
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert counts[-1] > counts[0] > 1


def test_deletes_wait_while_a_backup_copies(db, tmp_path, monkeypatch):
    """A delete committed after the catalog copy cannot take away a file the copy names: it
    waits until the backup has copied its files, then happens."""
    _table(db)
    other = pxl.connect(db.path)
    real = backup_mod._copy_catalog

    def copy_then_delete(d, tmp):
        real(d, tmp)
        ot = other.get_table("t")
        ot.delete(where=ot.n >= 4)  # retention 0: these files would go at once
        assert len(list(db.media_dir.rglob("*.jpg"))) == 12  # ...but wait

    monkeypatch.setattr(backup_mod, "_copy_catalog", copy_then_delete)
    assert db.backup(tmp_path / "b.pxl").num_errors == 0
    other.close()
    assert len(_hashes(tmp_path / "b.pxl.media")) == 12
    assert len(list(db.media_dir.rglob("*.jpg"))) == 8  # done once the backup ended
    assert db.check().ok
    with pxl.connect(tmp_path / "b.pxl") as b:
        assert b.get_table("t").count() == 6 and b.check().ok


def test_files_in_other_destinations_are_referenced_not_copied(db, tmp_path):
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), "red"), "n": 1}])
    t.add_computed_column(rot=t.img.rotate(90), destination=str(tmp_path / "shared"))
    shared = _hashes(tmp_path / "shared")
    db.backup(tmp_path / "b.pxl")
    assert len(_hashes(tmp_path / "b.pxl.media")) == 1  # the inserted image only
    with pxl.connect(tmp_path / "b.pxl") as b:
        bt = b.get_table("t")
        url = bt.select(bt.rot.fileurl).collect()[0]["rot_fileurl"]
        assert storage.file_path(url).parent.parent.parent.parent == tmp_path / "shared"
        assert b.check().ok
        bt.delete()  # not its place to clean: the original's files stay
    assert _hashes(tmp_path / "shared") == shared and db.check().ok


def test_bad_backup_targets_are_refused(db, tmp_path):
    _table(db, 1)
    db.backup(tmp_path / "b.pxl")
    with pytest.raises(AlreadyExistsError, match="exists already; pass if_exists='replace'"):
        db.backup(tmp_path / "b.pxl")
    t = db.get_table("t")
    t.insert([{"img": Image.new("RGB", (8, 8), "green"), "n": 5}])
    db.backup(tmp_path / "b.pxl", if_exists="replace")
    with pxl.connect(tmp_path / "b.pxl") as b:
        assert b.get_table("t").count() == 2 and b.check().ok
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatabaseError, match="is not a pxlite database: not replaced"):
        db.backup(tmp_path / "notes.txt", if_exists="replace")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(SchemaError, match="onto itself"):
        db.backup(db.path, if_exists="replace")
    with pytest.raises(NotFoundError, match="does not exist; create it first"):
        db.backup(tmp_path / "nope" / "b.pxl")
    with pytest.raises(SchemaError, match="takes the path"):
        db.backup(42)  # type: ignore[arg-type]
    with pytest.raises(pxl.errors.PxliteError, match="if_exists"):
        db.backup(tmp_path / "c.pxl", if_exists="merge")


def test_a_read_only_database_can_be_backed_up_and_read_in_time(tmp_path):
    p = tmp_path / "ro.pxl"
    with pxl.connect(p, config={"version_retention_days": 30}) as db:
        _table(db, 2)
    os.chmod(p, 0o444)
    try:
        with pxl.connect(p) as db:
            assert db.db.read_only and db.get_table("t:1").count() == 2
            assert db.backup(tmp_path / "b.pxl").num_rows == 4
            with pytest.raises(DatabaseError, match="read-only"):
                db.get_table("t").revert()
        with pxl.connect(tmp_path / "b.pxl") as b:
            assert b.get_table("t").count() == 2 and b.check().ok
    finally:
        os.chmod(p, 0o644)
