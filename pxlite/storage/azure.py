"""Azure Blob Storage via azure-storage-blob, imported on first use.

``az://container/blob`` uses the account of the ``[azure]`` settings (``connection_string``, or
``account_url`` + ``credential``, or ``account_name``); ``https://<acct>.blob.core.windows.net/...``
names its account, and uses the ``[azure]`` credential too when that is the configured account.
Presigned URLs are read-only blob SAS tokens (account key, or a user delegation key for Entra ID
credentials).
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..config import Settings
from ..errors import ConfigError, ObjectNotFoundError, PxliteError, StorageError
from ..redact import public_url, redact
from . import AzureURI, url_scheme
from .base import (
    MULTIPART_THRESHOLD,
    SEVEN_DAYS_S,
    TRANSFER_THREADS,
    ConditionalCreate,
    ListedObject,
    MappedReader,
    ObjectInfo,
    atomic_target,
    buffered,
    check_expiry,
    folder_prefix,
    is_retryable_status,
    mapped_errors,
    note_retry,
    raise_masked,
    refused_means_created,
    retries_noted,
)

_BLOCK_SIZE = 4 * 1024 * 1024
#: Blob and Data Lake (dfs) endpoints of an account; both name the same blobs.
_HOST = re.compile(r"^([a-z0-9]{3,24})\.(blob|dfs)\.core\.windows\.net$")
_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
_CONTAINER_RULES = ("it has 3-63 characters: lowercase letters, digits and single '-', starting "
                    "and ending with a letter or digit")
#: Hadoop-style spellings (``container@<account>.blob.core.windows.net``), read as https.
_HADOOP_SCHEMES = ("wasb", "wasbs", "abfs", "abfss")


def parse_azure_uri(uri: str) -> AzureURI:
    """Split an Azure URI (az://, https blob, wasbs/abfs) into account, base, container, blob."""
    scheme = url_scheme(uri)
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    if scheme == "az":
        container, _, blob = rest.partition("/")
        return AzureURI(None, "az://", container, blob)
    if scheme in ("http", "https"):
        host, _, path = rest.partition("/")
        m = _HOST.match(host.lower())
        if not m:
            raise ConfigError(f"{uri!r} is not an Azure Blob URL (https://<account>.blob.core."
                              "windows.net/container/path)")
        container, _, blob = path.partition("/")
        return AzureURI(m.group(1), f"https://{m.group(1)}.blob.core.windows.net/", container,
                        blob)
    if scheme in _HADOOP_SCHEMES:
        authority, _, blob = rest.partition("/")
        container, at, host = authority.partition("@")
        m = _HOST.match(host.lower()) if at else None
        if not m:
            raise ConfigError(f"{uri!r}: expected {scheme}://container@<account>.blob.core."
                              "windows.net/path")
        return AzureURI(m.group(1), f"https://{m.group(1)}.blob.core.windows.net/", container,
                        blob)
    raise ConfigError(f"{uri!r} is not an Azure Blob URI")


class AzureBackend(ConditionalCreate):
    """One storage account behind one ``BlobServiceClient`` (thread-safe)."""

    input_schemes = ("az", *_HADOOP_SCHEMES)
    settings_section = "azure"

    # -- grammar -------------------------------------------------------------------------------

    @classmethod
    def claims_https(cls, host: str) -> bool:
        return _HOST.match(host) is not None

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        return ("az://container/prefix/", "wasbs://container@account.blob.core.windows.net/prefix/",
                "https://account.blob.core.windows.net/container/prefix/")

    @classmethod
    def parse_uri(cls, uri: str) -> AzureURI:
        """:func:`parse_azure_uri`: the account, base, container and blob of an Azure URI."""
        return parse_azure_uri(uri)

    @classmethod
    def canonical_prefix(cls, text: str, settings: Settings, *, base: Path | None = None) -> str:
        loc = parse_azure_uri(text)
        prefix = folder_prefix(text, loc.base, loc.container, loc.blob, what="container",
                               example="az://<container>/<prefix>/", pattern=_CONTAINER,
                               rules=_CONTAINER_RULES,
                               query_hint=" (a SAS token belongs in [azure] credential)")
        if loc.account is None:
            az = settings.provider("azure")
            if not (az.get("connection_string") or az.get("account_url")
                    or az.get("account_name")):
                raise ConfigError(f"{text!r}: az:// uses the account in the [azure] settings, "
                                  "which has none; set [azure] connection_string, or account_url "
                                  "(+ credential), or write https://<account>.blob.core.windows."
                                  f"net/{loc.container}/...")
        return prefix

    # -- client --------------------------------------------------------------------------------

    def __init__(self, settings: Settings, uri: str) -> None:
        super().__init__(settings, uri)
        from azure.storage.blob import BlobServiceClient

        section = settings.provider("azure")
        account = parse_azure_uri(uri).account
        options: dict[str, Any] = dict(
            retry_policy=_retry_policy(self), connection_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            max_single_put_size=MULTIPART_THRESHOLD, max_block_size=_BLOCK_SIZE,
            max_single_get_size=_BLOCK_SIZE, max_chunk_get_size=_BLOCK_SIZE)
        configured = _configured_account(section)
        try:
            if account is not None and account != configured:
                # Another account than the configured one: its public URL, [azure] credential.
                self.client = BlobServiceClient(f"https://{account}.blob.core.windows.net",
                                                credential=_credential(section), **options)
            elif section.get("connection_string"):
                self.client = BlobServiceClient.from_connection_string(
                    section["connection_string"], **options)
            elif section.get("account_url") or section.get("account_name"):
                url = section.get("account_url") or (
                    f"https://{section['account_name']}.blob.core.windows.net")
                self.client = BlobServiceClient(url, credential=_credential(section), **options)
            else:
                raise ConfigError(f"{uri}: az:// needs an [azure] account; set connection_string, "
                                  "or account_url and credential")
        except ValueError as e:  # a malformed connection string or URL; never echo secrets
            first_line = redact((str(e).splitlines() or [""])[0][:200])
            raise_masked(ConfigError(f"[azure] settings are not usable: {type(e).__name__}: "
                                     f"{first_line}; check connection_string / account_url"), e)
        self.account = self.client.account_name

    @classmethod
    def location_key(cls, uri: str) -> Hashable:
        return parse_azure_uri(uri).account or ""

    # -- errors --------------------------------------------------------------------------------

    def _translate(self, e: BaseException, uri: str) -> PxliteError | None:
        from azure.core import exceptions as ax

        loc = parse_azure_uri(uri)
        where = f"Azure account {self.account!r}"
        first_line = (str(getattr(e, "message", None) or e).splitlines() or [""])[0][:300]
        code = getattr(e, "error_code", None)
        code = getattr(code, "value", code)  # the SDK may hand back a StorageErrorCode enum
        if isinstance(e, ax.ResourceNotFoundError):
            if code == "ContainerNotFound":
                return StorageError(f"{uri}: the container {loc.container!r} does not exist in "
                                    f"{where}; create it or fix the URI", uri=uri)
            return ObjectNotFoundError(f"no object at {uri}", uri=uri)
        status = getattr(e, "status_code", None)
        if isinstance(e, ax.ClientAuthenticationError) or status in (401, 403):
            return StorageError(f"{uri}: {where} refused the request ({code or status}); check "
                                "[azure] connection_string or credential (key, SAS or Entra ID "
                                "role)", uri=uri)
        if isinstance(e, (ax.ServiceRequestError, ax.ServiceResponseError,
                          ax.IncompleteReadError)):
            return StorageError(f"{uri}: could not reach {where}: {first_line}", uri=uri,
                                retryable=True)
        if isinstance(e, ax.HttpResponseError):
            return StorageError(f"{uri}: {where} answered {status} {code or ''}: {first_line}",
                                uri=uri, retryable=is_retryable_status(status))
        if isinstance(e, ax.AzureError):
            return StorageError(f"{uri}: Azure request failed: {first_line}", uri=uri)
        if isinstance(e, OSError):
            return StorageError(f"{uri}: local file error: {e}", uri=uri)
        return None

    def _errors(self, uri: str):
        return mapped_errors(lambda e: self._translate(e, uri), retries=self.retries)

    def _blob(self, uri: str):
        loc = parse_azure_uri(uri)
        return self.client.get_blob_client(loc.container, loc.blob)

    # -- operations ----------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        from azure.storage.blob import ContentSettings

        # Above max_single_put_size the SDK uploads 4 MiB blocks in parallel, then commits them.
        with self._errors(uri), open(local_path, "rb") as f:
            self._blob(uri).upload_blob(
                f, length=os.fstat(f.fileno()).st_size, overwrite=True,
                content_settings=ContentSettings(content_type=content_type),
                max_concurrency=TRANSFER_THREADS)

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        from azure.storage.blob import ContentSettings

        with self._errors(uri):
            self._blob(uri).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    def condition_scope(self, uri: str) -> Hashable:
        # not client.url: it carries the SAS token when the credential is one
        return (self.client.primary_hostname, self.account, parse_azure_uri(uri).container)

    def create_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        from azure.storage.blob import ContentSettings

        # overwrite=False sends If-None-Match: * (refused: 409 BlobAlreadyExists)
        return self._create(uri, lambda: self._blob(uri).upload_blob(
            data, overwrite=False, content_settings=ContentSettings(content_type=content_type)))

    def create_file(self, local_path: str | os.PathLike, uri: str,
                    content_type: str | None = None) -> bool:
        from azure.storage.blob import ContentSettings

        # Above max_single_put_size: blocks in parallel, the condition on the block list commit.
        with self._errors(uri), open(local_path, "rb") as f:
            return self._create(uri, lambda: self._blob(uri).upload_blob(
                f, length=os.fstat(f.fileno()).st_size, overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
                max_concurrency=TRANSFER_THREADS))

    def _create(self, uri: str, request: Callable[[], object]) -> bool:
        """Run a conditional upload: True when it wrote; False when Azure answered that the
        blob exists (409 BlobAlreadyExists, or 412 for a condition), unless a retry happened
        (then it may be our own first attempt: :func:`refused_means_created`)."""
        from azure.core.exceptions import HttpResponseError

        before = retries_noted()
        with self._errors(uri):
            try:
                request()
            except HttpResponseError as e:
                code = getattr(e, "error_code", None)
                code = getattr(code, "value", code)  # a StorageErrorCode enum, or a string
                if not (e.status_code == 412 or code == "BlobAlreadyExists"):
                    raise
                return refused_means_created(before)
        return True

    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        with self._errors(uri), atomic_target(local_path) as tmp, open(tmp, "wb") as f:
            self._blob(uri).download_blob(max_concurrency=TRANSFER_THREADS).readinto(f)

    def open(self, uri: str) -> BinaryIO:
        with self._errors(uri):
            stream = self._blob(uri).download_blob()
        return buffered(MappedReader(stream.read, lambda: None,
                                     lambda e: self._translate(e, uri)))

    def endpoint_url(self) -> str | None:
        import urllib.parse

        # Only scheme and host: the client's URL may carry a SAS token in its query.
        p = urllib.parse.urlsplit(self.client.url)
        return f"{p.scheme}://{p.netloc.rpartition('@')[2]}"

    def exists(self, uri: str) -> bool:
        with self._errors(uri):
            return bool(self._blob(uri).exists())

    def stat(self, uri: str) -> ObjectInfo:
        with self._errors(uri):
            props = self._blob(uri).get_blob_properties()
        return ObjectInfo(int(props.size), (props.etag or "").strip('"') or None)

    def delete(self, uri: str) -> None:
        try:
            with self._errors(uri):
                self._blob(uri).delete_blob()
        except ObjectNotFoundError:
            pass

    def list(self, prefix_uri: str) -> Iterator[str]:
        loc = parse_azure_uri(prefix_uri)
        with self._errors(prefix_uri):
            container = self.client.get_container_client(loc.container)
            for name in container.list_blob_names(name_starts_with=loc.blob or None):
                yield loc.with_key(name)

    def list_info(self, prefix_uri: str) -> Iterator[ListedObject]:
        loc = parse_azure_uri(prefix_uri)
        skip = len(loc.blob)
        with self._errors(prefix_uri):
            container = self.client.get_container_client(loc.container)
            for props in container.list_blobs(name_starts_with=loc.blob or None):
                modified = props.last_modified
                yield ListedObject(loc.with_key(props.name), props.name[skip:],
                                   int(props.size or 0),
                                   modified.timestamp() if modified else None,
                                   (props.etag or "").strip('"') or None)

    def presign(self, uri: str, expires_s: int) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        loc = parse_azure_uri(uri)
        key = getattr(self.client.credential, "account_key", None)
        token_auth = hasattr(self.client.credential, "get_token")
        # A user delegation key lives at most 7 days; an account-key SAS has no provider limit
        # but gets the same cap as S3 and GCS: a presigned URL is a bearer credential.
        seconds = check_expiry(uri, expires_s, SEVEN_DAYS_S, "Azure")
        now = datetime.datetime.now(datetime.UTC)
        start, expiry = now - datetime.timedelta(minutes=5), now + datetime.timedelta(
            seconds=seconds)  # start in the past tolerates clock skew
        if not key and not token_auth:
            raise ConfigError(f"cannot presign {uri}: signing needs the account key (an [azure] "
                              "connection_string with AccountKey) or an Entra ID credential")
        # The signature covers the account name; the SDK knows it from a key credential or an
        # https://<account>.blob.core.windows.net URL, not from a custom domain.
        account = self.account
        if account is None:
            raise ConfigError(f"cannot presign {uri}: the [azure] account_url does not name the "
                              "storage account, which the signature needs; use "
                              "https://<account>.blob.core.windows.net or a connection_string "
                              "with AccountName")
        sas_args: dict[str, Any] = {}
        if key:
            sas_args["account_key"] = key
        else:
            with self._errors(uri):
                sas_args["user_delegation_key"] = self.client.get_user_delegation_key(start,
                                                                                      expiry)
        with self._errors(uri):
            sas = generate_blob_sas(account, loc.container, loc.blob,
                                    permission=BlobSasPermissions(read=True), expiry=expiry,
                                    start=start, **sas_args)
            return f"{self.fileurl(uri)}?{sas}"

    def fileurl(self, uri: str) -> str:
        # The SDK appends the client's SAS credential (an [azure] credential or a connection
        # string's SharedAccessSignature, often an account SAS with write and delete rights) to
        # every blob URL, and keeps a user:password of the endpoint in it; where a file lives
        # is the URL without either.
        return public_url(self._blob(uri).url)

    def check_writable(self, prefix_uri: str) -> None:
        loc: AzureURI = parse_azure_uri(prefix_uri)
        try:
            with self._errors(prefix_uri):
                found = self.client.get_container_client(loc.container).exists()
        except StorageError as e:
            status = getattr(e.__cause__, "status_code", None)
            if e.retryable or status not in (401, 403):
                raise
            found = True  # maybe a write-only SAS: let the probe decide
        if not found:
            raise ConfigError(f"{prefix_uri}: the container {loc.container!r} does not exist in "
                              f"Azure account {self.account!r}; create it first (pxlite never "
                              "creates containers) or fix the destination")
        super().check_writable(prefix_uri)


def _retry_policy(backend: AzureBackend) -> Any:
    """The SDK's ExponentialRetry, made to retry what pxlite calls retryable, as often and as
    patiently as pxlite's settings say.

    The SDK's own policy does not retry HTTP 429 (a throttling proxy or gateway answers that),
    stops after 3 retries of a kind whatever ``retry_total`` says, and waits 15 s (or, tuned,
    seconds) before the first retry. This one retries ``storage_retries`` times per request on
    408, 429 and 5xx answers (but 501/505), timeouts and dropped connections, with pxlite's
    full-jitter backoff.
    """
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    from azure.storage.blob import ExponentialRetry

    class Retry(ExponentialRetry):
        def get_backoff_time(self, settings: dict[str, Any]) -> float:
            return backend.backoff_s(settings["count"])  # count: retries so far, this one too

        def send(self, request: Any) -> Any:
            settings = self.configure_retries(request)
            while True:
                try:
                    response = self.next.send(request)
                except AzureError as err:
                    if isinstance(err, ClientAuthenticationError) or not self.increment(
                            settings, request=request.http_request, error=err):
                        raise
                    note_retry()
                    self.sleep(settings, request.context.transport)
                    continue
                if is_retryable_status(response.http_response.status_code) and self.increment(
                        settings, request=request.http_request, response=response.http_response):
                    note_retry()
                    self.sleep(settings, request.context.transport)
                    continue
                if settings["history"]:
                    response.context["history"] = settings["history"]
                response.http_response.location_mode = settings["mode"]
                return response

    n = backend.retries
    return Retry(retry_total=n, retry_connect=n, retry_read=n, retry_status=n)


def _configured_account(section: dict[str, Any]) -> str | None:
    """The account name the [azure] section points at, if it says."""
    if section.get("account_name"):
        return section["account_name"]
    for part in str(section.get("connection_string") or "").split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "accountname":
            return value.strip()
    url = section.get("account_url") or ""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return host.split(".", 1)[0] if host.endswith(".blob.core.windows.net") else None


def _credential(section: dict[str, Any]) -> Any:
    """The [azure] credential (key or SAS string), else DefaultAzureCredential when installed."""
    if section.get("credential"):
        return section["credential"]
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        return None  # anonymous: public containers only
    return DefaultAzureCredential()
