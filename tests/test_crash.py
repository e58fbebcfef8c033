"""Crash safety: an operation interrupted anywhere leaves no row naming a missing file.

Three layers, each on a local folder and on S3 (moto) as the computed column's destination:

* :func:`test_interrupted_at_fault_point`: in-process, ``pxlite.faults.point`` raises at the N-th
  hit of one named point (``Crash`` is a BaseException, so no ``except Exception`` swallows it);
  the error path runs (rollback, undo of written files), as for any exception.
* :func:`test_killed_at_fault_point`: a child process SIGKILLs *itself* at the N-th hit: a real
  crash at an exact step (no rollback, no undo, no ``finally``, WAL left mid-transaction).
* :func:`test_sigkill_mid_operation`: the parent SIGKILLs a child in the middle of a 500-row
  ``add_computed_column`` / ``insert``, at whatever instruction it happens to be running.

After each: reopen (``pxl.connect`` again), ``check()`` finds no missing file and a sound
database, the table is in its old or its new state (never between), ``check(fix=True)`` leaves
nothing behind (also verified by listing the storage independently of check()), and running the
operation again succeeds with the expected rows.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageColor

import pxlite as pxl
from pxlite import catalog, faults, storage
from pxlite.maintenance import check
from pxlite.storage import local

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
BASE = [(0, "red"), (1, "blue"), (2, "green")]
NEW = [(10, "yellow"), (11, "purple"), (12, "orange"), (13, "black")]
ABSENT = "no rot column"
TEMP = ".pxlite-tmp-"


class Crash(BaseException):
    """A simulated crash at a fault point. Not an Exception: no handler may swallow it."""


# ---- the operations under test -------------------------------------------------------------------
def _img(color: str, size: tuple[int, int] = (8, 8)) -> Image.Image:
    return Image.new("RGB", size, color)


def _q(rgb: Any) -> tuple[int, ...]:
    """A colour, coarsened so JPEG's small deviations do not matter."""
    return tuple(round(v / 64) for v in rgb[:3])


def _sig(size: tuple[int, int], color: str) -> tuple[tuple[int, int], tuple[int, ...]]:
    return size, _q(ImageColor.getrgb(color))


def _row(k: int, color: str, size: tuple[int, int] = (8, 8), rot: bool = True) -> tuple:
    """The expected state of one row: k, its image, and its rot image (rotate(90) keeps the size
    and the centre pixel of a one-colour image)."""
    return (k, _sig(size, color), _sig(size, color) if rot else ABSENT)


def setup_table(conn: pxl.Connection, dest: str, with_rot: bool) -> pxl.Table:
    """Table ``t``: 3 rows of one-colour 8x8 images (written to the database's media folder),
    optionally the computed column ``rot`` stored in ``dest``."""
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": _img(c), "k": k} for k, c in BASE])
    if with_rot:
        t.add_computed_column(rot=t.image.rotate(90), destination=dest)
    return t


def _insert(conn: pxl.Connection, dest: str) -> Any:
    t = conn.get_table("t")
    return t.insert([{"image": _img(c), "k": k} for k, c in NEW])


def _add(conn: pxl.Connection, dest: str) -> Any:
    t = conn.get_table("t")
    # if_exists="ignore": what a user re-runs after a crash that may have come after the commit
    return t.add_computed_column(rot=t.image.rotate(90), destination=dest, if_exists="ignore")


def _update(conn: pxl.Connection, dest: str) -> Any:
    t = conn.get_table("t")
    return t.update({"image": _img("white", (6, 10))}, where=t.k >= 1)


def _delete(conn: pxl.Connection, dest: str) -> Any:
    t = conn.get_table("t")
    return t.delete(where=t.k >= 1)


def _drop(conn: pxl.Connection, dest: str) -> Any:
    return conn.drop_table("t", if_not_exists="ignore")


@dataclass(frozen=True)
class Op:
    """One operation: its setup, how to run it, the table before/after, and how many times each
    fault point is hit when it runs (checked by test_fault_point_hits)."""

    run: Callable[[pxl.Connection, str], Any]
    with_rot: bool
    before: list | None
    after: list | None
    hits: dict[str, int]
    repeats: bool = False  # running it again after it committed applies it again (insert)


_WITH_ROT = [_row(k, c) for k, c in BASE]
OPS: dict[str, Op] = {
    # 4 input files + 4 computed files; commits: the operation registers as writing the table,
    # its one transaction, it unregisters (and finishes deletes that waited for it)
    "insert": Op(_insert, True, _WITH_ROT, _WITH_ROT + [_row(k, c) for k, c in NEW],
                 {"file_written": 8, "before_commit": 3, "after_commit": 3}, repeats=True),
    # commits: the new destination (with the writer's registration), the pending column and
    # its job, one batch with the 3 files (computed outside the write lock), then the column
    # complete, then the writer's end
    "add_computed_column": Op(_add, False, [_row(k, c, rot=False) for k, c in BASE], _WITH_ROT,
                              {"file_written": 3, "before_commit": 5, "after_commit": 5}),
    # 2 input writes (same content) + 2 computed; then 2 input and 2 rot files superseded,
    # deleted by one after-commit transaction per column; the writer's registration and end
    "update": Op(_update, True, _WITH_ROT, [_row(0, "red")] + [
        _row(k, "white", (6, 10)) for k in (1, 2)],
        {"file_written": 4, "before_commit": 5, "after_commit": 5, "before_file_delete": 4}),
    # 2 rows go: 2 input + 2 rot files deleted after the commit
    "delete": Op(_delete, True, _WITH_ROT, [_row(0, "red")],
                 {"before_commit": 3, "after_commit": 3, "before_file_delete": 4}),
    # the drop, one file-delete transaction per media column, then the prefix sweep
    "drop_table": Op(_drop, True, _WITH_ROT, None,
                     {"before_commit": 4, "after_commit": 4, "before_file_delete": 6}),
}


def _cases() -> list[tuple[str, str, int]]:
    """(operation, fault point, hit): the first hit of every point each operation reaches, and
    a later one (the last; for insert also the first computed file after the 4 input files)."""
    out = []
    for name, op in OPS.items():
        for point, n in op.hits.items():
            for nth in sorted({1, n} | ({5} if (name, point) == ("insert", "file_written") else
                                        {3} if (name, point) == ("update", "file_written") else
                                        set())):
                out.append((name, point, nth))
    return out


CASES = _cases()


# ---- observing the result ------------------------------------------------------------------------
def state(conn: pxl.Connection) -> list | None:
    """The table's rows as (k, image, rot) signatures, reading every file (None: no table)."""
    if "t" not in conn.list_tables():
        return None
    t = conn.get_table("t")
    has_rot = "rot" in t.columns()
    q = t.select(t.k, t.image, t.rot) if has_rot else t.select(t.k, t.image)
    out = []
    for r in q.order_by(t.k).collect():
        im = r["image"]
        sig = (im.size, _q(im.getpixel((im.width // 2, im.height // 2))))
        rot: Any = ABSENT
        if has_rot:
            ro = r["rot"]
            rot = None if ro is None else (ro.size, _q(ro.getpixel((ro.width // 2,
                                                                     ro.height // 2))))
        out.append((r["k"], sig, rot))
    return out


def named_files(conn: pxl.Connection, target: Any) -> set[str]:
    """Every file in pxlite's folders (the database's media folder, the destination) that a row
    names (raw SQL, not check()); references to the user's own files are left out."""
    owned = (storage.to_uri(conn.media_dir).rstrip("/") + "/", target.prefix)
    out: set[str] = set()
    for meta in catalog.live_tables(conn.db):
        for c in meta.media_columns:
            out |= {u for u in (conn.resolve(r[0]) for r in conn.db.query(
                f"SELECT {c.sql} FROM {meta.sql} WHERE {c.sql} IS NOT NULL"))
                if u.startswith(owned)}
    return out


def stored_files(db_path: Path, target: Any) -> set[str]:
    """Every file in the database's media folder and under the destination (independent of
    check(): a local folder is walked, a bucket listed). Local temp files are left out: a
    SIGKILL can land while another thread is between writing one and renaming it (rare; see
    test_temp_file_of_a_killed_write_is_swept)."""
    out = set()
    folders = [db_path.with_name(db_path.name + ".media")]
    if target.name == "local":
        folders.append(storage.file_path(target.prefix))
    else:
        out |= set(storage.get_backend(target.prefix, target.settings).list(target.prefix))
    for f in folders:
        if f.exists():
            out |= {p.as_uri() for p in f.rglob("*") if p.is_file()
                    and not p.name.startswith(TEMP)}
    return out


def verify_recovery(db_path: Path, target: Any, op_name: str, what: str) -> pxl.Connection:
    """Reopen after a crash and check everything the data-safety rules promise; returns the
    reopened connection with the operation run again."""
    op = OPS[op_name]
    conn = pxl.connect(db_path, config=target.config)
    report = check(conn.places)
    assert report.missing == [], f"{what}: rows name missing files\n{report}"
    assert report.integrity == [] and conn.db.integrity_check() == [], f"{what}: {report}"
    assert report.errors == [], f"{what}: {report}"
    st = state(conn)  # reads every named file
    assert st in (op.before, op.after), f"{what}: the table is half-changed: {st}"
    committed = st == op.after and op.before != op.after
    fixed = check(conn.places, fix=True)
    assert fixed.ok, f"{what}: check(fix=True) left problems\n{fixed}"
    assert check(conn.places).ok
    assert not catalog.pending_deletes(conn.db)
    assert stored_files(db_path, target) == named_files(conn, target), (
        f"{what}: files left that no row names (or rows naming absent files)")
    if st is None:  # a dropped table's locations are forgotten once swept
        assert not conn.db.query("SELECT 1 FROM px_media_locations")

    op.run(conn, target.prefix)  # the same operation again succeeds
    want = op.after
    if op.repeats and committed:
        assert want is not None and op.before is not None
        want = sorted(want + want[len(op.before):])
    assert state(conn) == want, f"{what}: after running it again"
    final = check(conn.places)
    assert final.ok, f"{what}: after running it again\n{final}"
    assert stored_files(db_path, target) == named_files(conn, target)
    if op.after is None:
        assert not conn.db.query("SELECT 1 FROM px_media_locations")
    return conn


# ---- 1. a raise at each fault point --------------------------------------------------------------
def test_fault_point_hits(tmp_path, monkeypatch):
    """The hit counts CASES are built from are what the operations really do (so "the last
    hit" below is the last one)."""
    for name, op in OPS.items():
        conn = pxl.connect(tmp_path / f"{name}.pxl")
        setup_table(conn, str(tmp_path / f"{name}-dest"), op.with_rot)
        hits: collections.Counter = collections.Counter()
        lock = threading.Lock()

        def count(point: str, hits: collections.Counter = hits,
                  lock: threading.Lock = lock) -> None:
            with lock:
                hits[point] += 1

        monkeypatch.setattr(faults, "point", count)
        op.run(conn, str(tmp_path / f"{name}-dest"))
        monkeypatch.undo()
        assert dict(hits) == op.hits, name
        assert state(conn) == op.after
        conn.close()


@pytest.mark.parametrize("storage_target", ["local", "s3", "gcs", "azure"], indirect=True)
@pytest.mark.parametrize("op_name,point,nth", CASES, ids=[f"{o}-{p}-{n}" for o, p, n in CASES])
def test_interrupted_at_fault_point(storage_target, tmp_path, monkeypatch, op_name, point, nth):
    target = storage_target
    op = OPS[op_name]
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path, config=target.config)
    setup_table(conn, target.prefix, op.with_rot)
    assert state(conn) == op.before
    hits: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def crash_at(name: str) -> None:
        with lock:
            hits[name] += 1
            fire = name == point and hits[name] == nth
        if fire:
            raise Crash(f"crash at {name} #{nth}")

    monkeypatch.setattr(faults, "point", crash_at)
    with pytest.raises(Crash):
        op.run(conn, target.prefix)
    monkeypatch.undo()
    verify_recovery(db_path, target, op_name, f"{op_name} raising at {point} #{nth}").close()
    conn.close()


# ---- 2. a real SIGKILL at each fault point -------------------------------------------------------
KILL_AT_POINT = textwrap.dedent("""
    import json, os, signal, sys, threading
    sys.path[:0] = [{tests!r}, {root!r}]
    import pxlite as pxl
    from pxlite import faults
    import test_crash
    a = json.loads(sys.argv[1])
    conn = pxl.connect(a["db"], config=a["config"])
    hits, lock = {{}}, threading.Lock()
    def point(name):
        with lock:
            hits[name] = hits.get(name, 0) + 1
            if name == a["point"] and hits[name] == a["nth"]:
                os.kill(os.getpid(), signal.SIGKILL)
    faults.point = point
    test_crash.OPS[a["op"]].run(conn, a["dest"])
    print("finished without reaching the point", flush=True)
""").format(tests=str(TESTS), root=str(ROOT))

# The first hit of every point, and the last hit of the points reached more than once.
KILL_CASES = [c for c in CASES if c[2] == 1 or c[2] == OPS[c[0]].hits[c[1]]]


def _child_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PXLITE_HOME": str(tmp_path / "child-home")}


@pytest.mark.parametrize("storage_target", ["local", "s3", "gcs", "azure"], indirect=True)
@pytest.mark.parametrize("op_name,point,nth", KILL_CASES,
                         ids=[f"{o}-{p}-{n}" for o, p, n in KILL_CASES])
def test_killed_at_fault_point(storage_target, tmp_path, op_name, point, nth):
    target = storage_target
    op = OPS[op_name]
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path, config=target.config)
    setup_table(conn, target.prefix, op.with_rot)
    conn.close()
    args = {"db": str(db_path), "config": target.config, "op": op_name, "point": point,
            "nth": nth, "dest": target.prefix}
    out = subprocess.run([sys.executable, "-c", KILL_AT_POINT, json.dumps(args)],
                         capture_output=True, text=True, timeout=120, env=_child_env(tmp_path))
    assert out.returncode == -signal.SIGKILL, (out.returncode, out.stdout, out.stderr[-3000:])
    verify_recovery(db_path, target, op_name, f"{op_name} killed at {point} #{nth}").close()


# ---- 3. SIGKILL from outside, mid-operation ------------------------------------------------------
KILL_MID = textwrap.dedent("""
    import json, sys, time
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from pxlite import media
    a = json.loads(sys.argv[1])
    real = media.encode_image
    def slow(img, fmt=None):  # each output image takes a little longer: a wider kill window
        time.sleep(a["delay"])
        return real(img, fmt)
    media.encode_image = slow
    conn = pxl.connect(a["db"], config=a["config"])
    t = conn.get_table("t")
    if a["op"] == "add":
        t.add_computed_column(rot=t.image.rotate(90), destination=a["dest"])
    else:
        t.insert([{{"image": p, "k": k}} for k, p in a["rows"]])
    print("finished", flush=True)
""").format(root=str(ROOT))

N_ROWS = 500


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> list[Path]:
    from pxlite.imagegen import write_images

    return write_images(tmp_path_factory.mktemp("small"), N_ROWS, size=(32, 24))


def _output_files(conn: pxl.Connection, target: Any) -> Callable[[], int]:
    """How many files the column being computed has written so far (under <prefix><uid>/)."""
    uid = catalog.load_table(conn.db, "t").uid
    prefix = f"{target.prefix}{uid}/"
    if target.name == "local":
        folder = storage.file_path(prefix)
        return lambda: sum(1 for _, _, fs in os.walk(folder) for f in fs
                           if not f.startswith(TEMP))
    backend = storage.get_backend(prefix, target.settings)
    return lambda: sum(1 for _ in backend.list(prefix))


def _kill_mid_way(tmp_path: Path, args: dict, count: Callable[[], int], want: int
                  ) -> tuple[int, float]:
    """Start the child, wait until ``want`` output files exist, SIGKILL it. Returns (files seen
    at the kill, seconds the child ran). Fails if the child finished first."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_MID, json.dumps(args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env(tmp_path))
    t0 = time.monotonic()
    seen = 0
    try:
        while time.monotonic() - t0 < 90:
            seen = count()
            if seen >= want or proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise AssertionError(
            f"the child was not killed mid-way: it exited with {proc.returncode} after "
            f"{time.monotonic() - t0:.1f} s with {seen} output files (wanted {want} before the "
            f"kill); stdout {out!r} stderr {err[-2000:]!r}")
    return seen, time.monotonic() - t0


def _settled(db_path: Path, target: Any, timeout: float = 10.0) -> None:
    """Wait until the destination's listing stops changing: an upload the killed process had
    sent can still land on the server after the process died (seen with Azurite)."""
    deadline = time.monotonic() + timeout
    last, stable = stored_files(db_path, target), 0
    while time.monotonic() < deadline and stable < 5:  # unchanged for 1.5 s
        time.sleep(0.3)
        now = stored_files(db_path, target)
        stable = stable + 1 if now == last else 0
        last = now


@pytest.mark.parametrize("storage_target", ["local", "s3", "gcs", "azure"], indirect=True)
@pytest.mark.parametrize("op_name", ["add", "insert"])
def test_sigkill_mid_operation(storage_target, tmp_path, small_images, op_name):
    """A 500-row add_computed_column (or insert with a computed column) is SIGKILLed once some
    of its output files exist. An insert is one brief commit: afterwards the rows are absent
    or complete. An add commits in batches: afterwards the column is complete, or pending with
    the batches that committed (its files named by their rows). Either way the files of what
    never committed are orphans fix=True removes, and running the same call again completes
    it (an add resumes with the missing rows)."""
    target = storage_target
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path, config=target.config)
    t = conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    rows = [(k, str(p)) for k, p in enumerate(small_images)]
    if op_name == "add":
        t.insert([{"image": p, "k": k} for k, p in rows])  # references: no files written
    else:
        t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
    count = _output_files(conn, target)
    conn.close()

    args = {"db": str(db_path), "config": target.config, "dest": target.prefix, "op": op_name,
            "rows": rows}
    killed = None
    for delay in (0.004, 0.02):  # retried slower if the child finished before the kill
        args["delay"] = delay
        try:
            killed = _kill_mid_way(tmp_path, args, count, want=40)
            break
        except AssertionError as e:
            last = e
            conn = pxl.connect(db_path, config=target.config)   # undo a finished run
            t = conn.get_table("t")
            if op_name == "add":
                if "rot" in t.columns():
                    t.drop_column("rot")
            else:
                t.delete()
            check(conn.places, fix=True)
            conn.close()
    assert killed is not None, f"could not kill the child mid-way: {last}"
    seen, ran = killed
    _settled(db_path, target)

    conn = pxl.connect(db_path, config=target.config)
    report = check(conn.places)
    what = f"{op_name} killed after {ran:.1f} s with {seen} files written"
    print(what, "->", "committed" if report.orphans == [] else f"{len(report.orphans)} orphans")
    assert report.missing == [] and report.integrity == [] and report.errors == [], \
        f"{what}\n{report}"
    t = conn.get_table("t")
    n = t.count()
    if op_name == "add":
        assert n == N_ROWS
        if "rot" in t.columns():  # completed just before the kill
            assert t.where(t.rot.is_null()).count() == 0, what
        else:  # pending: committed batches name their files, the lost batch's are orphans
            assert "pending" in repr(t), repr(t)
            assert len(named_files(conn, target)) + len(report.orphans) >= seen, what
    else:
        assert n in (0, N_ROWS), f"{what}: {n} rows, neither none nor all"
        if n == N_ROWS:
            assert t.where(t.rot.is_null()).count() == 0, what
        else:
            assert len(report.orphans) >= seen, what
    fixed = check(conn.places, fix=True)
    assert fixed.ok, f"{what}\n{fixed}"
    assert stored_files(db_path, target) == named_files(conn, target), what

    # Running it again succeeds and completes (an add resumes: only the missing rows).
    if op_name == "add":
        if "rot" not in t.columns():
            before = len(named_files(conn, target))
            st = t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
            assert st.num_rows == N_ROWS - before, (st, before)
    else:
        if n:
            t.delete()
        t.insert([{"image": p, "k": k} for k, p in rows])
    assert t.count() == N_ROWS and t.where(t.rot.is_null()).count() == 0
    assert {r["rot"].size for r in t.select(t.rot).limit(5).collect()} == {(32, 24)}
    assert sorted(r["k"] for r in t.select(t.k).collect()) == list(range(N_ROWS))
    assert check(conn.places).ok
    conn.close()


# ---- 4. a temp file left by a killed local write -------------------------------------------------
KILL_IN_WRITE = textwrap.dedent("""
    import json, os, signal, sys
    sys.path[:0] = [{root!r}]
    import pxlite as pxl
    from pxlite.storage import local
    from PIL import Image
    a = json.loads(sys.argv[1])
    local._tmpfile_works = a["tmpfile"]
    real_link = os.link
    def link(src, dst, *args, **kw):  # the new file is written, not yet linked into place
        if os.path.basename(src).startswith(".pxlite-tmp-") or src.startswith("/proc/self/fd/"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_link(src, dst, *args, **kw)
    os.link = link
    conn = pxl.connect(a["db"])
    conn.get_table("t").insert(image=Image.new("RGB", (8, 8), "red"), k=1)
""").format(root=str(ROOT))


@pytest.mark.parametrize("tmpfile", [False, True], ids=["temp-file", "O_TMPFILE"])
def test_temp_file_of_a_killed_write_is_swept(tmp_path, tmpfile):
    """A write killed before its file got its name: a named temp file is left (check --fix
    sweeps it); an unnamed O_TMPFILE (Linux) leaves nothing at all."""
    if tmpfile and not local._tmpfile_works:
        pytest.skip("no O_TMPFILE here")
    db_path = tmp_path / "x.pxl"
    conn = pxl.connect(db_path)
    conn.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    conn.close()
    out = subprocess.run([sys.executable, "-c", KILL_IN_WRITE,
                          json.dumps({"db": str(db_path), "tmpfile": tmpfile})],
                         capture_output=True, text=True, timeout=120, env=_child_env(tmp_path))
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    media = tmp_path / "x.pxl.media"
    if tmpfile:
        assert not [p for p in media.rglob("*") if p.is_file()]
        with pxl.connect(db_path) as conn:
            assert conn.check().ok and not conn.get_table("t").count()
        return
    media = tmp_path / "x.pxl.media"
    temps = [p for p in media.rglob("*") if p.name.startswith(TEMP)]
    assert len(temps) == 1, temps
    old = time.time() - 2 * 3600  # long after the crash: no write can still be in progress
    os.utime(temps[0], (old, old))
    conn = pxl.connect(db_path)
    report = check(conn.places)
    assert report.missing == [] and not conn.get_table("t").count()
    fixed = check(conn.places, fix=True)
    assert fixed.ok
    assert not temps[0].exists(), "check(fix=True) left the killed writer's temp file"
    conn.close()
