"""Plain web URLs (``http(s)://``), read-only, with the standard library only.

Used for inserted URLs that are not a storage provider's (and for URLs carrying a query string,
such as presigned ones). Retryable failures (timeouts, 408/429/5xx, refused connections) are
retried with :func:`retry_call`; a 404 or 410 is :class:`ObjectNotFoundError`.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn, TypeVar

from ..config import Settings
from ..errors import ConfigError, ObjectNotFoundError, PxliteError, StorageError
from . import destination_forms
from .base import (
    MappedReader,
    ObjectInfo,
    StorageBackend,
    atomic_target,
    buffered,
    is_retryable_status,
    retry_call,
)

_USER_AGENT = "pxlite"
T = TypeVar("T")


def _translate(e: BaseException, uri: str) -> PxliteError | None:
    if isinstance(e, urllib.error.HTTPError):
        if e.code in (404, 410):
            return ObjectNotFoundError(f"no file at {uri} (HTTP {e.code})", uri=uri)
        return StorageError(f"{uri}: the server answered HTTP {e.code} {e.reason}", uri=uri,
                            retryable=is_retryable_status(e.code))
    if isinstance(e, urllib.error.URLError):
        if isinstance(e.reason, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror,
                                 OSError)):
            return StorageError(f"{uri}: could not reach the server: {e.reason}", uri=uri,
                                retryable=True)
        return StorageError(f"{uri}: {e.reason}", uri=uri)
    if isinstance(e, ValueError):  # urllib's "unknown url type" and similar
        return StorageError(f"{uri}: not a fetchable URL: {e}", uri=uri)
    if isinstance(e, (http.client.HTTPException, OSError)):
        return StorageError(f"{uri}: download failed: {e}", uri=uri, retryable=True)
    return None


class HttpBackend(StorageBackend):
    """Read-only access to web URLs; ``fileurl`` and ``presign`` return the URL unchanged.

    Registered as ``http``, it also serves ``https``: every web URL no other backend claims
    (and every one with a query string, such as a presigned or SAS URL).
    """

    input_schemes = ("https",)

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        return ()  # read-only: never a destination

    @classmethod
    def canonical_prefix(cls, text: str, settings: Settings, *, base: Path | None = None) -> str:
        raise ConfigError(f"{text!r} is a plain web URL, which pxlite can read but not write to; "
                          f"use one of: {destination_forms()}")

    def _open_once(self, uri: str, method: str = "GET"):
        """An open response for ``uri`` (one try), failures mapped to pxlite errors."""
        req = urllib.request.Request(uri, method=method, headers={"User-Agent": _USER_AGENT})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except Exception as e:
            mapped = _translate(e, uri)
            if mapped is None:
                raise
            raise mapped from e

    def _request(self, uri: str, method: str = "GET"):
        """Like :meth:`_open_once`, retrying retryable failures with backoff."""
        return self._retry(lambda: self._open_once(uri, method))

    def _retry(self, fn: Callable[[], T]) -> T:
        return retry_call(fn, retries=self.retries, base_delay_s=self.retry_base_s,
                          max_delay_s=self.retry_max_s)

    def _read_only(self, uri: str) -> NoReturn:
        raise ConfigError(f"{uri} is a web URL, which pxlite reads but never writes or deletes; "
                          "use a storage destination (local folder, s3://, gs://, az://...)")

    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        self._read_only(uri)

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        self._read_only(uri)

    def delete(self, uri: str) -> None:
        self._read_only(uri)

    def list(self, prefix_uri: str) -> Iterator[str]:
        self._read_only(prefix_uri)

    def check_writable(self, prefix_uri: str) -> None:
        self._read_only(prefix_uri)

    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        def download() -> None:
            with self._open_once(uri) as resp, atomic_target(local_path) as tmp, \
                    open(tmp, "wb") as out:
                try:
                    shutil.copyfileobj(resp, out, 1024 * 1024)
                except (http.client.HTTPException, OSError) as e:  # cut off mid-body
                    raise StorageError(f"{uri}: download interrupted: {e}", uri=uri,
                                       retryable=True) from e

        self._retry(download)

    def open(self, uri: str) -> BinaryIO:
        resp = self._request(uri)
        return buffered(MappedReader(resp.read, resp.close, lambda e: _translate(e, uri)))

    def stat(self, uri: str) -> ObjectInfo:
        try:
            resp = self._request(uri, "HEAD")
        except StorageError as e:
            if getattr(e.__cause__, "code", None) not in (405, 501):
                raise
            resp = self._request(uri)  # no HEAD support: read the headers of a GET
        with resp:
            length = resp.headers.get("Content-Length")
            version = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        return ObjectInfo(int(length) if length and length.isdigit() else -1, version)

    def presign(self, uri: str, expires_s: int) -> str:
        return uri  # already fetchable by anyone who has it

    def fileurl(self, uri: str) -> str:
        return uri
