"""Shared helpers for the benchmark scripts under tools/ (bench.py, bench_compute.py,
bench_storage.py).

Every measured case runs in a fresh child process (``run_case``), so imports, caches and memory
of one case never pollute another: the child re-runs the same script with ``--child CASE JSON``,
does its setup, times only the work being measured, and prints one ``BENCH-RESULT {json}`` line
that includes its own peak RSS (``RUSAGE_SELF``). The parent repeats cases, interleaving pxlite
and its baseline so background load hits both alike, and prints medians.

Benchmarks print figures; they assert nothing (tests never assert timings).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_TAG = "BENCH-RESULT "
#: Credentials moto accepts (it checks none); only ever sent to the loopback moto server.
MOTO_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_DEFAULT_REGION": "us-east-1"}

Case = Callable[[dict[str, Any]], dict[str, Any]]


# ---- child side ---------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this process image. Not
    ``ru_maxrss``: Linux carries it across ``execve``, so a child started by a 50 MB parent
    would report at least 50 MB whatever it did. Elsewhere ``ru_maxrss`` (KB; bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def child_main(cases: dict[str, Case]) -> bool:
    """If argv is ``--child NAME JSON``, run that case, print its result line and return True."""
    if len(sys.argv) < 2 or sys.argv[1] != "--child":
        return False
    name, params = sys.argv[2], json.loads(sys.argv[3])
    sys.path.insert(0, str(ROOT))
    result = cases[name](params)
    result.setdefault("rss_mb", peak_rss_mb())
    print(RESULT_TAG + json.dumps(result), flush=True)
    return True


# ---- parent side --------------------------------------------------------------------------------

class CaseFailed(RuntimeError):
    pass


def run_case(script: str | Path, name: str, params: dict[str, Any], *,
             env: dict[str, str] | None = None, timeout_s: float = 900) -> dict[str, Any]:
    """Run ``script --child name params`` in a fresh interpreter; return its result dict."""
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
    child_env.setdefault("PXLITE_HOME", str(Path(params.get("tmp", tempfile.gettempdir()))
                                            / "pxlite-home"))
    proc = subprocess.run([sys.executable, str(script), "--child", name, json.dumps(params)],
                          capture_output=True, text=True, env=child_env, timeout=timeout_s)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise CaseFailed(f"case {name} failed (exit {proc.returncode}):\n"
                     f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def repeat(runs: list[tuple[str, str, dict[str, Any]]], reps: int, script: str | Path, *,
           env: dict[str, str] | None = None, before_each: Callable[[], None] | None = None,
           progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run each ``(label, case, params)`` ``reps`` times, interleaved (A B A B ...)."""
    out: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
    for rep in range(reps):
        for label, case, params in runs:
            if before_each is not None:
                before_each()
            r = run_case(script, case, params, env=env)
            out[label].append(r)
            if progress:
                say(f"  [{rep + 1}/{reps}] {label}: " + ", ".join(
                    f"{k}={fmt(v)}" for k, v in r.items() if isinstance(v, (int, float))))
    return out


def med(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


def fmt(v: Any) -> str:
    """A figure for a table cell: 3 decimals below 10, 1 above, thousands separated."""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table; numbers right-aligned."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    def line(r: list[str], raw: list[Any] | None = None) -> str:
        parts = []
        for i, (c, w) in enumerate(zip(r, widths, strict=True)):
            num = raw is not None and isinstance(raw[i], (int, float))
            parts.append(c.rjust(w) if num else c.ljust(w))
        return "  ".join(parts).rstrip()
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(c, r) for c, r in zip(cells, rows, strict=True)]
    return "\n".join(out)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return "meets target" if ok else "MISSES target"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def header(title: str) -> None:
    load = os.getloadavg()
    say(f"{title}\n  python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work shares this machine: figures are "
        f"medians of interleaved runs)")


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- generated inputs ---------------------------------------------------------------------------

_BASES = 40  # distinct generated photos that the variants are made from


def _photo_chunk(folder: str, start: int, stop: int, size: tuple[int, int]) -> list[str]:
    from PIL import ImageDraw

    from pxlite.imagegen import make_image

    bases: dict[int, Any] = {}
    out = []
    for i in range(start, stop):
        p = Path(folder) / f"img_{i:05d}.jpg"
        if not p.exists():
            b = i % _BASES
            if b not in bases:
                bases[b] = make_image(b, size)
            img = bases[b].copy()
            # A unique block (colour from the index) so every file, and every rotated/flipped/
            # resized output, has distinct content: content addressing must not deduplicate.
            d = ImageDraw.Draw(img)
            # Inside the central square so rotate(90) without expand keeps it in the frame.
            m = (size[0] - size[1]) // 2 + 8
            x = m + (i * 37) % (size[0] - 2 * m - 48)
            y = 8 + (i * 53) % (size[1] - 64)
            d.rectangle((x, y, x + 47, y + 47), fill=((i * 7) % 256, (i // 256) % 256, i % 251))
            img.save(p, format="JPEG", quality=90)
        out.append(str(p))
    return out


def make_photos(folder: Path, n: int, *, start: int = 0, size: tuple[int, int] = (640, 480),
                workers: int = 2) -> list[Path]:
    """``n`` distinct noisy JPEG photos (quality 90, 100-170 KB at 640x480, like imagegen's).

    Made from a few ``pxlite.imagegen.make_image`` photos, each copy carrying a unique block, in
    ``workers`` processes: ~10x faster than generating every image from scratch, same sizes and
    decode/encode cost. Existing files are kept (pass a persistent folder to reuse them).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    step = max(50, n // (workers * 4) + 1)
    chunks = [(str(folder), a, min(a + step, start + n), size)
              for a in range(start, start + n, step)]
    if workers <= 1 or len(chunks) == 1:
        return [Path(p) for c in chunks for p in _photo_chunk(*c)]
    with ProcessPoolExecutor(workers) as pool:
        return [Path(p) for ps in pool.map(_photo_chunk, *zip(*chunks, strict=True)) for p in ps]


def jpeg_variants(n: int, seed: int = 1) -> Iterator[bytes]:
    """``n`` distinct valid JPEG files (~92 KB each) that decode to the same pixels.

    One generated photo with a unique comment (COM) segment each: fast to make, distinct bytes
    (so content-addressed keys differ). Fine for storage and header-checking benchmarks; not for
    compute benchmarks (identical outputs would be deduplicated).
    """
    from pxlite.imagegen import make_image

    buf = io.BytesIO()
    # Quality 88: ~92 KB at 640x480 (imagegen's q90 photos are 100-170 KB).
    make_image(seed).save(buf, format="JPEG", quality=88)
    data = buf.getvalue()
    for i in range(n):
        comment = f"pxlite-bench-{i:08d}".encode()
        seg = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        yield data[:2] + seg + data[2:]


def write_jpeg_variants(folder: Path, n: int) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(jpeg_variants(n)):
        p = folder / f"v_{i:05d}.jpg"
        p.write_bytes(data)
        paths.append(p)
    return paths


# ---- moto ---------------------------------------------------------------------------------------

def moto_reset_and_bucket(endpoint: str, bucket: str) -> None:
    """Empty the moto server (POST /moto-api/reset) and create ``bucket`` again."""
    import urllib.request

    import boto3

    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"),
                           timeout=30).read()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)


def s3_config(endpoint: str) -> dict[str, Any]:
    """pxlite ``connect(config=...)`` for the moto server at ``endpoint``."""
    return {"s3": {"endpoint_url": endpoint, "region": "us-east-1",
                   "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}}


# ---- profiling ----------------------------------------------------------------------------------

@contextmanager
def profile_all_threads(out_path: Path, top: int = 40) -> Iterator[None]:
    """cProfile the block in every thread (cProfile alone sees only the calling thread); write
    the merged stats to ``out_path`` (.prof) and a text summary beside it (.txt)."""
    import cProfile
    import pstats
    import threading

    profiles: list[cProfile.Profile] = []

    def start(frame: Any, event: str, arg: Any) -> None:  # first profile event in a new thread
        sys.setprofile(None)
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()

    main = cProfile.Profile()
    threading.setprofile(start)
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main)
        for p in profiles:
            with contextlib.suppress(TypeError):  # a profile with no entries
                stats.add(p)
        stats.dump_stats(str(out_path))
        text = io.StringIO()
        s = pstats.Stats(str(out_path), stream=text)
        s.sort_stats("tottime").print_stats(top)
        s.sort_stats("cumulative").print_stats(top)
        out_path.with_suffix(".txt").write_text(text.getvalue())


def now() -> float:
    return time.perf_counter()
