"""Copies opened where the original is not visible, stale backups and restores: which files a
database may delete when it cannot tell a move from a copy (issue 17, points 1, 2 and 4).

"Another machine" is simulated by renaming the original's folder away before the copy is first
opened: the path the copy's catalog last saw does not exist, as on a colleague's laptop.

* 1: a copy of a pair whose computed column writes outside the pair (a shared folder or bucket),
  opened where its original's path does not exist, took itself for the original moved and
  deleted the original's files. When in doubt it must behave as a copy: read everything, delete
  nothing outside its own media folder, say so once (``pxl.OwnershipWarning``), report what it
  keeps (``check().kept``) and let the user claim the locations (``db.claim_locations()``,
  ``pxlite claim --db``) when it really was a move.
* 2: ``pxlite check --fix`` on a stale backup, after the live pair was renamed, deleted the
  files of the live database's newer rows.
* 4: a backup restored by rename (a new file at the same path): its own media folder was taken
  as shared, so deleting every row and ``check --fix`` left every file behind while ``check``
  said ok.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import OwnershipWarning

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def _make(folder: Path, dest: Path | None, rows: int = 4) -> Path:
    """``folder/t.pxl``: ``rows`` PIL images (in its media folder) and the computed column
    ``rot`` written to ``dest`` (None: the media folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "t.pxl"
    with pxl.connect(db_path) as db:
        t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": Image.new("RGB", (8 + i, 8), COLORS[i]), "k": i}
                  for i in range(rows)])
        t.add_computed_column(rot=t.image.rotate(90),
                              destination=str(dest) if dest is not None else None)
    return db_path


def _insert_more(db_path: Path, ks: range) -> None:
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        t.insert([{"image": Image.new("RGB", (20 + k, 6), COLORS[k % len(COLORS)]), "k": k}
                  for k in ks])


def _media(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".media")


def _files(*folders: Path) -> set[str]:
    """Every file under the folders, as file:// URIs (how check() reports them)."""
    return {p.as_uri() for f in folders if f.exists() for p in f.rglob("*") if p.is_file()}


def _copy_pair(src: Path, dst: Path) -> None:
    """``cp -r``: the database file and its media folder (new files, new inodes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    shutil.copytree(_media(src), _media(dst))


def _sizes(db_path: Path) -> list[tuple[Any, Any]]:
    """Every row's image and rot sizes, reading every file."""
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        return [(r["image"].size, r["rot"].size)
                for r in t.select(t.image, t.rot).order_by(t.k).collect()]


def _ownership_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    kind = getattr(pxl, "OwnershipWarning", None)  # (read after the data checks: see below)
    assert kind is not None, "pxlite has no OwnershipWarning"
    assert issubclass(kind, UserWarning)
    return [str(w.message) for w in caught if issubclass(w.category, kind)]


def _connect_recording(db_path: Path) -> tuple[pxl.Connection, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = pxl.connect(db_path)
    return db, caught


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pxlite.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PXLITE_HOME": str(home)})


# ---- 1. a copy opened where its original is not visible ------------------------------------------
def test_a_copy_opened_without_its_original_never_deletes_its_originals_files(tmp_path):
    a_dir, b_dir, shared = tmp_path / "A", tmp_path / "B", tmp_path / "shared"
    a_db = _make(a_dir, shared)
    want = _sizes(a_db)
    shared_files = _files(shared)
    assert len(shared_files) == 4
    _copy_pair(a_db, b_dir / "t.pxl")
    away = tmp_path / "A-on-the-other-machine"
    a_dir.rename(away)  # the original's path does not exist where the copy is opened

    db, caught = _connect_recording(b_dir / "t.pxl")
    try:
        assert _sizes(b_dir / "t.pxl") == want  # it reads everything
        t = db.get_table("t")
        assert t.delete().num_rows == 4
        pxl.check(db=db, fix=True)
        gone = shared_files - _files(shared)
        assert not gone, (f"the copy deleted {len(gone)} files in {shared} that its original's "
                          "rows name")
        # Its own media folder (the copy's, beside its file) it cleans as always.
        assert _files(_media(b_dir / "t.pxl")) == set()
        report = pxl.check(db=db)
        assert {u for u, _ in report.kept} == shared_files, str(report)
        assert all(isinstance(why, str) and why for _, why in report.kept)
        assert not report.ok, "check says ok while files pxlite wrote are unreferenced"
        assert "kept" in str(report).lower() and "claim" in str(report), str(report)
    finally:
        db.close()

    # It said so once, naming the location and how to claim it.
    said = _ownership_warnings(caught)
    assert len(said) == 1, said
    assert str(shared) in said[0] or shared.as_uri() in said[0], said[0]
    assert "claim" in said[0], said[0]
    db, caught = _connect_recording(b_dir / "t.pxl")
    db.close()
    assert _ownership_warnings(caught) == [], "the notice is given once, not at every open"

    away.rename(a_dir)  # the original, back where it was: nothing of it was lost
    assert _files(shared) == shared_files
    assert _sizes(a_db) == want
    with pxl.connect(a_db) as db:
        assert pxl.check(db=db).ok


@pytest.mark.parametrize("how", ["api", "cli"])
def test_a_moved_database_claims_its_locations_and_cleans_them_again(tmp_path, how):
    a_dir, b_dir, shared = tmp_path / "A", tmp_path / "B", tmp_path / "shared"
    a_db = _make(a_dir, shared)
    want = _sizes(a_db)
    _copy_pair(a_db, b_dir / "t.pxl")
    shutil.rmtree(a_dir)  # moved to another machine: the original is gone for good
    b_db = b_dir / "t.pxl"

    if how == "api":
        db, caught = _connect_recording(b_db)
        assert len(_ownership_warnings(caught)) == 1
        claimed = db.claim_locations()
        db.close()
        assert isinstance(claimed, list), claimed
        assert any(p.rstrip("/") == shared.as_uri() for p in claimed), claimed
    else:
        out = _cli("claim", "--db", str(b_db), home=tmp_path / "home")
        assert out.returncode == 0, out.stderr
        assert shared.as_uri() in out.stdout, out.stdout
        assert "Traceback" not in out.stderr, out.stderr

    db, caught = _connect_recording(b_db)
    try:
        assert _ownership_warnings(caught) == [], "claimed: nothing left to say"
        assert _sizes(b_db) == want
        t = db.get_table("t")
        t.delete(where=t.k < 2)
        report = pxl.check(db=db)
        assert report.ok and report.kept == [], str(report)
    finally:
        db.close()
    # Deletes in the claimed location work again: the deleted rows' files went.
    assert len(_files(shared)) == 2
    assert len(_files(_media(b_db))) == 2


# ---- 2. a stale backup after the live pair was renamed -------------------------------------------
def test_check_fix_on_a_stale_backup_after_the_live_pair_was_renamed(tmp_path):
    rot = tmp_path / "rot"
    db_path = _make(tmp_path, rot)
    shutil.copy2(db_path, tmp_path / "bak.pxl")  # cp t.pxl bak.pxl
    _insert_more(db_path, range(10, 13))  # newer rows, newer files in rot/
    live = tmp_path / "live.pxl"
    db_path.rename(live)  # the live pair, renamed (the README says that keeps working)
    _media(db_path).rename(_media(live))
    live_files = _files(_media(live), rot)
    assert len(live_files) == 14

    out = _cli("check", "--fix", "--db", str(tmp_path / "bak.pxl"), home=tmp_path / "home")
    assert "Traceback" not in out.stderr, out.stderr
    gone = live_files - _files(_media(live), rot)
    assert not gone, (f"check --fix on the backup deleted {len(gone)} files the live database "
                      f"names:\n{out.stdout}")
    # The backup reports what it keeps, and how to claim it.
    assert "kept" in out.stdout.lower() and "pxlite claim" in out.stdout, out.stdout
    assert out.returncode != 0, out.stdout  # not ok while files pxlite wrote are unreferenced

    assert len(_sizes(live)) == 7
    with pxl.connect(live) as db:
        assert pxl.check(db=db).ok


# ---- 4. a backup restored by rename --------------------------------------------------------------
@pytest.mark.parametrize("restore", ["mv", "cp"])
def test_a_restored_backup_cleans_its_own_media_folder(tmp_path, restore):
    db_path = _make(tmp_path, None)  # everything in the media folder
    shutil.copy2(db_path, tmp_path / "bak.pxl")  # cp t.pxl bak.pxl
    _insert_more(db_path, range(10, 13))  # more work
    assert len(_files(_media(db_path))) == 14
    if restore == "mv":
        os.replace(tmp_path / "bak.pxl", db_path)  # mv bak.pxl t.pxl: a new file, same path
    else:
        shutil.copyfile(tmp_path / "bak.pxl", db_path)  # cp bak.pxl t.pxl: same file

    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        assert t.count() == 4
        t.delete()
        pxl.check(db=db, fix=True)
        pxl.check(db=db, fix=True)
        report = pxl.check(db=db)
    left = _files(_media(db_path))
    assert not left, (f"{len(left)} files remain in the restored database's own media folder "
                      f"after deleting every row and check --fix; check said ok={report.ok}, "
                      f"orphans={len(report.orphans)}")
    assert report.ok, str(report)


@pytest.mark.parametrize("restore", ["mv", "cp"])
def test_a_restored_backup_never_leaves_unreported_files_outside_its_folder(tmp_path, restore):
    rot = tmp_path / "rot"
    db_path = _make(tmp_path, rot)
    shutil.copy2(db_path, tmp_path / "bak.pxl")
    _insert_more(db_path, range(10, 13))
    if restore == "mv":
        os.replace(tmp_path / "bak.pxl", db_path)
    else:
        shutil.copyfile(tmp_path / "bak.pxl", db_path)

    # A file moved over the original is another file (another inode): pxlite says so once.
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        db = pxl.connect(db_path)
    moved = [w for w in said if issubclass(w.category, OwnershipWarning)]
    assert len(moved) == (1 if restore == "mv" else 0), [str(w.message) for w in said]
    with db:
        t = db.get_table("t")
        t.delete()
        pxl.check(db=db, fix=True)
        report = pxl.check(db=db)
        assert _files(_media(db_path)) == set(), "its own media folder was not cleaned"
        left = _files(rot)
        if left:
            # Kept (it cannot tell whether another database names them): reported, never ok.
            assert not report.ok, f"check says ok while {len(left)} files remain in {rot}"
            assert left <= {u for u, _ in report.kept}, str(report)
            assert "claim" in str(report), str(report)
            db.claim_locations()
            pxl.check(db=db, fix=True)
            report = pxl.check(db=db)
        assert _files(rot) == set(), str(report)
        assert report.ok, str(report)
