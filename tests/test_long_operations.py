"""Long operations compute outside the write lock, commit briefly, and resume where they stopped.

A computed column over many rows is added in batches: other processes connect, read and write
meanwhile; the column stays invisible (pending) until complete; an interruption (an error, Ctrl-C,
SIGKILL) leaves it pending with the committed batches, and running the same call again resumes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import apsw
import job_children
import pytest
from PIL import Image
from udfs.sample import slow_flip  # the child's UDF: this process resumes its column

import pxlite as pxl
from pxlite import catalog, compute
from pxlite import db as dbmod
from pxlite import progress as progress_mod
from pxlite.errors import BusyError, ComputeError, NotFoundError, SchemaError

ROOT = Path(__file__).resolve().parents[1]
N = 40


def _images(folder: Path, n: int = N) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{i:03}.png"
        Image.new("RGB", (6 + i % 5, 4), (i * 6 % 256, 90, 200)).save(p)
        out.append(str(p))
    return out


def _table(tmp_path: Path, n: int = N) -> tuple[Path, list[str]]:
    db_path = tmp_path / "long.pxl"
    paths = _images(tmp_path / "in", n)
    with pxl.connect(db_path) as db:
        t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
        t.insert([{"image": p, "k": i} for i, p in enumerate(paths)])
    return db_path, paths


def _cells(db_path: Path, column: str = "rot") -> list:
    """The column's cells by rowid: the content hash its file is named by, and its error."""
    with pxl.connect(db_path) as db:
        meta = catalog.load_table(db.db, "t")
        c = meta.column(column)
        return [(r[0] and r[0].rsplit("/", 1)[-1], r[1]) for r in db.db.query(
            f"SELECT {c.sql}, {c.sql_et} FROM {meta.sql} ORDER BY _rowid")]


CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import pxlite as pxl
    from pxlite import compute
    from udfs.sample import slow_flip
    compute.BATCH_SECONDS = 0.05          # many small batches
    args = json.loads(sys.argv[1])
    os.environ["PXLITE_TEST_UDF_SLEEP"] = str(args["sleep"])

    db = pxl.connect(args["db"])
    t = db.get_table(args.get("table", "t"))
    print("started", flush=True)
    try:
        st = t.add_computed_column(rot=slow_flip(t.image))
        print("done", st.num_rows, flush=True)
    except KeyboardInterrupt as e:
        print("interrupted:", e, flush=True)
        sys.exit(3)
""")


def _child(tmp_path: Path, db_path: Path, sleep: float, table: str = "t") -> subprocess.Popen:
    return job_children.start(
        tmp_path, CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")),
        json.dumps({"db": str(db_path), "sleep": sleep, "table": table}))


def _wait_for_progress(db_path: Path, at_least: int) -> None:
    job_children.wait_for_progress(db_path, at_least)


def test_others_read_and_write_while_a_column_is_added(tmp_path):
    db_path, paths = _table(tmp_path)
    child = _child(tmp_path, db_path, sleep=0.05)
    try:
        _wait_for_progress(db_path, 4)
        # another process (this one) connects, reads, inserts, and sees no half column
        t0 = time.monotonic()
        with pxl.connect(db_path) as db:
            t = db.get_table("t")
            assert t.columns() == ["image", "k"]
            assert "pending" in repr(t)
            assert t.where(t.k == 3).collect()[0]["k"] == 3
            t.insert(image=paths[0], k=99)
            with pytest.raises(NotFoundError, match="pending"):
                t.select(t.rot).collect()
            other = db.create_table("other", {"n": pxl.Int})
            other.insert(n=1)
        assert time.monotonic() - t0 < 20  # not blocked for the add's whole run
        assert child.poll() is None, "the add finished before the other writer ran"
    finally:
        _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        assert t.columns() == ["image", "k", "rot"] and "pending" not in repr(t)
        # the row inserted meanwhile got its cell too
        assert t.where(t.rot.is_null()).count() == 0 and t.count() == N + 1
        assert not catalog.jobs(db.db)
        assert pxl.check(db=db).ok


def test_two_long_operations_on_two_tables_interleave(tmp_path):
    db_path, paths = _table(tmp_path, 24)
    with pxl.connect(db_path) as db:
        u = db.create_table("u", {"image": pxl.Image, "k": pxl.Int})
        u.insert([{"image": p, "k": i} for i, p in enumerate(paths)])
    a = _child(tmp_path, db_path, sleep=0.03, table="t")
    b = _child(tmp_path, db_path, sleep=0.03, table="u")
    seen: set[str] = set()
    while a.poll() is None or b.poll() is None:  # both jobs are seen running at once
        with pxl.connect(db_path) as db:
            running = {j.spec.get("name", "") + str(j.table_id) for j in catalog.jobs(db.db)}
        if len(running) == 2:
            seen.add("both")
        time.sleep(0.05)
    assert a.returncode == 0 and b.returncode == 0, (a.communicate(), b.communicate())
    assert "both" in seen, "the second add waited for the first instead of interleaving"
    with pxl.connect(db_path) as db:
        for name in ("t", "u"):
            t = db.get_table(name)
            assert t.where(t.rot.is_null()).count() == 0


def test_ctrl_c_stops_after_the_batch_and_the_same_call_resumes(tmp_path):
    db_path, _ = _table(tmp_path)
    child = _child(tmp_path, db_path, sleep=0.05)
    _wait_for_progress(db_path, 4)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert "pending" in out and "run the same add_computed_column(rot=...) again" in out, out
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        job = catalog.jobs(db.db)[0]
        assert 4 <= job.done_rows < N
        assert f"pending {job.done_rows}/{N}" in repr(t)
        with pytest.raises(NotFoundError, match=r"run the same add_computed_column\(rot=\.\.\.\)"):
            _ = t.rot
        done_before = job.done_rows
        st = t.add_computed_column(rot=slow_flip(t.image))  # the same call: resumes
        assert st.num_rows == N - done_before
        assert t.where(t.rot.is_null()).count() == 0 and pxl.check(db=db).ok
    resumed = _cells(db_path)
    with pxl.connect(db_path) as db:  # computed again in one go: the same cells
        t = db.get_table("t")
        t.drop_column("rot")
        t.add_computed_column(rot=slow_flip(t.image))
    assert _cells(db_path) == resumed


def test_a_killed_add_resumes_with_only_the_missing_rows(tmp_path):
    db_path, _ = _table(tmp_path)
    child = _child(tmp_path, db_path, sleep=0.05)
    _wait_for_progress(db_path, 6)
    child.kill()
    child.communicate(timeout=30)
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        done = catalog.jobs(db.db)[0].done_rows
        assert "pending" in repr(t)
        with pytest.raises(SchemaError, match="another expression"):
            t.add_computed_column(rot=t.image.rotate(90))  # not the interrupted call
        st = t.add_computed_column(rot=slow_flip(t.image))
        assert st.num_rows == N - done
        assert pxl.check(db=db).ok  # files of the batch the kill lost were swept


def test_abort_after_committed_batches_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(compute, "BATCH_SECONDS", 0.0)  # one row per batch: many commits
    db_path, paths = _table(tmp_path, 12)
    Path(paths[9]).write_bytes(b"\x89PNG\r\n\x1a\n broken")  # the 10th row fails
    before = {p for p in (tmp_path / "long.pxl.media").rglob("*") if p.is_file()}
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        with pytest.raises(ComputeError, match="row 10"):
            t.add_computed_column(rot=t.image.rotate(90), on_error="abort")
        assert t.columns() == ["image", "k"] and "rot" not in repr(t)
        assert not catalog.jobs(db.db)
        assert pxl.check(db=db).ok
    after = {p for p in (tmp_path / "long.pxl.media").rglob("*") if p.is_file()}
    assert after == before  # not one file of the 9 committed cells is left


def test_progress_moves_per_row_and_starts_at_once(tmp_path, monkeypatch):
    class Bar:
        def __init__(self) -> None:
            self.updates: list[int] = []

        def update(self, n: int) -> None:
            self.updates.append(n)

        def close(self) -> None:
            pass

    bars: list[tuple[int, Bar]] = []

    def progress(count, desc, settings, *, initial=0, unit="row"):
        bar = Bar()
        bars.append((count(), bar))
        return bar

    monkeypatch.setattr(progress_mod, "bar", progress)
    db_path, _ = _table(tmp_path, 10)
    with pxl.connect(db_path) as db:
        t = db.get_table("t")
        t.add_computed_column(rot=t.image.rotate(90))
    (total, bar), = bars
    assert total == 10 and bar.updates == [1] * 10


def test_connect_needs_no_write_lock_and_busy_is_a_pxlite_error(tmp_path, monkeypatch):
    db_path, _ = _table(tmp_path, 3)
    with pxl.connect(db_path) as db, db.db.transaction():
        catalog.start_job(db.db, 1, "add_computed_column", {"name": "rot"}, 3, 4242, "elsewhere")
    holder = apsw.Connection(str(db_path))
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        t0 = time.monotonic()
        db = pxl.connect(db_path)      # no write at connect time: not blocked
        assert time.monotonic() - t0 < 5
        assert db.get_table("t").count() == 3
        monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 200)
        db.db.sqlite.set_busy_timeout(200)
        with pytest.raises(BusyError) as info:
            db.get_table("t").insert(k=5)
        msg = str(info.value)
        assert "busy" in msg and "add_computed_column on 't' (pid 4242 on elsewhere" in msg, msg
        assert "try again" in msg
        db.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
