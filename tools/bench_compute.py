"""Computed-column benchmarks: pxlite beside a plain Pillow loop doing the same work, same run.

    python tools/bench_compute.py             # default run (~3 min on 2 busy cores)
    python tools/bench_compute.py --quick     # smoke run: 60 images, one repetition, no S3
    python tools/bench_compute.py --only-a    # only (a) and its RSS (c), ~1 min
    python tools/bench_compute.py --rss-10k   # also peak RSS at 10,000 images (+~2-3 min)
    python tools/bench_compute.py --profile   # also cProfile both compute cases (all threads)
    python tools/bench_compute.py --only-d -n 1000   # only (d): S3, GCS and Azure emulators

Inputs are distinct noisy 640x480 JPEGs (quality 90, ~120 KB mean), made once per run in a temp
folder (``--images DIR`` keeps and reuses them).

(a) ``t.add_computed_column(rot=t.image.rotate(90), destination=<local folder>)`` over 1,000 rows
    vs a plain loop on a 2-thread ThreadPoolExecutor: open, rotate(90), JPEG q90 encode, write
    file and fdatasync it (pxlite makes every file durable before the commit naming it, so the
    fair baseline syncs too; the loop fsyncs its folder once at the end). images/s and the time
    ratio (target <= 1.10x, issue 19). Also vs the same loop without any sync: the cost of
    durability;
(b) inserting 1,000 more rows into a table that already has three image computed columns
    (rotate(90), transpose(FLIP_LEFT_RIGHT), resize((128, 128))) vs a Pillow loop that decodes
    once and runs all three (encode + write + fdatasync each) on 2 threads (target <= 1.10x);
(c) peak RSS of (a) at 1,000 images (and 10,000 with --rss-10k): target < 300 MB and flat;
(d) (a) with a cloud destination, per provider: S3 on a local moto server, GCS on
    gcp-storage-emulator, Azure on Azurite; vs the same plain loop uploading the same bytes with
    the provider's SDK (boto3 put_object, google-cloud-storage upload_from_string, azure-storage-
    blob upload_blob) on the same 2-thread pool, under keys of pxlite's shape and length (see
    ``_plain_put``: the GCS emulator's cost per write grows with the names stored). images/s,
    the ratio (target <= 1.10x) and HTTP requests per output, counted in the client
    (pxlite's count includes its one-off destination check: a bucket lookup and the write /
    conditional-create probe). ``--only-d`` runs only
    this case; ``--providers s3,gcs`` picks providers. All three emulators run on this
    machine, so pxlite keeps 4 uploads in flight to them (a loopback server's
    ``parallel_requests``; 16 across a network): gcp-storage-emulator serves one request at a
    time with a listen backlog of 5, and with 16 concurrent uploads ~15% of them waited out a
    1 s SYN retransmit (3.1x the loop's time; ~1.2x with 4).

Each case runs in a fresh child process (tools/benchlib.py): peak RSS is the child's own, and
includes its setup (inserting the paths, ~30 MB of interpreter and imports).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import benchlib as bl

SCRIPT = Path(__file__).resolve()
THREADS = 2
#: The time ratio to a plain Pillow loop doing the same work, for (a), (b) and (d) (issue 19).
TARGET = 1.10
BUCKET = "pxlite-bench"


def _paths(p: dict[str, Any], key: str = "images") -> list[str]:
    return sorted(str(q) for q in Path(p[key]).glob("*.jpg"))[p.get("skip", 0):][: p["n"]]


def _cloud_config(p: dict[str, Any]) -> dict[str, Any] | None:
    """pxlite ``connect(config=...)`` for the case's emulator (None: a local destination)."""
    provider = p.get("provider")
    if provider == "s3":
        return bl.s3_config(p["endpoint"])
    if provider == "gcs":
        return {"gcs": {"endpoint": p["endpoint"], "project": "pxlite-bench"}}
    if provider == "azure":
        return {"azure": {"connection_string": p["connection_string"]}}
    return None


def _connect(p: dict[str, Any]):
    import pxlite as pxl

    return pxl.connect(Path(p["tmp"]) / "bench.pxl", config=_cloud_config(p))


def _dest(p: dict[str, Any], name: str) -> str:
    scheme = {"s3": "s3", "gcs": "gs", "azure": "az"}.get(p.get("provider", ""))
    if scheme:
        return f"{scheme}://{p['bucket']}/{Path(p['tmp']).name}/{name}/"
    return str(Path(p["tmp"]) / name)


def _count_requests(client: Any) -> list[int]:
    """Count the HTTP requests (attempts) an SDK client sends from now on: ``[n]``. A boto3 S3
    client, a google-cloud-storage Client or an azure-storage-blob BlobServiceClient."""
    n = [0]

    def hook(*_: Any, **__: Any) -> None:
        n[0] += 1

    if hasattr(client, "meta") and hasattr(client.meta, "events"):  # boto3
        client.meta.events.register("before-send.s3", hook)
    elif hasattr(client, "_http"):  # google-cloud-storage: its requests session
        session, real = client._http, client._http.request

        def request(*args: Any, **kwargs: Any) -> Any:
            hook()
            return real(*args, **kwargs)
        session.request = request
    else:  # azure: the transport every blob client of the service client shares
        transport = client._pipeline._transport
        real_send = transport.send

        def send(*args: Any, **kwargs: Any) -> Any:
            hook()
            return real_send(*args, **kwargs)
        transport.send = send
    return n


# ---- child cases --------------------------------------------------------------------------------

def case_rotate_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = _connect(p)
    t = db.create_table("bench", {"image": pxl.Image})
    paths = _paths(p)
    t.insert([{"image": q} for q in paths])
    rss_setup = bl.peak_rss_mb()
    expr = t.image.rotate(90)
    dest = _dest(p, "rot")
    requests = None
    if p.get("provider"):
        from pxlite import storage

        requests = _count_requests(storage.get_backend(dest, db.settings()).client)
    if p.get("profile"):
        with bl.profile_all_threads(Path(p["profile"])):
            t0 = bl.now()
            status = t.add_computed_column(rot=expr, destination=dest)
    else:
        t0 = bl.now()
        status = t.add_computed_column(rot=expr, destination=dest)
    dt = bl.now() - t0
    assert status.num_errors == 0, status
    out = {"seconds": dt, "images_per_s": len(paths) / dt, "rss_setup_mb": rss_setup}
    if requests is not None:
        out["requests_per_output"] = requests[0] / len(paths)
    return out


def _plain_put(p: dict[str, Any]) -> tuple[Any, list[int] | None]:
    """Where the plain loop writes a file (a local folder, or the provider's SDK uploading to
    the emulator), and its request counter (cloud only)."""
    provider = p.get("provider")
    prefix = Path(p["tmp"]).name

    def key(name: str) -> str:
        # A key as long as pxlite's (<dest>/<table uid>/<col id>/<xx>/<sha256>.jpg, ~100
        # characters), named from ``name`` (no hashing of the bytes): gcp-storage-emulator
        # rewrites a JSON of every object's metadata on each write, so its cost per write grows
        # with the length of the names already stored; with 22-character names the loop had
        # been spared ~0.8 s of the emulator's CPU per 1,000 uploads (on these shared 2 cores).
        digest = hashlib.sha256(name.encode()).hexdigest()
        return f"{prefix}/rot/{'0' * 12}/1/{digest[:2]}/{digest}.jpg"

    if provider == "s3":
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=p["endpoint"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(max_pool_connections=32))

        def put_s3(name: str, data: bytes) -> None:
            s3.put_object(Bucket=p["bucket"], Key=key(name), Body=data,
                          ContentType="image/jpeg")
        return put_s3, _count_requests(s3)
    if provider == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        client = gcs.Client(project="pxlite-bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": p["endpoint"]})
        bucket = client.bucket(p["bucket"])

        def put_gcs(name: str, data: bytes) -> None:
            bucket.blob(key(name)).upload_from_string(data, content_type="image/jpeg")
        return put_gcs, _count_requests(client)
    if provider == "azure":
        from azure.storage.blob import BlobServiceClient, ContentSettings

        service = BlobServiceClient.from_connection_string(p["connection_string"])
        container = service.get_container_client(p["bucket"])
        jpeg = ContentSettings(content_type="image/jpeg")

        def put_azure(name: str, data: bytes) -> None:
            container.upload_blob(key(name), data, overwrite=True,
                                  content_settings=jpeg)
        return put_azure, _count_requests(service)
    out = Path(p["tmp"]) / "plain"
    out.mkdir(parents=True, exist_ok=True)
    if not p.get("fsync", True):
        def write(name: str, data: bytes) -> None:
            (out / name).write_bytes(data)
        return write, None
    import os

    fdatasync = getattr(os, "fdatasync", os.fsync)

    def write_durable(name: str, data: bytes) -> None:
        fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            fdatasync(fd)
        finally:
            os.close(fd)
    return write_durable, None


def _plain_done(p: dict[str, Any]) -> None:
    """A durable plain loop ends like pxlite's commit: its folder entries synced (once)."""
    if p.get("provider") or not p.get("fsync", True):
        return
    import os

    fd = os.open(Path(p["tmp"]) / "plain", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(img: Any) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def case_rotate_plain(p: dict[str, Any]) -> dict[str, Any]:
    from PIL import Image

    paths = _paths(p)
    put, requests = _plain_put(p)

    def one(item: tuple[int, str]) -> None:
        i, path = item
        with Image.open(path) as img:
            put(f"{i:06d}.jpg", _encode(img.rotate(90)))

    t0 = bl.now()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, enumerate(paths)))
    _plain_done(p)
    dt = bl.now() - t0
    out = {"seconds": dt, "images_per_s": len(paths) / dt}
    if requests is not None:
        out["requests_per_output"] = requests[0] / len(paths)
    return out


def case_three_pxlite(p: dict[str, Any]) -> dict[str, Any]:
    import pxlite as pxl

    db = _connect(p)
    t = db.create_table("bench", {"image": pxl.Image})
    t.insert([{"image": q} for q in _paths({**p, "n": p["pre"]}, "pre_images")])
    t.add_computed_column(rot=t.image.rotate(90), destination=_dest(p, "rot"))
    t.add_computed_column(flip=t.image.transpose(pxl.FLIP_LEFT_RIGHT),
                          destination=_dest(p, "flip"))
    t.add_computed_column(small=t.image.resize((128, 128)), destination=_dest(p, "small"))
    rows = [{"image": q} for q in _paths(p)]
    if p.get("profile"):
        with bl.profile_all_threads(Path(p["profile"])):
            t0 = bl.now()
            status = t.insert(rows)
    else:
        t0 = bl.now()
        status = t.insert(rows)
    dt = bl.now() - t0
    assert status.num_errors == 0, status
    return {"seconds": dt, "images_per_s": len(rows) / dt}


def case_three_plain(p: dict[str, Any]) -> dict[str, Any]:
    from PIL import Image

    paths = _paths(p)
    put, _ = _plain_put(p)

    def one(item: tuple[int, str]) -> None:
        i, path = item
        with Image.open(path) as img:
            img.load()
            put(f"rot_{i:06d}.jpg", _encode(img.rotate(90)))
            put(f"flip_{i:06d}.jpg", _encode(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
            put(f"small_{i:06d}.jpg", _encode(img.resize((128, 128))))

    t0 = bl.now()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, enumerate(paths)))
    _plain_done(p)
    dt = bl.now() - t0
    return {"seconds": dt, "images_per_s": len(paths) / dt}


CASES = {"rotate_pxlite": case_rotate_pxlite, "rotate_plain": case_rotate_plain,
         "three_pxlite": case_three_pxlite, "three_plain": case_three_plain}


# ---- parent -------------------------------------------------------------------------------------

#: Case (d): provider -> (what the plain loop calls, how the emulator is named).
PROVIDERS = {"s3": ("boto3 put_object", "moto"),
             "gcs": ("google-cloud-storage upload_from_string", "gcp-storage-emulator"),
             "azure": ("azure-storage-blob upload_blob", "Azurite")}


@contextlib.contextmanager
def _emulator(provider: str) -> Iterator[tuple[dict[str, Any], Callable[[], dict[str, Any]]]]:
    """Start ``provider``'s emulator: yields the case parameters pointing at it and a function
    that, before each run, gives it an empty bucket (``{"bucket": name}``)."""
    from tools import servers

    if provider == "s3":
        with servers.moto_server() as s3:
            def fresh_s3() -> dict[str, Any]:
                bl.moto_reset_and_bucket(s3.endpoint, BUCKET)
                return {"bucket": BUCKET}
            yield {"endpoint": s3.endpoint}, fresh_s3
    elif provider == "gcs":
        with servers.gcs_server() as gcs:
            def fresh_gcs() -> dict[str, Any]:
                import urllib.request

                from google.auth.credentials import AnonymousCredentials
                from google.cloud import storage as gstorage

                urllib.request.urlopen(gcs.endpoint + "/wipe", timeout=30).read()  # all data
                gstorage.Client(project="pxlite-bench", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": gcs.endpoint}
                                ).create_bucket(BUCKET)
                return {"bucket": BUCKET}
            yield {"endpoint": gcs.endpoint}, fresh_gcs
    else:
        with servers.azurite_server() as az:
            conn = az.connection_string or ""

            def fresh_azure() -> dict[str, Any]:
                from azure.storage.blob import BlobServiceClient

                name = f"{BUCKET}-{os.urandom(4).hex()}"  # deleting is lazy: a new container
                BlobServiceClient.from_connection_string(conn).create_container(name)
                return {"bucket": name}
            yield {"connection_string": conn}, fresh_azure


def _case_d(tmp: Path, common: dict[str, Any], reps: int, providers: list[str],
            summary: list[list[Any]]) -> None:
    """(d): rotate(90) to each provider's emulator vs the plain loop with its SDK."""
    for provider in providers:
        sdk, emulator = PROVIDERS[provider]
        bl.say(f"\n(d) rotate(90) -> {provider} on a local {emulator} ({reps} reps)")
        with _emulator(provider) as (params, fresh):
            cp = {**common, **params, "provider": provider}
            px_label = f"pxlite add_computed_column -> {provider}"
            res = _run_pair(tmp, f"d-{provider}", [
                (px_label, "rotate_pxlite", cp),
                (f"plain Pillow loop + {sdk} (2 threads)", "rotate_plain", cp)],
                reps, before_each=fresh)
        px, base, ratio = _report(res, TARGET)
        reqs = [bl.med(r, "requests_per_output") for r in res.values()]
        bl.say(f"  HTTP requests per output (median): pxlite {reqs[0]:.3f}, plain loop "
               f"{reqs[1]:.3f}")
        summary.append([f"(d) rotate(90) -> {provider} ({emulator})", f"{px:.1f} img/s",
                        f"{base:.1f} img/s", f"{ratio:.2f}x",
                        f"<= {TARGET}x {bl.verdict(ratio, TARGET)}; {reqs[0]:.2f} req/output"])


def _run_pair(tmp: Path, tag: str, runs: list[tuple[str, str, dict[str, Any]]], reps: int,
              before_each: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Interleaved repetitions; every run gets its own scratch folder, removed afterwards."""
    res: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in runs}
    for rep in range(reps):
        for label, case, params in runs:
            d = tmp / f"{tag}-{rep}-{case}"
            d.mkdir()
            extra = before_each() if before_each is not None else None
            try:
                r = bl.run_case(SCRIPT, case, {**params, **(extra or {}), "tmp": str(d)})
            finally:
                bl.shutil.rmtree(d, ignore_errors=True)
            res[label].append(r)
            reqs = (f", {r['requests_per_output']:.3f} requests/output"
                    if "requests_per_output" in r else "")
            bl.say(f"  [{rep + 1}/{reps}] {label}: {r['images_per_s']:.1f} images/s, "
                   f"{r['seconds']:.2f} s, peak RSS {r['rss_mb']:.0f} MB{reqs}")
    return res


def _report(res: dict[str, list[dict[str, Any]]], target: float | None,
            baseline: str | None = None, table: bool = True) -> tuple[float, float, float]:
    """Figures of every run in ``res`` and the ratio of the first (pxlite) to ``baseline`` (by
    default the second)."""
    (_, pr), *others = list(res.items())
    bl_label, br = next((o for o in others if o[0] == baseline), others[0])
    px, base = bl.med(pr, "images_per_s"), bl.med(br, "images_per_s")
    if table:
        rows = [[label, bl.med(r, "images_per_s"), bl.med(r, "seconds"), bl.med(r, "rss_mb")]
                for label, r in res.items()]
        bl.say(bl.table(["case", "images/s", "seconds", "peak RSS MB"], rows))
    ratio = base / px
    paired = bl.statistics.median(b["images_per_s"] / a["images_per_s"]
                                  for a, b in zip(pr, br, strict=True))
    best = min(r["seconds"] for r in pr) / min(r["seconds"] for r in br)
    msg = (f"  time ratio pxlite / {bl_label} = {ratio:.2f}x (median of the per-repetition ratios: "
           f"{paired:.2f}x; best-of-{len(pr)} times: {best:.2f}x)")
    if target is not None:
        msg += f" (target <= {target}x: {bl.verdict(ratio, target)})"
    bl.say(msg)
    return px, base, ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 60 images, one repetition, no S3 case")
    ap.add_argument("--reps", type=int, help="repetitions per case (default 3, --quick 1)")
    ap.add_argument("-n", "--images-n", type=int, dest="n", help="images per case (default 1000)")
    ap.add_argument("--images", type=Path, help="folder to keep/reuse the generated images in")
    ap.add_argument("--rss-10k", action="store_true", help="also peak RSS of (a) at 10,000 images")
    ap.add_argument("--no-s3", action="store_true",
                    help="skip the cloud case (d) (S3, GCS and Azure emulators)")
    ap.add_argument("--only-d", action="store_true",
                    help="only case (d): cloud destinations on the emulators")
    ap.add_argument("--providers", default="s3,gcs,azure",
                    help="providers of case (d), comma-separated (default: s3,gcs,azure)")
    ap.add_argument("--only-a", action="store_true",
                    help="only case (a) (and its peak RSS, (c)): pxlite vs the loop with and "
                         "without fdatasync")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="also run (a) and (b) once under cProfile (all threads); stats to DIR")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    n = args.n or (60 if args.quick else 1000)
    pre = 10 if args.quick else 50
    providers = [x.strip() for x in args.providers.split(",") if x.strip()]
    unknown = set(providers) - set(PROVIDERS)
    if unknown:
        ap.error(f"unknown provider(s) {sorted(unknown)}; choose from {', '.join(PROVIDERS)}")

    bl.header(f"pxlite computed-column benchmark{' (--quick)' if args.quick else ''}: {n:,} "
              f"images of 640x480, plain loops on {THREADS} threads")
    summary: list[list[Any]] = []
    with bl.temp_dir("pxlite-bench-compute-") as tmp:
        images = args.images or (tmp / "images")
        t0 = bl.now()
        bl.make_photos(images, n)
        bl.make_photos(images.parent / (images.name + "-pre"), pre, start=500_000)
        bl.say(f"  inputs ready in {bl.now() - t0:.1f} s ({images})")
        common = {"images": str(images), "n": n}
        pre_images = str(images.parent / (images.name + "-pre"))
        if args.only_d:
            _case_d(tmp, common, reps, providers, summary)
            bl.say("\nSummary (medians)")
            bl.say(bl.table(["case", "pxlite", "plain Pillow", "time ratio", "target"], summary))
            return

        bl.say(f"\n(a) add_computed_column(rot=t.image.rotate(90)) to a local folder ({reps} reps)")
        plain_sync, plain_nosync = ("plain Pillow loop + fdatasync (2 threads)",
                                    "plain Pillow loop, no sync (2 threads)")
        res = _run_pair(tmp, "a", [
            ("pxlite add_computed_column", "rotate_pxlite", common),
            (plain_sync, "rotate_plain", common),
            (plain_nosync, "rotate_plain", {**common, "fsync": False})], reps)
        px, base, ratio = _report(res, TARGET, plain_sync)
        _, base_nosync, ratio_nosync = _report(res, None, plain_nosync, table=False)
        bl.say("  (the second ratio is the cost of durability: pxlite syncs every file it "
               "writes, the loop without sync does not)")
        rss_1k = bl.med(res["pxlite add_computed_column"], "rss_mb")
        rss_setup = bl.med(res["pxlite add_computed_column"], "rss_setup_mb")
        summary.append(["(a) rotate(90) -> local", f"{px:.1f} img/s", f"{base:.1f} img/s",
                        f"{ratio:.2f}x", f"<= {TARGET}x " + bl.verdict(ratio, TARGET)])
        summary.append(["(a) vs a loop without sync", f"{px:.1f} img/s",
                        f"{base_nosync:.1f} img/s", f"{ratio_nosync:.2f}x", "-"])

        if args.only_a:
            bl.say("\n(b) skipped (--only-a)")
        else:
            bl.say(f"\n(b) insert {n:,} rows into a table with 3 image computed columns "
                   f"({reps} reps)")
            res = _run_pair(tmp, "b", [
                ("pxlite insert (3 computed columns)", "three_pxlite",
                 {**common, "pre": pre, "pre_images": pre_images}),
                ("plain Pillow loop, decode once, + fdatasync (2 threads)", "three_plain", common)],
                reps)
            px, base, ratio = _report(res, TARGET)
            summary.append(["(b) insert with 3 computed cols", f"{px:.1f} rows/s",
                            f"{base:.1f} rows/s", f"{ratio:.2f}x",
                            f"<= {TARGET}x " + bl.verdict(ratio, TARGET)])

        bl.say(f"\n(c) peak RSS of (a) (whole child process; after inserting the paths "
               f"{rss_setup:.0f} MB)")
        rss_rows = [[f"{n:,} images", rss_1k]]
        if args.rss_10k:
            big = 10_000
            t0 = bl.now()
            bl.make_photos(images, big)
            bl.say(f"  {big:,} inputs ready in {bl.now() - t0:.1f} s")
            r = _run_pair(tmp, "c", [("pxlite add_computed_column", "rotate_pxlite",
                                      {"images": str(images), "n": big})], 1)
            rss_rows.append([f"{big:,} images", r["pxlite add_computed_column"][0]["rss_mb"]])
        else:
            bl.say("  (10,000 images: run with --rss-10k)")
        bl.say(bl.table(["pxlite rotate(90)", "peak RSS MB"], rss_rows))
        worst = max(r[1] for r in rss_rows)
        growth = (f", {rss_rows[-1][1] - rss_rows[0][1]:+.0f} MB from 1k to 10k"
                  if len(rss_rows) > 1 else "")
        bl.say(f"  target < 300 MB and flat: {bl.verdict(worst, 300)}{growth}")
        summary.append(["(c) peak RSS of (a)", " / ".join(f"{r[1]:.0f} MB" for r in rss_rows),
                        "", "", "< 300 MB " + bl.verdict(worst, 300) + growth])

        if args.quick or args.no_s3 or args.only_a:
            bl.say("\n(d) cloud destinations: skipped (--quick / --no-s3 / --only-a)")
        else:
            _case_d(tmp, common, reps, providers, summary)

        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            bl.say("\nprofiling (a) and (b) once each under cProfile (all threads) -> "
                   f"{args.profile}")
            for tag, case, params in (
                    ("a", "rotate_pxlite", common),
                    ("b", "three_pxlite", {**common, "pre": pre, "pre_images": pre_images})):
                d = tmp / f"prof-{tag}"
                d.mkdir()
                out = args.profile.resolve() / f"compute_{tag}.prof"
                r = bl.run_case(SCRIPT, case, {**params, "tmp": str(d), "profile": str(out)})
                bl.shutil.rmtree(d, ignore_errors=True)
                bl.say(f"  {case}: {r['images_per_s']:.1f} images/s under the profiler; "
                       f"{out} and {out.with_suffix('.txt')}")

    bl.say("\nSummary (medians)")
    bl.say(bl.table(["case", "pxlite", "plain Pillow", "time ratio", "target"], summary))


if __name__ == "__main__":
    if not bl.child_main(CASES):
        main()
