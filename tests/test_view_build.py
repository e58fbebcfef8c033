"""Building a view over existing rows is a resumable long operation: brief commits, a killed or
interrupted build resumes with the base rows still missing (the files of the lost batch swept),
base rows written meanwhile end up right, and a view being built is not read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import job_children
import pytest

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import NotFoundError
from pxlite.functions.video import frame_iterator
from pxlite.views import build as view_build
from tools.mediagen import frame_number, write_video

ROOT = Path(__file__).resolve().parents[1]
N = 8  # videos


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("clips")
    return [write_video(d / f"c{i}.mp4", 20 + 2 * i, fps=10, gop=10, start=3 * i)
            for i in range(N)]


def _expected(clips: list[Path]) -> list[int]:
    out = []
    for c in clips:
        with frame_iterator(str(c), fps=2) as it:
            out += [r["pos_frame"] for r in it]
    return out


def _base(tmp_path: Path, clips: list[Path]) -> Path:
    path = tmp_path / "b.pxl"
    with pxl.connect(path) as db:
        t = db.create_table("videos", {"video": pxl.Video, "k": pxl.Int})
        t.insert([{"video": str(c), "k": i} for i, c in enumerate(clips)])
    return path


CHILD = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from pxlite.functions.video import frame_iterator
    from pxlite.iterators import video
    real = video.FrameIterator._rows
    def slow(self):
        for row in real(self):
            time.sleep({sleep})
            yield row
    video.FrameIterator._rows = slow
    db = pxl.connect(sys.argv[1])
    t = db.get_table("videos")
    print("started", flush=True)
    try:
        f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
        print("done", f.count(), flush=True)
    except KeyboardInterrupt as e:
        print("interrupted:", e, flush=True)
        sys.exit(3)
""")


def _child(tmp_path: Path, db_path: Path, sleep: float) -> subprocess.Popen:
    return job_children.start(tmp_path, CHILD.format(root=str(ROOT), sleep=sleep), str(db_path))


def _wait_for_progress(db_path: Path, at_least: int) -> None:
    job_children.wait_for_progress(db_path, at_least, kind="create_view", timeout=90)


def test_a_killed_build_resumes_with_the_missing_rows(tmp_path, clips):
    db_path = _base(tmp_path, clips)
    child = _child(tmp_path, db_path, sleep=0.08)
    _wait_for_progress(db_path, 2)
    child.kill()
    child.communicate(timeout=30)
    with pxl.connect(db_path) as db:
        f = db.get_table("frames")
        job = next(j for j in catalog.jobs(db.db) if j.kind == "create_view")
        assert 2 <= job.done_rows < N
        with pytest.raises(NotFoundError, match=r"is being built \(\d+/8 base rows done\); "
                                                "run the same create_view again"):
            f.select(f.pos).collect()
        with pytest.raises(NotFoundError, match="being built"):
            f.count()
        assert "being built" in repr(f)
        t = db.get_table("videos")
        with pytest.raises(NotFoundError, match="is being built"):
            db.create_view("of_frames", f)
        with pytest.raises(pxl.AlreadyExistsError, match="another definition"):
            db.create_view("frames", t, iterator=frame_iterator(t.video, fps=1))
        done = job.done_rows
        f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))  # the same call
        assert f.select(f.pos_frame).collect()["pos_frame"] == _expected(clips)
        assert [frame_number(i) for i in f.select(f.frame).collect()["frame"]] == _expected(clips)
        assert not [j for j in catalog.jobs(db.db) if j.kind == "create_view"]
        assert db.check().ok  # the files of the batch the kill lost were swept
        assert done < N


def test_ctrl_c_stops_after_the_batch_and_the_same_call_resumes(tmp_path, clips):
    db_path = _base(tmp_path, clips)
    child = _child(tmp_path, db_path, sleep=0.05)
    _wait_for_progress(db_path, 2)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, (out, err)
    assert "run the same create_view again" in out
    with pxl.connect(db_path) as db:
        t = db.get_table("videos")
        f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
        assert f.select(f.pos_frame).collect()["pos_frame"] == _expected(clips)
        assert db.check().ok


def test_base_rows_written_while_the_view_is_built(tmp_path, clips, monkeypatch):
    db_path = _base(tmp_path, clips)
    monkeypatch.setattr(view_build, "BATCH_SECONDS", 0.0)  # a batch of 2 (the cores) each
    real = view_build._Maker._make
    calls = []

    def make(self, ids):
        made = real(self, ids)
        calls.append(ids)
        if len(calls) == 2:  # the second batch is made: another program writes meanwhile
            with pxl.connect(db_path) as other:
                base = other.get_table("videos")
                base.update({"video": str(clips[0])}, where=base.k == ids[0] - 1)  # in it
                base.delete(where=base.k == ids[1] - 1)                         # in it
                base.update({"video": str(clips[7])}, where=base.k == 0)  # done already
                base.insert([{"video": str(clips[1]), "k": 100}])         # not read yet
        return made

    monkeypatch.setattr(view_build._Maker, "_make", make)
    with pxl.connect(db_path) as db:
        t = db.get_table("videos")
        f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
        expected = []
        for row in t.select(t.video).collect():
            with frame_iterator(row["video"], fps=2) as it:
                expected += [r["pos_frame"] for r in it]
        assert f.select(f.pos_frame).collect()["pos_frame"] == expected
        assert f.count() == len(expected) and db.check().ok


def test_a_filtered_view_over_many_rows_commits_in_chunks(db, monkeypatch):
    monkeypatch.setattr(view_build, "SQL_CHUNK", 1000)
    t = db.create_table("t", {"n": pxl.Int})
    for start in range(0, 10_000, 5_000):
        t.insert([{"n": i} for i in range(start, start + 5_000)])
    commits = []
    real = view_build.catalog.advance_job

    def advance(db_, job, upto, rows):
        commits.append(rows)
        return real(db_, job, upto, rows)

    monkeypatch.setattr(view_build.catalog, "advance_job", advance)
    v = db.create_view("even", t.where(t.n % 2 == 0))  # % runs in Python
    w = db.create_view("big", t.where(t.n >= 2500))     # in SQL: one statement per chunk
    assert v.count() == 5000 and w.count() == 7500
    assert len(commits) > 10 and max(commits) <= 1024  # brief commits, each at most so big
    assert t.list_views() == ["even", "big"]  # in the order they were made


ADD_CHILD = textwrap.dedent("""
    import os, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import pxlite as pxl
    from pxlite import compute
    from udfs.sample import slow_flip
    compute.BATCH_SECONDS = 0.05
    os.environ["PXLITE_TEST_UDF_SLEEP"] = "0.05"
    db = pxl.connect(sys.argv[1])
    v = db.get_table("frames")
    print("started", flush=True)
    v.add_computed_column(flipped=slow_flip(v.frame), destination=sys.argv[2])
    print("done", flush=True)
""")


def test_a_killed_add_on_a_view_resumes_into_its_destination(tmp_path, clips):
    from udfs.sample import slow_flip

    db_path = _base(tmp_path, clips)
    dest = tmp_path / "flipped"
    with pxl.connect(db_path) as db:
        t = db.get_table("videos")
        db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
    script = tmp_path / "add_child.py"
    script.write_text(ADD_CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")))
    child = subprocess.Popen([sys.executable, str(script), str(db_path), str(dest)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with pxl.connect(db_path) as db:
            jobs = [j for j in catalog.jobs(db.db) if j.kind == "add_computed_column"]
            if jobs and jobs[0].done_rows >= 6:
                break
        time.sleep(0.05)
    child.kill()
    child.communicate(timeout=30)
    with pxl.connect(db_path) as db:
        f = db.get_table("frames")
        assert "pending" in repr(f)
        st = f.add_computed_column(flipped=slow_flip(f.frame), destination=str(dest))
        assert 0 < st.num_rows < f.count()  # only the rows the kill left
        files = list(dest.rglob("*.jpg"))
        assert len(files) == f.count() and all(f.get_metadata()["id"] in str(p) for p in files)
        assert f.where(f.flipped.is_null()).count() == 0 and db.check().ok


def test_a_cheap_condition_runs_in_the_calling_thread_a_slow_one_on_threads(db):
    """As for computed columns: a where() evaluated in Python that takes microseconds a row
    is evaluated in the calling thread (a future per row cost more than the condition); a
    slow one (here a sleep, as decoding releases the GIL) goes to the threads."""
    from udfs import sample

    t = db.create_table("nums", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(300)])
    sample.THREADS_SEEN.clear()
    cheap = db.create_view("cheap", t.where(sample.thread_noted(t.n) % 2 == 0))
    assert set(sample.THREADS_SEEN) == {"MainThread"} and cheap.count() == 150
    sample.THREADS_SEEN.clear()
    t.insert([{"n": 1000 + i} for i in range(100)])  # kept current the same way
    assert set(sample.THREADS_SEEN) == {"MainThread"} and cheap.count() == 200
    sample.THREADS_SEEN.clear()
    slow = db.create_view("slow", t.where(sample.slow_thread_noted(t.n) % 2 == 1))
    seen = sample.THREADS_SEEN
    assert seen[:1] == ["MainThread"] and len(seen) == 400
    assert any(name.startswith("pxlite-view") for name in seen[1:])
    assert slow.count() == 200
