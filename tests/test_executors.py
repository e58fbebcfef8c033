"""executor=: the seam, the 'processes' executor, and what a task may carry.

The Dask executor on a real LocalCluster is tests/test_dask.py; these need no cluster.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from udfs.sample import exit_process, fail_wider_than, process_id

import pxlite as pxl
from pxlite import executors
from pxlite.imagegen import write_images
from tools.bench_udfs import pixel_hash


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    write_images(tmp_path / "img", 5, size=(64, 48))
    write_images(tmp_path / "img", 2, size=(90, 40), start=5)
    return sorted((tmp_path / "img").glob("*.jpg"))


@pytest.fixture
def table(db, images):
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": str(p), "n": i} for i, p in enumerate(images)])
    return t


def _cells(t, *names: str) -> list[tuple]:
    """Each row's values of ``names``; a file's content hash instead of its URL."""
    out = []
    for r in t.select(*(getattr(t, n) if not t._meta().column(n).type.is_media
                        else getattr(t, n).fileurl for n in names)).order_by(t.n).collect():
        out.append(tuple(v.rsplit("/", 1)[-1] if isinstance(v, str) and "://" in v else v
                         for v in r.values()))
    return out


def test_processes_compute_the_same_cells_as_threads(table):
    table.add_computed_column(s_threads=pixel_hash(table.image))
    table.add_computed_column(r_threads=table.image.rotate(90))
    status = table.add_computed_column(s_procs=pixel_hash(table.image), executor="processes")
    assert status.num_rows == 7 and status.num_errors == 0
    table.add_computed_column(r_procs=table.image.rotate(90), executor="processes")
    assert _cells(table, "s_threads", "r_threads") == _cells(table, "s_procs", "r_procs")


def test_processes_really_run_elsewhere_and_the_setting_chooses_them(table, db):
    table.add_computed_column(pid=process_id(table.image), executor="processes")
    pids = {r["pid"] for r in table.select(table.pid).collect()}
    assert os.getpid() not in pids
    pxl.configure(executor="processes")
    table.add_computed_column(pid2=process_id(table.image))  # the setting, no argument
    assert os.getpid() not in {r["pid2"] for r in table.select(table.pid2).collect()}
    table.add_computed_column(pid3=process_id(table.image), executor="threads")
    assert {r["pid3"] for r in table.select(table.pid3).collect()} == {os.getpid()}


def test_insert_computes_new_rows_on_processes(table, images):
    table.add_computed_column(s=pixel_hash(table.image))
    table.add_computed_column(flip=fail_wider_than(table.image, 1000))
    status = table.insert([{"image": str(images[0]), "n": 100}], executor="processes")
    assert status.num_rows == 1 and status.num_errors == 0
    rows = _cells(table, "s", "flip")
    assert rows[-1] == rows[0]  # same input, same cells, whichever executor


def test_abort_on_processes_leaves_no_file(table, db):
    media = Path(str(db.media_dir))
    before = {p for p in media.rglob("*") if p.is_file()}
    with pytest.raises(pxl.ComputeError, match=r"more than 70 \(computed on worker process "):
        table.add_computed_column(flip=fail_wider_than(table.image, 70), executor="processes")
    assert "flip" not in [c.name for c in table._meta().columns]
    assert {p for p in media.rglob("*") if p.is_file()} == before
    # on_error='ignore': the wide ones are cell errors, the others are computed
    status = table.add_computed_column(flip=fail_wider_than(table.image, 70), on_error="ignore",
                                       executor="processes")
    assert status.num_errors == 2
    errs = [r["flip_errortype"] for r in
            table.select(flip_errortype=table.flip.errortype).collect()]
    assert errs.count("ValueError") == 2


def test_a_worker_process_that_dies_stops_the_call_and_leaves_it_resumable(table):
    with pytest.raises(pxl.ExecutorError, match=r"worker process .* died"):
        table.add_computed_column(x=exit_process(table.image), executor="processes")
    col = next(c for c in table._meta().columns if c.name == "x")
    assert col.pending  # nothing lost: the column waits for the same call (or a drop)
    assert "pending" in repr(table)
    table.drop_column("x")


def test_bad_executor_values_are_refused_with_what_is_accepted(table, monkeypatch):
    for bad in ("thread", 3, "http://127.0.0.1:8786", object()):
        with pytest.raises(pxl.SchemaError, match="executor must be 'threads', 'processes'"):
            table.add_computed_column(r=table.image.rotate(90), executor=bad)
    assert "r" not in [c.name for c in table._meta().columns]
    with pytest.raises(pxl.SchemaError, match="executor must be"):
        table.insert([{"n": 1}], executor="thread")  # refused before anything is written
    assert table.count() == 7
    with pytest.raises(pxl.ConfigError, match="executor: expected 'threads', 'processes'"):
        pxl.configure(executor="gpu")
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1.0)  # nothing listens there
    with pytest.raises(pxl.ExecutorError, match="cannot reach the Dask scheduler"):
        table.add_computed_column(r=table.image.rotate(90), executor="tcp://127.0.0.1:9")


def test_tasks_carry_no_credential(table, db, monkeypatch):
    """What crosses to a worker is the task: endpoints and regions yes, credentials never.
    (A pool of this machine's own processes gets them once at start, like a fork.)"""
    secret, key_id = "s3cr3t-value-never-sent-0123456789", "AKIAEXAMPLEKEYID0001"
    sas = "sv=2024-01-01&sig=SASSIGNATURESECRET0123456789"
    pxl.configure(s3={"endpoint_url": "http://minio:pw-in-url-0123456789@127.0.0.1:1/",
                      "region": "eu-west-1",
                      "aws_access_key_id": key_id, "aws_secret_access_key": secret},
                  azure={"connection_string": f"AccountName=a;AccountKey={secret}",
                         "account_url": f"https://acct.blob.core.windows.net/?{sas}"},
                  gcs={"credentials_file": "/secret/key.json", "project": "p"})
    sent: list[bytes] = []
    real_submit = executors.ProcessPool.submit

    def spy(self, fn, payloads):  # records what crosses the process boundary
        sent.extend(pickle.dumps(p) for p in payloads)
        return real_submit(self, fn, payloads)

    monkeypatch.setattr(executors.ProcessPool, "submit", spy)
    table.add_computed_column(s=pixel_hash(table.image), executor="processes")
    assert sent and all(b"http://127.0.0.1:1/" in s for s in sent)  # the spy saw the settings
    for s in sent:
        for word in (secret.encode(), key_id.encode(), b"/secret/key.json", b"AccountKey",
                     b"SASSIGNATURESECRET", b"pw-in-url"):
            assert word not in s
        assert b"https://acct.blob.core.windows.net/" in s  # where, without who


def test_names_that_insert_takes_as_options_are_refused_as_column_names(db):
    for name in ("executor", "on_error"):
        with pytest.raises(pxl.SchemaError, match=rf"t.insert\({name}=...\) would set"):
            db.create_table(f"t_{name}", {name: pxl.String})
    t = db.create_table("t", {"s": pxl.String})
    with pytest.raises(pxl.SchemaError, match="invalid column name 'executor'"):
        t.add_computed_column(executor=t.s + "x")


def test_executor_does_not_apply_to_a_column_computed_when_read(table):
    with pytest.raises(pxl.SchemaError, match=r"stored=False.*executor= does not apply"):
        table.add_computed_column(w=table.image.width, stored=False, executor="processes")
    assert "w" not in [c.name for c in table._meta().columns]


def test_dask_addresses_on_this_machine_are_told_apart():
    import socket

    for address in ("tcp://127.0.0.1:8786", "tcp://[::1]:8786", "inproc://10.0.0.1/1/2",
                    "tls://localhost:8786", f"tcp://{socket.gethostname()}:8786"):
        assert executors.on_this_machine(address), address
    for address in ("tcp://10.255.0.7:8786", "tcp://127.example:8786",
                    "tcp://scheduler.example.com:8786"):
        assert not executors.on_this_machine(address), address
