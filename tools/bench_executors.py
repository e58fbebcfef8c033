"""Executors side by side, same machine, same run (issue 13's figures).

    python tools/bench_executors.py              # N=1,000 each (~3 min on 2 cores)
    python tools/bench_executors.py --n 200      # quicker
    python tools/bench_executors.py --only udf   # or: --only cluster

(1) A pure-Python UDF (``tools.bench_udfs.pixel_hash``, a loop over every pixel of a 320x240
    JPEG: it holds the GIL) as a computed column over N rows: ``executor='processes'`` vs
    ``'threads'``. Target: processes >= 1.7x faster on 2 cores.
(2) ``rotate(90)`` of N 640x480 JPEGs to S3 (a local moto server): a 2-worker
    ``distributed.LocalCluster`` (processes, one thread each, 127.0.0.1) vs the threads executor
    of this process. Printed: the overhead ratio, and the owning process's own time per cell
    (reading batches, sending tasks, tracking files, committing) as the rate at which it could
    commit cells, which bounds how many workers one database can keep busy.

Rows are computed into fresh columns of one table per case; each case is run twice,
interleaved, and the better time of each is kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl
from tools import servers

BUCKET = "pxlite-bench-exec"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_udf(n: int, tmp: Path) -> None:
    import pxlite as pxl
    from tools.bench_udfs import pixel_hash

    paths = bl.make_photos(tmp / "small", n, size=(320, 240))
    db = pxl.connect(tmp / "udf.pxl")
    t = db.create_table("udf", {"image": pxl.Image})
    t.insert([{"image": str(p)} for p in paths])
    times: dict[str, list[float]] = {"threads": [], "processes": []}
    for rep in range(2):
        for ex in ("threads", "processes"):
            name = f"h_{ex}_{rep}"
            times[ex].append(_timed(lambda ex=ex, name=name: t.add_computed_column(
                **{name: pixel_hash(t.image)}, executor=ex)))
    same = {r["h_threads_0"] == r["h_processes_0"]
            for r in t.select(t.h_threads_0, t.h_processes_0).collect()}
    th, pr = min(times["threads"]), min(times["processes"])
    bl.header(f"(1) pure-Python UDF, N={n}, {os.cpu_count()} cores")
    print(bl.table(["executor", "seconds", "rows/s"],
                   [["threads", th, n / th], ["processes", pr, n / pr]]))
    print(f"processes vs threads: {th / pr:.2f}x faster (target >= 1.7x)  "
          f"{bl.verdict(th / pr, 1.7, lower_is_better=False)}; equal results: {same == {True}}")
    db.close()


def bench_cluster(n: int, tmp: Path) -> None:
    import distributed

    import pxlite as pxl
    from pxlite import executors

    paths = bl.make_photos(tmp / "photos", n)
    with servers.moto_server() as s3:
        bl.moto_reset_and_bucket(s3.endpoint, BUCKET)
        os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
        db = pxl.connect(tmp / "cluster.pxl", config=bl.s3_config(s3.endpoint))
        t = db.create_table("c", {"image": pxl.Image})
        t.insert([{"image": str(p)} for p in paths])
        in_pool = [0.0]
        real_gather = executors.DaskPool.gather

        def timed_gather(self, handle):  # time this process waits for the cluster
            t0 = time.perf_counter()
            try:
                return real_gather(self, handle)
            finally:
                in_pool[0] += time.perf_counter() - t0

        executors.DaskPool.gather = timed_gather  # type: ignore[method-assign]
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as lc, \
                distributed.Client(lc) as client:
            times: dict[str, list[float]] = {"threads": [], "cluster": []}
            own: list[float] = []
            for rep in range(2):
                for ex, target in (("threads", "threads"), ("cluster", client)):
                    name = f"r_{ex}_{rep}"
                    in_pool[0] = 0.0
                    dt = _timed(lambda name=name, target=target: t.add_computed_column(
                        **{name: t.image.rotate(90)}, destination=f"s3://{BUCKET}/{name}/",
                        executor=target))
                    times[ex].append(dt)
                    if ex == "cluster":
                        own.append(dt - in_pool[0])
        th, cl, drv = min(times["threads"]), min(times["cluster"]), min(own)
        bl.header(f"(2) rotate(90) to S3 (moto), N={n}: 2-worker LocalCluster vs threads")
        print(bl.table(["executor", "seconds", "images/s"],
                       [["threads (this process)", th, n / th],
                        ["LocalCluster, 2 workers", cl, n / cl]]))
        rate = n / drv if drv > 0 else float("inf")
        print(f"cluster vs threads: {cl / th:.2f}x the time")
        print(f"owning process outside the cluster: {drv:.2f} s for {n} cells -> it can commit "
              f"~{rate:,.0f} cells/s")
        per_worker = n / cl / 2
        print(f"arithmetic: one worker here does ~{per_worker:.0f} images/s; 100 such workers "
              f"need ~{100 * per_worker:,.0f} cells/s committed, "
              f"{'within' if rate >= 100 * per_worker else 'beyond'} what one owning process "
              f"commits ({rate:,.0f}/s); it keeps ~{rate / per_worker:,.0f} workers busy")
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--only", choices=("udf", "cluster"))
    a = ap.parse_args()
    with bl.temp_dir("pxlite-bench-exec-") as tmp:
        os.environ["PXLITE_HOME"] = str(tmp / "home")
        if a.only in (None, "udf"):
            bench_udf(a.n, tmp)
        if a.only in (None, "cluster"):
            bench_cluster(a.n, tmp)


if __name__ == "__main__":
    main()
