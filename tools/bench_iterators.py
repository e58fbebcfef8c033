"""Frame iterator benchmark: ``frame_iterator(fps=1)`` beside a plain PyAV loop, same run.

    python tools/bench_iterators.py            # ten 30-second 640x360 videos, 3 repetitions
    python tools/bench_iterators.py --quick    # smoke run: two 10-second videos, one repetition
    python tools/bench_iterators.py --videos DIR   # keep/reuse the generated videos there

Inputs: H.264 videos at 30 fps (a key frame every 2 s, B-frames), made once per run with PyAV
(``tools/mediagen.py``: moving gradients under a frame-number stripe code).

Cases, each in a fresh child process (tools/benchlib.py), interleaved per repetition:
(1) pxlite: ``frame_iterator(path, fps=1)`` over every video, every row consumed (the frame as
    a PIL image plus its columns); target: at most 1.3x the time of
(2) a plain PyAV loop that decodes the same videos in order and picks the same frames (the
    frame closest to each second, Pixeltable's rule), converting each picked one to a PIL
    image; run with PyAV's default decoder threading and with ``thread_type='AUTO'`` (what
    pxlite sets), so the figure shows what the iterator itself costs;
(3) and (4): the same two, each picked frame then encoded to JPEG: pxlite by
    ``media.encode_image`` (what a stored frame column writes: JPEG quality 90), the plain
    loop by ``PIL.Image.save(format='JPEG', quality=90)``; the extra cost of encoding is
    reported against the plain loop's.
Also the peak RSS of each case (flat whatever the videos' length: one frame at a time).
Benchmarks print figures; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
FPS = 30
SIZE = (640, 360)


def _videos(params: dict[str, Any]) -> list[str]:
    return sorted(str(p) for p in Path(params["videos"]).glob("*.mp4"))[: params["n"]]


def _case_pxlite(params: dict[str, Any]) -> dict[str, Any]:
    from pxlite import media
    from pxlite.functions.video import frame_iterator

    frames = nbytes = 0
    encode_s = 0.0
    t0 = time.perf_counter()
    for path in _videos(params):
        with frame_iterator(path, fps=1) as it:
            for row in it:
                frames += 1
                if params["jpeg"]:
                    e0 = time.perf_counter()
                    data, _ = media.encode_image(row["frame"])
                    encode_s += time.perf_counter() - e0
                    nbytes += len(data)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames": frames, "jpeg_mb": nbytes / 1e6, "encode_s": encode_s}


def _pillow_jpeg(img: Any) -> tuple[int, float]:
    """A plain Pillow JPEG encode (quality 90): (bytes, seconds)."""
    e0 = time.perf_counter()
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.tell(), time.perf_counter() - e0


def _case_plain(params: dict[str, Any]) -> dict[str, Any]:
    import av

    frames = nbytes = 0
    encode_s = 0.0
    t0 = time.perf_counter()
    for path in _videos(params):
        with av.open(path) as c:
            s = c.streams.video[0]
            if params["threads"] == "AUTO":
                s.thread_type = "AUTO"
            tb = s.time_base
            start = float((s.start_time or 0) * tb)
            target = start
            prev = None
            for f in c.decode(s):
                if prev is not None:
                    t_prev, t_cur = float(prev.pts * tb), float(f.pts * tb)
                    # take prev unless this frame is closer to the target second
                    if not t_cur - target < target - t_prev:
                        img = prev.to_image()
                        frames += 1
                        target += 1.0
                        if params["jpeg"]:
                            b, e = _pillow_jpeg(img)
                            nbytes, encode_s = nbytes + b, encode_s + e
                prev = f
            if prev is not None and float(prev.pts * tb) >= target:
                img = prev.to_image()
                frames += 1
                if params["jpeg"]:
                    b, e = _pillow_jpeg(img)
                    nbytes, encode_s = nbytes + b, encode_s + e
    return {"seconds": time.perf_counter() - t0, "frames": frames, "jpeg_mb": nbytes / 1e6,
            "encode_s": encode_s}


CASES = {"pxlite": _case_pxlite, "plain": _case_plain}


def make_videos(folder: Path, n: int, seconds: int) -> list[Path]:
    from tools.mediagen import write_video

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"v{i:02d}-{seconds}s.mp4"
        if not p.exists():
            tmp = p.with_suffix(".part.mp4")
            write_video(tmp, seconds * FPS, fps=FPS, size=SIZE, gop=2 * FPS, start=i * 7)
            tmp.rename(p)
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two 10-second videos, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, --quick 1)")
    ap.add_argument("--videos", type=Path, help="folder to keep/reuse the generated videos in")
    args = ap.parse_args()
    n, seconds = (2, 10) if args.quick else (10, 30)
    reps = args.reps or (1 if args.quick else 3)
    bl.header(f"pxlite frame_iterator benchmark{' (--quick)' if args.quick else ''}: {n} videos "
              f"of {seconds} s, {SIZE[0]}x{SIZE[1]} at {FPS} fps, fps=1")
    with bl.temp_dir("pxlite-bench-iter-") as tmp:
        folder = args.videos or (tmp / "videos")
        t0 = bl.now()
        vids = make_videos(folder, n, seconds)
        mb = sum(p.stat().st_size for p in vids) / 1e6
        bl.say(f"  inputs ready in {bl.now() - t0:.1f} s ({folder}, {mb:.1f} MB in all)")
        common = {"videos": str(folder), "n": n, "tmp": str(tmp)}
        runs = []
        for jpeg in (False, True):
            sfx = " + JPEG" if jpeg else ""
            runs += [(f"pxlite frame_iterator{sfx}", "pxlite", {**common, "jpeg": jpeg}),
                     (f"plain PyAV loop{sfx}", "plain", {**common, "jpeg": jpeg,
                                                        "threads": "default"}),
                     (f"plain PyAV loop, AUTO threads{sfx}", "plain",
                      {**common, "jpeg": jpeg, "threads": "AUTO"})]
        res = bl.repeat(runs, reps, SCRIPT)
        frames = {label: r[0]["frames"] for label, r in res.items()}
        if len(set(frames.values())) != 1:
            bl.say(f"  WARNING: the cases picked different numbers of frames: {frames}")
        bl.say("")
        bl.say(bl.table(["case", "seconds", "frames", "frames/s", "peak RSS MB"],
                        [[label, bl.med(r, "seconds"), r[0]["frames"],
                          r[0]["frames"] / bl.med(r, "seconds"), bl.med(r, "rss_mb")]
                         for label, r in res.items()]))

        def ratio(a: str, b: str) -> float:
            return statistics.median(x["seconds"] / y["seconds"]
                                     for x, y in zip(res[a], res[b], strict=True))

        px, plain, auto = ("pxlite frame_iterator", "plain PyAV loop",
                           "plain PyAV loop, AUTO threads")
        r1, r2 = ratio(px, plain), ratio(px, auto)
        bl.say(f"\n  time pxlite / plain loop (PyAV's default threads) = {r1:.2f}x "
               f"(target <= 1.3x: {bl.verdict(r1, 1.3)})")
        bl.say(f"  time pxlite / plain loop (AUTO threads, as pxlite) = {r2:.2f}x "
               f"(target <= 1.3x: {bl.verdict(r2, 1.3)})")
        j = " + JPEG"
        nframes = frames[px]
        enc_px = bl.med(res[px + j], "encode_s")
        enc_plain = statistics.median(r["encode_s"] for r in res[plain + j] + res[auto + j])
        bl.say(f"  JPEG encoding of the {nframes} picked frames (timed around the encode "
               f"calls): pxlite media.encode_image {1000 * enc_px / nframes:.2f} ms/frame vs "
               f"Pillow save {1000 * enc_plain / nframes:.2f} ms/frame = "
               f"{enc_px / enc_plain:.2f}x; in all, frames + JPEG: pxlite / plain (AUTO) = "
               f"{ratio(px + j, auto + j):.2f}x, and the encoding adds "
               f"{100 * enc_px / bl.med(res[px + j], 'seconds'):.0f}% to pxlite's time")


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
