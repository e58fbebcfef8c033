"""Amazon S3 and the S3-compatible services (Cloudflare R2, Backblaze B2, Tigris) via boto3.

One class per scheme (:class:`S3Backend` and its subclasses :class:`R2Backend`,
:class:`B2Backend`, :class:`TigrisBackend`), each owning its grammar: the https host it claims, the
settings a ``scheme://`` destination needs, and how the endpoint is found. Each provider reads its
own settings section ([s3], [r2], [b2], [tigris]); the endpoint comes from ``endpoint_url`` when
set (tests point it at moto), else from the URI's https host, the R2 ``account_id``, the B2
``region`` or Tigris' public endpoint. boto3 is imported on first use.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from ..config import Settings
from ..errors import ConfigError, ObjectNotFoundError, PxliteError, StorageError
from ..redact import public_url, strip_userinfo
from . import parse_bucket_uri
from .base import (
    MULTIPART_THRESHOLD,
    PART_SIZE,
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

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RULES = ("a bucket name has 3-63 characters: lowercase letters, digits, '-' and '.', "
                 "starting and ending with a letter or digit")
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_DENIED_CODES = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                 "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled"}
_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                "RequestTimeoutException", "InternalError", "ServiceUnavailable",
                "TooManyRequests", "RequestLimitExceeded", "BandwidthLimitExceeded",
                # a conditional write that met a concurrent one (AWS: 409, "retry the request")
                "ConditionalRequestConflict"}


class S3Backend(ConditionalCreate):
    """One S3-compatible endpoint with one set of credentials (boto3 client, thread-safe).

    This class is Amazon S3 (``s3://``); the other services of the family subclass it and
    set its grammar: :attr:`provider`, :attr:`name`, :attr:`https_host`, :attr:`https_form`,
    :attr:`required_setting` and :meth:`endpoint_and_region`.
    """

    #: The scheme, which is also the settings section.
    provider: ClassVar[str] = "s3"
    #: The service's name in messages.
    name: ClassVar[str] = "S3"
    settings_section: ClassVar[str | None] = "s3"
    #: The https hosts the service's URLs name (None: its https URLs are read as plain web URLs).
    https_host: ClassVar[re.Pattern[str] | None] = None
    #: The https form of a destination, for help texts ("" when the service has none).
    https_form: ClassVar[str] = ""
    #: The setting a ``scheme://`` destination needs to find its endpoint when ``endpoint_url``
    #: is not set, and what the message says it is (None: it needs none).
    required_setting: ClassVar[tuple[str, str] | None] = None

    # -- grammar -------------------------------------------------------------------------------

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        return (f"{scheme}://bucket/prefix/", *([cls.https_form] if cls.https_form else []))

    @classmethod
    def canonical_prefix(cls, text: str, settings: Settings, *, base: Path | None = None) -> str:
        loc = parse_bucket_uri(text)
        prefix = folder_prefix(text, loc.base, loc.bucket, loc.key, what="bucket",
                               example=f"{loc.base}<bucket>/<prefix>/", pattern=_BUCKET,
                               rules=_BUCKET_RULES)
        if loc.base == f"{loc.scheme}://":  # no https host: the settings name the endpoint
            cls.check_settings(text, settings.provider(cls.provider))
        return prefix

    @classmethod
    def claims_https(cls, host: str) -> bool:
        return cls.https_host is not None and cls.https_host.match(host) is not None

    @classmethod
    def check_settings(cls, text: str, section: dict[str, Any]) -> None:
        """Raise ConfigError when a ``scheme://`` destination lacks the setting it needs to find
        its endpoint (S3 needs none: boto3 finds the region itself)."""
        if cls.required_setting is None:
            return
        if not (section.get("endpoint_url") or section.get(cls.required_setting[0])):
            raise cls.missing_setting(f"{text!r}: ")

    @classmethod
    def missing_setting(cls, where: str = "") -> ConfigError:
        """The error for a ``scheme://`` destination whose settings cannot name its endpoint."""
        needs = cls.required_setting[1] if cls.required_setting else "needs endpoint_url"
        return ConfigError(f"{where}{cls.provider}:// {needs}, or use {cls.https_form}")

    @classmethod
    def endpoint_and_region(cls, base: str, section: dict[str, Any]
                            ) -> tuple[str | None, str | None]:
        """The endpoint URL and signing region of the settings ``section`` and URI ``base``
        (``"s3://"`` or ``"https://host/"``, see :class:`~pxlite.storage.BucketURI`)."""
        return section.get("endpoint_url") or None, section.get("region") or None

    # -- client --------------------------------------------------------------------------------

    def __init__(self, settings: Settings, uri: str) -> None:
        super().__init__(settings, uri)
        import boto3  # lazy: keeps `import pxlite` cheap; ImportError -> install hint upstream
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        loc = parse_bucket_uri(uri)
        section = settings.provider(self.provider)
        self.endpoint, region = self.endpoint_and_region(loc.base, section)
        #: The service as messages name it: the endpoint without user-info or a query string
        #: (an endpoint_url may carry credentials: http://user:pw@host/?token=...).
        self.where = (f"{self.name} ({public_url(self.endpoint)})" if self.endpoint
                      else self.name)
        try:
            session = boto3.session.Session(
                aws_access_key_id=section.get("aws_access_key_id"),
                aws_secret_access_key=section.get("aws_secret_access_key"),
                aws_session_token=section.get("aws_session_token"),
                profile_name=section.get("profile"),
                region_name=region,
            )
        except BotoCoreError as e:  # e.g. ProfileNotFound
            raise ConfigError(f"[{self.provider}] settings: {e}; fix the profile name or set "
                              "aws_access_key_id and aws_secret_access_key") from e
        extra: dict[str, Any] = {}
        if self.provider != "s3" or self.endpoint:
            # Non-AWS services do not all accept boto3's newer default CRC checksums.
            extra = {"request_checksum_calculation": "when_required",
                     "response_checksum_validation": "when_required"}
        config = Config(
            signature_version="s3v4",  # boto3 would presign SigV2 otherwise
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            # botocore's own retry is switched off (one attempt) and replaced by _needs_retry:
            # botocore does not retry HTTP 429 / TooManyRequests and its backoff is fixed.
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": section.get("addressing_style") or "auto"},
            max_pool_connections=32,
            **extra,
        )
        try:
            self.client = session.client("s3", endpoint_url=self.endpoint, config=config)
        except ValueError as e:  # "Invalid endpoint: <the URL>", which may hold credentials
            raise_masked(ConfigError(f"[{self.provider}] endpoint_url is not usable: {e}; fix "
                                     "it (http(s)://host[:port])"), e)
        # botocore asks every needs-retry handler and sleeps for the first delay one returns.
        self.client.meta.events.register("needs-retry.s3", self._needs_retry)
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                       multipart_chunksize=PART_SIZE,
                                       max_concurrency=TRANSFER_THREADS,
                                       num_download_attempts=self.retries + 1)

    def _needs_retry(self, attempts: int, response: Any = None,
                     caught_exception: BaseException | None = None, **_: Any) -> float | None:
        """botocore's ``needs-retry`` hook: seconds to wait before the next try, or None.

        Retries ``storage_retries`` times (per HTTP request) on throttling (429, 503 SlowDown and
        the other codes of ``_RETRY_CODES``), 408/5xx, timeouts and dropped connections, waiting
        with full-jitter backoff (``backoff_s``).
        """
        from botocore.exceptions import ConnectionError, HTTPClientError

        if attempts > self.retries:
            return None
        if caught_exception is not None:
            retry = isinstance(caught_exception, (ConnectionError, HTTPClientError))
        elif response is not None:
            http, parsed = response
            code = str((parsed or {}).get("Error", {}).get("Code", ""))
            retry = code in _RETRY_CODES or is_retryable_status(http.status_code)
        else:
            retry = False
        if not retry:
            return None
        note_retry()
        return self.backoff_s(attempts)

    def endpoint_url(self) -> str | None:
        return self.endpoint

    @classmethod
    def location_key(cls, uri: str) -> Hashable:
        return parse_bucket_uri(uri).base  # https forms carry their endpoint in the URI

    # -- errors --------------------------------------------------------------------------------

    def _translate(self, e: BaseException, uri: str, bucket: str) -> PxliteError | None:
        from boto3.exceptions import Boto3Error, RetriesExceededError, S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
            ResponseStreamingError,
        )

        # boto3's transfer layer wraps the real cause; look through it.
        if isinstance(e, S3UploadFailedError) and e.__context__ is not None:
            e = e.__context__
        if isinstance(e, RetriesExceededError) and e.last_exception is not None:
            e = e.last_exception
        where = self.where
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StorageError(f"{uri}: the bucket {bucket!r} does not exist on {where}; "
                                    "create it or fix the URI", uri=uri)
            if code in _NOT_FOUND_CODES or status == 404:
                return ObjectNotFoundError(f"no object at {uri}", uri=uri)
            if code in _DENIED_CODES or status == 403:
                return StorageError(
                    f"{uri}: {where} denied access ({code}); check the credentials in "
                    f"[{self.provider}] (aws_access_key_id / aws_secret_access_key or profile) "
                    "and that they may read and write this bucket", uri=uri)
            retryable = code in _RETRY_CODES or is_retryable_status(status)
            return StorageError(f"{uri}: {where} answered {status} {code}: "
                                f"{err.get('Message', '')}".rstrip(": "),
                                uri=uri, retryable=retryable)
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"{uri}: no usable {self.name} credentials ({e}); set "
                                f"[{self.provider}] aws_access_key_id and aws_secret_access_key, "
                                "or a profile", uri=uri)
        # HTTPClientError: read timeouts and connections closed before a response came.
        if isinstance(e, (ConnectionError, HTTPClientError, IncompleteReadError,
                          ResponseStreamingError)):
            return StorageError(f"{uri}: could not reach {where}: {e}", uri=uri, retryable=True)
        if isinstance(e, (BotoCoreError, Boto3Error)):
            return StorageError(f"{uri}: {self.name} request failed: {e}", uri=uri)
        if type(e).__module__.startswith(("urllib3", "s3transfer")):
            return StorageError(f"{uri}: transfer from {where} failed: {e}", uri=uri,
                                retryable=True)
        if isinstance(e, OSError):
            return StorageError(f"{uri}: local file error: {e}", uri=uri)
        return None

    def _errors(self, uri: str, bucket: str):
        return mapped_errors(lambda e: self._translate(e, uri, bucket), retries=self.retries)

    # -- operations ----------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        loc = parse_bucket_uri(uri)
        extra = {"ContentType": content_type} if content_type else None
        with self._errors(uri, loc.bucket):
            self.client.upload_file(os.fspath(local_path), loc.bucket, loc.key, ExtraArgs=extra,
                                    Config=self.transfer)

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        loc = parse_bucket_uri(uri)
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(uri, loc.bucket):
            self.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **extra)

    def condition_scope(self, uri: str) -> Hashable:
        loc = parse_bucket_uri(uri)
        return (self.endpoint or loc.base, loc.bucket)

    def create_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        loc = parse_bucket_uri(uri)
        extra = {"ContentType": content_type} if content_type else {}
        return self._create(uri, loc.bucket, lambda: self.client.put_object(
            Bucket=loc.bucket, Key=loc.key, Body=data, IfNoneMatch="*", **extra))

    def create_file(self, local_path: str | os.PathLike, uri: str,
                    content_type: str | None = None) -> bool:
        loc = parse_bucket_uri(uri)
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(uri, loc.bucket), open(local_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MULTIPART_THRESHOLD:
                return self._create_multipart(f, size, uri, loc.bucket, loc.key, extra)
            # botocore rewinds the (seekable) file when it retries
            return self._create(uri, loc.bucket, lambda: self.client.put_object(
                Bucket=loc.bucket, Key=loc.key, Body=f, IfNoneMatch="*", **extra))

    def _create(self, uri: str, bucket: str, request: Any) -> bool:
        """Run a conditional ``request``: True when it wrote; False when the service answered
        412 Precondition Failed (the key exists), unless the request was retried (then the
        object may be our own first attempt: :func:`refused_means_created`)."""
        from botocore.exceptions import ClientError

        before = retries_noted()
        with self._errors(uri, bucket):
            try:
                request()
            except ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
                    raise
                return refused_means_created(before)
        return True

    def _create_multipart(self, f: BinaryIO, size: int, uri: str, bucket: str, key: str,
                          extra: dict[str, Any]) -> bool:
        """A multipart upload whose completion carries ``If-None-Match: *``: parts go up in
        parallel (``TRANSFER_THREADS``, one ``PART_SIZE`` buffer each), and the object appears
        only if no other was there. boto3's transfer manager does not pass the condition on,
        hence this. Any failure, a refusal too, aborts the upload (no parts left billed)."""
        import threading
        from concurrent.futures import ThreadPoolExecutor

        # As boto3's transfer manager does: where botocore adds checksums by default (AWS), the
        # upload declares CRC32 and the completion lists each part's checksum.
        checksum = ({"ChecksumAlgorithm": "CRC32"} if self.client.meta.config
                    .request_checksum_calculation == "when_supported" else {})
        upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=key, **extra,
                                                        **checksum)["UploadId"]
        lock = threading.Lock()

        def part(number: int) -> dict[str, Any]:
            with lock:  # one file object shared by the threads: seek and read together
                f.seek((number - 1) * PART_SIZE)
                body = f.read(PART_SIZE)
            answer = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                             PartNumber=number, Body=body, **checksum)
            entry = {"PartNumber": number, "ETag": answer["ETag"]}
            if checksum and answer.get("ChecksumCRC32"):
                entry["ChecksumCRC32"] = answer["ChecksumCRC32"]
            return entry

        try:
            with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
                parts = list(pool.map(part, range(1, -(-size // PART_SIZE) + 1)))
            created = self._create(uri, bucket, lambda: self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, IfNoneMatch="*",
                MultipartUpload={"Parts": parts}))
        except BaseException:
            self._abort_multipart(bucket, key, upload_id)
            raise
        if not created:
            self._abort_multipart(bucket, key, upload_id)
        return created

    def _abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the bucket's lifecycle rule remains
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        loc = parse_bucket_uri(uri)
        with self._errors(uri, loc.bucket), atomic_target(local_path) as tmp:
            self.client.download_file(loc.bucket, loc.key, str(tmp), Config=self.transfer)

    def open(self, uri: str) -> BinaryIO:
        loc = parse_bucket_uri(uri)
        with self._errors(uri, loc.bucket):
            body = self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        return buffered(MappedReader(body.read, body.close,
                                     lambda e: self._translate(e, uri, loc.bucket)))

    def stat(self, uri: str) -> ObjectInfo:
        loc = parse_bucket_uri(uri)
        with self._errors(uri, loc.bucket):
            head = self.client.head_object(Bucket=loc.bucket, Key=loc.key)
        version = head.get("VersionId") or (head.get("ETag") or "").strip('"') or None
        return ObjectInfo(int(head["ContentLength"]), version)

    def delete(self, uri: str) -> None:
        loc = parse_bucket_uri(uri)
        try:
            with self._errors(uri, loc.bucket):
                self.client.delete_object(Bucket=loc.bucket, Key=loc.key)
        except ObjectNotFoundError:
            pass  # some S3-compatible services answer 404 for a missing key

    def list(self, prefix_uri: str) -> Iterator[str]:
        loc = parse_bucket_uri(prefix_uri)
        with self._errors(prefix_uri, loc.bucket):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=loc.bucket, Prefix=loc.key)
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield loc.with_key(obj["Key"])

    def list_info(self, prefix_uri: str) -> Iterator[ListedObject]:
        loc = parse_bucket_uri(prefix_uri)
        skip = len(loc.key)
        with self._errors(prefix_uri, loc.bucket):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=loc.bucket, Prefix=loc.key)
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    modified = obj.get("LastModified")
                    yield ListedObject(loc.with_key(key), key[skip:], int(obj.get("Size", 0)),
                                       modified.timestamp() if modified else None,
                                       (obj.get("ETag") or "").strip('"') or None)

    def presign(self, uri: str, expires_s: int) -> str:
        seconds = check_expiry(uri, expires_s, SEVEN_DAYS_S, self.name)
        loc = parse_bucket_uri(uri)
        with self._errors(uri, loc.bucket):
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": loc.bucket, "Key": loc.key}, ExpiresIn=seconds)
        # The signature is the credential a presigned URL carries; an endpoint's user:password
        # is not handed out with it.
        return strip_userinfo(url)

    def fileurl(self, uri: str) -> str:
        return uri

    def check_writable(self, prefix_uri: str) -> None:
        from botocore.exceptions import ClientError

        loc = parse_bucket_uri(prefix_uri)
        where = self.where
        try:
            with self._errors(prefix_uri, loc.bucket):
                self.client.head_bucket(Bucket=loc.bucket)
        except StorageError as e:
            cause = e.__cause__
            status = (cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                      if isinstance(cause, ClientError) else None)
            if status == 404:
                raise ConfigError(
                    f"{prefix_uri}: the bucket {loc.bucket!r} does not exist on {where}; create "
                    "it first (pxlite never creates buckets) or fix the destination") from e
            if status != 403:  # 403: may still write without ListBucket; the probe decides
                raise
        super().check_writable(prefix_uri)



def _https_host(base: str) -> str | None:
    """The host of an ``https://host/`` base, None for ``scheme://``."""
    return base[len("https://"):].rstrip("/") if base.startswith("https://") else None


class R2Backend(S3Backend):
    """Cloudflare R2: ``r2://bucket/key`` with [r2] account_id, or the account's https host."""

    provider = "r2"
    name = "Cloudflare R2"
    settings_section = "r2"
    https_host = re.compile(r"^[a-z0-9-]+(\.[a-z]+)?\.r2\.cloudflarestorage\.com$")
    https_form = "https://<account>.r2.cloudflarestorage.com/bucket/prefix/"
    required_setting = ("account_id", "needs your Cloudflare account; set [r2] account_id "
                                      "(or endpoint_url)")

    @classmethod
    def endpoint_and_region(cls, base: str, section: dict[str, Any]
                            ) -> tuple[str | None, str | None]:
        endpoint, region = super().endpoint_and_region(base, section)
        if not endpoint:
            host = _https_host(base)
            if host:
                endpoint = f"https://{host}"
            elif section.get("account_id"):
                endpoint = f"https://{section['account_id']}.r2.cloudflarestorage.com"
            else:
                raise cls.missing_setting()
        return endpoint, region or "auto"


class B2Backend(S3Backend):
    """Backblaze B2: ``b2://bucket/key`` with [b2] region, or ``https://s3.<region>.backblazeb2.com``."""

    provider = "b2"
    name = "Backblaze B2"
    settings_section = "b2"
    https_host = re.compile(r"^s3\.([a-z0-9-]+)\.backblazeb2\.com$")
    https_form = "https://s3.<region>.backblazeb2.com/bucket/prefix/"
    required_setting = ("region", "needs the bucket's region; set [b2] region (e.g. "
                                  "'us-west-004') or endpoint_url")

    @classmethod
    def endpoint_and_region(cls, base: str, section: dict[str, Any]
                            ) -> tuple[str | None, str | None]:
        endpoint, region = super().endpoint_and_region(base, section)
        host = _https_host(base)
        if host and not region:
            region = host.split(".")[1]  # s3.<region>.backblazeb2.com
        if not endpoint:
            if host:
                endpoint = f"https://{host}"
            elif region:
                endpoint = f"https://s3.{region}.backblazeb2.com"
            else:
                raise cls.missing_setting()
        return endpoint, region


class TigrisBackend(S3Backend):
    """Tigris: ``tigris://bucket/key`` or its public https endpoints (no settings needed)."""

    provider = "tigris"
    name = "Tigris"
    settings_section = "tigris"
    https_host = re.compile(r"^(t3\.storage\.dev|fly\.storage\.tigris\.dev)\Z")  # exact
    https_form = "https://t3.storage.dev/bucket/prefix/"
    #: The public endpoint used for ``tigris://`` when no endpoint_url is set.
    DEFAULT_HOST: ClassVar[str] = "t3.storage.dev"

    @classmethod
    def endpoint_and_region(cls, base: str, section: dict[str, Any]
                            ) -> tuple[str | None, str | None]:
        endpoint, region = super().endpoint_and_region(base, section)
        return endpoint or f"https://{_https_host(base) or cls.DEFAULT_HOST}", region or "auto"
