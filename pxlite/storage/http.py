"""Plain web URLs (``http(s)://``), read-only, with the standard library only.

Used for inserted URLs that are not a storage provider's (and for URLs carrying a query string,
such as presigned ones). Retryable failures (timeouts, 408/429/5xx, refused connections) are
retried with :func:`retry_call`; a 404 or 410 is :class:`ObjectNotFoundError`.

A web server is a hostile source: it may send a body without end, drip one byte a second (which
no per-read socket timeout ever catches) or declare a gigapixel image. So a download
(:meth:`HttpBackend.get_file`) has three limits, each a setting: ``download_timeout_s`` for the
whole transfer (connecting, headers, body and retries; a watchdog shuts the socket down when it
passes, so even a blocked read ends), ``max_download_bytes`` (checked against the declared
Content-Length before reading, then against the bytes received), and ``max_image_pixels``
checked on the first bytes of an image, before the rest is fetched. Exceeding one is an error
naming the URL and the limit, and the partial file is removed.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

from ..config import Settings
from ..errors import ConfigError, ObjectNotFoundError, PxliteError, SchemaError, StorageError
from . import destination_forms
from .base import (
    MappedReader,
    ObjectInfo,
    StorageBackend,
    atomic_target,
    buffered,
    is_retryable_status,
    raise_masked,
    retry_call,
)

_USER_AGENT = "pxlite"
T = TypeVar("T")
#: Bytes asked of the socket per read: ``read1`` returns what one receive brings, so the deadline
#: and the size limit are checked at least once per network packet burst.
_CHUNK = 1024 * 1024
#: Image headers are parsed from the first bytes once this many arrived (or the body ended), and
#: once more at _HEAD_MAX for formats whose size comes after large metadata (EXIF, ICC, XMP).
_HEAD_MIN = 64 * 1024
_HEAD_MAX = 1024 * 1024


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


class _Transfer:
    """The limits of one download (all its tries): a deadline and a byte cap.

    A watchdog timer shuts down every socket the transfer opened once the deadline passes: a
    read blocked on a server that sends nothing (or one byte at a time) then returns, and the
    reader reports the deadline. Shutting the socket down (not closing it) is what wakes a
    ``recv`` blocked in another thread.
    """

    def __init__(self, uri: str, timeout_s: float, max_bytes: int, max_pixels: int) -> None:
        self.uri, self.timeout_s, self.max_bytes, self.max_pixels = (
            uri, timeout_s, max_bytes, max_pixels)
        self.deadline = time.monotonic() + timeout_s
        self.received = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._expired = False
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Transfer:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._expired or time.monotonic() >= self.deadline

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            socks, self._socks = self._socks, []
        for sock in socks:
            _shutdown(sock)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, but not past the deadline."""
        time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))

    def watch(self, sock: socket.socket) -> None:
        """Put a new connection's socket under the deadline (shut at once if it passed)."""
        with self._lock:
            if not self._expired:
                self._socks.append(sock)
                return
        _shutdown(sock)

    def too_slow(self) -> StorageError:
        return StorageError(
            f"{self.uri}: the download did not finish within download_timeout_s = "
            f"{self.timeout_s:g} s ({self.received:,} bytes received); the server is too slow "
            "or sends without end. Raise download_timeout_s if the file is expected to take "
            "longer", uri=self.uri)

    def too_big(self, declared: int | None = None) -> StorageError:
        what = (f"the server declares {declared:,} bytes" if declared is not None
                else f"more than {self.max_bytes:,} bytes arrived")
        return StorageError(
            f"{self.uri}: the file is larger than max_download_bytes = {self.max_bytes:,} bytes "
            f"({what}); the download was stopped. Raise max_download_bytes if the file is "
            "trusted", uri=self.uri)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter also tears down the TLS object
    # under the thread that may be reading it; the plain call only ends the connection's fd.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


#: The transfer the current thread is downloading, if any: urllib builds connections deep
#: inside ``urlopen`` (a new one per redirect), so the handlers below find it here.
_active = threading.local()


class _WatchedMixin:
    """A connection that puts its socket under the active transfer's deadline."""

    transfer: _Transfer | None = None
    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.transfer is not None:
            self.transfer.watch(self.sock)


class _WatchedHTTPConnection(_WatchedMixin, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, http.client.HTTPSConnection):
    pass


def _connection(cls: type, transfer: _Transfer | None) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        conn = cls(*args, **kwargs)
        conn.transfer = transfer
        return conn

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection(_WatchedHTTPConnection, getattr(_active, "t", None)),
                            req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # No context argument: HTTPSConnection makes the default verifying one, as urlopen does.
        return self.do_open(_connection(_WatchedHTTPSConnection, getattr(_active, "t", None)),
                            req)


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """urllib's default opener (proxies from the environment, redirects...) with connections
    that honour a transfer's deadline."""
    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


def _declared_pixels(head: bytes) -> tuple[int, str] | None:
    """``(pixels, as text)`` an image's first bytes declare, or None when they are no image
    Pillow can size (yet: its header may lie beyond ``head``)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(head)) as img:
                w, h = img.size
                return w * h, f"{w}x{h} = {w * h:,} pixels"
        except Image.DecompressionBombError:
            # Pillow refuses sizes over twice its own (process-wide) limit before saying which
            bound = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            return bound + 1, f"more than {bound:,} pixels"
        except Exception:  # not an image, or its header is cut off: the full check comes later
            return None


class _HeadCheck:
    """Checks ``max_image_pixels`` on the first bytes of a body that turns out to be an image."""

    def __init__(self, transfer: _Transfer) -> None:
        self.t = transfer
        self.head = bytearray()
        self.tries = [_HEAD_MIN, _HEAD_MAX]

    def feed(self, chunk: bytes, *, end: bool = False) -> None:
        """Add the next bytes of the body (``end``: there are no more); raise SchemaError as soon
        as they declare an image over the limit."""
        if not self.tries:
            return
        if len(self.head) < _HEAD_MAX:
            self.head += chunk[:_HEAD_MAX - len(self.head)]
        if not end and len(self.head) < self.tries[0]:
            return
        self.tries = [] if end else [n for n in self.tries if n > len(self.head)]
        found = _declared_pixels(bytes(self.head))
        if found is not None:
            self.tries = []
        if not self.tries:
            self.head = bytearray()  # decided (or never will be): keep no copy of the body
        if found is None or found[0] <= self.t.max_pixels:
            return
        raise SchemaError(
            f"image {self.t.uri!r} declares {found[1]}, over the limit of "
            f"{self.t.max_pixels:,} (max_image_pixels); the download was stopped. Raise "
            "max_image_pixels if the file is trusted")


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
            return _opener().open(req, timeout=self.timeout_s)
        except Exception as e:
            mapped = _translate(e, uri)
            if mapped is None:
                raise
            raise_masked(mapped, e)  # a token in the URL never reaches a message or traceback

    def _request(self, uri: str, method: str = "GET"):
        """Like :meth:`_open_once`, retrying retryable failures with backoff."""
        return self._retry(lambda: self._open_once(uri, method))

    def _retry(self, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
        return retry_call(fn, retries=self.retries, base_delay_s=self.retry_base_s,
                          max_delay_s=self.retry_max_s, sleep=sleep)

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
        """Download ``uri`` into ``local_path`` within ``download_timeout_s`` (all tries
        together), refusing a body over ``max_download_bytes`` and an image declaring more than
        ``max_image_pixels``; on any failure no partial file is left behind."""
        transfer = _Transfer(uri, float(self.settings["download_timeout_s"]),
                             int(self.settings["max_download_bytes"]),
                             int(self.settings["max_image_pixels"]))

        def download() -> None:
            if transfer.expired:
                raise transfer.too_slow()
            transfer.received = 0
            _active.t = transfer
            try:
                resp = self._open_once(uri)
            except StorageError as e:
                if transfer.expired:  # the watchdog cut the connection or the headers
                    raise transfer.too_slow() from e
                raise
            finally:
                _active.t = None
            with resp, atomic_target(local_path) as tmp, open(tmp, "wb") as out:
                self._copy_body(resp, out, transfer)

        with transfer:
            # a backoff wait never outlasts the deadline: the try after it reports the deadline
            self._retry(download, sleep=transfer.sleep)

    def _copy_body(self, resp: http.client.HTTPResponse, out: BinaryIO,
                   transfer: _Transfer) -> None:
        uri = transfer.uri
        length = resp.headers.get("Content-Length")
        declared = int(length) if length and length.strip().isdigit() else None
        if declared is not None and declared > transfer.max_bytes:
            raise transfer.too_big(declared)
        head = _HeadCheck(transfer)
        try:
            while True:
                # read1: one receive at most, so a slow body cannot hold us inside one call
                chunk = resp.read1(_CHUNK)
                if transfer.expired:
                    raise transfer.too_slow()
                if not chunk:
                    break
                transfer.received += len(chunk)
                if transfer.received > transfer.max_bytes:
                    raise transfer.too_big()
                head.feed(chunk)
                out.write(chunk)
        except (http.client.HTTPException, OSError) as e:  # cut off mid-body
            if transfer.expired:
                raise transfer.too_slow() from e
            raise StorageError(f"{uri}: download interrupted: {e}", uri=uri,
                               retryable=True) from e
        # read1 reports a connection closed before Content-Length as a plain end of data
        if declared is not None and transfer.received < declared:
            raise StorageError(f"{uri}: download interrupted: {transfer.received:,} of "
                               f"{declared:,} bytes arrived", uri=uri, retryable=True)
        head.feed(b"", end=True)

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
