"""Storage benchmarks on a local moto (S3) server: pxlite's backends, its download cache, and
``t.move_media``.

    python tools/bench_storage.py            # default run (~1-2 min on 2 cores)
    python tools/bench_storage.py --quick    # smoke run: 100 objects, one repetition

(a) upload and download throughput of 1,000 objects of ~92 KB (distinct JPEGs) through pxlite's
    S3 backend (``put_file`` / ``get_file``), on a ThreadPoolExecutor of 16 (the way pxlite's
    executor drives it) vs one at a time, in the same run;
(b) download-cache hit latency: ``pxlite.cache.FileCache.get_path`` on a hit, median and p99 in
    microseconds, from one thread and from 16 threads at once (no network involved);
(c) ``t.move_media(column, 's3://...')`` of 1,000 files pxlite wrote to a local folder: files/s
    and peak RSS, beside a plain boto3 loop (16 threads) uploading the same files and deleting the
    local copies.

Each case runs in a fresh child process (tools/benchlib.py); peak RSS is the child's own.
moto runs on the same 2 cores as the client, so absolute throughput here is a floor: the point is
the concurrent/sequential ratio and pxlite vs the plain loop.
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
BUCKET = "pxlite-bench"
POOL = 16


# ---- child cases --------------------------------------------------------------------------------

def case_transfer(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl
    from pxlite import storage

    tmp = Path(p["tmp"])
    n = p["n"]
    src = bl.write_jpeg_variants(tmp / "src", n)
    mb = sum(q.stat().st_size for q in src) / 1e6
    db = pxl.connect(tmp / "x.pxl", config=bl.s3_config(p["endpoint"]))
    be = storage.get_backend(f"s3://{BUCKET}/", db.settings())
    for i in range(10):  # warm the client and its connection pool (not timed)
        be.put_file(src[i], f"s3://{BUCKET}/warm/{i}.jpg", content_type="image/jpeg")
        be.get_file(f"s3://{BUCKET}/warm/{i}.jpg", tmp / "warm.jpg")
    out: dict[str, Any] = {"mb": mb}

    def timed(name: str, fn: Any, items: list[Any], workers: int) -> None:
        t0 = bl.now()
        if workers == 1:
            for it in items:
                fn(it)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fn, items))
        dt = bl.now() - t0
        out[f"{name}_objs"] = n / dt
        out[f"{name}_mbs"] = mb / dt

    idx = list(range(n))
    (tmp / "dl").mkdir()
    # Alternate which mode goes first between repetitions so warm-up/drift favours neither.
    modes = [("seq", 1), ("conc", POOL)]
    if p.get("rep", 0) % 2:
        modes.reverse()
    for mode, w in modes:
        timed(f"up_{mode}", lambda i, m=mode: be.put_file(
            src[i], f"s3://{BUCKET}/{m}/{i:05d}.jpg", content_type="image/jpeg"), idx, w)
    for mode, w in modes:
        timed(f"down_{mode}", lambda i, m=mode: be.get_file(
            f"s3://{BUCKET}/{m}/{i:05d}.jpg", tmp / "dl" / f"{m}_{i:05d}.jpg"), idx, w)
    return out


def case_cache_hits(p: dict[str, Any]) -> dict[str, Any]:
    import random

    from pxlite.cache import FileCache

    tmp = Path(p["tmp"])
    cache = FileCache(tmp / "cache", 10**10)
    payload = b"x" * 4096
    urls = [f"s3://bucket/obj/{i:06d}.jpg" for i in range(p["entries"])]

    def fetch(dest: Path) -> None:
        dest.write_bytes(payload)

    for u in urls:
        cache.get_path(u, fetch)
    misses = []
    hits_before = cache.info()
    rnd = random.Random(1)

    def never(dest: Path) -> None:
        misses.append(dest)

    def measure(k: int, seed: int) -> list[int]:
        r = random.Random(seed)
        lat = []
        ns = bl.time.perf_counter_ns
        for _ in range(k):
            u = urls[r.randrange(len(urls))]
            t0 = ns()
            cache.get_path(u, never)
            lat.append(ns() - t0)
        return lat

    measure(500, 0)  # warm
    t0 = bl.now()
    single = measure(p["hits"], rnd.randrange(1 << 30))
    single_s = bl.now() - t0
    per = p["hits"] // POOL
    results: list[list[int]] = [[] for _ in range(POOL)]
    start = threading.Barrier(POOL + 1)

    def worker(k: int) -> None:
        start.wait()
        results[k] = measure(per, 100 + k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(POOL)]
    for th in threads:
        th.start()
    start.wait()
    t0 = bl.now()
    for th in threads:
        th.join()
    multi_s = bl.now() - t0
    multi = [x for r in results for x in r]
    assert not misses, f"{len(misses)} unexpected misses"
    del hits_before
    med = bl.statistics.median
    return {"single_med_us": med(single) / 1000, "single_p99_us": bl.percentile(single, 99) / 1000,
            "single_hits_s": len(single) / single_s,
            "multi_med_us": med(multi) / 1000, "multi_p99_us": bl.percentile(multi, 99) / 1000,
            "multi_hits_s": len(multi) / multi_s}


def case_move_setup(p: dict[str, Any]) -> dict[str, Any]:
    """A table whose column holds n files pxlite wrote (input_media_dest = a local folder)."""
    import pxlite as pxl

    tmp = Path(p["tmp"])
    src = bl.write_jpeg_variants(tmp / "src", p["n"])
    cfg = {**bl.s3_config(p["endpoint"]), "input_media_dest": str(tmp / "inmedia")}
    db = pxl.connect(tmp / "move.pxl", config=cfg)
    t = db.create_table("bench", {"image": pxl.Image})
    t.insert([{"image": str(q)} for q in src])
    for q in src:
        q.unlink()
    return {"files": sum(1 for q in (tmp / "inmedia").rglob("*.jpg"))}


def case_move_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    tmp = Path(p["tmp"])
    cfg = {**bl.s3_config(p["endpoint"]), "input_media_dest": str(tmp / "inmedia")}
    db = pxl.connect(tmp / "move.pxl", config=cfg)
    t = db.get_table("bench")
    rss0 = bl.peak_rss_mb()
    t0 = bl.now()
    t.move_media("image", f"s3://{BUCKET}/moved/")
    dt = bl.now() - t0
    left = sum(1 for _ in (tmp / "inmedia").rglob("*.jpg"))
    on_s3 = sum(1 for row in t.select(url=t.image.fileurl).collect().to_dicts()
                if str(row["url"]).startswith(f"s3://{BUCKET}/moved/"))
    return {"seconds": dt, "files_per_s": p["n"] / dt, "rss_before_mb": rss0, "left_local": left,
            "rows_on_s3": on_s3}


def case_move_plain(p: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    tmp = Path(p["tmp"])
    files = sorted((tmp / "inmedia").rglob("*.jpg"))
    s3 = boto3.client("s3", endpoint_url=p["endpoint"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      config=Config(max_pool_connections=32))

    def one(q: Path) -> None:
        s3.upload_file(str(q), BUCKET, f"plain/{q.relative_to(tmp / 'inmedia')}")
        q.unlink()

    t0 = bl.now()
    with ThreadPoolExecutor(POOL) as pool:
        list(pool.map(one, files))
    dt = bl.now() - t0
    return {"seconds": dt, "files_per_s": len(files) / dt}


CASES = {"transfer": case_transfer, "cache_hits": case_cache_hits, "move_setup": case_move_setup,
         "move_pxlite": case_move_pxlite, "move_plain": case_move_plain}


# ---- parent -------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 objects, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, --quick 1)")
    ap.add_argument("-n", type=int, help="objects per case (default 1000)")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    n = args.n or (100 if args.quick else 1000)
    hits = 2_000 if args.quick else 32_000

    from tools.servers import moto_server

    bl.header(f"pxlite storage benchmark{' (--quick)' if args.quick else ''}: moto S3 on loopback")
    summary: list[list[Any]] = []
    with bl.temp_dir("pxlite-bench-storage-") as tmp, moto_server() as s3:
        def fresh(tag: str) -> Path:
            d = tmp / tag
            bl.shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            return d

        # (a) transfers
        bl.say(f"\n(a) {n:,} objects of ~92 KB through pxlite's S3 backend: {POOL} threads vs "
               f"one at a time ({reps} reps)")
        res = []
        for rep in range(reps):
            bl.moto_reset_and_bucket(s3.endpoint, BUCKET)
            d = fresh(f"a{rep}")
            r = bl.run_case(SCRIPT, "transfer", {"n": n, "endpoint": s3.endpoint,
                                                 "tmp": str(d), "rep": rep})
            bl.shutil.rmtree(d, ignore_errors=True)
            res.append(r)
            bl.say(f"  [{rep + 1}/{reps}] upload {r['up_conc_objs']:.0f} vs {r['up_seq_objs']:.0f}"
                   f" objects/s, download {r['down_conc_objs']:.0f} vs {r['down_seq_objs']:.0f}"
                   " objects/s (16 threads vs sequential)")
        rows = []
        for what in ("up", "down"):
            c, s = bl.med(res, f"{what}_conc_objs"), bl.med(res, f"{what}_seq_objs")
            name = "upload (put_file)" if what == "up" else "download (get_file)"
            rows.append([name, c, bl.med(res, f"{what}_conc_mbs"), s,
                         bl.med(res, f"{what}_seq_mbs"), c / s])
            summary.append([f"(a) {name}, {n:,} x ~92 KB", f"{c:.0f} obj/s ({POOL} threads)",
                            f"{s:.0f} obj/s (sequential)", f"{c / s:.2f}x faster"])
        bl.say(bl.table([" ", f"{POOL} threads obj/s", "MB/s", "sequential obj/s", "MB/s",
                         "speed-up"], rows))

        # (b) cache hits
        bl.say(f"\n(b) FileCache.get_path on a hit ({hits:,} hits over 1,000 entries, {reps} reps)")
        res = []
        for rep in range(reps):
            d = fresh(f"b{rep}")
            res.append(bl.run_case(SCRIPT, "cache_hits", {"entries": 1000, "hits": hits,
                                                          "tmp": str(d)}))
            bl.shutil.rmtree(d, ignore_errors=True)
        rows = [["1 thread", bl.med(res, "single_med_us"), bl.med(res, "single_p99_us"),
                 bl.med(res, "single_hits_s")],
                [f"{POOL} threads at once", bl.med(res, "multi_med_us"),
                 bl.med(res, "multi_p99_us"), bl.med(res, "multi_hits_s")]]
        bl.say(bl.table(["readers", "median us", "p99 us", "hits/s (total)"], rows))
        summary.append(["(b) cache hit latency", f"median {rows[0][1]:.0f} us, p99 "
                        f"{rows[0][2]:.0f} us", f"16 threads: median {rows[1][1]:.0f} us, p99 "
                        f"{rows[1][2]:.0f} us", ""])

        # (c) move_media
        bl.say(f"\n(c) t.move_media('image', 's3://...') of {n:,} files pxlite wrote locally")
        res_px, res_plain = [], []
        for rep in range(reps):
            for label, case, out in (("pxlite move_media", "move_pxlite", res_px),
                                     ("plain boto3 upload+delete", "move_plain", res_plain)):
                bl.moto_reset_and_bucket(s3.endpoint, BUCKET)
                d = fresh(f"c{rep}")
                params = {"n": n, "endpoint": s3.endpoint, "tmp": str(d)}
                bl.run_case(SCRIPT, "move_setup", params)
                r = bl.run_case(SCRIPT, case, params)
                bl.shutil.rmtree(d, ignore_errors=True)
                out.append(r)
                bl.say(f"  [{rep + 1}/{reps}] {label}: " + ", ".join(
                    f"{k}={bl.fmt(v)}" for k, v in r.items()))
        rows = [["pxlite move_media", bl.med(res_px, "files_per_s"),
                 bl.med(res_px, "seconds"), bl.med(res_px, "rss_mb"),
                 bl.med(res_px, "rss_before_mb")],
                [f"plain boto3 upload+delete ({POOL} threads)",
                 bl.med(res_plain, "files_per_s"), bl.med(res_plain, "seconds"),
                 bl.med(res_plain, "rss_mb"), ""]]
        bl.say(bl.table(["case", "files/s", "seconds", "peak RSS MB", "RSS before move MB"],
                        rows))
        summary.append(["(c) move_media local -> s3",
                        f"{rows[0][1]:.0f} files/s, peak RSS {rows[0][3]:.0f} MB",
                        f"plain {rows[1][1]:.0f} files/s, {rows[1][3]:.0f} MB",
                        f"{rows[1][1] / rows[0][1]:.2f}x time"])

    bl.say("\nSummary (medians)")
    bl.say(bl.table(["case", "pxlite", "baseline", "ratio"], summary))


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
