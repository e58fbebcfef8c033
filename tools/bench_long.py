"""Long operations: what another process sees while a computed column is added, kill and resume,
and what the brief batch commits cost.

    python tools/bench_long.py               # default run (~4 min on 2 busy cores)
    python tools/bench_long.py --quick       # smoke run (~40 s): 200 images (100 for (c)), 1 rep
    python tools/bench_long.py --only a      # only (a) (also: --only b, --only c, --only ab, ...)
    python tools/bench_long.py --only a --root DIR -n 300 --b-timeout 5
                                             # (a) against another checkout's pxlite: DIR from
                                             # `git worktree add DIR 9cf67c7` (before long
                                             # operations left the write lock)

Inputs are distinct noisy 640x480 JPEGs (quality 90, ~120 KB), made once per run in a temp folder
(``--images DIR`` keeps and reuses them). Every destination is a local folder.

(a) Latency for another process during an add: process A runs
    ``t.add_computed_column(rot=t.image.rotate(90), destination=<folder>)`` over 2,000 rows;
    meanwhile process B, every ~0.2 s until A ends, does (each timed separately)
    ``pxl.connect(path)`` (a fresh connection), ``db.get_table('t')``, a one-row read
    ``t.where(t.k == i).collect()`` and a one-row insert into another table of the same file.
    Median and max of each, how many ran (started) during the add, and any errors. B's busy
    timeout is pxlite's (30 s) unless ``--b-timeout`` caps it: a pxlite that holds the write lock
    for the whole add (before long operations) makes B's writes wait for it or fail busy.
    ``--b-ops connect,read`` (or ``connect,insert``, ``connect``) drops the others from B's
    rounds: which of B's operations slow A down.
(b) Kill and resume: the same add (2,000 rows) in a child, SIGKILLed once about half the rows are
    committed (``px_jobs.done_rows``, polled from another connection); then the same call in a
    fresh process resumes it. Time to finish (the resume) vs an uninterrupted run of the same add
    on an identical table in the same file, and a cell-for-cell check: the content hash each
    cell's file is named by (the last segment of the stored value), by rowid, must be the same
    in both columns; the killed column's folder must hold no file beyond its cells (the batch the
    kill lost is swept).
(c) rotate(90) over 1,000 rows with the brief batch commits (the default: about
    ``compute.BATCH_SECONDS`` of work per commit, at most ``BATCH_ROWS`` rows) vs one long batch
    (``BATCH_SECONDS = 1e9``, ``BATCH_ROWS = 10**9``; the first batch is still a 16-row probe):
    what brief commits cost. Interleaved repetitions, medians.

Each process is a fresh interpreter (tools/benchlib.py); A and B of (a) and the killed child of
(b) run side by side, started by the parent. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()


# ---- child side ---------------------------------------------------------------------------------

def _pxlite(p: dict[str, Any]) -> Any:
    """``import pxlite``, from ``p['root']`` (another checkout) when given."""
    if p.get("root"):
        sys.path.insert(0, p["root"])
    import pxlite

    if p.get("root"):
        where = Path(pxlite.__file__).resolve()
        assert Path(p["root"]).resolve() in where.parents, f"imported {where}, not {p['root']}"
    return pxlite


def _paths(p: dict[str, Any]) -> list[str]:
    return sorted(str(q) for q in Path(p["images"]).glob("*.jpg"))[: p["n"]]


def case_setup(p: dict[str, Any]) -> dict[str, Any]:
    """Tables ``p['tables']`` (image, k) with the same ``n`` rows each, and ``other`` (n)."""
    pxl = _pxlite(p)
    rows = [{"image": q, "k": i} for i, q in enumerate(_paths(p))]
    with pxl.connect(p["db"]) as db:
        for name in p["tables"]:
            db.create_table(name, {"image": pxl.Image, "k": pxl.Int}).insert(rows)
        db.create_table("other", {"n": pxl.Int})
    return {"rows": len(rows), "pxlite": pxl.__file__}


def _add(p: dict[str, Any], marker: Path | None = None) -> dict[str, Any]:
    pxl = _pxlite(p)
    if p.get("one_batch"):
        from pxlite import compute

        compute.BATCH_SECONDS, compute.BATCH_ROWS = 1e9, 10**9
    elif p.get("batch_seconds") is not None:
        from pxlite import compute

        compute.BATCH_SECONDS = p["batch_seconds"]
    commits = [0]
    if p.get("count_batches"):
        from pxlite import catalog

        advance = catalog.advance_job

        def counting(*a: Any, **k: Any) -> None:
            commits[0] += 1
            advance(*a, **k)
        catalog.advance_job = counting
    db = pxl.connect(p["db"])
    t = db.get_table(p.get("table", "t"))
    expr = t.image.rotate(90)
    if marker is not None:
        marker.write_text(str(time.time()))
    w0, t0 = time.time(), bl.now()
    status = t.add_computed_column(rot=expr, destination=p["dest"])
    dt = bl.now() - t0
    w1 = time.time()
    db.close()
    return {"seconds": dt, "rows": status.num_rows, "errors": status.num_errors,
            "images_per_s": status.num_rows / dt, "wall_start": w0, "wall_end": w1,
            "batches": commits[0]}


def case_add(p: dict[str, Any]) -> dict[str, Any]:
    """Process A of (a), the killed child and the runs of (b), the runs of (c)."""
    return _add(p, Path(p["marker"]) if p.get("marker") else None)


def case_probe(p: dict[str, Any]) -> dict[str, Any]:
    """Process B of (a): every ``interval`` s until ``stop`` exists, connect / get_table / read one
    row / insert one row, each timed; each op's wall start, seconds and error (if any)."""
    pxl = _pxlite(p)
    if p.get("busy_ms"):
        from pxlite import db as dbmod

        dbmod.BUSY_TIMEOUT_MS = p["busy_ms"]
    stop, marker = Path(p["stop"]), Path(p["marker"])
    while not marker.exists():
        time.sleep(0.01)
    ops: list[dict[str, Any]] = []

    def timed(name: str, fn: Any, *args: Any) -> tuple[Any, bool]:
        w, t0 = time.time(), bl.now()
        try:
            out = fn(*args)
            err = None
        except Exception as e:  # a busy error, typically: recorded, the loop goes on
            out, err = None, f"{type(e).__module__}.{type(e).__name__}: {str(e)[:160]}"
        ops.append({"op": name, "start": w, "seconds": bl.now() - t0, "error": err})
        return out, err is None

    def read_one(t: Any, k: int) -> Any:
        return t.where(t.k == k).collect()

    def insert_one(other: Any, i: int) -> Any:
        return other.insert([{"n": i}])

    i = 0
    while not stop.exists():
        db, ok = timed("connect", pxl.connect, p["db"])
        if ok:
            if "read" in p["ops"]:
                t, ok = timed("get_table", db.get_table, "t")
                if ok:
                    timed("read one row", read_one, t, (i * 7919) % p["n"])
            if "insert" in p["ops"]:
                other, ok = timed("get_table other", db.get_table, "other")
                if ok:
                    timed("insert one row", insert_one, other, i)
            db.close()
        i += 1
        time.sleep(p["interval"])
    return {"ops": ops}


def case_cells(p: dict[str, Any]) -> dict[str, Any]:
    """(b)'s check: the cells of ``rot`` in each table by rowid (content hash, errortype)."""
    import pxlite as pxl
    from pxlite import catalog

    out: dict[str, Any] = {}
    with pxl.connect(p["db"]) as db:
        for name in p["tables"]:
            meta = catalog.load_table(db.db, name)
            c = meta.column("rot")
            out[name] = [[r[0], r[1] and r[1].rsplit("/", 1)[-1], r[2]] for r in db.db.query(
                f"SELECT _rowid, {c.sql}, {c.sql_et} FROM {meta.sql} ORDER BY _rowid")]
        out["jobs_left"] = len(catalog.jobs(db.db))
    return out


CASES: dict[str, bl.Case] = {"setup": case_setup, "add": case_add, "probe": case_probe,
                             "cells": case_cells}


# ---- parent -------------------------------------------------------------------------------------

def _spawn(case: str, params: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    """A case in a fresh interpreter, running beside this one (``bl.run_case`` waits)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        x for x in (str(bl.ROOT), os.environ.get("PYTHONPATH", "")) if x)}
    env.setdefault("PXLITE_HOME", str(Path(params["tmp"]) / "pxlite-home"))
    f = log.open("w")
    return subprocess.Popen([sys.executable, str(SCRIPT), "--child", case, json.dumps(params)],
                            stdout=f, stderr=subprocess.STDOUT, text=True, env=env)


def _result(proc: subprocess.Popen[str], log: Path) -> dict[str, Any]:
    proc.wait()
    text = log.read_text()
    for line in reversed(text.splitlines()):
        if line.startswith(bl.RESULT_TAG):
            return json.loads(line[len(bl.RESULT_TAG):])
    raise bl.CaseFailed(f"{log.name} failed (exit {proc.returncode}):\n{text[-4000:]}")


def _setup(tmp: Path, db: Path, images: Path, n: int, tables: list[str],
           root: str | None) -> None:
    bl.run_case(SCRIPT, "setup", {"db": str(db), "images": str(images), "n": n,
                                  "tables": tables, "root": root, "tmp": str(tmp)})


def run_a(tmp: Path, images: Path, n: int, root: str | None, busy_s: float | None,
          interval: float, b_ops: list[str]) -> list[list[Any]]:
    d = tmp / "a"
    d.mkdir()
    db = d / "a.pxl"
    _setup(d, db, images, n, ["t"], root)
    common = {"db": str(db), "root": root, "tmp": str(d), "n": n}
    marker, stop = d / "started", d / "stop"
    a = _spawn("add", {**common, "dest": str(d / "rot"), "marker": str(marker)}, d / "A.log")
    b = _spawn("probe", {**common, "stop": str(stop), "marker": str(marker),
                         "interval": interval, "busy_ms": busy_s and int(busy_s * 1000),
                         "ops": b_ops},
               d / "B.log")
    try:
        ra = _result(a, d / "A.log")
    finally:
        stop.touch()
        marker.touch()  # B waits for it: let B end even if A failed before writing it
    rb = _result(b, d / "B.log")
    w0, w1 = ra["wall_start"], ra["wall_end"]
    bl.say(f"  A: added {ra['rows']:,} cells in {ra['seconds']:.1f} s "
           f"({ra['images_per_s']:.1f} images/s, {ra['errors']} errors)")
    ops = rb["ops"]
    during = [o for o in ops if w0 <= o["start"] <= w1]
    rows = []
    for name in ("connect", "get_table", "read one row", "get_table other", "insert one row"):
        mine = [o for o in during if o["op"] == name]
        ok = [o["seconds"] * 1000 for o in mine if o["error"] is None]
        bad = [o for o in mine if o["error"] is not None]
        rows.append([name, len(mine), len(ok), len(bad),
                     statistics.median(ok) if ok else "-", max(ok) if ok else "-",
                     statistics.median(o["seconds"] for o in bad) * 1000 if bad else "-"])
    bl.say(f"  B: {len(ops)} operations in all, {len(during)} started during the add "
           f"(busy timeout {busy_s or 30:g} s; each round: {', '.join(b_ops)})")
    bl.say(bl.table(["B's operation", "started during add", "ok", "failed", "median ms (ok)",
                     "max ms (ok)", "median ms (failed)"], rows))
    errors: dict[str, int] = {}
    for o in during:
        if o["error"]:
            key = f"{o['op']}: {o['error'].splitlines()[0][:150]}"
            errors[key] = errors.get(key, 0) + 1
    for e, k in errors.items():
        bl.say(f"  {k} x {e}")
    after = [o for o in ops if o["start"] > w1]
    if after:
        bl.say(f"  ({len(after)} more started after the add ended; not counted)")
    return rows


def run_b(tmp: Path, images: Path, n: int, kill_at: float,
          batch_seconds: float | None) -> dict[str, Any]:
    d = tmp / "b"
    d.mkdir()
    db = d / "b.pxl"
    _setup(d, db, images, n, ["t", "t_copy"], None)
    common = {"db": str(db), "tmp": str(d), "n": n, "batch_seconds": batch_seconds}
    if batch_seconds is not None:
        bl.say(f"  compute.BATCH_SECONDS = {batch_seconds:g} in every run of (b)")

    # The uninterrupted add on the copy first (its figures are the reference).
    full = bl.run_case(SCRIPT, "add", {**common, "table": "t_copy", "dest": str(d / "clean"),
                                       "count_batches": True})
    bl.say(f"  uninterrupted add on t_copy: {full['seconds']:.1f} s, {full['rows']:,} rows in "
           f"{full['batches']} batch commits")

    import pxlite as pxl
    from pxlite import catalog

    marker = d / "killed-started"
    child = _spawn("add", {**common, "table": "t", "dest": str(d / "killed"),
                           "marker": str(marker)}, d / "killed.log")
    watcher = pxl.connect(db)
    seen = 0
    try:
        while child.poll() is None:
            jobs = catalog.jobs(watcher.db)
            seen = jobs[0].done_rows if jobs else 0
            if seen >= kill_at * n:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        killed_at = time.time()
        child.wait()
        # from the call (the child's marker, written just before it) to the kill
        killed_after = killed_at - float(marker.read_text())
        jobs = catalog.jobs(watcher.db)
    finally:
        watcher.close()
    if child.returncode != -signal.SIGKILL:
        bl.say(f"  the add ended before the kill (exit {child.returncode}): no resume to time")
        return {}
    committed = jobs[0].done_rows if jobs else 0
    bl.say(f"  killed (SIGKILL) after {killed_after:.1f} s, seeing {seen:,} rows committed; "
           f"the job records {committed:,}/{n:,}")

    res = bl.run_case(SCRIPT, "add", {**common, "table": "t", "dest": str(d / "killed"),
                                      "count_batches": True})
    bl.say(f"  resume in a fresh process: {res['seconds']:.1f} s for the missing "
           f"{res['rows']:,} rows ({res['batches']} batch commits)")
    cells = bl.run_case(SCRIPT, "cells", {"db": str(db), "tables": ["t", "t_copy"],
                                          "tmp": str(d)})
    a, b = cells["t"], cells["t_copy"]
    same = sum(x[1:] == y[1:] for x, y in zip(a, b, strict=False))
    rowids_same = [x[0] for x in a] == [y[0] for y in b]
    nulls = sum(x[1] is None for x in a)
    files_killed = sum(1 for q in (d / "killed").rglob("*") if q.is_file())
    files_clean = sum(1 for q in (d / "clean").rglob("*") if q.is_file())
    distinct = len({x[1] for x in a if x[1]})
    bl.say(f"  cells equal (content hash and error, by rowid): {same:,}/{len(b):,}"
           f"{'' if rowids_same else ' (ROWIDS DIFFER)'}; empty cells in the resumed column: "
           f"{nulls}; jobs left: {cells['jobs_left']}")
    bl.say(f"  files: resumed column's folder {files_killed:,} (for {distinct:,} distinct "
           f"cells), uninterrupted {files_clean:,}")
    bl.say(bl.table(["run", "seconds", "rows computed", "time / uninterrupted"], [
        ["uninterrupted add (t_copy)", full["seconds"], full["rows"], 1.0],
        ["killed add, from the call to the kill", killed_after, committed,
         killed_after / full["seconds"]],
        ["resume (same call, fresh process)", res["seconds"], res["rows"],
         res["seconds"] / full["seconds"]],
        ["killed + resume", killed_after + res["seconds"], n,
         (killed_after + res["seconds"]) / full["seconds"]],
    ]))
    return {"full": full, "resume": res, "killed_after": killed_after, "committed": committed,
            "equal": same, "of": len(b)}


def run_c(tmp: Path, images: Path, n: int, reps: int) -> dict[str, list[dict[str, Any]]]:
    labels = {"brief batch commits (default)": False, "one long batch": True}
    res: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
    for rep in range(reps):
        for label, one in labels.items():
            d = tmp / f"c-{rep}-{int(one)}"
            d.mkdir()
            try:
                _setup(d, d / "c.pxl", images, n, ["t"], None)
                r = bl.run_case(SCRIPT, "add", {"db": str(d / "c.pxl"), "dest": str(d / "rot"),
                                                "tmp": str(d), "one_batch": one,
                                                "count_batches": True})
            finally:
                bl.shutil.rmtree(d, ignore_errors=True)
            res[label].append(r)
            bl.say(f"  [{rep + 1}/{reps}] {label}: {r['images_per_s']:.1f} images/s, "
                   f"{r['seconds']:.2f} s, {r['batches']} commits, peak RSS {r['rss_mb']:.0f} MB")
    (_, ra), (_, rb) = res.items()
    bl.say(bl.table(["case", "images/s", "seconds", "commits", "peak RSS MB"], [
        [label, bl.med(r, "images_per_s"), bl.med(r, "seconds"), bl.med(r, "batches"),
         bl.med(r, "rss_mb")] for label, r in res.items()]))
    ratio = bl.med(ra, "seconds") / bl.med(rb, "seconds")
    paired = statistics.median(x["seconds"] / y["seconds"] for x, y in zip(ra, rb, strict=True))
    spread = [f"{min(r['seconds'] for r in v):.2f}-{max(r['seconds'] for r in v):.2f} s"
              for v in res.values()]
    bl.say(f"  time ratio brief commits / one batch = {ratio:.3f}x (median of the per-repetition "
           f"ratios {paired:.3f}x; ranges {spread[0]} and {spread[1]})")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 images for (a) and (b), 100 for (c), one repetition")
    ap.add_argument("--only", default="abc", help="which parts to run, e.g. 'a' or 'bc'")
    ap.add_argument("-n", type=int, help="rows for (a) and (b) (default 2000, --quick 200)")
    ap.add_argument("--n-c", type=int, help="rows for (c) (default 1000, --quick 100)")
    ap.add_argument("--reps", type=int, help="repetitions of (c) (default 3, --quick 1)")
    ap.add_argument("--images", type=Path, help="folder to keep/reuse the generated images in")
    ap.add_argument("--root", type=Path,
                    help="(a) only: import pxlite from this checkout instead (e.g. a worktree of "
                         "an older commit)")
    ap.add_argument("--b-timeout", type=float,
                    help="(a): process B's busy timeout in seconds (default pxlite's, 30 s)")
    ap.add_argument("--interval", type=float, default=0.2,
                    help="(a): seconds B sleeps between its rounds (default 0.2)")
    ap.add_argument("--b-ops", default="connect,read,insert",
                    help="(a): what B does each round, of connect,read,insert (connect always; "
                         "default all three): to see which of B's operations slows A down")
    ap.add_argument("--kill-at", type=float, default=0.5,
                    help="(b): SIGKILL the add once this fraction of rows is committed")
    ap.add_argument("--batch-seconds", type=float,
                    help="(b): compute.BATCH_SECONDS in its runs (default pxlite's; --quick 0.1, "
                         "so that 200 rows make more than the 2-3 batches a kill needs)")
    args = ap.parse_args()
    n = args.n or (200 if args.quick else 2000)
    n_c = args.n_c or (100 if args.quick else 1000)
    reps = args.reps or (1 if args.quick else 3)
    root = str(args.root.resolve()) if args.root else None
    parts = args.only
    if root and parts != "a":
        ap.error("--root applies to (a) only: pass --only a")

    bl.header(f"pxlite long-operations benchmark{' (--quick)' if args.quick else ''}: "
              f"640x480 JPEGs, rotate(90) to a local folder")
    if root:
        bl.say(f"  pxlite from {root}")
    with bl.temp_dir("pxlite-bench-long-") as tmp:
        images = args.images or (tmp / "images")
        t0 = bl.now()
        bl.make_photos(images, max(n if set(parts) & set("ab") else 0,
                                   n_c if "c" in parts else 0))
        bl.say(f"  inputs ready in {bl.now() - t0:.1f} s ({images})")
        if "a" in parts:
            bl.say(f"\n(a) process B's connect / read / insert every {args.interval:g} s while "
                   f"process A adds rot=rotate(90) over {n:,} rows")
            run_a(tmp, images, n, root, args.b_timeout, args.interval, args.b_ops.split(","))
        if "b" in parts:
            bl.say(f"\n(b) SIGKILL an add of {n:,} rows at ~{args.kill_at:.0%} committed, then "
                   "resume it with the same call")
            bs = args.batch_seconds
            run_b(tmp, images, n, args.kill_at, 0.1 if bs is None and args.quick else bs)
        if "c" in parts:
            bl.say(f"\n(c) rotate(90) over {n_c:,} rows: brief batch commits vs one long batch "
                   f"({reps} reps)")
            run_c(tmp, images, n_c, reps)


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
