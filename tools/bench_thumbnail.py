"""Thumbnail benchmark: pxlite's reduced JPEG decode beside plain Pillow loops, same run.

    python tools/bench_thumbnail.py            # 1,000 photos of 1600x1200, 3 repetitions
    python tools/bench_thumbnail.py --quick    # smoke run: 60 photos, one repetition
    python tools/bench_thumbnail.py --size 4032x3024 -n 300   # 12 MP phone photos

Inputs are distinct noisy 1600x1200 JPEGs (quality 90), made once per run in a temp folder
(``--images DIR`` keeps and reuses them).

``t.add_computed_column(th=t.image.thumbnail((128, 128)), destination=<local folder>)`` vs
(1) a plain loop on a 2-thread ThreadPoolExecutor that decodes in full, as pxlite did before
    (open, ``ImageOps.exif_transpose`` (a loaded copy), thumbnail, JPEG q90 encode, write +
    fdatasync, the folder synced once at the end): target pxlite >= 2x faster;
(2) the same loop letting Pillow draft (open, thumbnail on the unloaded image, i.e. Pillow's
    own reduced decode): target pxlite / loop <= 1.10x in time.
Also peak RSS per case, and the PSNR of pxlite's thumbnails (and of the draft loop's) against
the full-decode loop's files, both JPEG q90 as written.

Each case runs in a fresh child process (tools/benchlib.py); cases are interleaved per
repetition and figures are medians. Benchmarks print figures; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import bench_compute as bc
from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
THREADS = 2
SIZE = (1600, 1200)
THUMB = (128, 128)


# ---- child cases --------------------------------------------------------------------------------

def case_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = pxl.connect(Path(p["tmp"]) / "bench.pxl")
    t = db.create_table("bench", {"image": pxl.Image})
    paths = bc._paths(p)
    t.insert([{"image": q} for q in paths])
    t0 = bl.now()
    status = t.add_computed_column(th=t.image.thumbnail(THUMB), destination=p["out"])
    dt = bl.now() - t0
    assert status.num_errors == 0, status
    if p.get("keep"):  # the PSNR case: name each output after its input
        rows = t.select(t.image.localpath, t.th.localpath).collect()
        with open(Path(p["keep"]) / "pairs.txt", "w") as f:
            for r in rows:
                f.write(f"{Path(r['image_localpath']).name}\t{r['th_localpath']}\n")
    return {"seconds": dt, "images_per_s": len(paths) / dt}


def _loop(p: dict[str, Any], draft: bool) -> dict[str, Any]:
    from PIL import Image, ImageOps

    paths = bc._paths(p)
    put, _ = bc._plain_put(p)

    def one(path: str) -> None:
        with Image.open(path) as img:
            if draft:
                img.thumbnail(THUMB)  # unloaded: Pillow drafts (no EXIF turn in these inputs)
                out = img
            else:
                out = ImageOps.exif_transpose(img)  # a loaded copy, as pxlite did
                out.thumbnail(THUMB)
            put(Path(path).name, bc._encode(out))

    t0 = bl.now()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, paths))
    bc._plain_done(p)
    dt = bl.now() - t0
    return {"seconds": dt, "images_per_s": len(paths) / dt}


def case_full_loop(p: dict[str, Any]) -> dict[str, Any]:
    return _loop(p, draft=False)


def case_draft_loop(p: dict[str, Any]) -> dict[str, Any]:
    return _loop(p, draft=True)


def _psnr(a: Any, b: Any) -> float:
    from PIL import ImageChops, ImageStat

    diff = ImageStat.Stat(ImageChops.difference(a, b))
    mse = sum(diff.sum2) / (a.width * a.height * len(a.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def case_psnr(p: dict[str, Any]) -> dict[str, Any]:
    """pxlite's and the draft loop's thumbnail files against the full-decode loop's files."""
    from PIL import Image

    tmp = Path(p["tmp"])
    case_pxlite({**p, "out": str(tmp / "px"), "keep": str(tmp)})
    for kind, loop in (("full", case_full_loop), ("draft", case_draft_loop)):
        (tmp / kind).mkdir()
        loop({**p, "tmp": str(tmp / kind)})  # writes into <tmp>/<kind>/plain/<input name>
    px_db, draft_db = [], []
    for line in (tmp / "pairs.txt").read_text().splitlines():
        name, th = line.split("\t")
        with Image.open(tmp / "full" / "plain" / name) as ref, Image.open(th) as got, \
                Image.open(tmp / "draft" / "plain" / name) as drafted:
            if got.size != ref.size:
                raise AssertionError(f"{name}: pxlite {got.size} vs full decode {ref.size}")
            px_db.append(_psnr(ref, got))
            draft_db.append(_psnr(ref, drafted))
    return {"n": len(px_db), "px_min": min(px_db), "px_median": bl.statistics.median(px_db),
            "draft_min": min(draft_db), "draft_median": bl.statistics.median(draft_db)}


CASES = {"pxlite": case_pxlite, "full_loop": case_full_loop, "draft_loop": case_draft_loop,
         "psnr": case_psnr}


# ---- parent -------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 60 photos, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, --quick 1)")
    ap.add_argument("-n", "--images-n", type=int, dest="n", help="photos per case (default 1000)")
    ap.add_argument("--images", type=Path, help="folder to keep/reuse the generated photos in")
    ap.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}",
                    help="photo size WxH (default %(default)s; 4032x3024 is a 12 MP phone photo)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    reps = args.reps or (1 if args.quick else 3)
    n = args.n or (60 if args.quick else 1000)

    bl.header(f"pxlite thumbnail benchmark{' (--quick)' if args.quick else ''}: {n:,} photos of "
              f"{size[0]}x{size[1]} -> thumbnail({THUMB}), plain loops on {THREADS} threads")
    with bl.temp_dir("pxlite-bench-thumb-") as tmp:
        images = args.images or (tmp / "images")
        t0 = bl.now()
        bl.make_photos(images, n, size=size)  # type: ignore[arg-type]
        mb = sum(q.stat().st_size for q in sorted(images.glob("*.jpg"))[:n]) / n / 1e6
        bl.say(f"  inputs ready in {bl.now() - t0:.1f} s ({images}, {mb:.2f} MB each on average)")
        common = {"images": str(images), "n": n}

        full = "plain loop, full decode + fdatasync"
        draft = "plain loop, Pillow draft + fdatasync"
        runs = [("pxlite add_computed_column", "pxlite", common), (full, "full_loop", common),
                (draft, "draft_loop", common)]
        bl.say(f"\nthumbnail((128, 128)) to a local folder ({reps} reps, interleaved)")
        res: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
        for rep in range(reps):
            for label, case, params in runs:
                d = tmp / f"{rep}-{case}"
                d.mkdir()
                try:
                    r = bl.run_case(SCRIPT, case, {**params, "tmp": str(d), "out": str(d / "th")})
                finally:
                    bl.shutil.rmtree(d, ignore_errors=True)
                res[label].append(r)
                bl.say(f"  [{rep + 1}/{reps}] {label}: {r['images_per_s']:.1f} images/s, "
                       f"{r['seconds']:.2f} s, peak RSS {r['rss_mb']:.0f} MB")
        bl.say(bl.table(["case", "images/s", "seconds", "peak RSS MB"],
                        [[label, bl.med(r, "images_per_s"), bl.med(r, "seconds"),
                          bl.med(r, "rss_mb")] for label, r in res.items()]))
        px = res["pxlite add_computed_column"]

        def paired(base: str) -> float:
            return bl.statistics.median(a["seconds"] / b["seconds"]
                                        for a, b in zip(px, res[base], strict=True))

        speedup = bl.med(px, "images_per_s") / bl.med(res[full], "images_per_s")
        vs_draft = bl.med(res[draft], "images_per_s") / bl.med(px, "images_per_s")
        bl.say(f"  speed-up of pxlite over the full-decode loop = {speedup:.2f}x (median of "
               f"per-repetition time ratios: {1 / paired(full):.2f}x) (target >= 2x: "
               f"{bl.verdict(speedup, 2.0, lower_is_better=False)})")
        bl.say(f"  time ratio pxlite / draft loop = {vs_draft:.2f}x (median of per-repetition "
               f"ratios: {paired(draft):.2f}x) (target <= 1.10x: {bl.verdict(vs_draft, 1.10)})")

        m = min(n, 200)
        bl.say(f"\nPSNR against the full-decode loop's thumbnails (first {m} photos, JPEG q90 "
               "files as written)")
        d = tmp / "psnr"
        d.mkdir()
        q = bl.run_case(SCRIPT, "psnr", {**common, "n": m, "tmp": str(d), "out": str(d / "px")})
        bl.say(bl.table(["thumbnails", "photos", "min PSNR dB", "median PSNR dB"], [
            ["pxlite (reduced decode)", q["n"], q["px_min"], q["px_median"]],
            ["Pillow draft loop", q["n"], q["draft_min"], q["draft_median"]]]))
        bl.say(f"  sizes identical to the full decode's for all {q['n']}; tolerance >= 35 dB: "
               f"{bl.verdict(q['px_min'], 35.0, lower_is_better=False)}")


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
