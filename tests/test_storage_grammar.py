"""Each storage backend owns its URI grammar; the registry in pxlite.storage only dispatches.

The built-in forms resolve to the same schemes and canonical prefixes as before the grammar moved
into the backend classes, each class claims what it should and nothing else, and a backend
registered for a new scheme, with an https host and an alias of its own, is usable everywhere
(scheme_of, canonical_prefix, the help texts, get_backend, a table's destination) with no edit
in pxlite.storage.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_writes import MemoryBackend, registered_mem

import pxlite as pxl
from pxlite import config, storage
from pxlite.errors import ConfigError
from pxlite.storage.base import StorageBackend
from pxlite.storage.s3 import B2Backend, R2Backend, S3Backend, TigrisBackend

ROOT = Path(__file__).resolve().parent.parent

#: The help text every destination error quoted before the grammar moved (word for word).
BUILT_IN_FORMS = (
    "a local path, file:///path, s3://bucket/prefix/, gs://bucket/prefix/, az://container/prefix/, "
    "wasbs://container@account.blob.core.windows.net/prefix/, "
    "https://account.blob.core.windows.net/container/prefix/, r2://bucket/prefix/, "
    "https://<account>.r2.cloudflarestorage.com/bucket/prefix/, b2://bucket/prefix/, "
    "https://s3.<region>.backblazeb2.com/bucket/prefix/, tigris://bucket/prefix/, "
    "https://t3.storage.dev/bucket/prefix/"
)


@pytest.fixture
def named_settings():
    return config.resolve({
        "r2": {"account_id": "acct123"}, "b2": {"region": "us-west-004"},
        "azure": {"account_name": "myacct"},
    })


def _registered_class(scheme: str) -> type[StorageBackend]:
    module, _, name = storage._registry[scheme][0].partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------
# The built-in forms: same schemes, same canonical prefixes


@pytest.mark.parametrize("text, scheme, canonical", [
    ("s3://bkt/p", "s3", "s3://bkt/p/"),
    ("S3://bkt/p/q/", "s3", "s3://bkt/p/q/"),
    ("gs://my_bucket.v2/out", "gs", "gs://my_bucket.v2/out/"),
    ("r2://bkt", "r2", "r2://bkt/"),
    ("https://acct123.r2.cloudflarestorage.com/bkt/p", "r2",
     "https://acct123.r2.cloudflarestorage.com/bkt/p/"),
    ("https://acct123.eu.r2.cloudflarestorage.com/bkt/p/", "r2",
     "https://acct123.eu.r2.cloudflarestorage.com/bkt/p/"),
    ("HTTPS://ACCT123.R2.cloudflarestorage.com/bkt/p", "r2",
     "https://acct123.r2.cloudflarestorage.com/bkt/p/"),
    ("b2://bkt/p", "b2", "b2://bkt/p/"),
    ("https://s3.us-west-004.backblazeb2.com/bkt/p", "b2",
     "https://s3.us-west-004.backblazeb2.com/bkt/p/"),
    ("tigris://bkt/p", "tigris", "tigris://bkt/p/"),
    ("https://t3.storage.dev/bkt/p", "tigris", "https://t3.storage.dev/bkt/p/"),
    ("https://fly.storage.tigris.dev/bkt/p/", "tigris", "https://fly.storage.tigris.dev/bkt/p/"),
    ("az://container/p", "azure", "az://container/p/"),
    ("AZ://container/p", "azure", "az://container/p/"),
    ("https://acct.blob.core.windows.net/container/p", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("https://acct.dfs.core.windows.net/container/p", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("wasb://container@acct.blob.core.windows.net/p", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("wasbs://container@acct.blob.core.windows.net/p", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("abfs://container@acct.dfs.core.windows.net/p/", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("abfss://container@acct.dfs.core.windows.net/p/", "azure",
     "https://acct.blob.core.windows.net/container/p/"),
    ("file:///data/out", "file", "file:///data/out/"),
    ("/data/out/", "file", "file:///data/out/"),
])
def test_built_in_forms_keep_their_scheme_and_canonical_prefix(text, scheme, canonical,
                                                               named_settings):
    assert storage.scheme_of(text) == scheme
    assert storage.canonical_prefix(text, named_settings) == canonical
    assert storage.scheme_of(canonical) == scheme
    assert storage.canonical_prefix(canonical, named_settings) == canonical  # a fixed point


@pytest.mark.parametrize("text", [
    "https://example.com/x.png",
    "http://acct.blob.core.windows.net/c/k",  # provider hosts are claimed over https only
    "http://x.r2.cloudflarestorage.com/b/k",
    "https://acct.blob.core.windows.net/c/k?sv=2020&sig=x",  # a query string: fetched as is
    "https://t3.storage.dev/b/k?X-Amz-Signature=x",
    "https://bkt.s3.amazonaws.com/k",  # S3 claims no https host
    "https://evil.r2.cloudflarestorage.com.example/b/k",
    "https://s3.backblazeb2.com/b/k",
])
def test_other_web_urls_stay_plain_http(text, named_settings):
    assert storage.scheme_of(text) == "http"
    with pytest.raises(ConfigError, match="read but not write"):
        storage.canonical_prefix(text, named_settings)


def test_help_text_is_every_backends_forms_in_registration_order():
    assert storage.destination_forms() == BUILT_IN_FORMS
    with pytest.raises(ConfigError) as exc:
        storage.scheme_of("ftp://x/y")
    assert str(exc.value) == (f"'ftp://x/y': unsupported URI scheme 'ftp'; use one of: "
                              f"{BUILT_IN_FORMS}, or http(s):// to read")
    with pytest.raises(ConfigError) as exc:
        storage.canonical_prefix("https://example.com/images/", config.resolve({}))
    assert str(exc.value) == ("'https://example.com/images/' is a plain web URL, which pxlite can "
                              f"read but not write to; use one of: {BUILT_IN_FORMS}")


@pytest.mark.parametrize("host, owner", [
    ("acct.r2.cloudflarestorage.com", R2Backend),
    ("acct.eu.r2.cloudflarestorage.com", R2Backend),
    ("s3.us-west-004.backblazeb2.com", B2Backend),
    ("t3.storage.dev", TigrisBackend),
    ("fly.storage.tigris.dev", TigrisBackend),
    ("acct.blob.core.windows.net", "azure"),
    ("acct.dfs.core.windows.net", "azure"),
    ("example.com", None),
    ("s3.amazonaws.com", None),
    ("ab.blob.core.windows.net", None),  # an account name has 3-24 characters
])
def test_each_https_host_has_at_most_one_owner(host, owner):
    if owner == "azure":
        owner = _registered_class("azure")
    claimers = [s for s in storage._registry if _registered_class(s).claims_https(host)]
    assert claimers == ([] if owner is None else
                        [s for s in storage._registry if _registered_class(s) is owner])


def test_each_scheme_is_served_by_its_own_class():
    """One class per scheme, each naming its settings section; the S3 family shares
    S3Backend's code through subclasses."""
    classes = {s: _registered_class(s) for s in storage._registry}
    assert {s: c.__name__ for s, c in classes.items()} == {
        "file": "LocalBackend", "s3": "S3Backend", "gs": "GCSBackend", "azure": "AzureBackend",
        "r2": "R2Backend", "b2": "B2Backend", "tigris": "TigrisBackend", "http": "HttpBackend"}
    assert {s: c.settings_section for s, c in classes.items()} == {
        "file": None, "http": None, "s3": "s3", "r2": "r2", "b2": "b2", "tigris": "tigris",
        "gs": "gcs", "azure": "azure"}
    for scheme in storage.S3_FAMILY:
        assert issubclass(classes[scheme], S3Backend) and classes[scheme].provider == scheme
    assert classes["azure"].input_schemes == ("az", "wasb", "wasbs", "abfs", "abfss")
    assert classes["http"].input_schemes == ("https",)


@pytest.mark.parametrize("cls, base, section, want", [
    (S3Backend, "s3://", {}, (None, None)),
    (S3Backend, "s3://", {"endpoint_url": "http://127.0.0.1:9", "region": "eu-west-1"},
     ("http://127.0.0.1:9", "eu-west-1")),
    (R2Backend, "r2://", {"account_id": "abc"}, ("https://abc.r2.cloudflarestorage.com", "auto")),
    (R2Backend, "https://abc.r2.cloudflarestorage.com/", {},
     ("https://abc.r2.cloudflarestorage.com", "auto")),
    (B2Backend, "b2://", {"region": "us-west-004"},
     ("https://s3.us-west-004.backblazeb2.com", "us-west-004")),
    (B2Backend, "https://s3.eu-central-003.backblazeb2.com/", {},
     ("https://s3.eu-central-003.backblazeb2.com", "eu-central-003")),
    (TigrisBackend, "tigris://", {}, ("https://t3.storage.dev", "auto")),
    (TigrisBackend, "https://fly.storage.tigris.dev/", {},
     ("https://fly.storage.tigris.dev", "auto")),
])
def test_s3_family_endpoints(cls, base, section, want):
    assert cls.endpoint_and_region(base, section) == want


@pytest.mark.parametrize("cls, words", [(R2Backend, "[r2] account_id"), (B2Backend, "[b2] region")])
def test_s3_family_endpoint_needs_settings(cls, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        cls.endpoint_and_region(f"{cls.provider}://", {})


def test_import_pxlite_loads_no_backend_module_and_the_grammar_no_sdk():
    code = (
        "import sys, pxlite\n"
        "from pxlite import storage\n"
        "mods = lambda: sorted(m for m in sys.modules if m.startswith('pxlite.storage'))\n"
        "assert mods() == ['pxlite.storage', 'pxlite.storage.base'], mods()\n"
        "assert storage.scheme_of('s3://b/k') == 's3' and storage.scheme_of('/x') == 'file'\n"
        "assert mods() == ['pxlite.storage', 'pxlite.storage.base'], mods()  # no grammar needed\n"
        "assert storage.scheme_of('https://t3.storage.dev/b/k') == 'tigris'\n"
        "assert storage.scheme_of('az://c/k') == 'azure'\n"
        "heavy = [m for m in ('boto3', 'botocore', 'google.cloud.storage', 'azure.storage.blob',"
        " 'azure.core', 'requests') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------------------------------------
# A new backend, its own https host and alias included, plugs in with no edit in pxlite.storage

_BUCKET = re.compile(r"^[a-z][a-z0-9-]{2,30}$")


class HostedMemoryBackend(MemoryBackend):
    """test_writes' storage service in a dict, with a grammar of its own: ``mem://bucket/key``,
    ``memory://bucket/key`` or ``https://mem.example/bucket/key`` (whose canonical form keeps its
    host, like R2's)."""

    input_schemes = ("memory",)

    @classmethod
    def claims_https(cls, host: str) -> bool:
        return host == "mem.example"

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        return (f"{scheme}://bucket/prefix/", "https://mem.example/bucket/prefix/")

    @classmethod
    def canonical_prefix(cls, text: str, settings, *, base=None) -> str:
        head, _, rest = text.partition("://")
        if head.lower() == "https":
            host, _, rest = rest.partition("/")
            head = f"https://{host.lower()}/"
        else:
            head = "mem://"
        bucket, _, key = rest.partition("/")
        if not _BUCKET.match(bucket):
            raise ConfigError(f"{text!r}: {bucket!r} is not a mem bucket name")
        return f"{head}{bucket}/{key.rstrip('/') + '/' if key else ''}"


@pytest.fixture
def hosted_mem(monkeypatch):
    yield from registered_mem(monkeypatch, "test_storage_grammar:HostedMemoryBackend")


def test_a_registered_backend_owns_its_forms(hosted_mem):
    s = config.resolve({})
    assert storage.scheme_of("mem://bkt/k.png") == "mem"
    assert storage.scheme_of("memory://bkt/k.png") == "mem"
    assert storage.scheme_of("https://mem.example/bkt/k.png") == "mem"
    assert storage.scheme_of("https://MEM.example/bkt/k.png") == "mem"
    assert storage.scheme_of("https://mem.example/bkt/k.png?sig=1") == "http"
    assert storage.scheme_of("https://t3.storage.dev/bkt/k") == "tigris"  # built-ins unchanged
    assert storage.canonical_prefix("mem://bkt/out", s) == "mem://bkt/out/"
    assert storage.canonical_prefix("memory://bkt/out", s) == "mem://bkt/out/"
    assert storage.canonical_prefix("https://mem.example/bkt/out", s) == (
        "https://mem.example/bkt/out/")
    with pytest.raises(ConfigError, match="not a mem bucket name"):
        storage.canonical_prefix("https://mem.example/B/out", s)
    forms = f"{BUILT_IN_FORMS}, mem://bucket/prefix/, https://mem.example/bucket/prefix/"
    assert storage.destination_forms() == forms
    with pytest.raises(ConfigError, match=re.escape(f"use one of: {forms}, or http(s)://")):
        storage.scheme_of("ftp://x/y")
    backend = storage.get_backend("https://mem.example/bkt/k", s)
    assert isinstance(backend, HostedMemoryBackend)
    assert storage.get_backend("mem://bkt/k", s) is backend
    backend.put_bytes(b"hi", "https://mem.example/bkt/k")
    assert backend.open("https://mem.example/bkt/k").read() == b"hi"


def test_a_registered_https_host_is_a_usable_destination(tmp_path, hosted_mem, monkeypatch):
    """A table writes to the new backend's https form and reads its files back through it: the
    stored https URIs are routed to the backend that claims their host, not fetched as web
    URLs. When the registration is undone the host is a plain web URL again."""
    assert storage.scheme_of("https://mem.example/bkt/k") == "mem"
    db = pxl.connect(tmp_path / "m.pxl")
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8, 6), c), "k": i}
              for i, c in enumerate(["red", "green", "blue"])])
    st = t.add_computed_column(rot=t.image.rotate(90),
                               destination="https://mem.example/bucket/out")
    assert st.num_errors == 0 and len(hosted_mem) == 3
    assert all(u.startswith("https://mem.example/bucket/out/") for u in hosted_mem)
    rows = t.select(t.k, t.rot, t.rot.fileurl).order_by(t.k).collect()
    assert rows[0]["rot"].size == (8, 6)
    assert all(r["rot_fileurl"].startswith("https://mem.example/bucket/out/") for r in rows)
    t.delete(where=t.k == 0)
    assert len(hosted_mem) == 2 and rows[0]["rot_fileurl"] not in hosted_mem
    assert pxl.check(db=db).ok
    db.close()
    monkeypatch.undo()
    storage.clear_backends()
    assert storage.scheme_of("https://mem.example/bkt/k") == "http"
    assert storage.destination_forms() == BUILT_IN_FORMS
    with pytest.raises(ConfigError, match="unsupported URI scheme 'memory'"):
        storage.scheme_of("memory://bkt/k")


def test_a_plug_in_that_cannot_load_does_not_break_the_others(monkeypatch):
    monkeypatch.setattr(storage, "_registry", dict(storage._registry))  # undone after the test
    storage.register_backend("broken", "pxlite_no_such_module:Backend")
    storage.register_backend("typo", "test_storage_grammar:NoSuchClass")
    assert storage.scheme_of("https://t3.storage.dev/b/k") == "tigris"
    assert storage.scheme_of("wasbs://c@acct.blob.core.windows.net/k") == "azure"
    assert storage.scheme_of("broken://b/k") == "broken"
    assert storage.destination_forms() == BUILT_IN_FORMS
