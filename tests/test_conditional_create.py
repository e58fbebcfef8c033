"""One request per output in cloud storage: conditional creates, verified once per bucket, and the
ledger rule where the condition is not honoured (issue 13, point 7).

All against the real emulators on loopback (moto, gcp-storage-emulator, Azurite). What each
honours, found by these tests: moto refuses ``If-None-Match: *`` on PutObject and on
CompleteMultipartUpload (412); Azurite refuses ``overwrite=False`` (409 BlobAlreadyExists);
the GCS emulator ignores ``ifGenerationMatch=0`` and overwrites, so GCS there runs on the
ledger rule (plain PUT, counted as created). Wrappers around the SDKs only count requests or
inject faults (a lost response, a provider ignoring the condition, GCS's 412).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import storage
from pxlite.storage import base
from pxlite.storage.gcs import GCSBackend
from pxlite.storage.s3 import S3Backend

CLOUD = ["s3", "gcs", "azure"]
#: What each emulator does with a conditional create of an existing key (see the module doc).
HONOURED = {"s3": True, "gcs": False, "azure": True}
FAST = {"storage_retry_delay_s": 0.01}


def _backend(target: Any) -> base.ConditionalCreate:
    """A backend instance of this test's own (the registry shares one between tests with the
    same settings, whose requests would then be counted here)."""
    settings = target.with_config(**FAST)
    b = type(storage.get_backend(target.prefix, settings))(settings, target.prefix)
    assert isinstance(b, base.ConditionalCreate)
    return b


def _key(target: Any, name: str) -> str:
    return target.prefix + f"0123456789ab/1/{name[:2]}/{name}.jpg"


def _verified(b: base.ConditionalCreate, prefix: str) -> bool | None:
    return base.condition_verified(type(b).__name__, b.condition_scope(prefix))


@contextlib.contextmanager
def _on_requests(b: Any, before: Callable[[str, str], Any] | None = None
                 ) -> Iterator[list[str]]:
    """Count the HTTP requests ``b`` sends (one per attempt: "PUT", "HEAD"...). ``before(method,
    url)`` runs before each is sent, to inject a fault: it may raise, or (GCS) return a
    ``requests.Response`` that is answered instead."""
    seen: list[str] = []
    if isinstance(b, S3Backend):
        def hook(request: Any, **_: Any) -> Any:
            seen.append(request.method)
            return before(request.method, request.url) if before else None
        b.client.meta.events.register("before-send.s3", hook)
        try:
            yield seen
        finally:
            b.client.meta.events.unregister("before-send.s3", hook)
    elif isinstance(b, GCSBackend):
        session = b.client._http
        real = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            seen.append(method)
            answer = before(method, url) if before else None
            return answer if answer is not None else real(method, url, *args, **kwargs)
        session.request = request
        try:
            yield seen
        finally:
            del session.request
    else:
        transport = b.client._pipeline._transport
        real_send = transport.send

        def send(req: Any, **kwargs: Any) -> Any:
            seen.append(req.method)
            if before:
                before(req.method, req.url)
            return real_send(req, **kwargs)
        transport.send = send
        try:
            yield seen
        finally:
            del transport.send


def _content(b: Any, uri: str) -> bytes:
    with b.open(uri) as f:
        return f.read()


# ---- one request per output --------------------------------------------------------------------
@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_the_write_check_verifies_the_condition_once(storage_target):
    b = _backend(storage_target)
    assert _verified(b, storage_target.prefix) is None  # a fresh bucket: not asked yet
    with _on_requests(b) as seen:
        b.check_writable(storage_target.prefix)
    assert _verified(b, storage_target.prefix) is HONOURED[storage_target.name]
    # the probe wrote twice (conditionally) and deleted once; a bucket check comes first
    assert seen.count("PUT") + seen.count("POST") >= 2 and seen.count("DELETE") == 1
    assert not [u for u in b.list(storage_target.prefix) if ".pxlite-probe-" in u]
    with _on_requests(b) as again:
        b.check_writable(storage_target.prefix)  # known now: only the plain write probe
    assert again.count("DELETE") == 1 and len(again) <= 3


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_put_bytes_new_is_one_request_per_call(storage_target):
    b = _backend(storage_target)
    b.check_writable(storage_target.prefix)
    uri = _key(storage_target, "aa" + "0" * 62)
    with _on_requests(b) as seen:
        assert b.put_bytes_new(b"first", uri, "image/jpeg") is True
    assert len(seen) == 1 and seen[0] in ("PUT", "POST")
    with _on_requests(b) as seen:
        again = b.put_bytes_new(b"first", uri, "image/jpeg")
    assert len(seen) == 1 and "HEAD" not in seen and "GET" not in seen
    # refused where the service honours the condition; a plain PUT, counted as ours, elsewhere
    assert again is (not HONOURED[storage_target.name])
    assert _content(b, uri) == b"first"


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_a_write_before_any_check_verifies_first(storage_target):
    """A process that never validated the destination (a Dask worker) verifies on first use,
    with a probe beside the object, then writes with one request each."""
    b = _backend(storage_target)
    uri = _key(storage_target, "ab" + "1" * 62)
    with _on_requests(b) as seen:
        assert b.put_bytes_new(b"x", uri) is True
    assert _verified(b, uri) is HONOURED[storage_target.name]
    assert seen.count("DELETE") == 1  # the probe went again
    assert [u for u in b.list(storage_target.prefix)] == [uri]
    with _on_requests(b) as seen:
        b.put_bytes_new(b"x", _key(storage_target, "ac" + "2" * 62))
    assert len(seen) == 1


@pytest.mark.parametrize("size", [1000, 9 * 1024 * 1024], ids=["small", "multipart"])
@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_put_file_new_creates_once(storage_target, tmp_path, size):
    b = _backend(storage_target)
    b.check_writable(storage_target.prefix)
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(size))
    uri = _key(storage_target, "ad" + "3" * 62)
    with _on_requests(b) as seen:
        assert b.put_file_new(src, uri, "application/octet-stream") is True
    assert "HEAD" not in seen
    if size < base.MULTIPART_THRESHOLD:
        assert len(seen) == 1
    with _on_requests(b) as seen:
        again = b.put_file_new(src, uri)
    assert "HEAD" not in seen and again is (not HONOURED[storage_target.name])
    assert _content(b, uri) == src.read_bytes()
    # a refused multipart upload leaves no parts behind
    if isinstance(b, S3Backend):
        loc = storage.parse_bucket_uri(uri)
        assert not b.client.list_multipart_uploads(Bucket=loc.bucket).get("Uploads")


# ---- a provider that ignores the condition -----------------------------------------------------
def _ignore_condition_in_probes(b: base.ConditionalCreate, monkeypatch: pytest.MonkeyPatch
                                ) -> None:
    """Inject a service that accepts the condition and overwrites anyway: the probe's second
    conditional create "succeeds"."""
    real = b.create_bytes

    def create_bytes(data: bytes, uri: str, content_type: str | None = None) -> bool:
        wrote = real(data, uri, content_type)
        return True if ".pxlite-probe-" in uri else wrote
    monkeypatch.setattr(b, "create_bytes", create_bytes)


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_an_ignored_condition_falls_back_to_plain_puts(storage_target, monkeypatch):
    b = _backend(storage_target)
    _ignore_condition_in_probes(b, monkeypatch)
    b.check_writable(storage_target.prefix)
    monkeypatch.undo()
    assert _verified(b, storage_target.prefix) is False
    uri = _key(storage_target, "ae" + "4" * 62)
    for _ in range(2):
        with _on_requests(b) as seen:
            assert b.put_bytes_new(b"same bytes", uri, "image/jpeg") is True  # the ledger's
        assert len(seen) == 1 and seen[0] in ("PUT", "POST")
    assert _content(b, uri) == b"same bytes"
    assert list(b.list(storage_target.prefix)) == [uri]


@pytest.mark.parametrize("storage_target", ["s3", "azure"], indirect=True)
def test_a_service_rejecting_the_condition_is_not_honoured(storage_target, monkeypatch):
    """A service that answers the conditional request with an error (e.g. 501) gets plain
    PUTs; the write check still passes through its plain probe."""
    b = _backend(storage_target)

    def rejected(data: bytes, uri: str, content_type: str | None = None) -> bool:
        raise pxl.errors.StorageError(f"{uri}: 501 NotImplemented (injected)", uri=uri)
    monkeypatch.setattr(b, "create_bytes", rejected)
    b.check_writable(storage_target.prefix)
    assert _verified(b, storage_target.prefix) is False
    assert b.put_bytes_new(b"z", _key(storage_target, "af" + "5" * 62)) is True


# ---- a retried create whose first attempt landed -----------------------------------------------
def _land_then_lose_the_answer(target: Any, b: Any, uri: str, data: bytes
                               ) -> Callable[[str, str], Any]:
    """A fault: the first PUT of ``uri`` reaches the service (the object is written), but its
    answer is lost (the connection drops). The SDK retries; the retry is refused."""
    state = {"fired": False}
    direct = storage.get_backend(target.prefix, target.with_config(storage_retries=0))
    key = uri.rsplit("/", 1)[1]

    def before(method: str, url: str) -> Any:
        if method in ("PUT", "POST") and key in url and not state["fired"]:
            state["fired"] = True
            direct.put_bytes(data, uri)  # what the lost attempt did on the server
            if isinstance(b, S3Backend):
                from botocore.exceptions import ConnectionClosedError
                raise ConnectionClosedError(endpoint_url=url)
            from azure.core.exceptions import ServiceResponseError
            raise ServiceResponseError("connection lost (injected)")
        return None
    return before


@pytest.mark.parametrize("storage_target", ["s3", "azure"], indirect=True)
def test_a_refused_retry_counts_as_created(storage_target):
    b = _backend(storage_target)
    b.check_writable(storage_target.prefix)
    uri = _key(storage_target, "b0" + "6" * 62)
    with _on_requests(b, _land_then_lose_the_answer(storage_target, b, uri, b"d")) as seen:
        assert b.put_bytes_new(b"d", uri) is True  # maybe our own first attempt: ours
    assert len(seen) == 2
    with _on_requests(b) as seen:
        assert b.put_bytes_new(b"d", uri) is False  # no retry: someone else's
    assert len(seen) == 1


@pytest.mark.parametrize("storage_target", ["gcs"], indirect=True)
def test_gcs_refusals_map_like_the_others(storage_target):
    """The emulator does not refuse; real GCS answers 412 to ``ifGenerationMatch=0`` on an
    existing object. Injected here: the refusal is "not created", unless the upload was
    retried (the first attempt may have landed)."""
    import requests

    b = _backend(storage_target)
    uri = _key(storage_target, "b1" + "7" * 62)
    b.put_bytes(b"g", uri)
    drops = {"left": 0}

    def refuse(method: str, url: str) -> Any:
        if "ifGenerationMatch=0" not in url:
            return None
        if drops["left"]:
            drops["left"] -= 1
            raise requests.ConnectionError("connection lost (injected)")
        r = requests.Response()
        r.status_code, r.url, r.request = 412, url, requests.Request(method, url).prepare()
        r._content = json.dumps({"error": {"code": 412, "message": "conditionNotMet"}}).encode()
        r.headers["Content-Type"] = "application/json"
        return r

    with _on_requests(b, refuse) as seen:
        assert b.create_bytes(b"g", uri) is False
    assert len(seen) == 1
    drops["left"] = 1
    with _on_requests(b, refuse) as seen:
        assert b.create_bytes(b"g", uri) is True
    assert seen.count("POST") == 2


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_other_errors_stay_mapped(storage_target):
    b = _backend(storage_target)
    b.check_writable(storage_target.prefix)
    missing = storage_target.prefix.replace("pxl-", "pxq-", 1) + "k.jpg"  # no such bucket
    with pytest.raises(pxl.errors.StorageError) as plain:
        b.put_bytes(b"q", missing)
    with pytest.raises(pxl.errors.StorageError) as conditional:
        b.create_bytes(b"q", missing)
    assert type(conditional.value) is type(plain.value)
    assert not conditional.value.retryable and "pxq-" in str(conditional.value)


# ---- aborted operations: what they created goes, what committed rows name stays -----------------
@pxl.udf
def _flip_unless_marked(img: pxl.Image) -> pxl.Image:
    if img.width == 13:
        raise ValueError("the marked row")
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _img(i: int, width: int = 16) -> Image.Image:
    return Image.new("RGB", (width, 12), (40 * i % 256, 90, 200 - 30 * i % 200))


def _objects(b: Any, prefix: str) -> set[str]:
    return {u for u in b.list(prefix) if ".pxlite-probe-" not in u}


#: (emulator, condition honoured): the GCS emulator ignores ifGenerationMatch, so on it only
#: the ledger path can run; S3 and Azure run both.
ABORT_CASES = [(name, honoured) for name in CLOUD for honoured in (True, False)
               if HONOURED[name] or not honoured]


@pytest.mark.parametrize(("storage_target", "honoured"), ABORT_CASES, indirect=["storage_target"],
                         ids=[f"{n}-{'condition' if h else 'ledger'}" for n, h in ABORT_CASES])
def test_an_aborted_computed_column_removes_only_its_own_objects(storage_target, tmp_path,
                                                                 monkeypatch, honoured):
    prefix = storage_target.prefix
    b = _backend(storage_target)
    if not honoured:
        _ignore_condition_in_probes(b, monkeypatch)
    b.check_writable(prefix)
    monkeypatch.undo()
    assert _verified(b, prefix) is honoured

    db = pxl.connect(tmp_path / "a.pxl", config=storage_target.config)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": _img(i)} for i in range(3)])
    assert t.add_computed_column(out=_flip_unless_marked(t.image),
                                 destination=prefix).num_errors == 0
    committed = _objects(b, prefix)
    assert len(committed) == 3

    # 1. a computed column whose last row fails: its objects go, the other column's stay
    t.insert([{"image": _img(13, width=13)}], on_error="ignore")  # `out` stores the error
    with pytest.raises(pxl.errors.ComputeError, match="marked row"):
        t.add_computed_column(out2=_flip_unless_marked(t.image), destination=prefix,
                              on_error="abort")
    assert _objects(b, prefix) == committed
    t.delete(where=t.image.width == 13)

    # 2. an insert repeating committed content (same keys as committed rows) and a new image,
    #    then a failing row: the new image's output goes, the committed ones stay
    with pytest.raises(pxl.errors.PxliteError, match="marked row"):
        t.insert([{"image": _img(0)}, {"image": _img(7)}, {"image": _img(13, width=13)}],
                 on_error="abort")
    assert _objects(b, prefix) == committed
    assert t.count() == 3 and all(r["out"].size == (16, 12) for r in t.collect())

    # 3. a copy of the database (its own identity: the bucket location stays its original's)
    #    computes an image the original committed after the copy was made, then aborts: the
    #    copy must not delete the original's object, which its own rows do not name
    db.close()
    shutil.copy2(tmp_path / "a.pxl", tmp_path / "b.pxl")
    shutil.copytree(tmp_path / "a.pxl.media", tmp_path / "b.pxl.media")
    db = pxl.connect(tmp_path / "a.pxl", config=storage_target.config)
    db.get_table("t").insert([{"image": _img(5)}])
    originals = _objects(b, prefix)
    assert len(originals) == 4
    db.close()
    copy = pxl.connect(tmp_path / "b.pxl", config=storage_target.config)
    with pytest.raises(pxl.errors.PxliteError, match="marked row"):
        copy.get_table("t").insert([{"image": _img(5)}, {"image": _img(13, width=13)}],
                                   on_error="abort")
    copy.close()
    assert _objects(b, prefix) == originals
    db = pxl.connect(tmp_path / "a.pxl", config=storage_target.config)
    assert sorted(r["out"].size for r in db.get_table("t").collect()) == [(16, 12)] * 4
    assert pxl.check(db=db).ok
    db.close()
