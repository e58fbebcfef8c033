"""Pytest plugin: real storage servers on loopback and one writable destination per backend.

Enable with ``pytest_plugins = ["fixtures_storage"]`` (``tests`` and the repo root on pythonpath).

* ``moto_server``, ``gcs_server``, ``azurite_server`` (session): a
  :class:`tools.servers.RunningServer` (``.endpoint``; Azurite also ``.connection_string``).
  Started on first use only. A missing server program FAILS the test with the install command;
  it never skips.
* ``storage_target`` (parametrized over :data:`BACKENDS`): a :class:`StorageTarget` with
  ``settings`` (a resolved ``Settings``), ``config`` (the dict it came from, as users pass to
  ``connect(config=...)``) and ``prefix``, a canonical writable prefix URI in a fresh
  bucket/container (or a fresh local folder). ``target.with_config(storage_retries=0)`` makes
  variant settings.
* ``gcs_key_file`` (session): a fake service-account key file, used only to sign GCS URLs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pxlite import config
from pxlite.config import Settings
from pxlite.storage import canonical_prefix
from tools import servers

#: Every backend the conformance suite runs against.
BACKENDS = ("local", "s3", "r2", "b2", "tigris", "gcs", "azure")

#: Test credentials for moto (it accepts any); never real secrets.
MOTO_KEY_ID, MOTO_SECRET = "pxlite-test-key", "pxlite-test-secret"

#: The region each S3-compatible provider signs with (eu-west-1 exercises LocationConstraint).
S3_REGIONS = {"s3": "eu-west-1", "r2": "auto", "b2": "us-west-004", "tigris": "auto"}


@dataclass(frozen=True)
class StorageTarget:
    """One backend under test: its settings and a fresh writable prefix URI."""

    name: str
    config: dict[str, Any]
    settings: Settings
    prefix: str

    def with_config(self, **overrides: Any) -> Settings:
        """Settings like these plus top-level ``overrides`` (e.g. ``storage_retries=0``)."""
        return config.resolve({**self.config, **overrides})


def _start(factory: Callable[[], servers.RunningServer]) -> Iterator[servers.RunningServer]:
    try:
        server = factory()
    except servers.ServerNotInstalled as e:
        pytest.fail(f"storage test server missing: {e}", pytrace=False)
    except servers.ServerFailed as e:
        pytest.fail(f"storage test server failed to start: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[servers.RunningServer]:
    """moto_server (S3, R2, B2 and Tigris all point at it) for the whole session."""
    yield from _start(servers.start_moto)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[servers.RunningServer]:
    """gcp-storage-emulator (in memory) for the whole session."""
    yield from _start(servers.start_gcs)


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RunningServer]:
    """Azurite blob service (account devstoreaccount1) for the whole session."""
    where = tmp_path_factory.mktemp("azurite")
    yield from _start(lambda: servers.start_azurite(where))


def fake_gcs_key(folder: Path, kid: str) -> tuple[Path, str, str]:
    """A fresh fake service-account key (new RSA key) written to ``folder/sa.json``: enough to
    sign URLs, useless against Google. Returns (path, pem, a distinctive slice of the pem)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = folder / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "pxlite-test", "private_key_id": kid,
        "private_key": pem, "client_email": "pxl@pxlite-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    body = "".join(pem.splitlines()[1:-1])
    return path, pem, body[200:264]


@pytest.fixture(scope="session")
def gcs_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake service-account key file, used only to sign GCS URLs."""
    return fake_gcs_key(tmp_path_factory.mktemp("gcs-key"), "fake")[0]


def s3_config(provider: str, endpoint: str) -> dict[str, Any]:
    """The settings section pointing ``provider`` (s3, r2, b2, tigris) at moto."""
    return {"endpoint_url": endpoint, "region": S3_REGIONS[provider],
            "aws_access_key_id": MOTO_KEY_ID, "aws_secret_access_key": MOTO_SECRET}


def create_s3_bucket(endpoint: str, bucket: str, region: str) -> None:
    """Create a bucket on moto directly (pxlite itself never creates buckets)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id=MOTO_KEY_ID, aws_secret_access_key=MOTO_SECRET)
    extra = ({} if region == "us-east-1"
             else {"CreateBucketConfiguration": {"LocationConstraint": region}})
    client.create_bucket(Bucket=bucket, **extra)


def create_gcs_bucket(endpoint: str, bucket: str) -> None:
    """Create a bucket on the GCS emulator directly."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    storage.Client(project="pxlite-test", credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": endpoint}).create_bucket(bucket)


def create_azure_container(connection_string: str, container: str) -> None:
    """Create a container on Azurite directly."""
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(connection_string).create_container(container)


def azurite_account_sas() -> str:
    """An Azurite account SAS with read, write, delete and list rights (what users configure)."""
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    return generate_account_sas(
        servers.AZURITE_ACCOUNT, servers.AZURITE_KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                              create=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))


def fresh_name() -> str:
    """A bucket/container name valid for every provider."""
    return f"pxl-{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=BACKENDS)
def storage_target(request: pytest.FixtureRequest, tmp_path: Path) -> StorageTarget:
    """Settings and a fresh writable prefix for one backend (servers start on first need)."""
    name: str = request.param
    bucket = fresh_name()
    if name == "local":
        cfg: dict[str, Any] = {}
        dest = str(tmp_path / "media")
    elif name in S3_REGIONS:
        endpoint = request.getfixturevalue("moto_server").endpoint
        create_s3_bucket(endpoint, bucket, S3_REGIONS[name])
        cfg = {name: s3_config(name, endpoint)}
        dest = f"{name}://{bucket}/pfx/"
    elif name == "gcs":
        endpoint = request.getfixturevalue("gcs_server").endpoint
        create_gcs_bucket(endpoint, bucket)
        key_file = request.getfixturevalue("gcs_key_file")
        cfg = {"gcs": {"endpoint": endpoint, "project": "pxlite-test",
                       "credentials_file": str(key_file)}}
        dest = f"gs://{bucket}/pfx/"
    else:
        conn = request.getfixturevalue("azurite_server").connection_string
        create_azure_container(conn, bucket)
        cfg = {"azure": {"connection_string": conn}}
        dest = f"az://{bucket}/pfx/"
    # Fast failure in tests: short timeouts, one retry.
    cfg = {"storage_timeout_s": 20, "storage_retries": 1, **cfg}
    settings = config.resolve(cfg)
    return StorageTarget(name, cfg, settings, canonical_prefix(dest, settings))
