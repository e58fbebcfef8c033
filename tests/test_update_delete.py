"""update() and delete(): values, expressions, errors, and the files pxlite wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ComputeError, SchemaError


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_update_values_and_expressions(db):
    t = db.create_table("t", {"n": pxl.Int, "s": pxl.String})
    t.insert([{"n": i, "s": "a"} for i in range(5)])
    st = t.update({"n": t.n * 10, "s": "b"}, where=t.n >= 3)
    assert str(st).startswith("Updated 2 rows with 0 errors")
    assert t.order_by(t.n).select(t.n, t.s).collect().to_dicts()[-2:] == [
        {"n": 30, "s": "b"}, {"n": 40, "s": "b"}]
    assert t.update({"s": "c"}).num_rows == 5
    assert t.update({"s": "d"}, where=t.n % 2 == 1).num_rows == 1  # Python-side where


def test_update_errors(db):
    t = db.create_table("t", {"n": pxl.Required[pxl.Int], "m": pxl.Int})
    t.insert([{"n": 1, "m": 1}, {"n": 2, "m": 2}])
    with pytest.raises(ComputeError, match="expected an integer"):
        t.update({"m": "x"})
    assert t.select(t.m).order_by(t.m).collect()["m"] == [1, 2]  # unchanged
    st = t.update({"m": "x"}, where=t.n == 1, on_error="ignore")
    assert st.num_errors == 1
    assert t.where(t.m.errortype == "SchemaError").count() == 1
    with pytest.raises(ComputeError, match="Required"):
        t.update({"n": None})
    with pytest.raises(SchemaError, match="dict"):
        t.update({})


def test_delete(db):
    t = db.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(6)])
    assert str(t.delete(where=t.n > 3)).startswith("Deleted 2 rows")
    assert t.delete(where=t.n % 2 == 1).num_rows == 2  # Python-side where
    assert t.select(t.n).collect()["n"] == [0, 2]
    assert t.delete().num_rows == 2 and t.count() == 0


def test_delete_removes_only_pxlite_files(db, tmp_path, jpegs):
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    media = tmp_path / "test.pxl.media"
    red = Image.new("RGB", (4, 4), "red")
    t.insert([{"image": red, "k": 1}, {"image": red, "k": 2},      # same content: one file
              {"image": Image.new("RGB", (4, 4), "blue"), "k": 3},
              {"image": jpegs[0], "k": 4}])                        # a user's file: a reference
    assert len(_files(media)) == 2
    t.delete(where=t.k == 1)
    assert len(_files(media)) == 2  # row 2 still names the red file
    t.delete(where=t.k >= 2)
    assert _files(media) == set()
    assert jpegs[0].is_file()  # never a user's original
    assert db.db.query("SELECT count(*) FROM px_pending_deletes")[0][0] == 0


def test_update_replaces_media_file(db, tmp_path):
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    media = tmp_path / "test.pxl.media"
    t.insert(image=Image.new("RGB", (4, 4), "red"), k=1)
    (old,) = _files(media)
    t.update({"image": Image.new("RGB", (4, 4), "green")})
    (new,) = _files(media)
    assert new != old and not old.exists()
    assert t.collect()[0]["image"].getpixel((0, 0))[1] > 100


def test_drop_table_and_column_remove_files(db, tmp_path):
    media = tmp_path / "test.pxl.media"
    t = db.create_table("t", {"a": pxl.Image, "b": pxl.Image})
    t.insert(a=Image.new("RGB", (4, 4), "red"), b=Image.new("RGB", (4, 4), "blue"))
    assert len(_files(media)) == 2
    t.drop_column("b")
    assert len(_files(media)) == 1
    db.drop_table("t")
    assert _files(media) == set()
    assert db.db.query("SELECT count(*) FROM px_media_locations")[0][0] == 0


def test_pending_deletes_survive_a_crash(tmp_path):
    """A delete intent committed with its rows is finished by the next open."""
    p = tmp_path / "c.pxl"
    db = pxl.connect(p)
    t = db.create_table("t", {"a": pxl.Image})
    t.insert(a=Image.new("RGB", (4, 4), "red"))
    (f,) = _files(tmp_path / "c.pxl.media")
    from pxlite import writes

    real = writes.finish_deletes
    writes.finish_deletes = lambda *a, **k: None  # the process "dies" before deleting the file
    try:
        t.delete()
    finally:
        writes.finish_deletes = real
    assert f.exists()
    db.close()
    pxl.connect(p).close()
    assert not f.exists()


def test_deferred_delete_keeps_a_file_reused_meanwhile(tmp_path, monkeypatch):
    """Between a delete's commit and its file deletion another writer reuses the identical file
    (content addressing): the file must stay, since a committed row names it again."""
    from pxlite import faults

    p = tmp_path / "r.pxl"
    a, b = pxl.connect(p), pxl.connect(p)
    ta = a.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    red = Image.new("RGB", (4, 4), "red")
    ta.insert(image=red, k=1)
    (f,) = _files(tmp_path / "r.pxl.media")
    tb = b.get_table("t")
    fired = []

    def point(name: str) -> None:
        if name == "after_commit" and not fired:
            fired.append(name)
            tb.insert(image=red, k=2)  # the other writer, in the gap

    monkeypatch.setattr(faults, "point", point)
    ta.delete(where=ta.k == 1)
    assert fired and f.exists()
    assert tb.collect()[0]["image"].size == (4, 4)
    assert a.db.query("SELECT count(*) FROM px_pending_deletes")[0][0] == 0
    assert pxl.check(db=a).ok


def test_abort_cleanup_runs_under_the_write_lock(db, monkeypatch):
    """Files an aborted write created are deleted holding the write lock (after the rows that
    named them were rolled back), so no other writer can name one meanwhile unseen."""
    from pxlite.storage.local import LocalBackend

    seen = []
    real = LocalBackend.delete

    def delete(self, uri):
        seen.append(not db.db.sqlite.getautocommit())  # True: inside a write transaction
        real(self, uri)

    monkeypatch.setattr(LocalBackend, "delete", delete)
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    with pytest.raises(ComputeError):
        t.insert([{"image": Image.new("RGB", (4, 4), "red"), "n": 1}, {"n": "bad"}])
    assert seen == [True] and not _files(db.media_dir)
