"""The Dask executor on a real cluster: distributed.LocalCluster with worker processes, bound to
127.0.0.1 (its default), writing to an S3 destination on the moto server.

Workers read their credentials from their own environment (set before the cluster starts),
never from the task: the database's config gives the endpoint and keys to this process only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_storage import MOTO_KEY_ID, MOTO_SECRET, create_s3_bucket, fresh_name, s3_config
from udfs.sample import fail_wider_than, slow_rotate

import pxlite as pxl
from pxlite import executors
from pxlite.imagegen import write_images
from tools.bench_udfs import pixel_hash

distributed = pytest.importorskip("distributed") if not os.environ.get("CI") else \
    __import__("distributed")  # in CI a missing Dask fails the run, never skips it

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple]:
    """Two worker processes with one thread each; the workers' environment holds the moto
    credentials (their own configuration), the tests' database config holds them too."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = MOTO_KEY_ID, MOTO_SECRET
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as lc, \
                distributed.Client(lc) as client:
            yield lc, client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3(moto_server) -> dict:
    bucket = fresh_name()
    create_s3_bucket(moto_server.endpoint, bucket, REGION)
    cfg = {"s3": s3_config("s3", moto_server.endpoint), "input_media_dest": f"s3://{bucket}/in/"}
    return {"bucket": bucket, "config": cfg, "endpoint": moto_server.endpoint}


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    write_images(tmp_path / "img", 10, size=(64, 48))
    write_images(tmp_path / "img", 2, size=(90, 40), start=10)
    return sorted((tmp_path / "img").glob("*.jpg"))


def _table(tmp_path: Path, s3: dict, images: list[Path], name: str = "a"):
    db = pxl.connect(tmp_path / f"{name}.pxl", config=s3["config"])
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": str(p), "n": i} for i, p in enumerate(images)])
    return db, t


def _objects(s3: dict, prefix: str) -> set[str]:
    import boto3

    c = boto3.client("s3", endpoint_url=s3["endpoint"], region_name=REGION,
                     aws_access_key_id=MOTO_KEY_ID, aws_secret_access_key=MOTO_SECRET)
    pages = c.get_paginator("list_objects_v2").paginate(Bucket=s3["bucket"], Prefix=prefix)
    return {f"s3://{s3['bucket']}/{o['Key']}" for p in pages for o in p.get("Contents", [])}


def _cells(t, *names: str) -> list[tuple]:
    """Rows' values of ``names`` (with errors); a file's content hash instead of its URL."""
    exprs = {}
    for n in names:
        ref = getattr(t, n)
        exprs[n] = ref.fileurl if t._meta().column(n).type.is_media else ref
        exprs[n + "_et"], exprs[n + "_em"] = ref.errortype, ref.errormsg
    out = []
    for r in t.select(**exprs).order_by(t.n).collect():
        out.append(tuple(v.rsplit("/", 1)[-1] if isinstance(v, str) and "://" in v else v
                         for v in r.values()))
    return out


def _urls(t, name: str) -> set[str]:
    return {r["u"] for r in t.select(u=getattr(t, name).fileurl).collect() if r["u"]}


def test_cluster_cells_equal_the_threads_executor_cell_for_cell(tmp_path, s3, images, cluster):
    _, client = cluster
    _, a = _table(tmp_path, s3, images, "threads")
    _, b = _table(tmp_path, s3, images, "dask")
    dest = f"s3://{s3['bucket']}/out/"
    for t, executor in ((a, "threads"), (b, client)):
        t.add_computed_column(rot=t.image.rotate(90), destination=dest, executor=executor)
        t.add_computed_column(s=pixel_hash(t.image), executor=executor)  # plain Python
        t.add_computed_column(w=t.image.width, executor=executor)
        status = t.add_computed_column(flip=fail_wider_than(t.image, 70), destination=dest,
                                       on_error="ignore", executor=executor)
        assert status.num_errors == 2
        t.recompute_columns("s", executor=executor)
        t.insert([{"image": str(images[0]), "n": 99}], executor=executor)
    assert _cells(a, "rot", "s", "w", "flip") == _cells(b, "rot", "s", "w", "flip")
    assert _cells(b, "rot", "s", "w", "flip")[-1][0].endswith(".jpg")
    # every object the cluster stored is one a row names
    assert _objects(s3, f"out/{b._meta().uid}/") == _urls(b, "rot") | _urls(b, "flip")


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, s3, images, cluster):
    _, client = cluster
    _, t = _table(tmp_path, s3, images * 3)
    dest = f"s3://{s3['bucket']}/killed/"
    pids = list(client.run(os.getpid).values())
    killed = threading.Event()

    def kill_one() -> None:  # once tasks are running on the workers, kill one of them
        deadline = time.time() + 20
        while time.time() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(pids[0], signal.SIGKILL)
        killed.set()

    threading.Thread(target=kill_one, daemon=True).start()
    status = t.add_computed_column(rot=slow_rotate(t.image, 0.1), destination=dest,
                                   executor=client)
    assert killed.is_set()
    assert status.num_rows == 36 and status.num_errors == 0
    rows = t.select(t.rot.fileurl, t.rot.errortype).collect()
    assert all(r["rot_fileurl"] and r["rot_errortype"] is None for r in rows)
    # the retried tasks wrote the same keys (content-addressed): no orphan
    assert _objects(s3, "killed/") == _urls(t, "rot")
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def test_on_error_abort_removes_the_files_every_worker_wrote(tmp_path, s3, images, cluster):
    """The wide image comes last: earlier batches committed, later ones were computing."""
    _, client = cluster
    narrow = images[:10]  # 64 pixels wide; the last two are 90
    _, t = _table(tmp_path, s3, narrow * 4 + [images[-1]] + narrow * 2)
    with pytest.raises(pxl.ComputeError, match=r"more than 70 \(computed on worker tcp://127"):
        t.add_computed_column(flip=fail_wider_than(t.image, 70),
                              destination=f"s3://{s3['bucket']}/aborted/", executor=client)
    assert "flip" not in [c.name for c in t._meta().columns]
    assert _objects(s3, "aborted/") == set()


def test_a_udf_missing_on_the_workers_names_it_and_the_worker(tmp_path, s3, images, cluster):
    _, client = cluster
    _, t = _table(tmp_path, s3, images)
    here_only = types.ModuleType("pxlite_test_only_in_this_process")
    sys.modules[here_only.__name__] = here_only
    try:
        exec("import pxlite as pxl, PIL.Image\n"
             "@pxl.udf\n"
             "def local_only(img: PIL.Image.Image) -> int:\n"
             "    return 1\n", here_only.__dict__)
        with pytest.raises(pxl.ExecutorError) as e:
            t.add_computed_column(x=here_only.local_only(t.image), executor=client)
    finally:
        del sys.modules[here_only.__name__]
    msg = str(e.value)
    assert "'pxlite_test_only_in_this_process.local_only'" in msg
    assert "worker tcp://127.0.0.1:" in msg and "No module named" in msg
    assert next(c for c in t._meta().columns if c.name == "x").pending  # resumable
    t.drop_column("x")


def test_tasks_sent_to_the_cluster_carry_no_credential(tmp_path, s3, images, cluster,
                                                       monkeypatch):
    _, client = cluster
    _, t = _table(tmp_path, s3, images)
    import cloudpickle

    sent: list[bytes] = []
    real_submit = client.submit

    def spy(fn, *args, **kwargs):  # records every task handed to the scheduler
        sent.append(cloudpickle.dumps((fn, args, kwargs)))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "submit", spy)
    t.add_computed_column(rot=t.image.rotate(90), destination=f"s3://{s3['bucket']}/o/",
                          executor=client)
    assert sent and all(s3["endpoint"].encode() in s for s in sent)
    for s in sent:
        assert MOTO_SECRET.encode() not in s and MOTO_KEY_ID.encode() not in s


def test_workers_on_other_machines_are_refused_local_files_up_front(tmp_path, s3, images,
                                                                    cluster, monkeypatch):
    _, client = cluster
    _, t = _table(tmp_path, s3, images)
    # The fault injected: the cluster's workers count as another machine's.
    monkeypatch.setattr(executors, "on_this_machine", lambda address: False)
    with pytest.raises(pxl.ConfigError, match=r"local folder .* cannot reach: give it a cloud"):
        t.add_computed_column(rot=t.image.rotate(90), executor=client)  # the media folder
    assert "rot" not in [c.name for c in t._meta().columns]
    db2 = pxl.connect(tmp_path / "local.pxl", config=s3["config"] | {"input_media_dest": None})
    t2 = db2.create_table("t", {"image": pxl.Image})
    t2.insert([{"image": str(images[0])}])  # a local reference
    with pytest.raises(pxl.ConfigError, match=r"column 'image' of row 1 is a file on this "
                                              r"machine.*input_media_dest"):
        t2.add_computed_column(w=t2.image.width, executor=client)
    assert "w" not in [c.name for c in t2._meta().columns]
    db2.close()
    pxl.configure(shared_filesystem=True)  # the user says the workers see these paths
    t.add_computed_column(rot=t.image.rotate(90), executor=client)
    assert len(_urls(t, "rot")) == len(images)
    assert all(u.startswith("file://") for u in _urls(t, "rot"))


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "AWS_ACCESS_KEY_ID": MOTO_KEY_ID,
                                 "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
                                 "PYTHONPATH": os.pathsep.join(sys.path)})


def test_the_scheduler_going_away_stops_the_call_and_it_resumes(tmp_path, s3, images, cluster):
    """A scheduler of our own (a process we can kill) at a tcp:// address given as text."""
    sched_file = tmp_path / "scheduler.json"
    sched = _start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                    "--no-dashboard", "--scheduler-file", str(sched_file)], tmp_path / "s.log")
    worker = None
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        worker = _start(["distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                         "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                        tmp_path / "w.log")
        import json

        address = json.loads(sched_file.read_text())["address"]
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
        _, t = _table(tmp_path, s3, images * 3)
        dest = f"s3://{s3['bucket']}/gone/"

        def kill_scheduler() -> None:
            time.sleep(2.0)
            os.killpg(sched.pid, signal.SIGKILL)

        threading.Thread(target=kill_scheduler, daemon=True).start()
        t0 = time.time()
        with pytest.raises(pxl.ExecutorError, match="run the same call again"):
            t.add_computed_column(rot=slow_rotate(t.image, 0.05), destination=dest,
                                  executor=address)
        assert time.time() - t0 < 120
    finally:
        for p in (sched, worker):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    col = next(c for c in t._meta().columns if c.name == "rot")
    assert col.pending
    # The cluster is back (another one): the same call goes on where it stopped.
    _, client = cluster
    status = t.add_computed_column(rot=slow_rotate(t.image, 0.05), destination=dest,
                                   executor=client)
    assert status.num_errors == 0
    assert all(r["rot"] for r in t.select(rot=t.rot.fileurl).collect())
    assert _objects(s3, "gone/") == _urls(t, "rot")


def _count_probes() -> None:
    """On a worker: count the conditional-create probes it runs from now on."""
    from pxlite.storage import base

    if getattr(base, "_probes_counted", None) is None:
        real = base.ConditionalCreate.verify_condition

        def counting(self, prefix_uri, **kwargs):
            base._probes_counted += 1
            return real(self, prefix_uri, **kwargs)

        base.ConditionalCreate.verify_condition = counting
    base._probes_counted = 0


def _probes() -> int:
    from pxlite.storage import base

    return base._probes_counted


def test_workers_write_without_probing_what_this_process_verified(tmp_path, s3, images,
                                                                  cluster):
    """The owning process verifies the destination's conditional create and tasks carry the
    verdict: a worker killed in the middle of a probe of its own would leave the probe behind."""
    _, client = cluster
    _, t = _table(tmp_path, s3, images)
    other = fresh_name()  # a bucket no worker has written to yet
    create_s3_bucket(s3["endpoint"], other, REGION)
    client.run(_count_probes)
    t.add_computed_column(rot=t.image.rotate(90), destination=f"s3://{other}/p/",
                          executor=client)
    assert set(client.run(_probes).values()) == {0}
    assert _objects({**s3, "bucket": other}, "") == _urls(t, "rot")  # no probe left anywhere
