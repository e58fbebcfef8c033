"""Import benchmarks: ``pxl.io.import_files`` and ``pxl.io.import_csv`` beside the plain loops
doing the same work, side by side in one run (interleaved repetitions, medians), with each
case's peak RSS.

    python tools/bench_import.py            # the issue's sizes (~5-10 min on 2 cores)
    python tools/bench_import.py --quick    # smoke run: small sizes, one repetition

(a) a local folder of 100,000 small files (100 sub-folders): ``import_files`` into a new table
    vs an ``os.scandir`` walk that stats each file, reads its first 64 bytes (the header check)
    and writes the same rows (URI, key, size, mtime) with one apsw ``executemany``;
(b) a 20,000-object prefix on the S3 emulator (moto): ``import_files`` vs boto3's paginated
    listing alone; then the same import again with nothing new (only the lookups);
(c) a 1,000,000-row CSV (int, text, float, bool, timestamp): ``import_csv`` into a new table vs
    the ``csv`` module reading it plus one ``executemany`` of its rows (as text).

Targets (issue 19): (a) <= 1.3x, (b) <= 1.3x and the re-run <= 1.1x, (c) <= 1.5x; peak RSS
under 200 MB in every case. Each case runs in a fresh child process (tools/benchlib.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
BUCKET = "pxlite-bench-import"
#: A tiny valid PNG (1x1), the content of every generated file.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
                    "53de0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")


# ---- setup (parent) -----------------------------------------------------------------------------
def make_folder(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"d{i % 100:03d}"
        if i < 100:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:07d}.png").write_bytes(PNG)


def fill_bucket(endpoint: str, n: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    bl.moto_reset_and_bucket(endpoint, BUCKET)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"p/d{i % 50:02d}/o{i:07d}.png",
                                              Body=PNG), range(n)))


def make_csv(path: Path, n: int) -> None:
    import datetime as dt

    base = dt.datetime(2024, 1, 1, 12, 0, 0)
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,name,score,ok,when\n")
        for i in range(n):
            when = (base + dt.timedelta(seconds=i)).isoformat()
            f.write(f"{i},name {i % 977},{i * 0.25},{'true' if i % 3 else 'false'},{when}\n")


# ---- child cases --------------------------------------------------------------------------------
def case_files_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = pxl.connect(Path(p["tmp"]) / "f.pxl")
    t0, c0 = time.perf_counter(), time.process_time()
    status = pxl.io.import_files("files", p["folder"], db=db)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert status.num_rows == p["n"], status
    return {"s": secs, "cpu_s": cpu, "rows": status.num_rows}


def case_files_plain(p: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt
    import os
    import urllib.parse

    import apsw

    con = apsw.Connection(str(Path(p["tmp"]) / "plain.db"))
    con.execute("PRAGMA journal_mode=wal; PRAGMA synchronous=full")
    con.execute("CREATE TABLE f (uri TEXT, key TEXT, size INTEGER, mtime TEXT)")
    root = p["folder"]
    t0, c0 = time.perf_counter(), time.process_time()

    def walk(where: str, rel: str):  # a plain recursive scandir walk
        with os.scandir(where) as it:
            for e in it:
                if e.is_dir():
                    yield from walk(e.path, rel + e.name + "/")
                else:
                    st = e.stat()
                    with open(e.path, "rb") as f:
                        f.read(64)
                    yield ("file://" + urllib.parse.quote(e.path), rel + e.name, st.st_size,
                           dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat())

    with con:
        con.executemany("INSERT INTO f VALUES (?, ?, ?, ?)", walk(root, ""))
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = con.execute("SELECT count(*) FROM f").fetchall()[0][0]
    assert n == p["n"]
    return {"s": secs, "cpu_s": cpu, "rows": n}


def case_s3_list(p: dict[str, Any]) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=p["endpoint"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="p/"):
        n += len(page.get("Contents", ()))
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert n == p["n"]
    return {"s": secs, "cpu_s": cpu, "rows": n}


def case_s3_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = pxl.connect(Path(p["tmp"]) / "s3.pxl", config=bl.s3_config(p["endpoint"]))
    t0, c0 = time.perf_counter(), time.process_time()
    first = pxl.io.import_files("objs", f"s3://{BUCKET}/p/", db=db)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    again = pxl.io.import_files("objs", f"s3://{BUCKET}/p/", db=db)
    rerun = time.perf_counter() - t1
    assert first.num_rows == p["n"] and again.num_rows == 0, (first, again)
    return {"s": secs, "cpu_s": cpu, "rerun_s": rerun, "rows": first.num_rows}


def case_csv_plain(p: dict[str, Any]) -> dict[str, Any]:
    import csv

    import apsw

    con = apsw.Connection(str(Path(p["tmp"]) / "csv.db"))
    con.execute("PRAGMA journal_mode=wal; PRAGMA synchronous=full")
    con.execute("CREATE TABLE c (id, name, score, ok, at)")
    t0, c0 = time.perf_counter(), time.process_time()
    with open(p["csv"], newline="", encoding="utf-8") as f, con:
        reader = csv.reader(f)
        next(reader)
        con.executemany("INSERT INTO c VALUES (?, ?, ?, ?, ?)", reader)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"s": secs, "cpu_s": cpu,
            "rows": con.execute("SELECT count(*) FROM c").fetchall()[0][0]}


def case_csv_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = pxl.connect(Path(p["tmp"]) / "csvpx.pxl")
    t0, c0 = time.perf_counter(), time.process_time()
    t = pxl.io.import_csv("rows", p["csv"], db=db)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = t.count()
    assert n == p["n"]
    return {"s": secs, "cpu_s": cpu, "rows": n}


CASES = {"files_pxlite": case_files_pxlite, "files_plain": case_files_plain,
         "s3_list": case_s3_list, "s3_pxlite": case_s3_pxlite,
         "csv_plain": case_csv_plain, "csv_pxlite": case_csv_pxlite}


# ---- parent -------------------------------------------------------------------------------------
def _fresh(tmp: Path, tag: str) -> str:
    d = tmp / tag
    bl.shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return str(d)


def _pair(tmp: Path, reps: int, pxlite_case: str, plain_case: str,
          params: dict[str, Any], before: Any = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"pxlite": [], "plain": []}
    for rep in range(reps):
        for label, case in (("plain", plain_case), ("pxlite", pxlite_case)):
            if before is not None:
                before()
            r = bl.run_case(SCRIPT, case, {**params, "tmp": _fresh(tmp, f"{case}{rep}")})
            out[label].append(r)
            bl.say(f"  [{rep + 1}/{reps}] {case}: " + ", ".join(
                f"{k}={bl.fmt(v)}" for k, v in r.items() if isinstance(v, (int, float))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, --quick 1)")
    ap.add_argument("--only", choices=["files", "s3", "csv"], action="append",
                    help="run only these parts (repeatable)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    n_files, n_objects, n_rows = (2_000, 1_000, 20_000) if args.quick else \
        (100_000, 20_000, 1_000_000)
    parts = args.only or ["files", "s3", "csv"]
    from tools.servers import moto_server

    bl.header(f"pxlite import benchmark{' (--quick)' if args.quick else ''}")
    summary: list[list[Any]] = []
    with bl.temp_dir("pxlite-bench-import-") as tmp:
        if "files" in parts:
            bl.say(f"\n(a) a local folder of {n_files:,} small files")
            folder = tmp / "folder"
            make_folder(folder, n_files)
            r = _pair(tmp, reps, "files_pxlite", "files_plain",
                      {"folder": str(folder), "n": n_files})
            ratio = bl.med(r["pxlite"], "s") / bl.med(r["plain"], "s")
            summary.append(["(a) import_files, local folder", f"{n_files:,} files",
                            bl.med(r["plain"], "s"), bl.med(r["pxlite"], "s"), ratio,
                            _cpu_ratio(r), 1.3, max(x["rss_mb"] for x in r["pxlite"]),
                            bl.verdict(ratio, 1.3)])
            bl.shutil.rmtree(folder, ignore_errors=True)
        if "s3" in parts:
            bl.say(f"\n(b) a {n_objects:,}-object prefix on moto (S3)")
            with moto_server() as s3:
                fill_bucket(s3.endpoint, n_objects)
                r = _pair(tmp, reps, "s3_pxlite", "s3_list",
                          {"endpoint": s3.endpoint, "n": n_objects})
            listing = bl.med(r["plain"], "s")
            ratio = bl.med(r["pxlite"], "s") / listing
            rerun = bl.med(r["pxlite"], "rerun_s") / listing
            rss = max(x["rss_mb"] for x in r["pxlite"])
            summary.append(["(b) import_files, S3 prefix", f"{n_objects:,} objects", listing,
                            bl.med(r["pxlite"], "s"), ratio, _cpu_ratio(r), 1.3, rss,
                            bl.verdict(ratio, 1.3)])
            summary.append(["(b) same, re-run (nothing new)", f"{n_objects:,} objects", listing,
                            bl.med(r["pxlite"], "rerun_s"), rerun, "", 1.1, rss,
                            bl.verdict(rerun, 1.1)])
        if "csv" in parts:
            bl.say(f"\n(c) a {n_rows:,}-row CSV")
            path = tmp / "rows.csv"
            make_csv(path, n_rows)
            r = _pair(tmp, reps, "csv_pxlite", "csv_plain", {"csv": str(path), "n": n_rows})
            ratio = bl.med(r["pxlite"], "s") / bl.med(r["plain"], "s")
            summary.append(["(c) import_csv", f"{n_rows:,} rows", bl.med(r["plain"], "s"),
                            bl.med(r["pxlite"], "s"), ratio, _cpu_ratio(r), 1.5,
                            max(x["rss_mb"] for x in r["pxlite"]), bl.verdict(ratio, 1.5)])
    bl.say("\nSummary (seconds are medians of wall time; 'cpu ratio' compares the processes' "
           "own CPU time,\nwhich a loaded machine disturbs less; RSS is pxlite's peak, MB; "
           "target RSS < 200 MB)")
    bl.say(bl.table(["case", "size", "plain s", "pxlite s", "ratio", "cpu ratio", "target",
                     "peak RSS", "verdict"], summary))


def _cpu_ratio(r: dict[str, list[dict[str, Any]]]) -> float:
    return bl.med(r["pxlite"], "cpu_s") / bl.med(r["plain"], "cpu_s")


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
