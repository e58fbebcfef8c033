"""One conformance suite, run against every storage backend on a real (emulated) server."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fixtures_storage import StorageTarget

from pxlite.errors import ConfigError, NotFoundError, ObjectNotFoundError, StorageError
from pxlite.storage import get_backend, join, scheme_of
from pxlite.storage.base import ObjectInfo, StorageBackend

BIG_SIZE = 20 * 1024 * 1024
SEVEN_DAYS = 7 * 24 * 3600
UNICODE_KEY = "ключ/日本 語 (1)+a#b?%20.bin"


@pytest.fixture
def backend(storage_target: StorageTarget) -> StorageBackend:
    return get_backend(storage_target.prefix, storage_target.settings)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(os.urandom(BIG_SIZE))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(url: str) -> tuple[bytes, str | None]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), resp.headers.get("Content-Type")


def test_put_bytes_round_trip(storage_target, backend, tmp_path):
    uri = join(storage_target.prefix, "a/one.txt")
    assert not backend.exists(uri)
    backend.put_bytes(b"hello pxlite", uri, "text/plain")
    assert backend.exists(uri)
    info = backend.stat(uri)
    assert isinstance(info, ObjectInfo) and info.size == 12 and info.version
    with backend.open(uri) as f:
        assert f.read(5) == b"hello"
        assert f.read() == b" pxlite"
    out = tmp_path / "dl" / "sub" / "one.txt"  # parent folders are created
    backend.get_file(uri, out)
    assert out.read_bytes() == b"hello pxlite"
    assert os.listdir(out.parent) == ["one.txt"]  # no temp file left behind


def test_put_file_round_trip(storage_target, backend, tmp_path):
    src = tmp_path / "src.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    uri = join(storage_target.prefix, "img/src.png")
    backend.put_file(src, uri, "image/png")
    assert backend.stat(uri).size == src.stat().st_size
    out = tmp_path / "out.png"
    out.write_bytes(b"old contents")  # get_file replaces an existing file
    backend.get_file(uri, out)
    assert out.read_bytes() == src.read_bytes()


def test_missing_object(storage_target, backend, tmp_path):
    uri = join(storage_target.prefix, "missing/none.bin")
    assert backend.exists(uri) is False
    for call in (backend.stat, backend.open):
        with pytest.raises(ObjectNotFoundError) as exc:
            call(uri)
        assert isinstance(exc.value, NotFoundError) and isinstance(exc.value, StorageError)
        assert exc.value.retryable is False and exc.value.uri == uri
    out = tmp_path / "dl" / "none.bin"
    with pytest.raises(ObjectNotFoundError):
        backend.get_file(uri, out)
    assert not out.exists() and os.listdir(out.parent) == []  # no partial or temp file
    backend.delete(uri)  # deleting a missing object is fine


def test_delete(storage_target, backend):
    uri = join(storage_target.prefix, "del/me.bin")
    backend.put_bytes(b"x", uri)
    backend.delete(uri)
    assert not backend.exists(uri)
    backend.delete(uri)


def test_list_recursive(storage_target, backend):
    prefix = storage_target.prefix
    assert list(backend.list(prefix)) == []
    keys = ["a/1.bin", "a/b/2.bin", "c/3.bin"]
    for k in keys:
        backend.put_bytes(k.encode(), join(prefix, k))
    assert sorted(backend.list(prefix)) == sorted(join(prefix, k) for k in keys)
    assert sorted(backend.list(join(prefix, "a/"))) == [join(prefix, "a/1.bin"),
                                                         join(prefix, "a/b/2.bin")]
    assert list(backend.list(join(prefix, "zzz/"))) == []
    for k in keys:  # listed URIs are usable as they are
        assert backend.stat(join(prefix, k)).size == len(k)


def test_list_info(storage_target, backend):
    """list_info: the same objects as list(), each with its key relative to the prefix, its
    size, a modification time near now and, on cloud services, an etag that changes with the
    content; a prefix that ends inside a name filters by it; an empty prefix lists nothing."""
    prefix = storage_target.prefix
    assert list(backend.list_info(prefix)) == []
    keys = {"a/1.bin": b"x", "a/b/2.bin": b"yy", "c/3.bin": b"zzz", UNICODE_KEY: b"unicode"}
    for k, data in keys.items():
        backend.put_bytes(data, join(prefix, k))
    found = {o.key: o for o in backend.list_info(prefix)}
    assert sorted(o.uri for o in found.values()) == sorted(backend.list(prefix))
    assert set(found) == set(keys)
    now = time.time()
    for k, data in keys.items():
        o = found[k]
        assert o.uri == join(prefix, k) and o.size == len(data)
        assert o.mtime is not None and abs(o.mtime - now) < 600
        assert backend.stat(o.uri).size == o.size  # a listed URI is usable as it is
        if storage_target.name != "local":
            assert o.etag
    assert sorted(o.key for o in backend.list_info(join(prefix, "a/"))) == ["1.bin", "b/2.bin"]
    assert [o.key for o in backend.list_info(prefix + "c")] == ["/3.bin"]
    assert list(backend.list_info(join(prefix, "zzz/"))) == []
    if storage_target.name != "local":
        before = found["a/1.bin"].etag
        backend.put_bytes(b"other content", join(prefix, "a/1.bin"))
        after = {o.key: o for o in backend.list_info(join(prefix, "a/"))}["1.bin"]
        assert after.etag != before and after.size == len(b"other content")


def test_list_info_missing_bucket(storage_target, backend):
    """Listing a bucket (container) that does not exist is a StorageError saying so; a
    missing local folder lists nothing."""
    if storage_target.name == "local":
        assert list(backend.list_info(storage_target.prefix + "nothing/here/")) == []
        return
    scheme = storage_target.prefix.split("://", 1)[0]
    missing = f"{scheme}://pxl-missing-{os.urandom(4).hex()}/p/"
    other = get_backend(missing, storage_target.settings)
    with pytest.raises(StorageError) as exc:
        list(other.list_info(missing))
    assert "pxl-missing-" in str(exc.value)


def test_overwrite_changes_version(storage_target, backend, tmp_path):
    uri = join(storage_target.prefix, "over/write.bin")
    backend.put_bytes(b"first version", uri)
    v1 = backend.stat(uri)
    src = tmp_path / "second.bin"
    src.write_bytes(b"the second, longer version")
    backend.put_file(src, uri)
    v2 = backend.stat(uri)
    assert v2.size == src.stat().st_size and v2.version != v1.version
    with backend.open(uri) as f:
        assert f.read() == src.read_bytes()


def test_unicode_keys(storage_target, backend, tmp_path):
    uri = join(storage_target.prefix, UNICODE_KEY)
    backend.put_bytes("ünïcode".encode(), uri)
    assert backend.exists(uri)
    assert list(backend.list(storage_target.prefix)) == [uri]
    backend.get_file(uri, tmp_path / "u.bin")
    assert (tmp_path / "u.bin").read_bytes() == "ünïcode".encode()
    backend.delete(uri)
    assert not backend.exists(uri)


def test_large_file_multipart(storage_target, backend, big_file, tmp_path):
    uri = join(storage_target.prefix, "big/20mb.bin")
    backend.put_file(big_file, uri, "application/octet-stream")
    assert backend.stat(uri).size == BIG_SIZE
    out = tmp_path / "big.bin"
    backend.get_file(uri, out)
    assert _sha(out) == _sha(big_file)
    with backend.open(uri) as f, open(big_file, "rb") as want:
        assert f.read(3_000_000) == want.read(3_000_000)


def test_check_writable_leaves_nothing(storage_target, backend):
    backend.check_writable(storage_target.prefix)
    assert list(backend.list(storage_target.prefix)) == []


def test_concurrent_puts_and_gets(storage_target, backend, tmp_path):
    def work(i: int) -> bytes:
        uri = join(storage_target.prefix, f"conc/{i:02d}.bin")
        backend.put_bytes(bytes([i]) * 1000, uri)
        backend.get_file(uri, tmp_path / f"{i}.bin")
        return (tmp_path / f"{i}.bin").read_bytes()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [bytes([i]) * 1000 for i in range(16)]


def test_fileurl(storage_target, backend):
    uri = join(storage_target.prefix, "f/x.bin")
    url = backend.fileurl(uri)
    if storage_target.name == "azure":
        endpoint = storage_target.settings.provider("azure")["connection_string"]
        assert url.startswith(endpoint.split("BlobEndpoint=")[1].rstrip(";") + "/")
        assert url.endswith("/f/x.bin")
    else:
        assert url == uri


def test_presign(storage_target, backend):
    uri = join(storage_target.prefix, "share/pic.png")
    backend.put_bytes(b"\x89PNG presigned", uri, "image/png")
    if storage_target.name == "local":
        with pytest.raises(ConfigError, match="presigned URLs need cloud storage; configure a "
                                              "cloud destination"):
            backend.presign(uri, 3600)
        return
    url = backend.presign(uri, 3600)
    assert url.startswith("http") and scheme_of(url) == "http"
    body, content_type = _fetch(url)
    assert body == b"\x89PNG presigned"
    assert content_type == "image/png"
    with pytest.raises(ConfigError, match="positive"):
        backend.presign(uri, 0)


def test_presign_expiry_limit(storage_target, backend):
    uri = join(storage_target.prefix, "share/limit.bin")
    if storage_target.name == "local":
        with pytest.raises(ConfigError, match="need cloud storage"):
            backend.presign(uri, SEVEN_DAYS)
        return
    backend.presign(uri, SEVEN_DAYS)  # exactly the limit is allowed (Azure: the same 7 days)
    with pytest.raises(ConfigError, match="7 days") as exc:
        backend.presign(uri, SEVEN_DAYS + 1)
    assert uri in str(exc.value)


# Only Azurite checks signatures and expiry (moto and the GCS emulator do not).
@pytest.mark.parametrize("storage_target", ["azure"], indirect=True)
def test_azure_sas_expires(storage_target, backend):
    uri = join(storage_target.prefix, "share/short.bin")
    backend.put_bytes(b"short-lived", uri)
    url = backend.presign(uri, 2)
    assert _fetch(url)[0] == b"short-lived"
    time.sleep(3.5)
    with pytest.raises(urllib.error.HTTPError) as exc:
        _fetch(url)
    assert exc.value.code == 403
