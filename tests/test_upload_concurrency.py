"""How many uploads a computation keeps in flight: as many as pay off against the server.

A server on this machine (the emulators) answers in about a millisecond and shares the cores:
four in flight keep up, more only compete for the CPU (and the GCS emulator drops connections
beyond its backlog of five). A service across the network gets sixteen to hide its latency.
"""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite import config, storage
from pxlite.storage.base import PARALLEL_REQUESTS, PARALLEL_REQUESTS_LOOPBACK, is_loopback_url


def test_loopback_urls_are_told_apart_from_the_network():
    for url in ("http://127.0.0.1:9000", "http://localhost:10000/devstoreaccount1",
                "http://[::1]:8080", "127.0.0.2:4443", "https://127.0.0.1"):
        assert is_loopback_url(url), url
    for url in ("https://s3.eu-west-1.amazonaws.com", "https://acct.blob.core.windows.net",
                "http://10.0.0.5:9000", "https://localhost.example.com", "https://127.example"):
        assert not is_loopback_url(url), url


@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_an_emulator_on_this_machine_gets_a_few_uploads_at_once(storage_target):
    backend = storage.get_backend(storage_target.prefix, storage_target.settings)
    assert backend.parallel_requests == PARALLEL_REQUESTS_LOOPBACK


def test_a_service_across_the_network_gets_many():
    # Creating a client sends nothing: no request reaches these hosts.
    s3 = config.resolve({"s3": {"endpoint_url": "https://s3.eu-west-1.amazonaws.com",
                                "region": "eu-west-1", "aws_access_key_id": "k",
                                "aws_secret_access_key": "s"}})
    assert storage.get_backend("s3://bkt/p/", s3).parallel_requests == PARALLEL_REQUESTS
    az = config.resolve({"azure": {"account_url": "https://acct.blob.core.windows.net",
                                   "credential": "c2VjcmV0"}})
    assert storage.get_backend("az://cont/p/", az).parallel_requests == PARALLEL_REQUESTS


@pytest.mark.parametrize("storage_target", ["s3"], indirect=True)
def test_a_computation_uploads_on_that_many_threads(storage_target, tmp_path, jpegs,
                                                    monkeypatch):
    import threading

    from pxlite import media

    seen: set[str] = set()
    real = media.write_file

    def spy(*args, **kwargs):  # which threads upload
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(media, "write_file", spy)
    db = pxl.connect(tmp_path / "t.pxl", config=storage_target.config)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(p)} for p in jpegs * 8])
    t.add_computed_column(r=t.image.rotate(90), destination=storage_target.prefix)
    assert seen and all(n.startswith("pxlite-upload") for n in seen)
    assert len(seen) <= PARALLEL_REQUESTS_LOOPBACK
