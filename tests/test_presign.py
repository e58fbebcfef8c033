"""``net.presigned_url`` end to end: computed columns and queries against every cloud emulator.

The URLs are fetched with plain ``urllib`` (no credentials), as a browser would. moto and the GCS
emulator check neither signatures nor expiry, so for them the form of the URL (SigV4 / GOOG4
parameters, the expiry asked for) and the client-side 7-day limit are checked; Azurite checks
both, so the SAS expiry is tested there for real. The signatures are recomputed to show a URL
is good for GET only, and Azurite shows a SAS is read-only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from fixtures_storage import fake_gcs_key

import pxlite as pxl
from pxlite import config, storage
from pxlite.errors import ComputeError, ConfigError, SchemaError
from pxlite.functions import net

CLOUD = ["s3", "r2", "b2", "tigris", "gcs", "azure"]
SEVEN_DAYS = 7 * 24 * 3600
SPEC_TEXT = "presigned URLs need cloud storage; configure a cloud destination"


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def _objects(target) -> dict[str, str]:
    """``{fileurl: canonical URI}`` of every object under the target's prefix."""
    backend = storage.get_backend(target.prefix, target.settings)
    return {backend.fileurl(u): u for u in backend.list(target.prefix)}


def _object_bytes(target, uri: str) -> bytes:
    with storage.get_backend(uri, target.settings).open(uri) as f:
        return f.read()


def _table(tmp_path: Path, target, jpegs: list[Path], n: int = 2):
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t = db.create_table("m", {"image": pxl.Image, "secs": pxl.Int})
    t.insert([{"image": p, "secs": 60} for p in jpegs[:n]])
    t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix)
    return db, t


def _assert_signed(name: str, url: str, seconds: int) -> None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if name == "gcs":
        assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"] and "X-Goog-Signature" in query
        assert query["X-Goog-Expires"] == [str(seconds)]
    elif name == "azure":
        assert query["sp"] == ["r"] and "sig" in query and "se" in query  # read-only SAS
    else:  # SigV4, never the SDK's SigV2 default
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and "X-Amz-Signature" in query
        assert query["X-Amz-Expires"] == [str(seconds)]


@pytest.mark.parametrize("storage_target", CLOUD, indirect=True)
def test_presigned_column_and_select(storage_target, tmp_path, jpegs):
    target = storage_target
    db, t = _table(tmp_path, target, jpegs)
    status = t.add_computed_column(share=net.presigned_url(t.rot.fileurl, 3600))
    assert status.num_errors == 0
    objects = _objects(target)
    rows = t.select(t.rot.fileurl, t.share, u60=net.presigned_url(t.rot.fileurl, 60)).collect()
    assert len(rows) == 2
    for row in rows:
        uri = objects[row["rot_fileurl"]]  # the column's file is in the destination
        expected = _object_bytes(target, uri)
        for url, seconds in ((row["share"], 3600), (row["u60"], 60)):
            assert url.startswith("http") and url != row["rot_fileurl"]
            _assert_signed(target.name, url, seconds)
            assert _fetch(url) == expected
        # the stored canonical URI (az://, s3://, gs://...) works as well, called directly
        direct = net.presigned_url(uri, 120, settings=db.settings())
        assert _fetch(direct) == expected
    # the column definition survives a reopen and computes for new rows
    db.close()
    db2 = pxl.connect(tmp_path / "x.pxl", config=target.config)
    t2 = db2.get_table("m")
    t2.insert(image=jpegs[2], secs=1)
    new = t2.where(t2.secs == 1).select(t2.rot.fileurl, t2.share).collect()[0]
    assert _fetch(new["share"]) == _object_bytes(target, _objects(target)[new["rot_fileurl"]])
    assert "presigned_url" in repr(t2)
    db2.close()


@pytest.mark.parametrize("storage_target", ["s3", "gcs"], indirect=True)
def test_expiry_over_seven_days_fails_the_column(storage_target, tmp_path, jpegs):
    target = storage_target
    db, t = _table(tmp_path, target, jpegs)
    before = sorted(_objects(target).values())
    with pytest.raises(ComputeError) as exc:
        t.add_computed_column(share=net.presigned_url(t.rot.fileurl, SEVEN_DAYS + 1))
    msg = str(exc.value)
    assert "share" in msg and "7 days" in msg and str(SEVEN_DAYS + 1) in msg
    assert isinstance(exc.value.error, ConfigError)
    # nothing left behind: no column, no files, the table still works
    assert "share" not in t.columns()
    assert sorted(_objects(target).values()) == before
    assert t.count() == 2
    # exactly seven days is allowed; a select over the limit fails with the same cause
    ok = t.select(u=net.presigned_url(t.rot.fileurl, SEVEN_DAYS)).collect()
    assert all(r["u"].startswith("http") for r in ok)
    with pytest.raises(ConfigError, match="7 days"):
        t.select(net.presigned_url(t.rot.fileurl, SEVEN_DAYS * 2)).collect()
    db.close()


@pytest.mark.parametrize("storage_target", ["azure"], indirect=True)
def test_azure_sas_expires(storage_target, tmp_path, jpegs):
    """Azurite enforces the SAS expiry, so this one really waits it out."""
    target = storage_target
    db, t = _table(tmp_path, target, jpegs, n=1)
    # Azure's fileurl is the http(s) blob URL, which presigned_url maps back to the account
    fileurl = t.select(t.rot.fileurl).collect()[0]["rot_fileurl"]
    assert fileurl.startswith("http") and storage.scheme_of(fileurl) == "http"
    # the longest SAS allowed: 7 days, as for S3 and GCS
    long = t.select(u=net.presigned_url(t.rot.fileurl, SEVEN_DAYS)).collect()[0]["u"]
    t.add_computed_column(share=net.presigned_url(t.rot.fileurl, t.secs - 58))  # 2 s
    url = t.select(t.share).collect()[0]["share"]
    expected = _object_bytes(target, _objects(target)[fileurl])
    assert _fetch(url) == expected and _fetch(long) == expected
    time.sleep(3.5)
    with pytest.raises(urllib.error.HTTPError) as exc:
        _fetch(url)
    assert exc.value.code == 403
    assert _fetch(long) == expected
    # unsigned, the blob is private: the SAS is what grants access
    with pytest.raises(urllib.error.HTTPError):
        _fetch(fileurl)
    db.close()


@pytest.mark.parametrize("storage_target", ["azure"], indirect=True)
def test_azure_urls_outside_the_account(storage_target):
    settings = storage_target.settings
    endpoint = storage_target.config["azure"]["connection_string"].split("BlobEndpoint=")[1]
    endpoint = endpoint.rstrip(";").rstrip("/")
    # a container (not a blob) under the account is an error, not a URL to share
    with pytest.raises(ConfigError, match="not a blob"):
        net.presigned_url(f"{endpoint}/somecontainer/", 60, settings=settings)
    # another host, or a URL that already has a query (e.g. a SAS), comes back unchanged
    for url in (f"{endpoint}x/c/k.jpg", "http://127.0.0.1:1/devstoreaccount1/c/k.jpg",
                f"{endpoint}/c/k.jpg?sv=2024&sig=abc"):
        assert net.presigned_url(url, 60, settings=settings) == url


def test_local_destination_is_a_clear_error(tmp_path, jpegs):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("m", {"image": pxl.Image})
    t.insert([{"image": p} for p in jpegs[:2]])
    t.add_computed_column(rot=t.image.rotate(90), destination=str(tmp_path / "out"))
    with pytest.raises(ComputeError, match=SPEC_TEXT) as exc:
        t.add_computed_column(share=net.presigned_url(t.rot.fileurl, 3600))
    assert isinstance(exc.value.error, ConfigError)
    assert "share" not in t.columns()
    with pytest.raises(ConfigError, match=SPEC_TEXT):
        t.select(net.presigned_url(t.image.fileurl, 60)).collect()
    # an inserted local image column (not only a computed one), a path and a file URI
    for local in (str(jpegs[0]), jpegs[0].as_uri(), "relative/file.jpg"):
        with pytest.raises(ConfigError, match=SPEC_TEXT):
            net.presigned_url(local, 60)
    db.close()


def test_web_urls_come_back_unchanged(tmp_path):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("u", {"url": pxl.String})
    urls = ["https://example.com/a.jpg", "http://127.0.0.1:9/b.png?x=1",
            "https://bucket.s3.amazonaws.com/k.jpg?X-Amz-Signature=abc"]
    t.insert([{"url": u} for u in urls] + [{"url": None}])
    got = t.select(u=net.presigned_url(t.url, 60)).collect()
    assert [r["u"] for r in got] == [*urls, None]  # no network, no error; NULL stays NULL
    t.add_computed_column(share=net.presigned_url(t.url, 3600))
    assert [r["share"] for r in t.select(t.share).collect()] == [*urls, None]
    assert net.presigned_url("https://example.com/a.jpg", 1) == "https://example.com/a.jpg"
    db.close()


def test_bad_arguments_fail_when_the_expression_is_built(tmp_path):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("m", {"image": pxl.Image, "url": pxl.String, "f": pxl.Float,
                              "n": pxl.Int})
    for bad in (0, -5, 1.5, True, "60", None):
        with pytest.raises(SchemaError, match="expiration_seconds"):
            net.presigned_url(t.url, bad)
    with pytest.raises(SchemaError, match="expiration_seconds"):
        net.presigned_url(t.url, t.f)
    with pytest.raises(SchemaError, match="url must be a string"):
        net.presigned_url(t.n, 60)
    with pytest.raises(SchemaError, match="url must be a string"):
        net.presigned_url(t.image.rotate(90), 60)
    with pytest.raises(SchemaError, match="settings"):
        net.presigned_url(t.url, 60, settings={})
    with pytest.raises(SchemaError):
        net.presigned_url(t.url)
    # an image column means its file
    assert "fileurl" in repr(net.presigned_url(t.image, 60))
    # direct calls check the same things, as ConfigError
    for bad in (0, -1, 2.0, False):
        with pytest.raises(ConfigError, match="expiration_seconds"):
            net.presigned_url("https://example.com/a.jpg", bad)
    with pytest.raises(ConfigError, match="unsupported URI scheme"):
        net.presigned_url("ftp://host/a.jpg", 60)
    with pytest.raises(ConfigError, match="not an object"):
        net.presigned_url("s3://bucket/folder/", 60)
    # an Int column holding a bad expiry errors at compute time, naming the cause
    t.insert(url="https://example.com/a.jpg", n=0)
    with pytest.raises(ComputeError, match="positive"):
        t.add_computed_column(share=net.presigned_url(t.url, t.n))
    db.close()


# ---------------------------------------------------------------------------------------------
# GET only, bounded: the signature binds the method (checked by recomputing it) and the expiry
# (7 days for S3 and GCS); an Azure SAS is read-only (a PUT with one is refused by Azurite).


def _canonical_query(params: dict[str, str]) -> str:
    q = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    return "&".join(f"{q(k)}={q(v)}" for k, v in sorted(params.items()))


def _canonical_request(url: str, method: str, sig_param: str) -> tuple[str, dict[str, str], str]:
    u = urllib.parse.urlsplit(url)
    params = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    sig = params.pop(sig_param)
    signed = [h for h in (params.get("X-Amz-SignedHeaders") or params["X-Goog-SignedHeaders"]
                          ).split(";")]
    assert signed == ["host"], signed  # nothing but the host is signed: no body, no headers
    canon = "\n".join([method, u.path, _canonical_query(params), f"host:{u.netloc}", "", "host",
                       "UNSIGNED-PAYLOAD"])
    return canon, params, sig


def _sigv4_matches(url: str, secret: str, method: str) -> bool:
    canon, p, sig = _canonical_request(url, method, "X-Amz-Signature")
    scope = p["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    sts = "\n".join(["AWS4-HMAC-SHA256", p["X-Amz-Date"], scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(k, sts.encode(), hashlib.sha256).hexdigest(), sig)


def _goog4_matches(url: str, public_key, method: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    canon, p, sig = _canonical_request(url, method, "X-Goog-Signature")
    scope = p["X-Goog-Credential"].split("/", 1)[1]
    sts = "\n".join(["GOOG4-RSA-SHA256", p["X-Goog-Date"], scope,
                     hashlib.sha256(canon.encode()).hexdigest()])
    try:
        public_key.verify(bytes.fromhex(sig), sts.encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


@pytest.mark.usefixtures("fresh_backends")
def test_s3_presign_is_get_only_and_bounded():
    """Recompute the SigV4 signature: it is valid for GET and invalid for PUT/DELETE/POST."""
    secret = "PXSECRET-presign-s3"
    for provider, endpoint in [("s3", "http://127.0.0.1:9"), ("r2", "https://acct.r2.example"),
                               ("b2", None), ("tigris", None)]:
        section = {"aws_access_key_id": "AKID", "aws_secret_access_key": secret,
                   "region": "us-west-004" if provider == "b2" else "eu-west-1"}
        if endpoint:
            section["endpoint_url"] = endpoint
        s = config.resolve({provider: section})
        url = net.presigned_url(f"{provider}://bkt/dir/a b+c.jpg", 900, settings=s)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and q["X-Amz-Expires"] == "900"
        assert secret not in url
        assert _sigv4_matches(url, secret, "GET"), url
        for method in ("PUT", "DELETE", "POST", "HEAD"):
            assert not _sigv4_matches(url, secret, method)
        with pytest.raises(ConfigError, match="7 days"):
            net.presigned_url(f"{provider}://bkt/a.jpg", 7 * 24 * 3600 + 1, settings=s)
        for bad in (0, -1):
            with pytest.raises(ConfigError, match="positive"):
                net.presigned_url(f"{provider}://bkt/a.jpg", bad, settings=s)
        assert net.presigned_url(f"{provider}://bkt/a.jpg", 7 * 24 * 3600, settings=s)


@pytest.mark.usefixtures("fresh_backends")
def test_gcs_presign_is_get_only_and_bounded(tmp_path):
    key_file, pem, _ = fake_gcs_key(tmp_path, "kid")
    from cryptography.hazmat.primitives import serialization

    public = serialization.load_pem_private_key(pem.encode(), None).public_key()
    s = config.resolve({"gcs": {"credentials_file": str(key_file), "project": "p",
                                "endpoint": "http://127.0.0.1:9"}})
    url = net.presigned_url("gs://bkt/dir/a b.jpg", 900, settings=s)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256" and q["X-Goog-Expires"] == "900"
    assert _goog4_matches(url, public, "GET"), url
    for method in ("PUT", "DELETE", "POST"):
        assert not _goog4_matches(url, public, method)
    with pytest.raises(ConfigError, match="7 days"):
        net.presigned_url("gs://bkt/a.jpg", 7 * 24 * 3600 + 1, settings=s)


@pytest.mark.usefixtures("fresh_backends")
def test_azure_sas_is_read_only(tmp_path, azurite_server):
    """The SAS grants read (sp=r) on one blob: Azurite serves a GET and refuses writes/deletes."""
    from azure.storage.blob import BlobServiceClient

    container = f"pxl-{uuid.uuid4().hex[:12]}"
    svc = BlobServiceClient.from_connection_string(azurite_server.connection_string)
    svc.create_container(container)
    svc.get_blob_client(container, "a.txt").upload_blob(b"hello")
    s = config.resolve({"azure": {"connection_string": azurite_server.connection_string}})
    url = net.presigned_url(f"az://{container}/a.txt", 600, settings=s)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["sp"] == "r" and q["sr"] == "b"
    expiry = dt.datetime.fromisoformat(q["se"].replace("Z", "+00:00"))
    assert expiry - dt.datetime.now(dt.UTC) < dt.timedelta(seconds=660)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"hello"
    for method, headers, data in [("PUT", {"x-ms-blob-type": "BlockBlob"}, b"evil"),
                                  ("DELETE", {}, None)]:
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=10)
        assert ei.value.code == 403, (method, ei.value.code)
    other = url.replace("/a.txt?", "/b.txt?")  # the signature is for that one blob
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(other, timeout=10)
    assert ei.value.code == 403
    assert svc.get_blob_client(container, "a.txt").download_blob().readall() == b"hello"
