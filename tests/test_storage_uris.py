"""URI parsing, destination validation and bad input for the storage layer."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from fixtures_storage import (
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    fresh_name,
    s3_config,
)
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import pxlite.storage as storage
from pxlite import config
from pxlite.errors import ConfigError, ObjectNotFoundError, StorageError
from pxlite.storage import (
    canonical_prefix,
    file_path,
    get_backend,
    is_local,
    join,
    scheme_of,
    to_uri,
    validate_destination,
)
from pxlite.storage.base import check_expiry, retry_call
from tools import servers


@pytest.fixture
def named_settings():
    """Settings naming an R2 account, a B2 region and an Azure account (resolved per test, inside
    the isolated PXLITE_HOME)."""
    return config.resolve({
        "r2": {"account_id": "acct123"}, "b2": {"region": "us-west-004"},
        "azure": {"account_name": "myacct"},
    })


@pytest.fixture
def bare_settings():
    """Settings with no provider sections."""
    return config.resolve({})


# ---------------------------------------------------------------------------------------------
# Forms


@pytest.mark.parametrize("dest, want", [
    ("s3://bkt", "s3://bkt/"),
    ("s3://bkt/p", "s3://bkt/p/"),
    ("S3://bkt/p/q/", "s3://bkt/p/q/"),
    ("gs://my_bucket.v2/out", "gs://my_bucket.v2/out/"),
    ("r2://bkt/p/", "r2://bkt/p/"),
    ("https://acct123.r2.cloudflarestorage.com/bkt/p",
     "https://acct123.r2.cloudflarestorage.com/bkt/p/"),
    ("b2://bkt/p", "b2://bkt/p/"),
    ("https://s3.us-west-004.backblazeb2.com/bkt/p/", "https://s3.us-west-004.backblazeb2.com/bkt/p/"),
    ("tigris://bkt/p", "tigris://bkt/p/"),
    ("https://t3.storage.dev/bkt/p/", "https://t3.storage.dev/bkt/p/"),
    ("az://container/p", "az://container/p/"),
    ("wasbs://container@acct.blob.core.windows.net/p",
     "https://acct.blob.core.windows.net/container/p/"),
    ("abfss://container@acct.dfs.core.windows.net/p/",
     "https://acct.blob.core.windows.net/container/p/"),
    ("https://acct.blob.core.windows.net/container/p/",
     "https://acct.blob.core.windows.net/container/p/"),
])
def test_canonical_cloud_forms(dest, want, named_settings):
    assert canonical_prefix(dest, named_settings) == want
    assert canonical_prefix(want, named_settings) == want  # canonical forms are fixed points


@pytest.mark.parametrize("dest, words", [
    ("s3://", ["bucket name is missing"]),
    ("s3:///key", ["bucket name is missing"]),
    ("gs://Bad_Bucket", ["'Bad_Bucket' is not a valid bucket name", "lowercase"]),
    ("s3://ab/", ["not a valid bucket name"]),
    ("s3://b_b_b/", ["not a valid bucket name"]),
    ("ftp://x", ["unsupported URI scheme 'ftp'", "s3://bucket/prefix/"]),
    ("s3://bkt/a/../b/", ["'..'"]),
    ("s3://bkt/a//b/", ["empty"]),
    ("s3://bkt/a?x=1", ["'?'"]),
    ("az://Container/p/", ["not a valid container name"]),
    ("az://c--c/p/", ["not a valid container name"]),
    ("az:///p/", ["container name is missing"]),
    ("wasbs://container/p/", ["container@<account>"]),
    ("https://example.com/images/", ["read but not write"]),
    ("http://acct.blob.core.windows.net/c/p/", ["read but not write"]),
    ("", ["empty"]),
])
def test_bad_forms(dest, words, named_settings):
    with pytest.raises(ConfigError) as exc:
        canonical_prefix(dest, named_settings)
    msg = str(exc.value)
    for w in words:
        assert w in msg
    if dest:
        assert repr(dest.strip()) in msg or dest in msg


@pytest.mark.parametrize("dest, setting", [
    ("az://container/p/", "[azure]"),
    ("r2://bkt/p/", "[r2] account_id"),
    ("b2://bkt/p/", "[b2] region"),
])
def test_forms_needing_settings(dest, setting, bare_settings):
    with pytest.raises(ConfigError, match=r"\s*".join(map(lambda w: w.replace("[", r"\[")
                                                           .replace("]", r"\]"), setting.split()))):
        canonical_prefix(dest, bare_settings)


@pytest.mark.parametrize("uri, scheme", [
    ("/abs/path.jpg", "file"), ("rel/path.jpg", "file"), ("file:///x.jpg", "file"),
    ("C:\\data\\x.jpg", "file"), ("s3://b/k", "s3"), ("gs://b/k", "gs"), ("r2://b/k", "r2"),
    ("b2://b/k", "b2"), ("tigris://b/k", "tigris"), ("az://c/k", "azure"),
    ("wasbs://c@a.blob.core.windows.net/k", "azure"),
    ("https://acct.blob.core.windows.net/c/k", "azure"),
    ("https://acct.blob.core.windows.net/c/k?sv=2020&sig=x", "http"),  # a SAS URL: fetch as is
    ("https://x.r2.cloudflarestorage.com/b/k", "r2"),
    ("https://s3.eu-central-003.backblazeb2.com/b/k", "b2"),
    ("https://t3.storage.dev/b/k", "tigris"), ("https://fly.storage.tigris.dev/b/k", "tigris"),
    ("https://example.com/x.png", "http"), ("http://127.0.0.1:9/x", "http"),
])
def test_scheme_of(uri, scheme):
    assert scheme_of(uri) == scheme
    assert is_local(uri) == (scheme == "file")


def test_unknown_scheme_is_config_error():
    with pytest.raises(ConfigError, match="unsupported URI scheme 'ftp'"):
        scheme_of("ftp://x/y")


# ---------------------------------------------------------------------------------------------
# Local paths


def test_local_destinations(tmp_path, monkeypatch, bare_settings):
    monkeypatch.chdir(tmp_path)
    want = (tmp_path / "out").as_uri() + "/"
    assert canonical_prefix("out", bare_settings) == want
    assert canonical_prefix(tmp_path / "out", bare_settings) == want
    assert canonical_prefix(str(tmp_path / "out") + "/", bare_settings) == want
    assert canonical_prefix(want, bare_settings) == want
    assert canonical_prefix("sub/../out", bare_settings, base=tmp_path) == want
    assert canonical_prefix("file://localhost" + str(tmp_path / "out"), bare_settings) == want
    assert not (tmp_path / "out").exists()  # canonical_prefix does no I/O
    assert validate_destination("out", bare_settings) == want
    assert (tmp_path / "out").is_dir()  # validate_destination creates the folder
    assert os.listdir(tmp_path / "out") == []  # and removes its probe


def test_relative_destination_may_not_escape_base(tmp_path, bare_settings):
    base = tmp_path / "db"
    base.mkdir()
    with pytest.raises(ConfigError) as exc:
        canonical_prefix("../../etc", bare_settings, base=base)
    assert "'../../etc'" in str(exc.value) and "outside" in str(exc.value)
    (tmp_path / "elsewhere").mkdir()
    (base / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="symlink"):
        canonical_prefix("link/media", bare_settings, base=base)
    (base / "inner").mkdir()
    (base / "ok").symlink_to(base / "inner")
    assert canonical_prefix("ok/media", bare_settings, base=base).startswith(base.as_uri())
    # Absolute paths are explicit choices and are not confined.
    assert canonical_prefix(str(tmp_path / "elsewhere"), bare_settings, base=base) == (
        (tmp_path / "elsewhere").as_uri() + "/")


def test_unwritable_local_destination(tmp_path, bare_settings):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not writable"):
        validate_destination(str(blocker / "media"), bare_settings)


def test_file_uri_forms():
    assert file_path("file:///tmp/a%20b.jpg") == Path("/tmp/a b.jpg")
    assert file_path("file://localhost/tmp/x") == Path("/tmp/x")
    with pytest.raises(ConfigError, match="another host"):
        file_path("file://server/share/x")
    with pytest.raises(ConfigError, match="not a local file URI"):
        file_path("s3://b/k")
    assert to_uri("s3://b/k") == "s3://b/k"
    assert to_uri("/tmp/a b#c.jpg") == "file:///tmp/a%20b%23c.jpg"


@hsettings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                      blacklist_characters="/\\"),
                        min_size=1).filter(lambda s: s not in (".", "..")),
                min_size=1, max_size=4))
def test_path_uri_round_trip(parts):
    path = Path("/data", *parts)
    uri = to_uri(path)
    assert scheme_of(uri) == "file" and file_path(uri) == path
    key = "/".join(parts)
    assert join("file:///data/", key) == uri


def test_join():
    assert join("s3://b/p/", "x/ключ y.jpg") == "s3://b/p/x/ключ y.jpg"  # raw cloud keys
    assert join("file:///d/", "x/ключ y.jpg") == "file:///d/x/%D0%BA%D0%BB%D1%8E%D1%87%20y.jpg"
    for bad_key in ("/abs", "a/../b", "", "a//b"):
        with pytest.raises(ConfigError):
            join("s3://b/p/", bad_key)
    with pytest.raises(ConfigError, match="must end with '/'"):
        join("s3://b/p", "x")


# ---------------------------------------------------------------------------------------------
# Servers: missing buckets, wrong credentials, a server going away


def test_missing_s3_bucket(moto_server):
    s = config.resolve({"s3": s3_config("s3", moto_server.endpoint)})
    with pytest.raises(ConfigError) as exc:
        validate_destination("s3://pxl-no-such-bucket/p/", s)
    msg = str(exc.value)
    assert "'pxl-no-such-bucket'" in msg and "does not exist" in msg and "create it" in msg
    assert s3_config("s3", "")["aws_secret_access_key"] not in msg


def test_missing_gcs_bucket(gcs_server):
    s = config.resolve({"gcs": {"endpoint": gcs_server.endpoint}})
    with pytest.raises(ConfigError, match=r"'pxl-no-such-bucket' does not exist.*create it"):
        validate_destination("gs://pxl-no-such-bucket/p/", s)


def test_missing_azure_container(azurite_server):
    s = config.resolve({"azure": {"connection_string": azurite_server.connection_string}})
    with pytest.raises(ConfigError, match=r"'pxl-no-such-container' does not exist.*create it"):
        validate_destination("az://pxl-no-such-container/p/", s)


def test_azure_wrong_key(azurite_server):
    container = fresh_name()
    create_azure_container(azurite_server.connection_string, container)
    wrong_key = "d3Jvbmcta2V5LWZvci10ZXN0cw==" * 3
    conn = servers.azurite_connection_string(azurite_server.endpoint, wrong_key)
    s = config.resolve({"storage_retries": 0, "azure": {"connection_string": conn}})
    with pytest.raises(ConfigError) as exc:
        validate_destination(f"az://{container}/p/", s)
    msg = str(exc.value)
    assert f"az://{container}/p/" in msg and "connection_string" in msg
    assert wrong_key not in msg and "AccountKey" not in msg


def test_bad_profile_is_config_error():
    s = config.resolve({"s3": {"profile": "pxlite-no-such-profile"}})
    with pytest.raises(ConfigError, match=r"\[s3\]"):
        get_backend("s3://bkt/k", s)


def _s3_stopped(server, tmp_path):
    bucket = fresh_name()
    create_s3_bucket(server.endpoint, bucket, "eu-west-1")
    return {"s3": s3_config("s3", server.endpoint)}, f"s3://{bucket}/p/"


def _gcs_stopped(server, tmp_path):
    bucket = fresh_name()
    create_gcs_bucket(server.endpoint, bucket)
    return {"gcs": {"endpoint": server.endpoint}}, f"gs://{bucket}/p/"


def _azure_stopped(server, tmp_path):
    container = fresh_name()
    create_azure_container(server.connection_string, container)
    return {"azure": {"connection_string": server.connection_string}}, f"az://{container}/p/"


@pytest.mark.parametrize("start, prepare", [
    (servers.start_moto, _s3_stopped),
    (servers.start_gcs, _gcs_stopped),
    (servers.start_azurite, _azure_stopped),
], ids=["s3", "gcs", "azure"])
def test_server_stopped_mid_use(start, prepare, tmp_path):
    try:
        server = start()
    except servers.ServerNotInstalled as e:
        pytest.fail(str(e), pytrace=False)
    try:
        cfg, prefix = prepare(server, tmp_path)
        s = config.resolve({"storage_retries": 0, "storage_timeout_s": 3, **cfg})
        validate_destination(prefix, s)
        backend = get_backend(prefix, s)
        uri = join(prefix, "a.bin")
        backend.put_bytes(b"before", uri)
        assert backend.exists(uri)
    finally:
        server.stop()
    for call in (lambda: backend.put_bytes(b"after", uri), lambda: backend.exists(uri),
                 lambda: backend.stat(uri), lambda: backend.get_file(uri, tmp_path / "x"),
                 lambda: list(backend.list(prefix))):
        with pytest.raises(StorageError) as exc:
            call()
        assert exc.value.retryable is True, str(exc.value)
        assert exc.value.uri in (uri, prefix)
        assert exc.value.__cause__ is not None
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Plain http(s) URLs


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self):
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith("/error500"):
            self.send_error(500, "boom")
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def web_root(tmp_path) -> Iterator[tuple[str, Path]]:
    (tmp_path / "pic.png").write_bytes(b"\x89PNG web")
    handler = lambda *a, **k: _Handler(*a, directory=str(tmp_path), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_read_only(web_root, tmp_path):
    base, _ = web_root
    s = config.resolve({"storage_retries": 0})
    url = f"{base}/pic.png"
    backend = get_backend(url, s)
    assert backend.exists(url) and backend.stat(url).size == 8
    with backend.open(url) as f:
        assert f.read() == b"\x89PNG web"
    backend.get_file(url, tmp_path / "dl" / "pic.png")
    assert (tmp_path / "dl" / "pic.png").read_bytes() == b"\x89PNG web"
    assert backend.presign(url, 60) == url and backend.fileurl(url) == url
    with pytest.raises(ConfigError, match="reads but never writes"):
        backend.put_bytes(b"x", url)
    with pytest.raises(ConfigError, match="reads but never writes"):
        backend.delete(url)


def test_http_404_and_5xx(web_root, tmp_path):
    base, _ = web_root
    s = config.resolve({"storage_retries": 2})
    missing = f"{base}/missing.png"
    backend = get_backend(missing, s)
    assert backend.exists(missing) is False
    for call in (backend.open, backend.stat, lambda u: backend.get_file(u, tmp_path / "m")):
        with pytest.raises(ObjectNotFoundError, match="HTTP 404"):
            call(missing)
    assert not (tmp_path / "m").exists()
    failing = f"{base}/error500.png"
    with pytest.raises(StorageError) as exc:
        backend.open(failing)
    assert exc.value.retryable is True and "500" in str(exc.value)
    assert _Handler.hits[failing[len(base):]] == 3  # first try + storage_retries


def test_http_server_gone(tmp_path):
    port = servers.free_port()  # nothing listens there
    s = config.resolve({"storage_retries": 0})
    url = f"http://127.0.0.1:{port}/x.png"
    with pytest.raises(StorageError) as exc:
        get_backend(url, s).open(url)
    assert exc.value.retryable is True


# ---------------------------------------------------------------------------------------------
# Optional SDKs and import cost


@pytest.mark.parametrize("uri, module, extra", [
    ("s3://bkt/k", "boto3", "s3"),
    ("r2://bkt/k", "boto3", "s3"),
    ("gs://bkt/k", "google.cloud.storage", "gcs"),
    ("az://container/k", "azure.storage.blob", "azure"),
])
def test_missing_sdk_is_config_error(uri, module, extra, monkeypatch):
    storage.clear_backends()
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    s = config.resolve({"r2": {"account_id": "a"}, "azure": {"account_name": "acct"}})
    with pytest.raises(ConfigError) as exc:
        get_backend(uri, s)
    assert f"pip install 'pxlite[{extra}]'" in str(exc.value)
    assert isinstance(exc.value.__cause__, ImportError)
    storage.clear_backends()


def test_import_is_cheap():
    code = ("import sys, pxlite.storage, pxlite.storage.base, pxlite.storage.s3, "
            "pxlite.storage.gcs, pxlite.storage.azure, pxlite.storage.http, pxlite.storage.local\n"
            "heavy = [m for m in ('boto3', 'botocore', 'google.cloud.storage', "
            "'azure.storage.blob',"
            " 'azure.core', 'requests') if m in sys.modules]\n"
            "assert not heavy, heavy")
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_backends_are_cached(moto_server):
    s = config.resolve({"s3": s3_config("s3", moto_server.endpoint)})
    assert get_backend("s3://a-bucket/x", s) is get_backend("s3://other-bucket/y", s)
    t = config.resolve({"s3": {**s3_config("s3", moto_server.endpoint), "region": "us-east-1"}})
    assert get_backend("s3://a-bucket/x", t) is not get_backend("s3://a-bucket/x", s)


def test_register_backend_rejects_bad_target():
    with pytest.raises(ConfigError, match="module:ClassName"):
        storage.register_backend("s3", "no_colon_here", "")


# ---------------------------------------------------------------------------------------------
# Shared helpers


def test_retry_call_backs_off_only_when_retryable():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise StorageError("busy", retryable=True)
        return "ok"

    assert retry_call(flaky, retries=4, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2

    def broken():
        calls.append(1)
        raise StorageError("denied", retryable=False)

    calls.clear()
    with pytest.raises(StorageError, match="denied"):
        retry_call(broken, retries=4, sleep=sleeps.append)
    assert len(calls) == 1


@pytest.mark.parametrize("expires, ok", [(1, True), (604800, True), (604801, False), (0, False),
                                         (-5, False), ("x", False)])
def test_check_expiry(expires, ok):
    if ok:
        assert check_expiry("s3://b/k", expires, 604800, "S3") == expires
    else:
        with pytest.raises(ConfigError):
            check_expiry("s3://b/k", expires, 604800, "S3")


def test_missing_server_program_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("PXLITE_AZURITE", raising=False)
    monkeypatch.setattr(servers, "AZURITE_LOCAL_BIN", tmp_path / "no-azurite")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(servers.ServerNotInstalled, match=r"npm install .*azurite@3\.35\.0"):
        servers.start_azurite(tmp_path)
    monkeypatch.setattr(servers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(servers.ServerNotInstalled, match="pip install 'moto\\[server\\]'"):
        servers.start_moto()
    with pytest.raises(servers.ServerNotInstalled, match="pip install gcp-storage-emulator"):
        servers.start_gcs()
