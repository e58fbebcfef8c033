"""Copies, moves, backups, aliases and references: which files a database may delete.

Each test here reproduces a way ordinary use once lost data (issue 8): a copied database deleting
its original's files, a backup's ``check --fix`` deleting the live database's new files,
``move_media`` onto another spelling of the same folder, ``drop_table`` deleting files another
table names, a column named like a Table attribute turning a filtered delete into "delete all",
a failed replace of a computed column, lossy copies of media values, a FIFO as a media value, a
crafted location row, and a symlink out of a location.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import SchemaError
from pxlite.places import Places

COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]


def _make(tmp_path: Path, name: str = "t.pxl", rows: int = 4) -> tuple[Path, Path]:
    """A database with PIL images in its media folder and a computed column in ``rot/``."""
    db_path = tmp_path / name
    rot = tmp_path / "rot"
    tmp_path.mkdir(parents=True, exist_ok=True)  # connect() creates no missing folder
    with pxl.connect(db_path) as db:
        t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": Image.new("RGB", (8 + i, 8), c), "k": i}
                  for i, c in enumerate(COLORS[:rows])])
        t.add_computed_column(rot=t.image.rotate(90), destination=str(rot))
    return db_path, rot


def _files(*folders: Path) -> set[Path]:
    return {p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()}


def _copy_db(src: Path, dst: Path, media: bool) -> None:
    shutil.copy2(src, dst)
    if media:
        shutil.copytree(src.with_name(src.name + ".media"), dst.with_name(dst.name + ".media"))


def _sizes(db_path: Path) -> list[tuple[int, int]]:
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        return [r["image"].size for r in t.select(t.image).order_by(t.k).collect()]


@pytest.mark.parametrize("media", [False, True], ids=["db-only", "with-media-folder"])
def test_a_copy_never_deletes_its_originals_files(tmp_path, media):
    db_path, rot = _make(tmp_path)
    original = _files(db_path.with_name("t.pxl.media"), rot)
    assert len(original) == 8
    copy = tmp_path / "copy.pxl"
    _copy_db(db_path, copy, media)
    with pxl.connect(copy) as db:
        t = db.get_table("t")
        t.delete(where=t.k < 2)
        report = pxl.check(db=db, fix=True)
        assert not report.fixed
        db.drop_table("t")
    assert _files(db_path.with_name("t.pxl.media"), rot) == original
    assert _sizes(db_path) == [(8, 8), (9, 8), (10, 8), (11, 8)]
    with pxl.connect(db_path) as db:
        assert pxl.check(db=db).ok


def test_a_copied_pair_works_on_its_own_files(tmp_path):
    db_path, rot = _make(tmp_path)
    copy = tmp_path / "copy.pxl"
    _copy_db(db_path, copy, media=True)
    with pxl.connect(copy) as db:
        t = db.get_table("t")
        urls = [r["image_fileurl"] for r in t.select(t.image.fileurl).collect()]
        assert all(u.startswith((tmp_path / "copy.pxl.media").as_uri()) for u in urls)
        assert t.select(t.image).order_by(t.k).collect()[0]["image"].size == (8, 8)
        t.delete(where=t.k == 0)
        # rot/ was recorded by the original: the copy keeps row 0's rotated file there (the
        # original names it) and says so; check never says ok while such a file exists.
        report = pxl.check(db=db)
        assert [why for _, why in report.kept] == ["another database may name it"]
        assert report.kept[0][0].startswith(rot.as_uri()) and not report.ok
        assert "pxlite claim --db" in str(report) and not report.orphans
    # The copy deleted its own copy of row 0's image; the original keeps its own.
    assert len(_files(tmp_path / "copy.pxl.media")) == 3
    assert len(_files(tmp_path / "t.pxl.media")) == 4
    assert len(_files(rot)) == 4  # rot/ was recorded by the original: the copy never cleans it
    assert _sizes(db_path)[0] == (8, 8)


def test_a_copy_only_of_the_database_file_reports_its_media_missing(tmp_path):
    db_path, _ = _make(tmp_path)
    _copy_db(db_path, tmp_path / "copy.pxl", media=False)
    with pxl.connect(tmp_path / "copy.pxl") as db:
        report = pxl.check(db=db, fix=True)
        assert len(report.missing) == 4 and not report.fixed
        assert all(str(tmp_path / "copy.pxl.media") in m.uri for m in report.missing)
    assert len(_files(tmp_path / "t.pxl.media")) == 4


def test_a_moved_pair_keeps_working_and_owns_its_files(tmp_path):
    db_path, rot = _make(tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(db_path, moved / "t.pxl")
    shutil.move(db_path.with_name("t.pxl.media"), moved / "t.pxl.media")
    with pxl.connect(moved / "t.pxl") as db:
        t = db.get_table("t")
        assert t.select(t.image).order_by(t.k).collect()[0]["image"].size == (8, 8)
        assert t.select(t.image.fileurl).collect()[0]["image_fileurl"].startswith(
            (moved / "t.pxl.media").as_uri())
        assert pxl.check(db=db).ok
        t.delete(where=t.k == 0)
    # Moved, not copied (the file it was opened as is gone): it still owns rot/ too.
    assert len(_files(moved / "t.pxl.media")) == 3 and len(_files(rot)) == 3


def test_check_fix_on_a_stale_backup_spares_the_live_databases_files(tmp_path):
    db_path, rot = _make(tmp_path)
    shutil.copy2(db_path, tmp_path / "bak.pxl")  # a backup of the database file
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        t.insert([{"image": Image.new("RGB", (20, 20), "white"), "k": 9}])
    live = _files(db_path.with_name("t.pxl.media"), rot)
    assert len(live) == 10
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "check", "--fix", "--db",
                          str(tmp_path / "bak.pxl")], capture_output=True, text=True,
                         env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")})
    assert "Traceback" not in out.stderr, out.stderr
    assert _files(db_path.with_name("t.pxl.media"), rot) == live
    with pxl.connect(db_path) as db:
        assert pxl.check(db=db).ok


def test_a_copy_sharing_its_originals_media_folder_never_cleans_it(tmp_path):
    db_path, _ = _make(tmp_path)
    shutil.copy2(db_path, tmp_path / "copy.pxl")
    os.symlink(tmp_path / "t.pxl.media", tmp_path / "copy.pxl.media")
    with pxl.connect(tmp_path / "copy.pxl") as db:
        t = db.get_table("t")
        assert t.count() == 4
        t.delete()
        pxl.check(db=db, fix=True)
    assert len(_files(tmp_path / "t.pxl.media")) == 4
    assert _sizes(db_path)[0] == (8, 8)


def test_identity_is_recorded_and_survives_reopening(tmp_path):
    db_path, _ = _make(tmp_path)
    with pxl.connect(db_path) as db:
        first = catalog.get_meta(db.db, "db_id")
        assert first and db.ownership.db_id == first and db.ownership.owns_media
    with pxl.connect(db_path) as db:
        assert catalog.get_meta(db.db, "db_id") == first
    shutil.copy2(db_path, tmp_path / "c.pxl")
    with pxl.connect(tmp_path / "c.pxl") as db:
        assert db.ownership.db_id not in ("", first)


def test_schema_1_database_is_migrated_to_relative_references(tmp_path):
    db_path, _ = _make(tmp_path)
    media = db_path.with_name("t.pxl.media").as_uri() + "/"
    with pxl.connect(db_path) as db:  # turn it into what pxlite 0.1 wrote
        meta = catalog.load_table(db.db, "t")
        col = meta.column("image")
        with db.db.transaction():
            db.db.execute(f"UPDATE {meta.sql} SET {col.sql} = ? || substr({col.sql}, 7)",
                          (media,))
            db.db.execute("UPDATE px_media_locations SET prefix = ? WHERE prefix = 'media:'",
                          (media,))
            db.db.execute("DELETE FROM px_meta")
            db.db.execute("ALTER TABLE px_media_locations DROP COLUMN owner")
            db.db.execute("ALTER TABLE px_columns DROP COLUMN pending")
            db.db.execute("ALTER TABLE px_columns DROP COLUMN stored")
            db.db.execute("DROP TABLE px_jobs")
            db.db.execute("DROP TABLE px_table_uids")  # schema 3's
            db.db.execute("DROP TABLE px_writers")
            db.db.execute("ALTER TABLE px_tables DROP COLUMN primary_key")  # schema 4's
            db.db.execute("DROP TABLE px_indexes")  # schema 5's (its params: schema 7's)
            db.db.sqlite.pragma("user_version", 1)
    with pxl.connect(db_path) as db:
        meta = catalog.load_table(db.db, "t")
        raw = [r[0] for r in db.db.query(f"SELECT {meta.column('image').sql} FROM {meta.sql}")]
        assert all(u.startswith("media:") for u in raw)
        assert pxl.check(db=db).ok
        t = db.get_table("t")
        t.delete(where=t.k == 0)
    assert len(_files(tmp_path / "t.pxl.media")) == 3  # still owns what it wrote


# ---- move_media onto another spelling of the same place ------------------------------------------
@pytest.mark.parametrize("spelling", ["symlink", "double-slash", "file-uri"])
def test_move_media_onto_the_same_folder_is_a_no_op(tmp_path, spelling):
    db_path, rot = _make(tmp_path)
    if spelling == "symlink":
        os.symlink(rot, tmp_path / "alias")
        dest = str(tmp_path / "alias")
    elif spelling == "double-slash":
        dest = "/" + str(rot)
    else:
        dest = rot.as_uri() + "/"
    before = _files(rot)
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        st = t.move_media("rot", dest)
        assert st.num_rows == 0 and "nothing was moved" in str(st)
        assert pxl.check(db=db).ok
        assert t.select(t.rot).order_by(t.k).collect()[0]["rot"].size == (8, 8)
    assert _files(rot) == before


def test_move_media_never_releases_an_original_its_copy_is(tmp_path, monkeypatch):
    """Whatever the spelling, a copy that turns out to be the original file keeps it."""
    from pxlite import maintenance

    db_path, rot = _make(tmp_path)
    before = _files(rot)
    # The planning's checks fooled: the verification before release must still hold.
    monkeypatch.setattr(maintenance, "_same_object", lambda a, b: False)
    monkeypatch.setattr(Places, "known_spelling", lambda self, meta, p: p)
    os.symlink(rot, tmp_path / "alias")
    with pxl.connect(db_path) as db, pytest.raises(pxl.errors.StorageError, match="same file"):
        db.get_table("t").move_media("rot", str(tmp_path / "alias"))
    assert _files(rot) == before
    monkeypatch.undo()
    with pxl.connect(db_path) as db:  # rot/ is now also recorded as alias/: still nothing lost
        report = pxl.check(db=db, fix=True)
        assert not report.fixed and not report.missing
    assert _files(rot) == before


@pytest.mark.parametrize("a,b,same", [
    ("r2://bkt/p/k.jpg", "https://acct.r2.cloudflarestorage.com/bkt/p/k.jpg", True),
    ("b2://bkt/p/k.jpg", "https://s3.eu-central-003.backblazeb2.com/bkt/p/k.jpg", True),
    ("az://cont/p/k.jpg", "https://acct.blob.core.windows.net/cont/p/k.jpg", True),
    ("wasbs://cont@acct.blob.core.windows.net/p/k.jpg", "az://cont/p/k.jpg", True),
    ("s3://bkt/p/k.jpg", "s3://bkt/q/k.jpg", False),
    ("gs://bkt/p/k.jpg", "gs://other/p/k.jpg", False),
])
def test_cloud_spellings_of_one_object_are_one_object(a, b, same):
    from pxlite.maintenance import _same_object

    assert _same_object(a, b) is same


# ---- drop keeps what other tables reference ------------------------------------------------------
@pytest.mark.parametrize("how", ["drop_table", "drop_column"])
def test_dropping_keeps_files_another_table_names(tmp_path, how):
    db_path, _ = _make(tmp_path)
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        favs = db.create_table("favs", {"image": pxl.Image})
        favs.insert([{"image": r["rot_fileurl"]} for r in t.select(t.rot.fileurl).collect()]
                    + [{"image": r["u"]} for r in t.select(u=t.image.fileurl).collect()])
        if how == "drop_table":
            db.drop_table("t")
        else:
            t.drop_column("rot")
        assert sorted(r["image"].size for r in favs.collect())[0] == (8, 8)
        assert pxl.check(db=db, fix=True).ok
        assert len(favs.collect()) == 8 and all(r["image"].load() is not None
                                                 for r in favs.collect())


# ---- where= of writes, and column names ----------------------------------------------------------
def test_a_where_that_is_not_a_condition_is_refused(tmp_path):
    db = pxl.connect(tmp_path / "w.pxl")
    t = db.create_table("t", {"n": pxl.Int, "label": pxl.String})
    t.insert([{"n": i, "label": str(i)} for i in range(3)])
    for bad in (True, 1 == 1, "n > 1", 1, t.n + 1, t.label):
        with pytest.raises(SchemaError, match="where"):
            t.delete(where=bad)
        with pytest.raises(SchemaError, match="where"):
            t.update({"label": "x"}, where=bad)
    with pytest.raises(SchemaError, match="delete\\(\\) without where"):
        t.delete(where=True)
    assert t.count() == 3 and {r["label"] for r in t.collect()} == {"0", "1", "2"}
    assert t.delete(where=t.n > 1).num_rows == 1
    assert t.delete().num_rows == 2


@pytest.mark.parametrize("name", ["delete", "insert", "columns", "select", "join", "group_by",
                                  "sample", "get_metadata"])
def test_column_names_that_shadow_table_attributes_are_refused(tmp_path, name):
    db = pxl.connect(tmp_path / "n.pxl")
    with pytest.raises(SchemaError, match=f"t.{name}"):
        db.create_table("t", {name: pxl.String})
    t = db.create_table("t", {"x": pxl.Int})
    with pytest.raises(SchemaError, match=f"t.{name}"):
        t.add_column(**{name: pxl.String})
    with pytest.raises(SchemaError, match=f"t.{name}"):
        t.add_computed_column(**{name: t.x + 1})
    with pytest.raises(SchemaError, match=f"t.{name}"):
        t.rename_column("x", name)
    assert t.columns() == ["x"]


# ---- replace is atomic ---------------------------------------------------------------------------
@pxl.udf
def _fail_on_wide(img: pxl.Image) -> pxl.Image:
    if img.width > 9:
        raise ValueError("too wide")
    return img.rotate(180)


def test_a_failed_replace_keeps_the_old_column_and_its_files(tmp_path):
    db_path, rot = _make(tmp_path)
    before = _files(rot)
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        with pytest.raises(pxl.errors.ComputeError, match="too wide"):
            t.add_computed_column(rot=_fail_on_wide(t.image), if_exists="replace",
                                  destination=str(rot))
        assert t.columns() == ["image", "k", "rot"]
        assert t.select(t.rot).order_by(t.k).collect()[0]["rot"].size == (8, 8)
        assert pxl.check(db=db).ok
        st = t.add_computed_column(rot=t.image.rotate(180), if_exists="replace")
        assert st.num_errors == 0 and t.columns() == ["image", "k", "rot"]
        assert "rotate(180)" in repr(t)
    assert not (_files(rot) & before)  # the replaced column's files were released


# ---- media values keep their bytes ---------------------------------------------------------------
def test_update_with_another_media_column_copies_the_reference(tmp_path):
    png = tmp_path / "noise.png"
    Image.effect_noise((32, 32), 90).convert("RGB").save(png)
    with pxl.connect(tmp_path / "u.pxl") as db:
        t = db.create_table("t", {"image": pxl.Image, "alt": pxl.Image})
        t.insert([{"image": Image.new("RGB", (4, 4)), "alt": str(png)}])
        t.update({"image": t.alt})
        meta = catalog.load_table(db.db, "t")
        raw = db.db.query(f"SELECT {meta.column('image').sql}, {meta.column('alt').sql} "
                          f"FROM {meta.sql}")[0]
        assert raw[0] == raw[1] == png.as_uri()
        assert t.collect()[0]["image"].tobytes() == Image.open(png).tobytes()


@pytest.mark.parametrize("mode,value", [("I;16", 40000), ("I", 100000), ("F", 0.25)])
def test_inserted_high_depth_images_keep_their_values(tmp_path, mode, value):
    img = Image.new(mode, (4, 4))
    img.putpixel((1, 1), value)
    with pxl.connect(tmp_path / "d.pxl") as db:
        t = db.create_table("t", {"image": pxl.Image})
        t.insert(image=img)
        back = t.collect()[0]["image"]
        assert back.getpixel((1, 1)) == value and back.getpixel((0, 0)) == 0


# ---- only regular files are media ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_path_is_refused_without_hanging(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "pipe.jpg"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    db = pxl.connect(tmp_path / "f.pxl")
    t = db.create_table("t", {"image": pxl.Image})
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            t.insert(image=str(path))
        except BaseException as e:  # handed to the test thread
            outcome.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(20)
    assert not th.is_alive(), "inserting a FIFO/device path hung"
    assert outcome and isinstance(outcome[0], pxl.errors.PxliteError), outcome
    assert ("named pipe" if kind == "fifo" else "device") in str(outcome[0])
    assert t.count() == 0


# ---- crafted locations and symlinks out of a location --------------------------------------------
def test_crafted_location_rows_are_ignored(tmp_path, monkeypatch):
    from pxlite.storage.local import LocalBackend

    db_path, _ = _make(tmp_path)
    with pxl.connect(db_path) as db, db.db.transaction():
        for uid, prefix in [("", "file:///"), ("abcdefabcdef", "file:///"),
                            ("abcdefabcdef", "file:///tmp/../"), ("abcdefabcdef", "s3:///")]:
            db.db.execute("INSERT INTO px_media_locations(table_uid, prefix, owner) "
                          "VALUES (?, ?, (SELECT value FROM px_meta WHERE key = 'db_id'))",
                          (uid, prefix))
    listed: list[str] = []
    real_list = LocalBackend.list
    monkeypatch.setattr(LocalBackend, "list",
                        lambda self, p: listed.append(p) or real_list(self, p))
    with pxl.connect(db_path) as db:
        assert pxl.check(db=db, fix=True).ok
    assert listed and all(p.count("/") > 4 for p in listed), listed


def test_a_symlink_out_of_a_location_is_never_followed(tmp_path):
    a_path, a_rot = _make(tmp_path / "a")
    a_files = _files(a_rot, a_path.with_name("t.pxl.media"))
    b_path, b_rot = _make(tmp_path / "b", rows=2)
    with pxl.connect(b_path) as db:
        uid = catalog.load_table(db.db, "t").uid
    with pxl.connect(a_path) as db:
        a_uid = catalog.load_table(db.db, "t").uid
    # B's table folder under its destination becomes a symlink to A's table folder.
    shutil.rmtree(b_rot / uid)
    os.symlink(a_rot / a_uid, b_rot / uid)
    assert len(a_files) == 8  # A's rot files sit under <uid>/3/, B's rot column id too
    with pxl.connect(b_path) as db:
        report = pxl.check(db=db, fix=True)
        assert not report.fixed
        db.drop_table("t")
    assert _files(a_rot, a_path.with_name("t.pxl.media")) == a_files
