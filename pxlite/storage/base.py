"""What every storage backend offers, plus the helpers they share.

A backend serves full canonical URIs (see :mod:`pxlite.storage`). It never lets an SDK exception
escape: failures become :class:`StorageError` (``retryable`` when trying again may help) or
:class:`ObjectNotFoundError`, chained to the original with ``raise ... from``.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..config import Settings
from ..errors import ConfigError, PxliteError, StorageError

T = TypeVar("T")

#: Uploads above this size go multipart / chunked / resumable.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: Part size of multipart uploads (S3 needs >= 5 MiB; GCS a multiple of 256 KiB).
PART_SIZE = 8 * 1024 * 1024
#: Upload/download parallelism inside one transfer.
TRANSFER_THREADS = 4
#: S3 family and GCS refuse presigned URLs valid longer than 7 days.
SEVEN_DAYS_S = 7 * 24 * 3600
#: Name prefix of in-progress local temp files (skipped by ``list``).
TEMP_PREFIX = ".pxlite-tmp-"


@dataclass(frozen=True)
class ObjectInfo:
    """Size in bytes and a version token (etag, generation or mtime) that changes with content."""

    size: int
    version: str | None


class StorageBackend(ABC):
    """One storage service (and one account/endpoint of it), addressed by full URIs."""

    def __init__(self, settings: Settings, uri: str) -> None:
        self.settings = settings
        self.timeout_s: float = float(settings["storage_timeout_s"])
        self.retries: int = int(settings["storage_retries"])

    @classmethod
    def location_key(cls, uri: str) -> Hashable:
        """What besides settings tells two instances apart (endpoint, account); '' by default."""
        return ""

    @abstractmethod
    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        """Upload a local file to ``uri`` (streaming; multipart above ~8 MB), replacing it."""

    @abstractmethod
    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        """Store ``data`` at ``uri``, replacing any existing object."""

    @abstractmethod
    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        """Download ``uri`` into ``local_path`` (via a temp file and ``os.replace``)."""

    @abstractmethod
    def open(self, uri: str) -> BinaryIO:
        """A readable binary stream of the object; ObjectNotFoundError if it is missing."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """True if the object exists (errors other than 'not found' raise StorageError)."""

    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """Size and version of the object; ObjectNotFoundError if it is missing."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Delete the object; a missing object is not an error."""

    @abstractmethod
    def list(self, prefix_uri: str) -> Iterator[str]:
        """Full URIs of every object under ``prefix_uri``, recursively."""

    @abstractmethod
    def presign(self, uri: str, expires_s: int) -> str:
        """A URL anyone can GET for ``expires_s`` seconds (read-only)."""

    @abstractmethod
    def fileurl(self, uri: str) -> str:
        """Where the object lives, as shown to users (s3://, gs://, https://, file://)."""

    def put_bytes_new(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        """Store ``data`` at ``uri`` unless an object is there already; True if it was written.

        For content-addressed keys an existing object has the same bytes, so skipping it is
        safe and saves the upload. Backends may do this in one atomic step.
        """
        if self.exists(uri):
            return False
        self.put_bytes(data, uri, content_type)
        return True

    def check_writable(self, prefix_uri: str) -> None:
        """Check that objects can be written under ``prefix_uri``: write and delete a probe.

        Cloud backends first check that the bucket/container exists, for a clearer message.
        """
        probe = prefix_uri + f".pxlite-probe-{uuid.uuid4().hex}"
        try:
            self.put_bytes(b"pxlite write probe", probe, "text/plain")
            self.delete(probe)
        except StorageError as e:
            if e.retryable:
                raise
            raise ConfigError(f"cannot write to {prefix_uri}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Shared helpers


def check_expiry(uri: str, expires_s: int, limit_s: int | None, provider: str) -> int:
    """Validate a presigned URL lifetime; ConfigError when not positive or above the limit."""
    try:
        seconds = int(expires_s)
    except (TypeError, ValueError):
        raise ConfigError(f"presigned URL expiry must be whole seconds, got {expires_s!r}") from None
    if seconds <= 0:
        raise ConfigError(f"presigned URL expiry must be positive, got {expires_s!r} for {uri}")
    if limit_s is not None and seconds > limit_s:
        raise ConfigError(
            f"{provider} presigned URLs can be valid for at most {limit_s} s (7 days); "
            f"{seconds} s was asked for {uri}; use a shorter expiry")
    return seconds


def retry_call(fn: Callable[[], T], *, retries: int, base_delay_s: float = 0.2,
               max_delay_s: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``, retrying a retryable :class:`StorageError` up to ``retries`` more times.

    Waits with exponential backoff and full jitter between tries (for services without their own
    retry logic; the cloud SDKs retry internally and are configured with the same count).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except StorageError as e:
            if not e.retryable or attempt >= retries:
                raise
            sleep(random.uniform(0, min(max_delay_s, base_delay_s * 2 ** attempt)))
            attempt += 1


@contextlib.contextmanager
def atomic_target(local_path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``local_path``; on success move it into place with os.replace.

    The parent folder is created. On any error the temp file is removed, so a failed download
    never leaves a partial file under the final name.
    """
    target = Path(local_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MappedReader(io.RawIOBase):
    """A raw stream over an SDK stream whose read errors are mapped to pxlite errors.

    ``translate(exc)`` returns the pxlite error for an SDK exception (or None to re-raise it).
    """

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None],
                 translate: Callable[[BaseException], PxliteError | None]) -> None:
        super().__init__()
        self._read, self._close, self._translate = read, close, translate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            data = self._read(len(buffer))
        except PxliteError:
            raise
        except Exception as e:
            mapped = self._translate(e)
            if mapped is None:
                raise
            raise mapped from e
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._close()
        super().close()


@contextlib.contextmanager
def mapped_errors(translate: Callable[[BaseException], PxliteError | None]) -> Iterator[None]:
    """Run the block, turning exceptions ``translate`` knows into pxlite errors (chained).

    pxlite errors pass through; exceptions ``translate`` returns None for (programming errors)
    are re-raised unchanged.
    """
    try:
        yield
    except PxliteError:
        raise
    except Exception as e:
        mapped = translate(e)
        if mapped is None:
            raise
        raise mapped from e


def buffered(reader: MappedReader) -> BinaryIO:
    """Wrap a raw reader in a 1 MiB buffer (a ``BinaryIO``)."""
    return io.BufferedReader(reader, buffer_size=1024 * 1024)  # type: ignore[return-value]


def is_retryable_status(status: int | None) -> bool:
    """HTTP statuses worth retrying: request timeout, throttling and server errors."""
    return status is not None and (status in (408, 429) or status >= 500)
