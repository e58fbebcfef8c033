"""Versions: what keeping every change costs (issue 20's speed targets), side by side in one run.

    python tools/bench_versions.py            # 1,000,000 rows, 5 repetitions (~5 min)
    python tools/bench_versions.py --quick    # 100,000 rows, 3 repetitions (~30 s)
    python tools/bench_versions.py --parts 23 # only (2) and (3)
    python tools/bench_versions.py --parts 5 --reps 15  # only the floor of (2)'s delete

Two tables of the same N rows (``a`` Int, ``m`` = a % 100, ``b`` String of 100 values,
``f`` Float; every condition below runs in SQLite), one
versioned (the default, versions kept 30 days) and one created with ``versioned=False``, in
separate database files of the same folder. Repetitions interleave the two, so background load
hits both alike; figures are medians.

(1) Reading the current version: a scan of every row (``collect()`` of two columns), a filtered
    count (``where(t.b == 'b7').count()``) and a group by (``group_by(t.b)`` with ``count``
    and ``mean``). Target <= 1.05x.
(2) Changing 1% of the rows (N/100): ``insert`` of new rows, ``update`` of a column where
    ``m == r`` and ``delete`` where ``m == r``. Target <= 1.15x.
(3) Reverting such an update and such a delete (``revert()`` right after it), against the
    change it undoes, both on the versioned table. Target <= 1.5x.
(4) The database file after 100 versions of 1% updates, kept (30 days), pruned to the last 10
    versions (``version_retention_count=10``), pruned at once (``version_retention_days=0``),
    and unversioned: file size and bytes in use (pages not on SQLite's free list; a pruned
    undo log's pages are reused by the next versions, the file does not shrink by itself).
(5) The floor under (2)'s delete: the same delete in SQLite alone (apsw, no pxlite code), on a
    copy of the versioned table's rows in the same physical layout (its table and undo log),
    with pxlite's settings (WAL, synchronous=FULL): a plain ``DELETE ... WHERE`` against the
    statements a versioned delete runs (the copy into the log, then the deletes by rowid read
    through a memory map). What pxlite adds to a versioned delete is the distance from this.

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pxlite as pxl
import pxlite.functions as pxlf
from pxlite import catalog


def _make(folder: Path, name: str, n: int, **options: Any) -> tuple[pxl.Connection, pxl.Table]:
    db = pxl.connect(folder / f"{name}.pxl", config={"version_retention_days": 30})
    t = db.create_table("t", {"a": pxl.Int, "m": pxl.Int, "b": pxl.String, "f": pxl.Float},
                        **options)
    step = 100_000
    for lo in range(0, n, step):
        t.insert([{"a": i, "m": i % 100, "b": f"b{i % 100}", "f": i * 0.5}
                  for i in range(lo, min(n, lo + step))])
    return db, t


def _timed(fn: Callable[[int], Any], r: int) -> float:
    t0 = time.perf_counter()
    fn(r)
    return time.perf_counter() - t0


def _pair(label: str, reps: int, versioned: Callable[[int], Any],
          plain: Callable[[int], Any], target: float,
          names: tuple[str, str] = ("versioned", "unversioned")) -> None:
    """Interleaved repetitions of the same work on both tables; prints medians and ratio."""
    tv, tp = [], []
    for r in range(reps):
        if r % 2:
            tp.append(_timed(plain, r))
            tv.append(_timed(versioned, r))
        else:
            tv.append(_timed(versioned, r))
            tp.append(_timed(plain, r))
    mv, mp = statistics.median(tv), statistics.median(tp)
    print(f"  {label:<34} {names[0]} {mv * 1000:9.1f} ms   {names[1]} {mp * 1000:9.1f} ms   "
          f"ratio {mv / mp:5.2f}x  (target <= {target}x)", flush=True)


def reads(v: pxl.Table, p: pxl.Table, reps: int) -> None:
    print("(1) reading the current version", flush=True)
    _pair("scan (collect a, b)", reps, lambda r: v.select(v.a, v.b).collect(),
          lambda r: p.select(p.a, p.b).collect(), 1.05)
    _pair("filtered count", reps, lambda r: v.where(v.b == f"b{r}").count(),
          lambda r: p.where(p.b == f"b{r}").count(), 1.05)

    def group(t: pxl.Table) -> Any:
        return t.group_by(t.b).select(t.b, n=pxlf.count(t.a), avg=pxlf.mean(t.f)).collect()

    _pair("group by b (count, mean)", reps, lambda r: group(v), lambda r: group(p), 1.05)


def changes(v: pxl.Table, p: pxl.Table, n: int, reps: int) -> None:
    print(f"(2) changing 1% of {n:,} rows ({n // 100:,} rows)", flush=True)
    k = n // 100
    base = [n + 10 * n]

    def insert(t: pxl.Table, r: int) -> None:
        lo = base[0] + r * k
        t.insert([{"a": i, "m": -1, "b": "new", "f": 0.0} for i in range(lo, lo + k)])

    _pair("insert", reps, lambda r: insert(v, r), lambda r: insert(p, r), 1.15)
    _pair("update where m == r", reps, lambda r: v.update({"b": f"u{r}"}, where=v.m == r),
          lambda r: p.update({"b": f"u{r}"}, where=p.m == r), 1.15)
    _pair("delete where m == r", reps, lambda r: v.delete(where=v.m == 50 + r),
          lambda r: p.delete(where=p.m == 50 + r), 1.15)


def reverts(v: pxl.Table, n: int, reps: int) -> None:
    print("(3) reverting a 1% change, against the change itself (versioned table)", flush=True)
    for what, change in (("update", lambda r: v.update({"b": f"x{r}"}, where=v.m == 20 + r)),
                         ("delete", lambda r: v.delete(where=v.m == 30 + r))):
        tc, tr = [], []
        for r in range(reps):
            tc.append(_timed(change, r))
            tr.append(_timed(lambda _: v.revert(), r))
        mc, mr = statistics.median(tc), statistics.median(tr)
        print(f"  revert of a(n) {what:<6} {mr * 1000:9.1f} ms   the {what} {mc * 1000:9.1f} ms   "
              f"ratio {mr / mc:5.2f}x  (target <= 1.5x)", flush=True)
    assert v.count() > 0


def sizes(folder: Path, n: int, versions: int) -> None:
    print(f"(4) the file after {versions} versions of 1% updates ({n:,} rows)", flush=True)
    variants = {"kept (30 days)": {}, "last 10 kept": {"version_retention_count": 10},
                "pruned at once": {"version_retention_days": 0},
                "unversioned": {"versioned": False}}
    for i, (label, options) in enumerate(variants.items()):
        db, t = _make(folder, f"size{i}", n, **options)
        t0 = time.perf_counter()
        for r in range(versions):
            t.update({"b": f"s{r}"}, where=t.m == r % 100)
        spent = time.perf_counter() - t0
        pages, free, size = (db.db.query(f"PRAGMA {p}")[0][0]
                             for p in ("page_count", "freelist_count", "page_size"))
        db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        kept = len(t.get_versions())
        print(f"  {label:<16} file {db.path.stat().st_size / 1e6:8.1f} MB   in use "
              f"{(pages - free) * size / 1e6:8.1f} MB   versions kept {kept:4}   "
              f"{versions} updates in {spent:6.1f} s", flush=True)
        db.close()


def floor(folder: Path, source: pxl.Connection, reps: int) -> None:
    """(5): see the module docstring. Both forms run in one file, interleaved, each on rows
    ``m == r`` not touched before."""
    import apsw

    meta = catalog.load_table(source.db, "t")
    m = meta.column("m").sql
    ddl = [r[0] for r in source.db.query("SELECT sql FROM sqlite_master WHERE name IN (?, ?) "
                                         "ORDER BY name = ?", (meta.sql, meta.log_sql,
                                                               meta.log_sql))]
    data = [r[1] for r in source.db.query(f"PRAGMA table_info({meta.sql})") if r[1] != "_rowid"]
    names = "".join(f", {c}" for c in data)
    path = folder / "floor.sqlite"
    c = apsw.Connection(str(path))
    c.pragma("journal_mode", "wal")
    c.pragma("synchronous", "full")
    for sql in ddl:
        c.execute(sql)
    c.execute("ATTACH ? AS src", (str(source.path),))
    with c:
        c.execute(f"INSERT INTO main.{meta.sql}(_rowid{names}) SELECT _rowid{names} FROM "
                  f"src.{meta.sql}")
    c.execute("DETACH src")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def plain(r: int) -> None:
        c.execute(f"DELETE FROM {meta.sql} WHERE {m} = ?", (r,))

    def captured(r: int) -> None:
        c.pragma("mmap_size", 1 << 30)
        c.execute(f"INSERT INTO {meta.log_sql}(_v, _rowid, _op{names}) SELECT ?, _rowid, 'd'"
                  f"{names} FROM {meta.sql} WHERE {m} = ?", (1000 + r, r))
        found = c.execute(f"SELECT _rowid FROM {meta.log_sql} WHERE _v = ?", (1000 + r,))
        c.executemany(f"DELETE FROM {meta.sql} WHERE _rowid = ?", found)
        c.pragma("mmap_size", 0)

    def committed(fn: Callable[[int], None]) -> Callable[[int], None]:
        def run(r: int) -> None:
            with c:
                fn(r)
        return run

    print("(5) the floor under (2)'s delete: SQLite alone, the same rows and layout", flush=True)
    left = [r for r in range(100) if c.execute(
        f"SELECT 1 FROM {meta.sql} WHERE {m} = ? LIMIT 1", (r,)).fetchall()]
    if len(left) < 2 * reps:
        reps = len(left) // 2
    _pair("delete where m == r, in SQLite", reps, lambda r: committed(captured)(left[2 * r]),
          lambda r: committed(plain)(left[2 * r + 1]), 1.15,
          ("copy + rowid deletes", "DELETE ... WHERE"))
    c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100,000 rows, 3 repetitions")
    ap.add_argument("-n", type=int, default=None, help="rows per table")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--versions", type=int, default=100, help="versions made for (4)")
    ap.add_argument("--parts", default="12345", help="which of (1) to (5) to run")
    args = ap.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    reps = args.reps or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="pxlite-bench-versions-") as d:
        folder = Path(d)
        t0 = time.perf_counter()
        dbv, v = _make(folder, "versioned", n)
        dbp, p = _make(folder, "unversioned", n, versioned=False)
        print(f"two tables of {n:,} rows made in {time.perf_counter() - t0:.1f} s; "
              f"{reps} repetitions, medians", flush=True)
        if "1" in args.parts:
            reads(v, p, reps)
        if "2" in args.parts:
            changes(v, p, n, reps)
        if "3" in args.parts:
            reverts(v, n, reps)
        dbp.close()
        if "5" in args.parts:
            floor(folder, dbv, reps)
        dbv.close()
        if "4" in args.parts:
            sizes(folder, n, args.versions)


if __name__ == "__main__":
    main()
