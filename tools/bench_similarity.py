"""Similarity search against numpy brute force, side by side in one run.

    python tools/bench_similarity.py [--rows 100000] [--dim 512] [--repeat 15]

Prints, for top-10 by cosine over ``rows`` x ``dim`` float32 vectors (random, seeded):

- pxlite's ``t.order_by(t.vec.similarity(vector=q), asc=False).limit(10).select(t.k, sim)``
  (the index on the Array column, vectors held in memory after the first query) against two
  numpy brute forces over the same matrix held in memory: **numpy** computes the cosine from
  the vectors as they are (``M @ q / (|M| |q|)``, the norms with einsum), **prenorm** from a
  matrix normalised in advance (``Mn @ qn``: the least work numpy can do per query, what
  pxlite's index does). Recall is pxlite's top-10 against prenorm's (1.0: the same rows).
- the same with ``where(t.cat == 3)`` (10% of the rows) before the top-10, without and with a
  B-tree index on ``cat``; the numpy baselines take those rows (``M[mask]``) with a boolean
  mask held in memory, then the same. The "new filter" case gives each search a where() of
  its own (``& (t.cat != -i)``), so no search can reuse an earlier one's rows: a condition on
  Int, Float, Bool and String columns is evaluated by numpy over the columns held in memory
  (pxlite.vecfilter); others by SQLite, through the table's scan index (pxlite.scanindex) or a
  B-tree index, and remembered while the database is unchanged (vecsearch.filtered_rowids).
- inserting 10,000 rows into a table with the index against one without it (fp32 and fp16 on
  a float32 column: either index reads the column itself, the fp16 one rounding as it reads).
- the file's size for the vectors against rows x dim x 4 bytes.

Timings are medians over ``repeat`` interleaved runs (pxlite, then the baselines, each time),
so background load hits all alike. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pxlite as pxl


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def _top10(scores: np.ndarray) -> np.ndarray:
    part = np.argpartition(-scores, 10)[:10]
    return part[np.argsort(-scores[part])]


def search(args: argparse.Namespace, folder: Path) -> None:
    rng = np.random.default_rng(0)
    n, dim = args.rows, args.dim
    m = rng.standard_normal((n, dim), dtype=np.float32)
    cats = np.arange(n) % 10
    db = pxl.connect(folder / "search.pxl")
    t = db.create_table("v", {"vec": pxl.Array[(dim,), pxl.Float], "k": pxl.Int, "cat": pxl.Int})
    t0 = time.perf_counter()
    for s in range(0, n, 10_000):
        t.insert([{"vec": m[i], "k": i, "cat": int(cats[i])} for i in range(s, min(n, s + 10_000))])
    print(f"setup: {n:,} rows inserted in {time.perf_counter() - t0:.1f} s")
    t.add_embedding_index("vec", metric="cosine", precision="fp32")
    mn = m / np.linalg.norm(m, axis=1)[:, None]
    queries = rng.standard_normal((args.repeat + 1, dim), dtype=np.float32)

    fresh = iter(range(1, 10**9))

    def pxlite_top(q: np.ndarray, where: bool | str) -> list[int]:
        sim = t.vec.similarity(vector=q)
        qry = t
        if where == "new":  # a where() no search has had: the filter cache cannot answer it
            qry = t.where((t.cat == 3) & (t.cat != -next(fresh)))
        elif where:
            qry = t.where(t.cat == 3)
        return qry.order_by(sim, asc=False).limit(10).select(t.k, sim).collect()["k"]

    def numpy_top(q: np.ndarray, where: bool | str) -> np.ndarray:
        if where:
            idx = np.flatnonzero(cats == 3)
            sub = m[idx]
            return idx[_top10(sub @ q / (np.sqrt(np.einsum("ij,ij->i", sub, sub))
                                         * np.linalg.norm(q)))]
        return _top10(m @ q / (np.sqrt(np.einsum("ij,ij->i", m, m)) * np.linalg.norm(q)))

    def prenorm_top(q: np.ndarray, where: bool | str) -> np.ndarray:
        qn = q / np.linalg.norm(q)
        if where:
            idx = np.flatnonzero(cats == 3)
            return idx[_top10(mn[idx] @ qn)]
        return _top10(mn @ qn)

    t0 = time.perf_counter()
    pxlite_top(queries[0], False)
    print(f"first search (reads the {n:,} vectors into memory): "
          f"{time.perf_counter() - t0:.2f} s")
    cases: list[tuple[str, bool | str, str | None]] = [
        ("top-10", False, None), ("top-10, where cat == 3 (10%)", True, None),
        ("top-10, where cat == 3, a new filter each time", "new", None),
        ("top-10, where cat == 3, B-tree index on cat", True, "btree"),
        ("  the same, a new filter each time", "new", "btree")]
    print(f"\n{'case':46} {'pxlite ms':>10} {'numpy ms':>9} {'ratio':>6} "
          f"{'prenorm ms':>10} {'ratio':>6} {'recall':>6}")
    for label, where, extra in cases:
        if extra == "btree":
            t.add_btree_index("cat", if_exists="ignore")
        px, nb, pn, hits = [], [], [], 0
        for q in queries[1:]:
            a = time.perf_counter()
            got = pxlite_top(q, where)
            b = time.perf_counter()
            numpy_top(q, where)
            c = time.perf_counter()
            want = prenorm_top(q, where)
            d = time.perf_counter()
            px.append(b - a)
            nb.append(c - b)
            pn.append(d - c)
            hits += len(set(got) & set(want.tolist()))
        p, nn, pp = _median_ms(px), _median_ms(nb), _median_ms(pn)
        print(f"{label:46} {p:10.2f} {nn:9.2f} {p / nn:6.2f} {pp:10.2f} {p / pp:6.2f} "
              f"{hits / (10 * len(px)):6.3f}")
    db.close()
    size = os.path.getsize(folder / "search.pxl")
    raw = n * dim * 4
    print(f"\nfile: {size / 1e6:,.0f} MB for {n:,} x {dim} float32 vectors "
          f"({raw / 1e6:,.0f} MB raw): {size / raw:.2f}x (the fp32 index is the Array "
          "column itself: no copy)")
    with pxl.connect(folder / "search.pxl") as db2:
        t2 = db2.get_table("v")
        t0 = time.perf_counter()
        t2.add_embedding_index("vec", idx_name="half", precision="fp16")
        built = time.perf_counter() - t0
    grown = os.path.getsize(folder / "search.pxl") - size
    print(f"an fp16 index added beside it (it reads the same column: built in {built:.1f} s): "
          f"+{grown / 1e6:,.0f} MB, {grown / raw:.2f}x of the raw float32 bytes")


def inserts(args: argparse.Namespace, folder: Path) -> None:
    rng = np.random.default_rng(1)
    dim, count = args.dim, 10_000
    rows = [{"vec": v, "k": i, "cat": i % 10}
            for i, v in enumerate(rng.standard_normal((count, dim), dtype=np.float32))]
    times: dict[str, list[float]] = {"none": [], "fp32": [], "fp16": []}
    for rep in range(args.insert_repeat):
        for kind in times:
            with pxl.connect(folder / f"ins_{kind}_{rep}.pxl") as db:
                t = db.create_table("v", {"vec": pxl.Array[(dim,), pxl.Float], "k": pxl.Int,
                                          "cat": pxl.Int})
                if kind != "none":
                    t.add_embedding_index("vec", precision=kind)
                t0 = time.perf_counter()
                t.insert(rows)
                times[kind].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    print(f"\ninsert {count:,} rows of {dim} float32 (median of {args.insert_repeat}):")
    print(f"  without an index      {base * 1000:8.0f} ms")
    for kind, label in (("fp32", "with an fp32 index"), ("fp16", "with an fp16 index")):
        v = statistics.median(times[kind])
        print(f"  {label:21} {v * 1000:8.0f} ms  {v / base:5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--insert-repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pxlite-bench-sim-") as tmp:
        os.environ.setdefault("PXLITE_HOME", str(Path(tmp) / "home"))
        from pxlite import vecsql

        search(args, Path(tmp))
        inserts(args, Path(tmp))
        conn = pxl.connect(Path(tmp) / "x.pxl")
        print(f"\nvector SQL functions: {vecsql.install(conn.db.sqlite)}")


if __name__ == "__main__":
    main()
