"""Core benchmarks of pxlite, each beside a plain baseline doing the same work in the same run.

    python tools/bench.py            # default run (~1-2 min on 2 cores)
    python tools/bench.py --quick    # smoke run (seconds): small sizes, one repetition

(a) ``import pxlite`` time in a fresh interpreter (median), and ``-X importtime``'s top offenders;
(b) inserting 100,000 (Int, String, Float) rows in one ``t.insert(list_of_dicts)`` call vs a plain
    apsw ``executemany`` of the same rows into an equivalent table (same DDL, WAL, same pragmas,
    one transaction): rows/s and the ratio (target: within 2x);
(c) inserting 1,000 local 640x480 JPEG paths in one call vs a plain loop doing what the contract
    asks of it (resolve the path, read the file header, insert the file:// URI): rows/s, peak RSS.

Each case runs in a fresh child process (see tools/benchlib.py); peak RSS is the child's own.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
# Modules `import pxlite` should not pull in (each costs milliseconds and most are optional).
# pxlite.compute is not one of them: it is a light module that `import pxlite` loads (via
# pxlite.table, ~1.5 ms with pxlite.exprs); what it defers until it computes is its thread pool,
# concurrent.futures, which is listed instead.
HEAVY = ("PIL", "boto3", "botocore", "diskcache", "google", "azure", "numpy", "pandas", "tqdm",
         "concurrent.futures", "pxlite.cache", "pxlite.storage.s3")


# ---- child cases --------------------------------------------------------------------------------

def _scalar_rows(n: int) -> list[dict[str, Any]]:
    return [{"i": i, "s": f"row-{i:08d}-label", "f": i * 0.25} for i in range(n)]


def case_insert_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    rows = _scalar_rows(p["n"])
    db = pxl.connect(Path(p["tmp"]) / "insert.pxl")
    t = db.create_table("bench", {"i": pxl.Int, "s": pxl.String, "f": pxl.Float})
    t0 = bl.now()
    t.insert(rows)
    dt = bl.now() - t0
    assert t.count() == p["n"]
    return {"seconds": dt, "rows_per_s": p["n"] / dt}


def _plain_db(path: Path):
    """An apsw connection set up the way pxlite sets up its own (pxlite/db.py _configure)."""
    import apsw
    import apsw.bestpractice

    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(30_000)
    # As pxlite's: no connection_optimize at connect (pxlite runs PRAGMA optimize at close), and
    # synchronous FULL (a pxlite commit survives power loss: one more WAL fsync per commit).
    for fix in (apsw.bestpractice.connection_dqs, apsw.bestpractice.connection_recursive_triggers):
        fix(conn)
    conn.pragma("foreign_keys", True)
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "full")
    return conn


def case_insert_apsw(p: dict[str, Any]) -> dict[str, Any]:
    rows = _scalar_rows(p["n"])
    conn = _plain_db(Path(p["tmp"]) / "plain.db")
    # The same shape as pxlite's data table: explicit rowid plus value/errortype/errormsg columns.
    conn.execute("CREATE TABLE t_1 (_rowid INTEGER PRIMARY KEY, c1 INTEGER, c1_et TEXT, "
                 "c1_em TEXT, c2 TEXT, c2_et TEXT, c2_em TEXT, c3 REAL, c3_et TEXT, c3_em TEXT)")
    sql = "INSERT INTO t_1 (_rowid, c1, c2, c3) VALUES (?, ?, ?, ?)"
    if p.get("tuples"):
        data = [(k + 1, r["i"], r["s"], r["f"]) for k, r in enumerate(rows)]
        t0 = bl.now()
    else:
        t0 = bl.now()
        data = ((k + 1, r["i"], r["s"], r["f"]) for k, r in enumerate(rows))  # type: ignore[assignment]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, data)
    conn.execute("COMMIT")
    dt = bl.now() - t0
    assert conn.execute("SELECT count(*) FROM t_1").fetchall()[0][0] == p["n"]
    return {"seconds": dt, "rows_per_s": p["n"] / dt}


def case_paths_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    paths = sorted(str(q) for q in Path(p["images"]).glob("*.jpg"))[: p["n"]]
    db = pxl.connect(Path(p["tmp"]) / "paths.pxl")
    t = db.create_table("bench", {"image": pxl.Image})
    rows = [{"image": q} for q in paths]
    t0 = bl.now()
    t.insert(rows)
    dt = bl.now() - t0
    assert t.count() == len(paths)
    return {"seconds": dt, "rows_per_s": len(paths) / dt}


def case_paths_plain(p: dict[str, Any]) -> dict[str, Any]:
    paths = sorted(str(q) for q in Path(p["images"]).glob("*.jpg"))[: p["n"]]
    conn = _plain_db(Path(p["tmp"]) / "plain_paths.db")
    conn.execute("CREATE TABLE t_1 (_rowid INTEGER PRIMARY KEY, c1 TEXT, c1_et TEXT, c1_em TEXT)")

    def gen():
        for k, q in enumerate(paths):
            ap = Path(q).expanduser().absolute()
            with open(ap, "rb") as f:
                head = f.read(32)
            if not head.startswith(b"\xff\xd8\xff"):
                raise ValueError(f"{ap} is not a JPEG")
            yield (k + 1, ap.as_uri())

    t0 = bl.now()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO t_1 (_rowid, c1) VALUES (?, ?)", gen())
    conn.execute("COMMIT")
    dt = bl.now() - t0
    return {"seconds": dt, "rows_per_s": len(paths) / dt}


CASES = {"insert_pxlite": case_insert_pxlite, "insert_apsw": case_insert_apsw,
         "paths_pxlite": case_paths_pxlite, "paths_plain": case_paths_plain}


# ---- parent -------------------------------------------------------------------------------------

def import_times(reps: int) -> tuple[list[float], list[float], list[str]]:
    """In-process ``import pxlite`` seconds, bare-interpreter start-up seconds, heavy modules
    that ``import pxlite`` pulled in."""
    code = ("import time, sys; t = time.perf_counter(); import pxlite; "
            "print(time.perf_counter() - t); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(bl.ROOT)}
    imp, bare, heavy = [], [], []
    for _ in range(reps):
        t0 = bl.now()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
        bare.append(bl.now() - t0)
        out = subprocess.run([sys.executable, "-c", code], check=True, env=env,
                             capture_output=True, text=True).stdout.splitlines()
        imp.append(float(out[0]))
        heavy = [m for m in out[1].split(",") if m] if len(out) > 1 else []
    return imp, bare, heavy


def importtime_top(n: int = 12) -> list[tuple[int, int, str]]:
    """``python -X importtime -c 'import pxlite'``: the top modules of pxlite's own import tree
    (not the interpreter's start-up, e.g. ``site`` and its .pth imports) by cumulative us."""
    env = {**os.environ, "PYTHONPATH": str(bl.ROOT)}
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pxlite"], env=env,
                         capture_output=True, text=True, check=True).stderr
    group: list[tuple[int, int, str]] = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if not m:
            continue
        group.append((int(m.group(1)), int(m.group(2)), m.group(4)))
        if len(m.group(3)) == 1:  # a top-level import closes its subtree (printed post-order)
            if m.group(4) == "pxlite":
                break
            group = []
    return sorted(group, key=lambda r: -r[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 5, --quick 1)")
    ap.add_argument("--rows", type=int, help="scalar rows to insert (default 100000)")
    ap.add_argument("--images", type=int, help="image paths to insert (default 1000)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    n_rows = args.rows or (5_000 if args.quick else 100_000)
    n_img = args.images or (100 if args.quick else 1_000)

    bl.header(f"pxlite core benchmark{' (--quick)' if args.quick else ''}")
    summary: list[list[Any]] = []

    # (a) import time
    bl.say("\n(a) import pxlite in a fresh interpreter")
    imp, bare, heavy = import_times(max(3, reps) if not args.quick else 3)
    imp_ms = statistics.median(imp) * 1000
    bl.say(bl.table(["measure", "median ms", "min ms", "max ms"], [
        ["import pxlite (in-process)", imp_ms, min(imp) * 1000, max(imp) * 1000],
        ["python -c pass (whole process)", statistics.median(bare) * 1000, min(bare) * 1000,
         max(bare) * 1000],
    ]))
    bl.say(f"  heavy modules imported by `import pxlite`: {', '.join(heavy) or 'none'}")
    bl.say("  -X importtime, top by cumulative time (us):")
    bl.say(bl.table(["module", "self us", "cumulative us"],
                    [[m, s, c] for s, c, m in importtime_top()]))
    summary.append(["import pxlite", f"{imp_ms:.1f} ms", "", "", "-"])

    with bl.temp_dir("pxlite-bench-") as tmp:
        # (b) 100k scalar rows
        bl.say(f"\n(b) insert {n_rows:,} (Int, String, Float) rows in one call ({reps} reps)")
        runs = []
        for label, case, extra in (("pxlite t.insert(list of dicts)", "insert_pxlite", {}),
                                   ("apsw executemany (tuples from the dicts)", "insert_apsw", {}),
                                   ("apsw executemany (pre-built tuples)", "insert_apsw",
                                    {"tuples": True})):
            runs.append((label, case, {"n": n_rows, "extra": label, **extra}))
        res = {}
        for rep in range(reps):
            for label, case, params in runs:
                d = tmp / f"b{rep}-{case}-{len(res)}"
                d.mkdir()
                r = bl.run_case(SCRIPT, case, {**params, "tmp": str(d)})
                res.setdefault(label, []).append(r)
                bl.say(f"  [{rep + 1}/{reps}] {label}: {res[label][-1]['rows_per_s']:,.0f} rows/s")
                bl.shutil.rmtree(d, ignore_errors=True)
        px = bl.med(res[runs[0][0]], "rows_per_s")
        rows = []
        for label, _, _ in runs:
            r = bl.med(res[label], "rows_per_s")
            rows.append([label, r, bl.med(res[label], "seconds"), px and r / px,
                         bl.med(res[label], "rss_mb")])
        bl.say(bl.table(["case", "rows/s", "seconds", "pxlite time / its time", "peak RSS MB"],
                        rows))
        ratio = rows[1][1] / px
        ratio_t = rows[2][1] / px
        best = (min(r["seconds"] for r in res[runs[0][0]])
                / min(r["seconds"] for r in res[runs[1][0]]))
        bl.say(f"  best-of-{reps} times: pxlite takes {best:.2f}x the time of apsw executemany "
               "from the same dicts (less sensitive to background load than the median)")
        bl.say(f"  pxlite takes {ratio:.2f}x the time of apsw executemany fed from the same dicts "
               f"({ratio_t:.2f}x vs pre-built tuples); target <= 2x: {bl.verdict(ratio, 2.0)}")
        summary.append([f"insert {n_rows:,} scalar rows", f"{px:,.0f} rows/s",
                        f"{rows[1][1]:,.0f} rows/s", f"{ratio:.2f}x",
                        "<= 2x " + bl.verdict(ratio, 2.0)])

        # (c) 1,000 local image paths
        bl.say(f"\n(c) insert {n_img:,} local 640x480 JPEG paths in one call ({reps} reps)")
        images = tmp / "images"
        bl.write_jpeg_variants(images, n_img)
        runs = [("pxlite t.insert(paths)", "paths_pxlite"),
                ("plain: header check + apsw executemany", "paths_plain")]
        res = {}
        for rep in range(reps):
            for label, case in runs:
                d = tmp / f"c{rep}-{case}"
                d.mkdir()
                res.setdefault(label, []).append(bl.run_case(
                    SCRIPT, case, {"n": n_img, "images": str(images), "tmp": str(d)}))
                bl.say(f"  [{rep + 1}/{reps}] {label}: {res[label][-1]['rows_per_s']:,.0f} rows/s")
                bl.shutil.rmtree(d, ignore_errors=True)
        rows = [[label, bl.med(res[label], "rows_per_s"), bl.med(res[label], "seconds") * 1000,
                 bl.med(res[label], "rss_mb")] for label, _ in runs]
        bl.say(bl.table(["case", "rows/s", "ms", "peak RSS MB"], rows))
        ratio = rows[1][1] / rows[0][1]
        best = (min(r["seconds"] for r in res[runs[0][0]])
                / min(r["seconds"] for r in res[runs[1][0]]))
        bl.say(f"  pxlite takes {ratio:.2f}x the plain loop's time (best-of-{reps} times: "
               f"{best:.2f}x)")
        summary.append([f"insert {n_img:,} image paths", f"{rows[0][1]:,.0f} rows/s",
                        f"{rows[1][1]:,.0f} rows/s", f"{ratio:.2f}x",
                        f"peak RSS {rows[0][3]:.0f} MB (plain {rows[1][3]:.0f} MB)"])

    bl.say("\nSummary (medians)")
    bl.say(bl.table(["case", "pxlite", "baseline", "time ratio", "target"], summary))


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
