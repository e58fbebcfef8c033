"""Two processes at once on one database: no file one operation commits is deleted under it, no
file of a dropped table is left behind unreported, no row misses a computed cell, no raw error
(issue 17, points 3, 5, 6, 7 and 8).

Every race here is forced, not hoped for: both sides are real processes (tests/race_helpers.py)
that pause at pxlite's named fault points (``file_written``: a file is stored, its row not yet
committed; ``after_commit``) and wait for a file the other side (or the test) creates, so each
test takes the same path on every run. No side ever waits inside the write lock.

* 3: A inserts [G, H] with on_error='abort' and fails on H; B inserts [G] meanwhile and finds
  G's output already stored (content addressing: the same key). A's undo must not delete the
  file B then commits: on S3 and Azure B used to commit a row naming a deleted object; on a
  local folder B failed with a misleading "destination folder ... removed or changed".
* 5: drop_table while another process's add_computed_column is computing: the adder's files
  written after the drop were left behind while check() said ok.
* 6: a column added by another process while an insert computes: the insert's rows used to
  commit with NULL in it.
* 7: one process deletes the row naming a picture while another inserts the same picture: the
  insert used to fail with "the destination folder ... was removed or changed".
* 8: two processes run the same add_computed_column: the loser used to get a raw
  apsw.ConstraintError instead of the error saying another process is computing the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from race_helpers import FAIL_WIDTH, reap, rot_or_fail, spawn, wait_until

import pxlite as pxl
from pxlite import catalog, storage

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def _sources(folder: Path, n: int, size: tuple[int, int] = (8, 8)) -> list[Path]:
    """``n`` one-colour PNG files of the user's (references: pxlite never deletes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"src{i}.png"
        Image.new("RGB", size, COLORS[i % len(COLORS)]).save(p)
        out.append(p)
    return out


def _files(*folders: Path) -> set[str]:
    return {p.as_uri() for f in folders if f.exists() for p in f.rglob("*") if p.is_file()}


def _kept(report: Any) -> set[str]:
    return {u for u, _ in report.kept}


# ---- 3. the cloud ledger window ------------------------------------------------------------------
@pytest.mark.parametrize("storage_target", ["local", "s3", "azure"], indirect=True)
def test_an_aborted_insert_never_deletes_a_file_another_insert_commits(storage_target, tmp_path):
    target = storage_target
    g = tmp_path / "g.png"
    Image.new("RGB", (8, 8), "red").save(g)
    h = tmp_path / "h.png"
    Image.new("RGB", (FAIL_WIDTH, 8), "blue").save(h)  # rot_or_fail fails on it
    db_path = tmp_path / "x.pxl"
    with pxl.connect(db_path, config=target.config) as conn:
        t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.add_computed_column(rot=rot_or_fail(t.image), destination=target.prefix)
    a_stored, b_found, a_exited = tmp_path / "a_stored", tmp_path / "b_found", tmp_path / "a_ex"
    # A stores G's output, then fails on H only once B has found G's output already there.
    a = spawn(tmp_path, "A", db_path, {"kind": "insert", "on_error": "abort", "rows": [
        {"k": 1, "image": {"file": str(g)}}, {"k": 2, "image": {"file": str(h)}}]},
        config=target.config, hooks=[{"point": "file_written", "nth": 1, "signal": a_stored}],
        fail_after=b_found)
    # B starts once A stored G's output; B commits only after A's abort has run to its end.
    b = spawn(tmp_path, "B", db_path, {"kind": "insert", "rows": [
        {"k": 3, "image": {"file": str(g)}}]}, config=target.config,
        hooks=[{"point": "file_written", "nth": 1, "signal": b_found, "wait": a_exited}],
        start_after=a_stored)
    try:
        ra = a.result()
        a_exited.touch()
        rb = b.result()
    finally:
        reap([a, b])
    assert not ra["ok"] and "fails on purpose" in ra["error"], ra
    assert b_found.exists(), f"B never stored G's output: {rb}"
    assert rb["ok"], f"B's insert failed: {rb['error']}"
    assert (rb["num_rows"], rb["num_errors"]) == (1, 0), rb

    with pxl.connect(db_path, config=target.config) as conn:
        t = conn.get_table("t")
        assert [r["k"] for r in t.select(t.k).collect()] == [3]
        meta = catalog.load_table(conn.db, "t")
        ((uri,),) = conn.db.query(f"SELECT {meta.column('rot').sql} FROM {meta.sql}")
        assert uri.startswith(target.prefix)  # outside the media folder: stored absolute
        there = storage.get_backend(uri, target.settings).exists(uri)
        assert there, (
            f"B committed 'Inserted 1 row with 0 errors' naming {uri}, which A's abort deleted")
        report = conn.check()
        assert report.missing == [], str(report)
        assert t.select(t.rot).collect()[0]["rot"].size == (8, 8)
        conn.check(fix=True)
        assert conn.check().ok


# ---- 5. drop_table during another process's add_computed_column ----------------------------------
def test_drop_table_during_another_process_add_leaves_no_file_unreported(tmp_path):
    src = _sources(tmp_path / "src", 6)
    db_path, dest = tmp_path / "x.pxl", tmp_path / "rot"
    with pxl.connect(db_path) as conn:
        t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": str(p), "k": i} for i, p in enumerate(src)])  # references
    writing, dropped = tmp_path / "writing", tmp_path / "dropped"
    # One compute thread; it stops after each file it stores until the table is dropped: the
    # drop lands between the adder's first file and the rest.
    adder = spawn(tmp_path, "adder", db_path, {"kind": "add", "name": "rot", "expr": "rotate90",
                                               "destination": str(dest)},
                  hooks=[{"point": "file_written", "nth": 1, "every": True, "signal": writing,
                          "wait": dropped}], single_thread=True)
    children = [adder]
    try:
        wait_until("the adder's first stored file", writing.exists, [adder])
        dropper = spawn(tmp_path, "dropper", db_path, {"kind": "drop_table"})
        children.append(dropper)
        rd = dropper.result()
        dropped.touch()
        ra = adder.result()
    finally:
        reap(children)
    assert rd["ok"], rd
    assert not ra["ok"] and ra["pxlite_error"], ra  # its table is gone: it cannot commit

    left = _files(dest, tmp_path / "x.pxl.media")
    with pxl.connect(db_path) as conn:
        assert conn.list_tables() == []
        report = conn.check()
        if left:
            assert not report.ok, (
                f"check() says ok while {len(left)} files the dropped table's adder wrote "
                f"remain:\n{report}")
            assert left <= set(report.orphans) | _kept(report), str(report)
        conn.check(fix=True)
        assert _files(dest, tmp_path / "x.pxl.media") == set(), "check(fix=True) left them"
        assert conn.check().ok
    assert all(p.exists() for p in src)  # the user's own files are references: untouched


# ---- 6. insert during another process's add_computed_column --------------------------------------
def test_an_insert_commits_the_columns_another_process_added_meanwhile(tmp_path):
    db_path = tmp_path / "x.pxl"
    with pxl.connect(db_path) as conn:
        t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": Image.new("RGB", (8, 8), c), "k": i}
                  for i, c in enumerate(["red", "green"])])
        t.add_computed_column(r180=t.image.rotate(180))
    paused, added = tmp_path / "paused", tmp_path / "added"
    # A stores its first file (outside the write lock), then waits until B's columns exist.
    a = spawn(tmp_path, "inserter", db_path, {"kind": "insert", "rows": [
        {"k": 10 + i, "image": {"color": c, "size": [10 + i, 8]}}
        for i, c in enumerate(["blue", "yellow", "purple"])]},
        hooks=[{"point": "file_written", "nth": 1, "signal": paused, "wait": added}])
    b = spawn(tmp_path, "adder", db_path, {"kind": "many", "ops": [
        {"kind": "add", "name": "w", "expr": "width"},
        {"kind": "add", "name": "rot", "expr": "rotate90"}]}, start_after=paused)
    try:
        rb = b.result()
        added.touch()
        ra = a.result()
    finally:
        reap([a, b])
    assert paused.exists(), "the insert never stored a file: the race did not happen"
    assert rb["ok"], rb
    assert ra["ok"], ra
    assert (ra["num_rows"], ra["num_errors"]) == (3, 0), ra

    with pxl.connect(db_path) as conn:
        t = conn.get_table("t")
        rows = t.select(t.k, t.w, t.rot, t.image).order_by(t.k).collect()
        assert [r["k"] for r in rows] == [0, 1, 10, 11, 12]
        empty = [r["k"] for r in rows if r["w"] is None or r["rot"] is None]
        assert not empty, (f"rows {empty} of the insert committed after the columns w and rot "
                           "were added, with NULL in them")
        assert all(r["w"] == r["image"].width for r in rows)
        assert [r["rot"].size for r in rows] == [r["image"].size for r in rows]
        assert conn.check().ok


# ---- 7. inserting and deleting identical pictures in two processes -------------------------------
def test_insert_and_delete_of_the_same_picture_in_two_processes(tmp_path):
    db_path = tmp_path / "x.pxl"
    with pxl.connect(db_path) as conn:
        t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert(image=Image.new("RGB", (8, 8), "red"), k=0)
    media_before = _files(tmp_path / "x.pxl.media")
    assert len(media_before) == 1
    stored, deleted = tmp_path / "stored", tmp_path / "deleted"
    # The inserter stores the same picture (its file exists already: found, not created), then
    # waits while the other process deletes the only row naming that file.
    a = spawn(tmp_path, "inserter", db_path, {"kind": "insert", "rows": [
        {"k": 1, "image": {"color": "red", "size": [8, 8]}}]},
        hooks=[{"point": "file_written", "nth": 1, "signal": stored, "wait": deleted}])
    d = spawn(tmp_path, "deleter", db_path, {"kind": "delete", "k": 0}, start_after=stored)
    try:
        rd = d.result()
        deleted.touch()
        ra = a.result()
    finally:
        reap([a, d])
    assert stored.exists(), "the insert never stored its file: the race did not happen"
    assert rd["ok"] and rd["num_rows"] == 1, rd
    assert ra["ok"], f"the insert failed: {ra['error']}"
    assert (ra["num_rows"], ra["num_errors"]) == (1, 0), ra

    with pxl.connect(db_path) as conn:
        t = conn.get_table("t")
        rows = t.select(t.k, t.image, u=t.image.fileurl).collect()
        assert [r["k"] for r in rows] == [1]
        assert rows[0]["u"] in media_before  # the same content-addressed file
        assert rows[0]["image"].size == (8, 8)
        conn.check(fix=True)
        assert conn.check().ok
        assert _files(tmp_path / "x.pxl.media") == media_before


# ---- 8. the same add_computed_column in two processes --------------------------------------------
def test_two_processes_adding_the_same_column_one_is_told_why(tmp_path):
    src = _sources(tmp_path / "src", 3)
    db_path, dest = tmp_path / "x.pxl", tmp_path / "rot"
    with pxl.connect(db_path) as conn:
        t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": str(p), "k": i} for i, p in enumerate(src)])
    first_paused, go_first = tmp_path / "first_paused", tmp_path / "go_first"
    second_computing, first_exited = tmp_path / "second_computing", tmp_path / "first_exited"
    op = {"kind": "add", "name": "rot", "expr": "rotate90", "destination": str(dest)}
    # The first plans the column, commits its first transaction and waits (outside the lock)
    # until the second is computing the same column; then it goes on.
    first = spawn(tmp_path, "first", db_path, op, hooks=[
        {"point": "after_commit", "nth": 1, "signal": first_paused, "wait": go_first}])
    second = spawn(tmp_path, "second", db_path, op, start_after=first_paused, hooks=[
        {"point": "file_written", "nth": 1, "signal": second_computing, "wait": first_exited}])
    try:
        wait_until("the first adder's pause", first_paused.exists, stop_if_exited=[first])
        first_paused.touch()  # (in case the first ended without pausing: the second starts)
        wait_until("the second adder computing", second_computing.exists,
                   stop_if_exited=[second])
        go_first.touch()
        r1 = first.result()
        first_exited.touch()
        r2 = second.result()
    finally:
        reap([first, second])
    outcomes = {"first": r1, "second": r2}
    won = [n for n, r in outcomes.items() if r["ok"]]
    lost = [n for n, r in outcomes.items() if not r["ok"]]
    assert len(won) == 1 and len(lost) == 1, outcomes
    loser = outcomes[lost[0]]
    assert not any(c.startswith("apsw.") for c in loser["mro"]), (
        f"the {lost[0]} adder got a raw error: {loser['error']}")
    assert loser["pxlite_error"], loser
    assert "being computed by another process" in loser["error"], loser["error"]
    assert outcomes[won[0]]["num_rows"] == 3, outcomes

    with pxl.connect(db_path) as conn:
        t = conn.get_table("t")
        rots = [r["rot"] for r in t.select(t.rot).order_by(t.k).collect()]
        assert [r.size for r in rots] == [(8, 8)] * 3
        assert conn.check().ok
