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
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar, NamedTuple, NoReturn, TypeVar

from ..config import SECRET_KEYS, URL_KEYS, Settings
from ..errors import ConfigError, ObjectNotFoundError, PxliteError, StorageError
from ..redact import install_log_filter, redact, remember, scrub_exception, secrets_of

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
#: Retry backoff (every backend, SDK or not): retry ``n`` waits a random time up to
#: ``min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2 ** (n - 1))`` ("full jitter", as AWS advises
#: for throttling). The ``storage_retry_delay_s`` setting, when present, replaces the base.
RETRY_BASE_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 20.0
#: Requests in flight at once that pay off against one service: parallel uploads hide the
#: network's latency (at ~50 ms a request, 16 keep up with a few hundred images/s).
PARALLEL_REQUESTS = 16
#: The same for a server on this machine (an emulator, a local MinIO): it answers in about a
#: millisecond and shares these cores, so a few in flight keep up and more only compete for
#: the CPU (the GCS emulator, serving one request at a time with a backlog of five, even drops
#: the connections beyond that, which then wait a second for TCP to try again).
PARALLEL_REQUESTS_LOOPBACK = 4


@dataclass(frozen=True)
class ObjectInfo:
    """Size in bytes and a version token (etag, generation or mtime) that changes with content."""

    size: int
    version: str | None


class ListedObject(NamedTuple):
    """One object found by :meth:`StorageBackend.list_info`: its full URI, its key relative to
    the listed prefix (``'/'``-separated; a local file's path relative to the folder), its size
    in bytes, its modification time (seconds since the epoch; None where the service keeps
    none) and a version token that changes with the content (cloud services' etag; None for
    local files). A NamedTuple: a listing makes one per object, and a million of them should
    cost little."""

    uri: str
    key: str
    size: int
    mtime: float | None
    etag: str | None


class StorageBackend(ABC):
    """One storage service (and one account/endpoint of it), addressed by full URIs."""

    def __init__(self, settings: Settings, uri: str) -> None:
        # The secrets this backend will use are masked wherever pxlite writes text from now on
        # (messages, stored cell errors, the SDKs' log lines): see pxlite.redact.
        remember_secrets(settings)
        install_log_filter()
        self.settings = settings
        self.timeout_s: float = float(settings["storage_timeout_s"])
        self.retries: int = int(settings["storage_retries"])
        base = settings.get("storage_retry_delay_s")
        self.retry_base_s: float = float(RETRY_BASE_DELAY_S if base is None else base)
        self.retry_max_s: float = max(self.retry_base_s, RETRY_MAX_DELAY_S)

    def backoff_s(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 = the first retry)."""
        return backoff_delay(retry, self.retry_base_s, self.retry_max_s)

    # -- URI grammar: classmethods, so the registry asks them without creating a client --------
    #
    # The registry (pxlite.storage) maps a scheme to a class and only dispatches: each class says
    # which spellings are its own and what their canonical form is. A class registered under
    # several schemes reads the scheme from the text it is given.

    #: Other URI schemes this backend reads as its own (Azure: ``az``, ``wasbs``, ``abfss``...).
    #: ``scheme_of`` maps them to the scheme the class is registered under.
    input_schemes: ClassVar[tuple[str, ...]] = ()
    #: The settings section (``settings.provider(...)``) the backend reads; it is part of the key
    #: a created backend is cached under, so changed settings get a new client.
    settings_section: ClassVar[str | None] = None

    @classmethod
    def claims_https(cls, host: str) -> bool:
        """True if ``https://<host>/...`` URLs (host lower-cased, no query string) are this
        backend's, e.g. R2's ``<account>.r2.cloudflarestorage.com``. None by default."""
        return False

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        """The destination spellings this backend accepts when registered for ``scheme``, for
        help texts ("use one of: ..."); ``scheme://bucket/prefix/`` by default."""
        return (f"{scheme}://bucket/prefix/",)

    @classmethod
    def canonical_prefix(cls, text: str, settings: Settings, *, base: Path | None = None) -> str:
        """The canonical destination prefix of ``text`` in this backend's own URI grammar
        (``scheme://bucket/prefix/`` by default: a bucket, clean segments, a trailing '/').
        Raises ConfigError naming what is wrong; no network access. ``base`` is the folder a
        relative local path resolves against (only local paths have one; an override must still
        accept the keyword). Backends with other forms override it."""
        scheme, sep, rest = text.partition("://")
        bucket, _, key = rest.partition("/")
        if not sep or not bucket:
            raise ConfigError(f"{text!r}: expected {scheme}://<bucket>/<prefix>/")
        if "?" in key or "#" in key:
            raise ConfigError(f"{text!r}: a destination prefix may not contain '?' or '#'")
        check_segments(key, text, what="prefix", allow_empty=True)
        return f"{scheme.lower()}://{bucket}/{key if not key or key.endswith('/') else key + '/'}"

    @classmethod
    def location_key(cls, uri: str) -> Hashable:
        """What besides settings tells two instances apart (endpoint, account); '' by default."""
        return ""

    def condition_verdict(self, uri: str) -> tuple[Hashable, bool] | None:
        """``(scope, honoured)``: whether this service refuses a conditional create of an
        existing key where ``uri`` lies, verified now if not known; None for a backend without
        conditional creates. (The process owning a database hands these to its workers, which
        then need not probe: :func:`adopt_condition_verdicts`.)"""
        return None

    def endpoint_url(self) -> str | None:
        """The URL of the server this backend talks to (an emulator, a private endpoint, the
        account's), without credentials; None when it is the SDK's default."""
        return None

    @property
    def parallel_requests(self) -> int:
        """How many requests to this backend's server are worth having in flight at once: see
        PARALLEL_REQUESTS and PARALLEL_REQUESTS_LOOPBACK."""
        url = self.endpoint_url()
        return (PARALLEL_REQUESTS_LOOPBACK if url and is_loopback_url(url)
                else PARALLEL_REQUESTS)

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

    def exists(self, uri: str) -> bool:
        """True if the object exists (errors other than 'not found' raise StorageError)."""
        try:
            self.stat(uri)
            return True
        except ObjectNotFoundError:
            return False

    @abstractmethod
    def stat(self, uri: str) -> ObjectInfo:
        """Size and version of the object; ObjectNotFoundError if it is missing."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Delete the object; a missing object is not an error."""

    @abstractmethod
    def list(self, prefix_uri: str) -> Iterator[str]:
        """Full URIs of every object under ``prefix_uri``, recursively."""

    def list_info(self, prefix_uri: str) -> Iterator[ListedObject]:
        """Every object under ``prefix_uri`` (recursively) with its size, modification time
        and etag, streamed page by page as the service returns them (constant memory for any
        number of objects). Errors as :meth:`list`: a missing bucket or a refused listing is a
        StorageError saying so. This default asks :meth:`stat` per object; the backends
        override it with the listing's own metadata."""
        for uri in self.list(prefix_uri):
            info = self.stat(uri)
            yield ListedObject(uri, uri[len(prefix_uri):], info.size, None, info.version)

    @abstractmethod
    def presign(self, uri: str, expires_s: int) -> str:
        """A URL anyone can GET for ``expires_s`` seconds (read-only)."""

    @abstractmethod
    def fileurl(self, uri: str) -> str:
        """Where the object lives, as shown to users (s3://, gs://, https://, file://)."""

    def put_bytes_new(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        """Store content-addressed ``data`` at ``uri``; False only when the service said an
        object was there already (then it holds the same bytes, and it is not this call's).

        True means "this call may have created it": the caller's operation counts the object
        as its own (its ledger, :attr:`pxlite.writes.Operation.created`) and deletes it again
        if the operation fails. This default, for a backend that cannot refuse a write when the
        key exists, is one plain PUT, always counted as created: the bytes of a
        content-addressed key are the same whoever wrote them, so overwriting is harmless, and
        the undo is as safe as the HEAD-then-PUT it replaces. HEAD-then-PUT raced a concurrent
        writer of the same key just the same (both see "missing", both write, both count it as
        created), and in both cases the one delete gate
        (:func:`pxlite.writes.delete_unreferenced`, run by the undo under the write lock) keeps
        every file a committed row names and every file in a location this database does not
        own. What neither protects is a concurrent, not yet committed writer of the same key
        in the same database, whose commit could follow our undo: a window HEAD-then-PUT had
        too. :class:`ConditionalCreate` backends answer False when they can.
        """
        self.put_bytes(data, uri, content_type)
        return True

    def put_file_new(self, local_path: str | os.PathLike, uri: str,
                     content_type: str | None = None) -> bool:
        """:meth:`put_bytes_new` for a local file (content-addressed ``uri``), streamed like
        :meth:`put_file`. The default is one plain upload, counted as created."""
        self.put_file(local_path, uri, content_type)
        return True

    def check_writable(self, prefix_uri: str) -> None:
        """Check that objects can be written under ``prefix_uri``: write and delete a probe.

        Cloud backends first check that the bucket/container exists, for a clearer message.
        """
        probe = prefix_uri + f".pxlite-probe-{os.urandom(16).hex()}"
        try:
            self.put_bytes(b"pxlite write probe", probe, "text/plain")
            self.delete(probe)
        except StorageError as e:
            if e.retryable:
                raise
            raise ConfigError(f"cannot write to {prefix_uri}: {e}") from e


class ConditionalCreate(StorageBackend):
    """A cloud backend whose service can refuse a write when the key exists (S3's
    ``If-None-Match: *``, GCS's ``ifGenerationMatch=0``, Azure's ``If-None-Match: *``), so that
    storing a content-addressed output costs one request instead of a HEAD and a PUT.

    The condition is relied on only once it is verified for the (endpoint, bucket), since
    S3-compatible services, gateways and emulators differ. One that ignores it (the GCS
    emulator overwrites) is caught by the second probe write, which must be refused; one that
    refuses without writing (a gateway answering 412 to any conditional PUT) would be
    dangerous, since pxlite would then commit rows naming objects that were never stored. The
    first probe write must succeed, which catches that. Verifying means those two conditional
    creates of a fresh probe key, then deleting it; the answer is kept for the process
    (:func:`condition_verified`). Unverified or not honoured, writes are plain PUTs counted as
    created (see :meth:`StorageBackend.put_bytes_new`), never HEAD-then-PUT.
    """

    @abstractmethod
    def create_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        """One conditional create: store ``data`` at ``uri`` unless an object is there. True if
        it was written (or may have been: see :func:`refused_means_created`), False if the
        service refused because the key exists. Other failures raise StorageError as usual."""

    @abstractmethod
    def create_file(self, local_path: str | os.PathLike, uri: str,
                    content_type: str | None = None) -> bool:
        """:meth:`create_bytes` for a local file, streamed (the condition on the request that
        makes the object visible: the single PUT, or the commit of a multipart upload)."""

    @abstractmethod
    def condition_scope(self, uri: str) -> Hashable:
        """What one verification covers: the service endpoint and the bucket/container."""

    def put_bytes_new(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        if self.condition_honoured(uri):
            return self.create_bytes(data, uri, content_type)
        return super().put_bytes_new(data, uri, content_type)

    def put_file_new(self, local_path: str | os.PathLike, uri: str,
                     content_type: str | None = None) -> bool:
        if self.condition_honoured(uri):
            return self.create_file(local_path, uri, content_type)
        return super().put_file_new(local_path, uri, content_type)

    def condition_honoured(self, uri: str) -> bool:
        """Whether the service refuses a conditional create of an existing key, for ``uri``'s
        endpoint and bucket: the remembered answer, else verified now with a probe beside
        ``uri`` (:meth:`verify_condition`). One thread probes; the others wait for it."""
        known = _CONDITION_HONOURED.get(self._scope(uri))
        if known is None:
            self._verify_once(uri.rsplit("/", 1)[0] + "/", uri)
            known = _CONDITION_HONOURED[self._scope(uri)]
        return known

    def condition_verdict(self, uri: str) -> tuple[Hashable, bool] | None:
        return self._scope(uri), self.condition_honoured(uri)

    def _scope(self, uri: str) -> Hashable:
        return (type(self).__name__, self.condition_scope(uri))  # uri may be a prefix

    def _verify_once(self, prefix_uri: str, uri: str, *, strict: bool = False) -> bool | None:
        """Verify and remember the condition for ``uri``'s scope unless known by now; the
        result of :meth:`verify_condition` when this call probed, else None."""
        with _CONDITION_LOCK:
            if _CONDITION_HONOURED.get(self._scope(uri)) is not None:
                return None
            result = self.verify_condition(prefix_uri, strict=strict)
            _CONDITION_HONOURED[self._scope(uri)] = bool(result)
            return result

    def verify_condition(self, prefix_uri: str, *, strict: bool = False) -> bool | None:
        """Create a fresh probe object under ``prefix_uri`` conditionally twice and delete it:
        True when the first write succeeded and the second was refused, False when both
        succeeded, None when a conditional create failed.

        A failed conditional create (a non-retryable error: the service rejects the condition,
        e.g. 501 Not Implemented, or the credentials may not write) counts as "not honoured":
        writes there are plain PUTs, whose own errors then speak. A retryable error is raised
        (nothing is remembered; the next write asks again). A probe that cannot be deleted is
        left behind (a few bytes, outside pxlite's key shape), unless ``strict``: then that
        error is raised (the write check must also prove that pxlite can delete).
        """
        probe = prefix_uri + f".pxlite-probe-{os.urandom(16).hex()}"
        body = b"pxlite conditional-create probe"
        try:
            first = self.create_bytes(body, probe, "text/plain")
            second = self.create_bytes(body, probe, "text/plain")
        except StorageError as e:
            with contextlib.suppress(PxliteError):
                self.delete(probe)
            if e.retryable:
                raise
            return None
        if strict:
            self.delete(probe)
        else:
            with contextlib.suppress(PxliteError):
                self.delete(probe)
        return first and not second

    def check_writable(self, prefix_uri: str) -> None:
        """The write probe, and (once per endpoint and bucket) the conditional-create check,
        which, when it runs and succeeds, is the write probe: it wrote and deleted an object."""
        try:
            verified = self._verify_once(prefix_uri, prefix_uri, strict=True)
        except StorageError as e:
            if e.retryable:
                raise
            raise ConfigError(f"cannot write to {prefix_uri}: {e}") from e
        if verified is None:  # checked before, or the conditional create failed: plain probe
            super().check_writable(prefix_uri)


#: (backend class, condition_scope) -> whether the service honours conditional creates.
_CONDITION_HONOURED: dict[Hashable, bool] = {}
_CONDITION_LOCK = threading.Lock()
#: Per thread: how many times a request was retried (see :func:`note_retry`).
_RETRIES = threading.local()


def adopt_condition_verdicts(verdicts: Iterable[tuple[Hashable, bool]]) -> None:
    """Remember verdicts another process verified (:meth:`StorageBackend.condition_verdict`),
    unless this one knows better. A scope names the endpoint and the bucket, so a worker
    talking to another endpoint (its own configuration) still verifies its own. Workers then
    write without a probe of their own, which a worker killed mid-probe would leave behind."""
    with _CONDITION_LOCK:
        for scope, honoured in verdicts:
            _CONDITION_HONOURED.setdefault(scope, bool(honoured))


def condition_verified(backend_class: str, scope: Hashable) -> bool | None:
    """The remembered verification of :class:`ConditionalCreate` for a backend class name and
    scope (None: not verified in this process yet)."""
    return _CONDITION_HONOURED.get((backend_class, scope))


def note_retry() -> None:
    """Called by every backend's retry logic before it sends a request again (in the thread
    that sends it), so that :func:`refused_means_created` can tell a refusal of a retry."""
    _RETRIES.count = getattr(_RETRIES, "count", 0) + 1


def retries_noted() -> int:
    """How many retries this thread has noted so far (compare before and after a call)."""
    return int(getattr(_RETRIES, "count", 0))


def refused_means_created(retries_before: int) -> bool:
    """What a conditional create refused with "the key exists" reports: False (not ours),
    unless the request was retried since ``retries_before`` (:func:`retries_noted`).

    A retried request whose first attempt timed out or lost its connection may have landed:
    the refusal is then possibly our own first attempt, and the object must count as created
    by this operation, or an abort would leave it as an orphan. True is the safe side: if the
    object was in fact someone else's, the undo passes the delete gate, which keeps whatever a
    committed row names or lies outside this database's own locations; an uncommitted
    concurrent writer of the same key is the same race a plain PUT has.
    """
    return retries_noted() > retries_before


# ---------------------------------------------------------------------------------------------
# Shared helpers


def is_loopback_url(url: str) -> bool:
    """Does ``url`` name a server on this machine (localhost, 127.x, ::1)?"""
    import ipaddress
    import urllib.parse

    host = (urllib.parse.urlsplit(url if "://" in url else "http://" + url).hostname or "")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: not known to be this machine
        return False


def check_segments(path: str, uri: str, *, what: str, allow_empty: bool) -> None:
    """Reject ``.``/``..``/empty segments, a leading ``/``, and characters that break URLs."""
    if not path:
        if allow_empty:
            return
        raise ConfigError(f"{uri!r}: the {what} is empty")
    if path.startswith("/"):
        raise ConfigError(f"{uri!r}: the {what} {path!r} must not start with '/'")
    for seg in path.rstrip("/").split("/"):
        if seg in ("", ".", ".."):
            raise ConfigError(f"{uri!r}: the {what} {path!r} has an empty, '.' or '..' segment; "
                              "write the path without '//', './' or '../'")
    bad = sorted({c for c in path if ord(c) < 32 or c in "\\\x7f"})
    if bad:
        raise ConfigError(f"{uri!r}: the {what} contains the forbidden character(s) {bad!r}")


def folder_prefix(text: str, base: str, container: str, path: str, *, what: str, example: str,
                  pattern: re.Pattern[str], rules: str, query_hint: str = "") -> str:
    """The canonical prefix ``base + container/path/`` of a bucket (or container) URI ``text``.

    Checks that the ``what`` ("bucket", "container") is named (else the message shows
    ``example``) and matches ``pattern`` (described by ``rules``), and that the prefix has no
    ``?``/``#`` (``query_hint`` says where such a part belongs instead) and only clean segments
    (:func:`check_segments`). Shared by the S3 family, GCS and Azure grammars.
    """
    if not container:
        raise ConfigError(f"{text!r}: the {what} name is missing; write {example}")
    if not pattern.match(container) or ".." in container:
        raise ConfigError(f"{text!r}: {container!r} is not a valid {what} name; {rules}")
    if "?" in path or "#" in path:
        raise ConfigError(f"{text!r}: a destination prefix may not contain '?' or '#'{query_hint}")
    check_segments(path, text, what="prefix", allow_empty=True)
    key = path if not path or path.endswith("/") else path + "/"
    return f"{base}{container}/{key}"


def remember_secrets(settings: Settings) -> None:
    """Tell :mod:`pxlite.redact` the secret values of ``settings`` (keys, tokens, SAS, the
    user-info and token parameters of endpoint URLs), so they are masked wherever they appear."""
    remember(secrets_of(settings.providers, SECRET_KEYS, URL_KEYS))


def masked_error(mapped: PxliteError, cause: BaseException) -> PxliteError:
    """Prepare ``mapped`` (built from the SDK exception ``cause``) to be raised ``from cause``:
    credentials are masked in its message and in the text of every exception of ``cause``'s
    chain, since tracebacks print them all. When a cause's text cannot be cleaned, ``mapped``
    gets no cause (``__suppress_context__``), so the traceback never shows it."""
    mapped.args = tuple(redact(a) if isinstance(a, str) else a for a in mapped.args)
    if not scrub_exception(cause):
        mapped.__suppress_context__ = True
        mapped.__cause__ = None
    return mapped


def raise_masked(mapped: PxliteError, cause: BaseException) -> NoReturn:
    """Raise ``mapped`` from ``cause`` with credentials masked (:func:`masked_error`)."""
    masked_error(mapped, cause)
    if mapped.__suppress_context__:
        raise mapped from None
    raise mapped from cause


def check_expiry(uri: str, expires_s: int, limit_s: int | None, provider: str) -> int:
    """Validate a presigned URL lifetime; ConfigError when not positive or above the limit."""
    try:
        seconds = int(expires_s)
    except (TypeError, ValueError):
        raise ConfigError(
            f"presigned URL expiry must be whole seconds, got {expires_s!r}") from None
    if seconds <= 0:
        raise ConfigError(f"presigned URL expiry must be positive, got {expires_s!r} for {uri}")
    if limit_s is not None and seconds > limit_s:
        raise ConfigError(
            f"{provider} presigned URLs can be valid for at most {limit_s} s (7 days); "
            f"{seconds} s was asked for {uri}; use a shorter expiry")
    return seconds


def backoff_delay(retry: int, base_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff: a random wait up to ``base_s * 2 ** (retry - 1)``
    (capped at ``max_s``) before retry number ``retry`` (1 = the first retry)."""
    return random.uniform(0, min(max_s, base_s * 2 ** max(0, retry - 1)))


def note_retries_exhausted(error: PxliteError, retries: int) -> PxliteError:
    """Say in a retryable :class:`StorageError`'s message that the retries are used up.

    Called where the error leaves a retrying layer (an SDK configured with ``storage_retries``,
    or :func:`retry_call`), so the user knows trying again at once is pointless. Idempotent.
    """
    if isinstance(error, StorageError) and error.retryable and not getattr(
            error, "retries_exhausted", False):
        attempts = retries + 1
        error.args = (f"{error.args[0] if error.args else ''} (retries exhausted: gave up "
                      f"after {attempts} attempt{'s' if attempts != 1 else ''}, storage_retries "
                      f"= {retries}; try again later)", *error.args[1:])
        error.retries_exhausted = True  # type: ignore[attr-defined]
    return error


def retry_call(fn: Callable[[], T], *, retries: int, base_delay_s: float = 0.2,
               max_delay_s: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``, retrying a retryable :class:`StorageError` up to ``retries`` more times.

    Waits with exponential backoff and full jitter between tries (for services without their own
    retry logic; the cloud SDKs retry internally and are configured with the same count). The
    last retryable error says the retries are exhausted (:func:`note_retries_exhausted`).
    """
    attempt = 0
    while True:
        try:
            return fn()
        except StorageError as e:
            if not e.retryable:
                raise
            if attempt >= retries:
                # the same error, its message amended: a bare raise keeps its cause and traceback
                note_retries_exhausted(e, retries)
                raise
            attempt += 1
            sleep(backoff_delay(attempt, base_delay_s, max_delay_s))


def create_temp(folder: str | os.PathLike) -> tuple[int, str]:
    """A new, exclusive temp file in ``folder``: ``(fd, path)``, opened for writing.

    Created with mode 0o666 less the umask, like any file the user's programs make: mkstemp's
    0o600 would survive the rename into place and make media files private while the database
    beside them follows the umask. (The download cache is private through its 0o700 folder.)
    """
    while True:
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.urandom(16).hex()}")
        try:
            return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), tmp
        except FileExistsError:
            continue


def sync_data(fd: int) -> None:
    """Make a file's bytes (and the size needed to read them back) durable: ``fdatasync``.

    macOS has no ``fdatasync`` and its ``fsync`` leaves the bytes in the drive's cache, so there
    ``F_FULLFSYNC`` asks the drive to write them (the only way to survive a power cut there).
    """
    if _FULLFSYNC is not None:
        import fcntl

        try:
            fcntl.fcntl(fd, _FULLFSYNC)
            return
        except OSError:
            pass  # not supported by this filesystem (e.g. a network share): plain fsync
    _fdatasync(fd)


def sync_file(path: str | os.PathLike) -> None:
    """:func:`sync_data` for a closed file, by path (FileNotFoundError when it is gone)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        sync_data(fd)
    finally:
        os.close(fd)


_fdatasync = getattr(os, "fdatasync", os.fsync)
_FULLFSYNC: int | None = None
if sys.platform == "darwin":  # pragma: no cover - Linux CI
    import fcntl as _fcntl

    _FULLFSYNC = getattr(_fcntl, "F_FULLFSYNC", None)

class FolderSyncer:
    """Syncs, in the background, the folders into which this process put a file it wrote and
    synced (:func:`note_synced`), so the commit that names the files finds them durable.

    A folder is *clean* when a sync of it started after its last change (a change is counted
    after it happened, so that sync covers it). :func:`make_durable` skips clean folders and
    syncs every other one itself, so durability never depends on the background thread: it
    only takes the waiting off the commit, and it vouches only for the changes it was told of
    (make_durable trusts it for the files' own folders holding only this process's files). The
    thread starts with the first change."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._seq = 0
        self._dirty: dict[str, int] = {}   # folder -> sequence number of its last change
        self._clean: dict[str, int] = {}   # folder -> number when its last finished sync began
        self._queue: dict[str, None] = {}
        self._thread: threading.Thread | None = None

    def changed(self, folder: str) -> None:
        with self._cv:
            self._seq += 1
            self._dirty[folder] = self._seq
            self._queue[folder] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pxlite-folder-sync",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()

    def clean(self, folder: str) -> bool:
        """Was ``folder`` synced after this process last changed it?"""
        with self._cv:
            done = self._clean.get(folder)
            return done is not None and done >= self._dirty.get(folder, 0)

    def synced(self, folder: str, began: int) -> None:
        """``folder`` was synced by a sync that began at sequence number ``began``."""
        with self._cv:
            if began > self._clean.get(folder, -1):
                self._clean[folder] = began
            if len(self._clean) > 100_000:  # bounded: forgetting only costs a sync
                self._clean.clear()
                self._dirty.clear()

    def began(self) -> int:
        with self._cv:
            return self._seq

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every folder changed so far was synced (tests); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cv:
                if not self._queue and all(self._clean.get(f, -1) >= n
                                           for f, n in self._dirty.items()):
                    return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                folder = next(iter(self._queue))
                del self._queue[folder]
                began = self._seq
            try:
                _fsync_folder(folder)
            except (FileNotFoundError, NotADirectoryError):
                self._gone(folder)  # nothing left to make durable (make_durable will say so)
            except OSError:
                pass  # left unclean: make_durable syncs it, and reports the error
            else:
                self.synced(folder, began)

    def _gone(self, folder: str) -> None:
        with self._cv:
            self._dirty.pop(folder, None)
            self._clean.pop(folder, None)


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: This process's folder syncer (see FolderSyncer).
FOLDERS = FolderSyncer()




#: Paths whose bytes this process synced when it wrote them (before linking them into place)
#: and no durability pass has consumed yet: ``pxlite.storage.local.make_durable`` then only
#: checks they exist instead of syncing them again. Losing an entry is safe (the file is synced
#: once more), so the set is simply emptied when an aborted operation let it grow too big.
_SYNCED: set[str] = set()
_SYNCED_MAX = 20_000


def note_synced(path: str | os.PathLike) -> None:
    """Record that ``path``'s bytes were synced before it got its name (see :func:`take_synced`),
    which it has now: its folder is synced in the background (:data:`FOLDERS`)."""
    if len(_SYNCED) >= _SYNCED_MAX:
        _SYNCED.clear()
    key = os.fspath(path)
    _SYNCED.add(key)
    FOLDERS.changed(os.path.dirname(key))


def peek_synced(path: str | os.PathLike) -> bool:
    """Has :func:`note_synced` recorded ``path`` (without taking the record)?"""
    return os.fspath(path) in _SYNCED


def take_synced(path: str | os.PathLike) -> bool:
    """True (once) if :func:`note_synced` recorded ``path`` since the last call for it."""
    key = os.fspath(path)
    try:
        _SYNCED.remove(key)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def atomic_target(local_path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``local_path``; on success move it into place with os.replace.

    The parent folder is created. On any error the temp file is removed, so a failed download
    never leaves a partial file under the final name. ``durable``: the temp file's bytes are
    synced before the rename, so the name never points at bytes a power cut can lose (the
    folder entry is synced later, once per batch, by the commit that names the file).
    """
    target = Path(local_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            sync_file(tmp)
        os.replace(tmp, target)
        if durable:
            note_synced(target)
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

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        with memoryview(buffer) as view, view.cast("B") as out:  # any buffer, as bytes
            try:
                data = self._read(len(out))
            except PxliteError:
                raise
            except Exception as e:
                mapped = self._translate(e)
                if mapped is None:
                    raise
                raise_masked(mapped, e)
            n = len(data)
            out[:n] = data
            return n

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._close()
        super().close()


@contextlib.contextmanager
def mapped_errors(translate: Callable[[BaseException], PxliteError | None], *,
                  retries: int | None = None) -> Iterator[None]:
    """Run the block, turning exceptions ``translate`` knows into pxlite errors (chained).

    pxlite errors pass through; exceptions ``translate`` returns None for (programming errors)
    are re-raised unchanged. ``retries``: the block ran under an SDK retrying that many times,
    so a retryable error escaping it has used them up (said in its message). Credentials are
    masked in the mapped error and its causes (:func:`masked_error`); the redacting log filter
    is (re)installed on the SDK loggers first, as an SDK may have created loggers since.
    """
    install_log_filter()
    try:
        yield
    except PxliteError:
        raise
    except Exception as e:
        mapped = translate(e)
        if mapped is None:
            raise
        if retries is not None:
            note_retries_exhausted(mapped, retries)
        raise_masked(mapped, e)


def buffered(reader: MappedReader) -> BinaryIO:
    """Wrap a raw reader in a 1 MiB buffer (a ``BinaryIO``)."""
    return io.BufferedReader(reader, buffer_size=1024 * 1024)


def is_retryable_status(status: int | None) -> bool:
    """HTTP statuses worth retrying: request timeout, throttling and server errors (not 501 Not
    Implemented or 505 HTTP Version Not Supported: asking again gets the same answer)."""
    return status is not None and (status in (408, 429) or (status >= 500
                                                             and status not in (501, 505)))
