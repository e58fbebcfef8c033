"""Google Cloud Storage (``gs://bucket/key``) via google-cloud-storage, imported on first use.

Credentials: ``[gcs] credentials_file`` (a service-account key) when given, else Google's default
chain. With an emulator endpoint (``[gcs] endpoint`` or ``STORAGE_EMULATOR_HOST``) the client is
anonymous, and ``credentials_file`` is used only to sign URLs: a client holding a (fake) key would
try to fetch a token from Google.
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
from ..redact import public_url
from . import parse_bucket_uri
from .base import (
    PART_SIZE,
    SEVEN_DAYS_S,
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
    refused_means_created,
    retries_noted,
)

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_BUCKET_RULES = ("a bucket name has 3-63 characters (up to 222 with dots): lowercase letters, "
                 "digits, '-', '_' and '.', starting and ending with a letter or digit")


class GCSBackend(ConditionalCreate):
    """One GCS project/credential set (or one emulator) behind one ``storage.Client``."""

    settings_section = "gcs"

    @classmethod
    def canonical_prefix(cls, text: str, settings: Settings, *, base: Path | None = None) -> str:
        loc = parse_bucket_uri(text)
        return folder_prefix(text, loc.base, loc.bucket, loc.key, what="bucket",
                             example=f"{loc.base}<bucket>/<prefix>/", pattern=_BUCKET,
                             rules=_BUCKET_RULES)

    def __init__(self, settings: Settings, uri: str) -> None:
        super().__init__(settings, uri)
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud.storage import Client  # first: a missing SDK fails here

        section = settings.provider("gcs")
        endpoint = section.get("endpoint") or os.environ.get("STORAGE_EMULATOR_HOST") or None
        if endpoint and "://" not in endpoint:
            endpoint = "http://" + endpoint
        self.endpoint: str | None = endpoint.rstrip("/") if endpoint else None
        #: GCS as messages name it: the endpoint without user-info or a query string.
        self.where = f"GCS ({public_url(self.endpoint)})" if self.endpoint else "GCS"
        key_file = section.get("credentials_file")
        file_creds = _load_credentials(key_file) if key_file else None
        try:
            if self.endpoint:
                self.client = Client(
                    project=section.get("project") or "pxlite",
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": self.endpoint})
            else:
                self.client = Client(project=section.get("project"),
                                             credentials=file_creds)
        except DefaultCredentialsError as e:
            raise ConfigError("no Google Cloud credentials found; set [gcs] credentials_file to a "
                              "service-account key file, or run 'gcloud auth application-default "
                              f"login' ({e})") from e
        self.signer = file_creds if file_creds is not None else (
            None if self.endpoint else self.client._credentials)

    @property
    def _call(self) -> dict[str, Any]:
        """``timeout``/``retry`` keyword arguments for one SDK call (a fresh retry budget).

        google's ``Retry`` is time-based (a deadline), which neither honours ``storage_retries``
        nor bounds a slow server by attempts; so each call gets a Retry whose predicate allows
        exactly ``storage_retries`` retries (shared by the requests of that one call, e.g. the
        pages of a listing) and no deadline: ``storage_timeout_s`` bounds every attempt.
        """
        if self.retries <= 0:
            return {"timeout": self.timeout_s, "retry": None}
        from google.api_core.retry import Retry

        left = [self.retries]

        def predicate(exc: BaseException) -> bool:
            if left[0] <= 0 or not _retryable(exc):
                return False
            left[0] -= 1
            note_retry()
            return True

        retry = Retry(predicate=predicate, initial=self.retry_base_s, multiplier=2.0,
                      maximum=self.retry_max_s, timeout=None)
        return {"timeout": self.timeout_s, "retry": retry}

    # -- errors --------------------------------------------------------------------------------

    def _translate(self, e: BaseException, uri: str) -> PxliteError | None:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        bucket = parse_bucket_uri(uri).bucket
        where = self.where
        if isinstance(e, gexc.NotFound):
            if "bucket" in str(e).lower() and "object" not in str(e).lower():
                return StorageError(f"{uri}: the bucket {bucket!r} does not exist on {where}; "
                                    "create it or fix the URI", uri=uri)
            return ObjectNotFoundError(f"no object at {uri}", uri=uri)
        if isinstance(e, (gexc.Forbidden, gexc.Unauthorized, aexc.RefreshError)):
            return StorageError(f"{uri}: {where} denied access ({e}); check [gcs] "
                                "credentials_file and the account's roles on this bucket", uri=uri)
        if isinstance(e, gexc.RetryError):
            return StorageError(f"{uri}: {where} kept failing: {e}", uri=uri, retryable=True)
        if isinstance(e, gexc.GoogleAPICallError):
            return StorageError(f"{uri}: {where} answered {e.code}: {e.message}", uri=uri,
                                retryable=is_retryable_status(e.code))
        if isinstance(e, aexc.TransportError):
            return StorageError(f"{uri}: could not reach {where}: {e}", uri=uri, retryable=True)
        if isinstance(e, aexc.GoogleAuthError):
            return StorageError(f"{uri}: GCS credentials problem: {e}", uri=uri)
        module = type(e).__module__
        if module.startswith(("requests", "urllib3", "google.resumable_media",
                              "google.cloud.storage")):
            status = getattr(getattr(e, "response", None), "status_code", None)
            retryable = status is None or is_retryable_status(status)
            return StorageError(f"{uri}: transfer with {where} failed: {e}", uri=uri,
                                retryable=retryable)
        if isinstance(e, OSError):
            return StorageError(f"{uri}: local file error: {e}", uri=uri)
        return None

    def _errors(self, uri: str):
        return mapped_errors(lambda e: self._translate(e, uri), retries=self.retries)

    def _blob(self, uri: str):
        loc = parse_bucket_uri(uri)
        return self.client.bucket(loc.bucket).blob(loc.key, chunk_size=PART_SIZE)

    # -- operations ----------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        # Above 8 MB the library switches to a resumable upload in PART_SIZE chunks.
        with self._errors(uri):
            self._blob(uri).upload_from_filename(os.fspath(local_path),
                                                 content_type=content_type, **self._call)

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        with self._errors(uri):
            self._blob(uri).upload_from_string(data, content_type=content_type or
                                               "application/octet-stream", **self._call)

    def condition_scope(self, uri: str) -> Hashable:
        return (self.endpoint, parse_bucket_uri(uri).bucket)

    def create_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        return self._create(uri, lambda: self._blob(uri).upload_from_string(
            data, content_type=content_type or "application/octet-stream",
            if_generation_match=0, **self._call))

    def create_file(self, local_path: str | os.PathLike, uri: str,
                    content_type: str | None = None) -> bool:
        # Above 8 MB a resumable upload: the condition is checked when it finalises.
        return self._create(uri, lambda: self._blob(uri).upload_from_filename(
            os.fspath(local_path), content_type=content_type, if_generation_match=0,
            **self._call))

    def _create(self, uri: str, request: Callable[[], object]) -> bool:
        """Run an upload conditioned on ``ifGenerationMatch=0``: True when it wrote; False on
        412 Precondition Failed (the object exists), unless a retry happened (then it may be
        our own first attempt: :func:`refused_means_created`)."""
        before = retries_noted()
        with self._errors(uri):
            try:
                request()
            except Exception as e:
                status = getattr(e, "code", None) or getattr(
                    getattr(e, "response", None), "status_code", None)
                if status != 412:
                    raise
                return refused_means_created(before)
        return True

    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        with self._errors(uri), atomic_target(local_path) as tmp:
            self._blob(uri).download_to_filename(str(tmp), **self._call)

    def open(self, uri: str) -> BinaryIO:
        info = self.stat(uri)  # fail now, not at the first read, if it is missing
        loc = parse_bucket_uri(uri)
        # A fresh blob pinned to that generation: one that holds fetched metadata downloads from
        # its mediaLink, which the emulator does not percent-encode.
        version = info.version or ""
        blob = self.client.bucket(loc.bucket).blob(
            loc.key, chunk_size=PART_SIZE, generation=int(version) if version.isdigit() else None)
        with self._errors(uri):
            reader = blob.open("rb", chunk_size=PART_SIZE, **self._call)
        return buffered(MappedReader(reader.read, reader.close,
                                     lambda e: self._translate(e, uri)))

    def endpoint_url(self) -> str | None:
        return self.endpoint

    def exists(self, uri: str) -> bool:
        with self._errors(uri):
            return bool(self._blob(uri).exists(**self._call))

    def stat(self, uri: str) -> ObjectInfo:
        loc = parse_bucket_uri(uri)
        with self._errors(uri):
            blob = self.client.bucket(loc.bucket).get_blob(loc.key, **self._call)
        if blob is None:
            raise ObjectNotFoundError(f"no object at {uri}", uri=uri)
        version = blob.generation or blob.etag or blob.md5_hash
        return ObjectInfo(int(blob.size or 0), str(version) if version is not None else None)

    def delete(self, uri: str) -> None:
        try:
            with self._errors(uri):
                self._blob(uri).delete(**self._call)
        except ObjectNotFoundError:
            pass

    def list(self, prefix_uri: str) -> Iterator[str]:
        loc = parse_bucket_uri(prefix_uri)
        with self._errors(prefix_uri):
            for blob in self.client.list_blobs(loc.bucket, prefix=loc.key, **self._call):
                yield loc.with_key(blob.name)

    def list_info(self, prefix_uri: str) -> Iterator[ListedObject]:
        loc = parse_bucket_uri(prefix_uri)
        skip = len(loc.key)
        with self._errors(prefix_uri):
            for blob in self.client.list_blobs(loc.bucket, prefix=loc.key, **self._call):
                updated = blob.updated
                yield ListedObject(loc.with_key(blob.name), blob.name[skip:],
                                   int(blob.size or 0),
                                   updated.timestamp() if updated else None,
                                   blob.etag or None)

    def presign(self, uri: str, expires_s: int) -> str:
        seconds = check_expiry(uri, expires_s, SEVEN_DAYS_S, "GCS")
        signer = self.signer
        extra: dict[str, Any] = {}
        if signer is None:
            raise ConfigError(f"cannot sign a URL for {uri}: set [gcs] credentials_file to a "
                              "service-account key file (needed to sign GCS URLs)")
        if not hasattr(signer, "sign_bytes"):
            # e.g. Compute Engine credentials: sign through the IAM API with a token instead.
            email = getattr(signer, "service_account_email", None)
            if not email:
                raise ConfigError(f"cannot sign a URL for {uri}: these Google credentials cannot "
                                  "sign; set [gcs] credentials_file to a service-account key")
            with self._errors(uri):
                import google.auth.transport.requests as gtr
                signer.refresh(gtr.Request())
            extra = {"service_account_email": email, "access_token": signer.token}
        with self._errors(uri):
            return self._blob(uri).generate_signed_url(
                version="v4", expiration=datetime.timedelta(seconds=seconds), method="GET",
                credentials=signer if not extra else None,
                api_access_endpoint=public_url(self.endpoint or "https://storage.googleapis.com"),
                **extra)

    def fileurl(self, uri: str) -> str:
        return uri

    def check_writable(self, prefix_uri: str) -> None:
        loc = parse_bucket_uri(prefix_uri)
        with self._errors(prefix_uri):
            bucket = self.client.lookup_bucket(loc.bucket, **self._call)
        if bucket is None:
            where = self.where
            raise ConfigError(f"{prefix_uri}: the bucket {loc.bucket!r} does not exist on "
                              f"{where}; create it first (pxlite never creates buckets) or fix "
                              "the destination")
        super().check_writable(prefix_uri)


def _retryable(exc: BaseException) -> bool:
    """Whether another try of a GCS request may succeed: throttling (429), 408 and server errors,
    timeouts, refused or dropped connections."""
    import http.client

    import requests
    import urllib3
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    if isinstance(exc, gexc.GoogleAPICallError):
        return is_retryable_status(exc.code)
    if isinstance(exc, aexc.TransportError):  # wraps the requests error
        return bool(exc.args) and isinstance(exc.args[0], BaseException) and _retryable(
            exc.args[0])
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:  # google.cloud.storage.exceptions.InvalidResponse and the like
        return is_retryable_status(status)
    return isinstance(exc, (ConnectionError, TimeoutError, requests.ConnectionError,
                            requests.Timeout, requests.exceptions.ChunkedEncodingError,
                            http.client.HTTPException, urllib3.exceptions.HTTPError))


def _load_credentials(path: str) -> Any:
    """Service-account credentials from a key file, or a ConfigError naming the file."""
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(
            os.path.expanduser(path),
            scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"[gcs] credentials_file {path!r} is not a usable service-account key "
                          f"file ({e}); download a JSON key for a service account") from e
