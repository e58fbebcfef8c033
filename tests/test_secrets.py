"""Secrets stay out of what pxlite returns, stores, raises and logs (SECURITY.md, "Secrets").

* ``pxlite.redact``: URL user-info, SAS/token query parameters, connection-string keys and the
  secret values of the settings in use are masked in any text; exceptions are scrubbed along
  their chain; the log filter sits on the SDKs' loggers (children too), is idempotent and imports
  no SDK.
* An Azure SAS credential (``[azure] credential`` or a connection string's
  ``SharedAccessSignature``) never appears in ``fileurl``, in the database file (a computed
  ``fileurl`` column, WAL included) or in the SDKs' DEBUG logs (Azurite checks the SAS, so the
  operations really use it).
* Credentials in endpoint URLs (``http://user:pw@host/?token=...``) never appear in messages,
  tracebacks, ``check()`` output or stored cell errors (moto accepts the user-info form and
  botocore refuses the query form: its refusal is masked; the GCS client takes both).
* Account-key Azure SAS are capped at 7 days, like S3 and GCS.

The broad "grep every output for every secret" test is ``test_secrets_never_leak`` in
``test_security.py``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
import urllib.parse
import uuid
from pathlib import Path

import pytest
from fixtures_storage import (
    azurite_account_sas,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
)

import pxlite as pxl
from pxlite import redact, storage
from pxlite.config import resolve
from pxlite.errors import ConfigError, PxliteError, cell_error
from pxlite.functions import net
from pxlite.storage.base import SEVEN_DAYS_S
from tools.servers import AZURITE_ACCOUNT

pytestmark = pytest.mark.usefixtures("fresh_backends")


def _texts_of(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def _found(secrets: list[str], texts: list[tuple[str, str]], paths: list[Path]) -> list[str]:
    """Where any secret (as given or percent-decoded) occurs in the texts or under the paths."""
    forms = {f for s in secrets for f in (s, urllib.parse.unquote(s)) if f}
    hits = [f"{s[:16]}... in {where}" for s in forms for where, text in texts if s in text]
    for root in paths:
        files = [root] if root.is_file() else list(root.rglob("*")) if root.is_dir() else []
        for p in files:
            if p.is_file():
                data = p.read_bytes()
                hits += [f"{s[:16]}... in file {p}" for s in forms if s.encode() in data]
    return hits


def _log_texts(caplog) -> list[tuple[str, str]]:
    return [("logs", caplog.text)] + [(f"log {r.name} args", repr(r.args)) for r in caplog.records]


# ---------------------------------------------------------------------------------------------
# pxlite.redact


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("Custom endpoint `http://PXUSER:PXPASSWD@127.0.0.1:9/?token=PXTOKEN` was not a valid URI",
     ["http://****@127.0.0.1:9/?token=****`"], ["PXUSER", "PXPASSWD", "PXTOKEN"]),
    ('127.0.0.1:9 "GET /acct/c/b.jpg?se=2030-01-01&sp=rwdlac&sv=2024-11-04&sig=PXSIG%2Bx%3D '
     'HTTP/1.1" 200', ["/acct/c/b.jpg?se=****&sp=****", "HTTP/1.1\" 200"], ["PXSIG", "rwdlac"]),
    ("{'Endpoint': 'https://PXTOKEN@gw.example/x?api_key=PXKEY', 'Bucket': 'b'}",
     ["https://****@gw.example/x?api_key=****'", "'Bucket': 'b'"], ["PXTOKEN", "PXKEY"]),
    ("BlobEndpoint=http://h/a;SharedAccessSignature=sv=1&sig=PXSIG;AccountKey=PXKEY==;",
     ["BlobEndpoint=http://h/a;SharedAccessSignature=****;AccountKey=****;"], ["PXSIG", "PXKEY"]),
    ("se=2030-01-01&sp=r&sig=PXSIG", ["sig=****"], ["PXSIG"]),  # a SAS on its own
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=PXSIG"
     "&X-Amz-Security-Token=PXTOKEN&X-Amz-Expires=60",
     ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Expires=60"], ["PXSIG", "PXTOKEN"]),
    ("see https://s.example/o?X-Goog-Signature=PXSIG).", ["X-Goog-Signature=****)."], ["PXSIG"]),
])
def test_redact_masks_credentials_in_any_text(text, kept, gone):
    out = redact.redact(text)
    for k in kept:
        assert k in out, out
    for g in gone:
        assert g not in out, out


def test_redact_keeps_text_without_credentials():
    for text in ("wasbs://cont@acct.blob.core.windows.net/p/x.jpg", "s3://bkt/a@b/k.jpg",
                 "http://127.0.0.1:9/acct/cont?restype=container&comp=list", "bob@example.com",
                 "storage_retries = 0", "a=b&c=d", "", "no object at az://c/k.jpg"):
        assert redact.redact(text) == text


def test_remembered_secrets_are_masked_in_every_form():
    secret = f"PX/{uuid.uuid4().hex}+=="
    assert redact.redact(secret) == secret  # not a URL part: unknown yet, it stays
    redact.remember([secret, "short"])
    for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)):
        assert redact.redact(f"x {form} y") == "x **** y"
    assert redact.redact("a short word") == "a short word"  # too short to be remembered


def test_secrets_of_settings():
    sig, key, pw, tok = (f"PX{n}{uuid.uuid4().hex}" for n in "skpt")
    s = resolve({"azure": {"connection_string": f"AccountName=a;AccountKey={key};"
                                                f"SharedAccessSignature=sv=2024-11-04&sig={sig}",
                           "account_url": f"https://a.blob.core.windows.net/?sv=1&sig={sig}"},
                 "s3": {"endpoint_url": f"http://user:{pw}@h:1/?token={tok}",
                        "aws_secret_access_key": "PXSECRETKEY1"},
                 "gcs": {"endpoint": f"http://{tok}@h:2"}})
    from pxlite.config import SECRET_KEYS, URL_KEYS

    found = redact.secrets_of(s.providers, SECRET_KEYS, URL_KEYS)
    assert {sig, key, pw, tok, "PXSECRETKEY1"} <= set(found)
    assert "2024-11-04" not in found and "user" not in found  # not secrets: never masked


def test_scrub_exception_cleans_the_whole_chain():
    url = "http://PXUSER:PXPASSWD@127.0.0.1:9/?token=PXTOKEN"
    try:
        try:
            raise OSError(111, f"refused {url}", url)
        except OSError as inner:
            raise ValueError(f"could not reach {url}", inner) from inner
    except ValueError as outer:
        error = outer
    assert redact.scrub_exception(error)
    for text in _texts_of(error):
        assert "PXPASSWD" not in text and "PXTOKEN" not in text and "****@127.0.0.1" in text


def test_cell_error_masks_credentials():
    etype, msg = cell_error(ValueError("GET https://u:PXPASSWD@h/x?sig=PXSIG failed"))
    assert etype == "ValueError" and "PXPASSWD" not in msg and "PXSIG" not in msg
    assert msg == "GET https://****@h/x?sig=**** failed"


def test_log_filter_covers_child_loggers_and_is_idempotent(caplog):
    caplog.set_level(logging.DEBUG)
    redact.install_log_filter()
    child = logging.getLogger(f"urllib3.pxtest{uuid.uuid4().hex[:6]}.pool")  # created later
    redact.install_log_filter()
    redact.install_log_filter()
    assert sum(isinstance(f, redact.RedactingFilter) for f in child.filters) == 1
    child.debug('%s://%s "%s %s" %s', "http", "h:1", "GET", "/c/b?sv=1&sig=PXSIG", 200)
    try:
        raise OSError("to http://u:PXPASSWD@h/")
    except OSError:
        child.debug("failed", exc_info=True)
    text = caplog.text + repr([r.args for r in caplog.records])
    assert "sig=****" in text and "PXSIG" not in text and "PXPASSWD" not in text
    mine = logging.getLogger("pxtest.not.an.sdk")
    redact.install_log_filter()
    assert not mine.filters  # only the SDKs' loggers


def test_log_filter_imports_no_sdk():
    code = ("import sys, pxlite.redact as r; r.install_log_filter(); r.install_log_filter(); "
            "bad = [m for m in ('boto3', 'botocore', 'azure', 'google', 'urllib3', 'requests') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------------------------
# 1. An Azure SAS credential never reaches fileurl, the database or the logs



@pytest.mark.parametrize("form", ["credential", "connection_string", "endpoint_userinfo"])
def test_azure_sas_credential_stays_out_of_fileurl_database_and_logs(
        form, tmp_path, jpegs, caplog, azurite_server):
    caplog.set_level(logging.DEBUG)
    container = f"pxl-{uuid.uuid4().hex[:12]}"
    create_azure_container(azurite_server.connection_string, container)
    sas = azurite_account_sas()
    sig = urllib.parse.parse_qs(sas)["sig"][0]  # decoded
    blob_endpoint = f"{azurite_server.endpoint}/{AZURITE_ACCOUNT}"
    password = f"PXPW{uuid.uuid4().hex}"
    # a user:password in the endpoint too (a gateway's basic auth): the SDK keeps it in its URLs
    endpoint = (_with_userinfo(blob_endpoint, "pxuser", password)
                if form == "endpoint_userinfo" else blob_endpoint)
    az = ({"account_url": blob_endpoint, "credential": sas} if form == "credential" else
          {"connection_string": f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"})
    dest = f"az://{container}/out/"
    db = pxl.connect(tmp_path / "sas.pxl", config={"azure": az, "output_media_dest": dest})
    t = db.create_table("t", {"img": pxl.Image})
    t.insert([{"img": p} for p in jpegs[:2]])
    t.add_computed_column(rot=t.img.rotate(90))  # uploaded to Azurite with the SAS
    t.add_computed_column(url=t.rot.fileurl)  # stored in the database
    urls = t.select(t.rot.fileurl, t.url).collect().to_dicts()
    for row in urls:
        for url in row.values():
            assert url.startswith(f"{blob_endpoint}/{container}/out/") and "?" not in url, url
    # the file URL still works where a signature belongs: presigned_url needs a key to sign
    with pytest.raises(PxliteError, match="account key"):
        net.presigned_url(urls[0]["url"], 60, settings=db.settings())
    db.close()
    # the SDK really sent the SAS (its DEBUG lines name the requests), and the lines are masked
    seen = {r.name.split(".")[0] for r in caplog.records}
    assert {"urllib3", "azure"} <= seen, seen
    assert "sig=****" in caplog.text
    hits = _found([sas, sig, password], [*_log_texts(caplog), ("fileurls", repr(urls))],
                  [tmp_path])
    assert not hits, hits


# ---------------------------------------------------------------------------------------------
# 2. Credentials inside endpoint URLs are masked in every message


def _with_userinfo(endpoint: str, user: str, password: str) -> str:
    return endpoint.replace("://", f"://{user}:{password}@", 1)


def _errors_everywhere(tmp_path: Path, cfg: dict, dest: str, source: str, tag: str
                       ) -> tuple[list[tuple[str, str]], list[Path]]:
    """connect with a destination, computed columns (ignore and abort), reads, check(): every
    message, traceback and stored cell error, and the files written."""
    texts: list[tuple[str, str]] = []
    tmp_path.mkdir(parents=True, exist_ok=True)  # connect() creates no missing folder

    def attempt(what, fn, *args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except PxliteError as e:
            texts.extend((f"{tag} {what}", t) for t in _texts_of(e))
            return None
        texts.append((f"{tag} {what} result", repr(out)))
        return out

    attempt("connect", pxl.connect, tmp_path / f"{tag}-dest.pxl",
            config={**cfg, "output_media_dest": dest})
    db = pxl.connect(tmp_path / f"{tag}.pxl", config=cfg)
    t = db.create_table("t", {"img": pxl.Image})
    t.insert(img=source)
    attempt("ignore", t.add_computed_column, r=t.img.rotate(90), on_error="ignore")
    attempt("abort", t.add_computed_column, r2=t.img.rotate(90))
    attempt("destination", t.add_computed_column, r3=t.img.rotate(90), destination=dest)
    attempt("read", lambda: t.select(t.img.localpath).collect().to_dicts())
    attempt("stored errors", lambda: t.select(t.r.errortype, t.r.errormsg).collect().to_dicts())
    attempt("check", lambda: str(pxl.check(db=db)))
    db.close()
    return texts, [tmp_path]


def test_endpoint_credentials_are_masked(tmp_path, jpegs, caplog, moto_server, gcs_server):
    caplog.set_level(logging.DEBUG)
    token = uuid.uuid4().hex
    user, password, qtoken = f"pxuser{token[:8]}", f"PXPASSWD{token}", f"PXTOKEN{token}"
    secrets = [password, qtoken]
    base = {"storage_retries": 0, "storage_timeout_s": 5}
    s3 = {"aws_access_key_id": "pxlite-test-key", "aws_secret_access_key": "pxlite-test-secret",
          "region": "eu-west-1"}
    bucket = f"pxl-{token[:12]}"
    create_s3_bucket(moto_server.endpoint, bucket, "eu-west-1")
    create_gcs_bucket(gcs_server.endpoint, bucket)
    userinfo_s3 = _with_userinfo(moto_server.endpoint, user, password)
    cases = [
        # moto serves the user-info form: the bucket exists, the object does not
        ("s3-userinfo", {**base, "s3": {**s3, "endpoint_url": userinfo_s3}}, f"s3://{bucket}/o/",
         f"s3://{bucket}/in/missing.jpg"),
        # botocore refuses an endpoint with a query string: its refusal names the endpoint
        ("s3-query", {**base, "s3": {**s3, "endpoint_url": f"{userinfo_s3}/?token={qtoken}"}},
         f"s3://{bucket}/o/", f"s3://{bucket}/in/missing.jpg"),
        ("gcs-both", {**base, "gcs": {"project": "pxlite-test", "endpoint":
                                      _with_userinfo(gcs_server.endpoint, user, password)
                                      + f"/?token={qtoken}"}},
         f"gs://{bucket}/o/", f"gs://{bucket}/in/missing.jpg"),
    ]
    texts: list[tuple[str, str]] = []
    paths: list[Path] = []
    for tag, cfg, dest, source in cases:
        t, p = _errors_everywhere(tmp_path / tag, cfg, dest, source, tag)
        texts += t
        paths += p
    hits = _found(secrets, texts + _log_texts(caplog), paths)
    assert not hits, hits
    joined = "\n".join(text for _, text in texts)
    # the cases failed as meant, with messages naming the service (masked)
    assert "no object at s3://" in joined and "was not a valid URI" in joined
    assert "http://****@127.0.0.1" in joined and "?token=****" in joined
    assert f"GCS ({gcs_server.endpoint}/)" in joined, joined
    # a presigned URL carries its signature, never the endpoint's user:password
    url = net.presigned_url(f"s3://{bucket}/in/x.jpg", 60, settings=resolve(cases[0][1]))
    assert "X-Amz-Signature=" in url and password not in url and user not in url


# ---------------------------------------------------------------------------------------------
# 12. Account-key Azure SAS: at most 7 days, like S3 and GCS


def test_azure_account_key_sas_is_capped_at_seven_days(azurite_server):
    settings = resolve({"azure": {"connection_string": azurite_server.connection_string}})
    uri = "az://pxl-cap/share/x.jpg"  # presigning is offline: no container needed
    backend = storage.get_backend(uri, settings)
    url = backend.presign(uri, SEVEN_DAYS_S)  # exactly 7 days is allowed
    assert "sig=" in url and "sp=r" in url
    for too_long in (SEVEN_DAYS_S + 1, 8 * 24 * 3600, 365 * 24 * 3600):
        with pytest.raises(ConfigError, match="7 days") as ei:
            backend.presign(uri, too_long)
        assert uri in str(ei.value)
        with pytest.raises(ConfigError, match="7 days"):
            net.presigned_url(uri, too_long, settings=settings)


def test_a_token_in_a_web_url_never_reaches_a_raised_error(tmp_path):
    """A web URL a user inserts may carry a token; a failing download raised under
    on_error='abort' (not only a stored cell error) names the URL without it."""
    from hostile_inputs import closed_port

    token = "tok-" + uuid.uuid4().hex
    url = f"http://127.0.0.1:{closed_port()}/photo.jpg?token={token}"
    db = pxl.connect(tmp_path / "w.pxl", config={"storage_retries": 0, "storage_timeout_s": 3})
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=url)  # stored as given: a reference
    with pytest.raises(PxliteError) as e:
        t.add_computed_column(r=t.image.rotate(90))
    text = "".join(traceback.format_exception(e.value))
    assert "127.0.0.1" in text and token not in text, text
