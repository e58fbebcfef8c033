"""The download cache: remote files kept as real local files, bounded in bytes, LRU eviction.

Remote media (``s3://``, ``gs://``, ``https://``...) is downloaded on demand into
``$PXLITE_HOME/file_cache`` so that Pillow, UDFs and users (``.localpath``) get an ordinary path,
and so that a second read of the same object costs no network. The cache is its own directory with
its own diskcache SQLite file; it never touches the catalog file.

How it is stored: :mod:`diskcache` (stdlib ``sqlite3``, safe across threads and processes) holds
one row per entry (key, size, access time, file name) and owns the files. A download is written by
the caller's ``fetch`` into a temp file inside the cache directory, then *renamed* into diskcache's
file layout by a small ``Disk`` subclass (no second copy of the bytes). diskcache's own culling is
switched off (``cull_limit=0``) because it evicts in batches of ten that may include the entry
just written and counts SQLite pages as payload; instead, after each insertion and in the same
transaction, we evict least-recently-accessed rows until the *file bytes* fit
``file_cache_size_g``. Reads count as uses: a hit is a read-only lookup (one indexed SELECT and
one ``stat``, no write lock) that records its time in memory; those times are written into the
row's ``access_time`` before this instance's next eviction and at least once a second, so LRU order
is exact within a process and at most about a second stale across processes.

Hit and miss counters are shared by every process using the cache: each instance counts in
memory and adds its counts (``UPDATE ... SET value = value + ?``, never a read-modify-write) to a
small table of ours, ``PxliteCounters``, in the same SQLite file, with that same periodic write,
in :meth:`FileCache.info` and once at process exit. Not diskcache's ``Settings`` table: diskcache
rewrites every row of it with the values it read when a ``Cache`` opens, which would lose
another process's increments made meanwhile. :meth:`FileCache.clear` sets them back to zero.

This is the only module that imports diskcache, and it does so lazily: ``import pxlite`` must stay
cheap.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import re
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diskcache
from diskcache.core import MODE_BINARY, UNKNOWN

from .config import private_home
from .errors import ConfigError, StorageError

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "CacheInfo",
    "CacheOperation",
    "CacheTooSmallWarning",
    "FileCache",
    "get_cache",
]

#: diskcache's database file name inside the cache directory (diskcache.core.DBNAME).
_DB_NAME = "cache.db"
#: Downloads in progress live here, on the same filesystem as the store, so the final rename is
#: atomic and a crash leaves only files that the next start-up sweeps away.
_TMP_DIR = ".tmp"
#: A temp file older than this belongs to a dead process (a live download touches its file).
_STALE_TMP_S = 24 * 3600.0
#: Seconds a writer waits for the SQLite lock before we report a (retryable) error.
_LOCK_TIMEOUT_S = 60.0
#: Pending LRU times of hits are written at least this often (or every _TOUCH_FLUSH_N hits).
_TOUCH_FLUSH_S = 1.0
_TOUCH_FLUSH_N = 512
_SUFFIX_RE = re.compile(r"\.[A-Za-z0-9]{1,8}$")
#: Our table of counters inside diskcache's database (see the module docstring).
_COUNTERS_DDL = (
    "CREATE TABLE IF NOT EXISTS PxliteCounters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
)
_COUNTER_NAMES = ("hits", "misses")


class CacheTooSmallWarning(UserWarning):
    """The download cache is smaller than one operation's working set, so files were fetched twice.

    A ``UserWarning`` (not ``ResourceWarning``) because Python hides ``ResourceWarning`` by default
    and this one asks the user to change a setting.
    """


@dataclass(frozen=True)
class CacheInfo:
    """A snapshot of the cache: entries and bytes on disk, and hits and misses, all counted over
    every process that used the cache since it was created or last cleared."""

    directory: Path
    count: int
    size_bytes: int
    limit_bytes: int
    hits: int
    misses: int


@dataclass
class CacheOperation:
    """What one logical operation (see :meth:`FileCache.operation`) used from the cache.

    ``sizes`` maps every entry fetched or hit during the operation to its size in bytes;
    ``refetched`` counts downloads of entries that the operation had already used, i.e. entries
    the cache had to evict while they were still needed.
    """

    sizes: dict[str, int] = field(default_factory=dict)
    refetched: int = 0
    # Entries the user removed on purpose (evict/clear) during the operation: fetching them again
    # is not the cache's fault and must not trigger the warning.
    removed: set[str] = field(default_factory=set)

    @property
    def bytes_used(self) -> int:
        """Total bytes of the distinct files the operation used: the cache size that suffices."""
        return sum(self.sizes.values())


@dataclass
class _Staged:
    """A finished download waiting to be moved into the store (see ``_FileDisk``)."""

    path: str
    size: int
    suffix: str
    stored_as: str | None = None


class _MissingFile(Exception):
    """A row whose file is gone (deleted behind diskcache's back).

    Deliberately not an ``OSError``: ``diskcache.Cache.get`` swallows those and returns the
    default, which would hide the stale row; we want to delete it and download again.
    """


class _FileDisk(diskcache.Disk):
    """The diskcache ``Disk`` that moves staged downloads in instead of copying them."""

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple:
        if not isinstance(value, _Staged):
            return super().store(value, read, key=key)
        # One level of 256 folders (diskcache's own names use two, 65,536 folders: nearly
        # every file of a batch would create a folder, which costs more than writing it); the
        # object's extension kept so a path handed to a user or a viewer says what it is.
        name = os.urandom(16).hex()
        filename = os.path.join(name[:2], name[2:] + value.suffix)
        full_path = os.path.join(self._directory, filename)
        os.makedirs(os.path.dirname(full_path), exist_ok=True)
        os.replace(value.path, full_path)
        value.stored_as = full_path
        return value.size, MODE_BINARY, filename, None

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if read and mode == MODE_BINARY:
            try:
                return open(os.path.join(self._directory, filename), "rb")
            except FileNotFoundError:
                raise _MissingFile(filename) from None
        return super().fetch(mode, filename, value, read)


def _key(url: str, version: str | None) -> str:
    # JSON keeps (url, version) unambiguous whatever characters either holds; a str key is stored
    # raw (unpickled) by diskcache, so the SQL below can match it directly.
    return json.dumps([url, version], separators=(",", ":"))


def _suffix(url: str) -> str:
    name = url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
    m = _SUFFIX_RE.search(name)
    return m.group(0).lower() if m else ".bin"


def _round_up_gb(nbytes: int) -> str:
    """``nbytes`` in GB rounded *up* to two significant digits, as a plain decimal string."""
    gb = max(nbytes, 1) / 1e9
    exp = math.floor(math.log10(gb)) - 1
    step = 10.0**exp
    # The epsilon stops float noise (0.0012 / 1e-4 == 11.999999999999998) from rounding up twice.
    value = math.ceil(gb / step - 1e-9) * step
    return f"{value:.{max(0, -exp)}f}"


def _unwritable(directory: Path, e: BaseException) -> ConfigError:
    reason = getattr(e, "strerror", None) or str(e)
    return ConfigError(
        f"the file cache directory {directory} cannot be created or written ({reason}); "
        f"set PXLITE_HOME to a writable folder (the cache lives in $PXLITE_HOME/file_cache) "
        f"or fix the permissions of {directory}"
    )


def _prepare_directory(directory: Path, tmp_dir: Path) -> None:
    """Create the cache directory, prove it writable, refuse a foreign database, sweep old temps."""
    try:
        # Private (0o700): cached files are copies of media the user may not share with others
        # on the machine. Folders that exist already are left as their owner set them.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp_dir.mkdir(mode=0o700, exist_ok=True)
        probe = tmp_dir / f"probe-{os.getpid()}-{os.urandom(6).hex()}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise _unwritable(directory, e) from e
    db = directory / _DB_NAME
    try:
        with open(db, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        header = b""
    except OSError as e:
        raise _unwritable(directory, e) from e
    # diskcache would happily create its tables inside any SQLite file named cache.db. A pxlite
    # catalog sets application_id (header bytes 68..71); diskcache never does. Checking the raw
    # header means we refuse without ever opening someone else's database.
    if header and (
        not header.startswith(b"SQLite format 3\x00")
        or (len(header) >= 72 and header[68:72] != b"\x00\x00\x00\x00")
    ):
        raise ConfigError(
            f"{db} is not a pxlite download cache (it is another file or SQLite database, maybe a "
            f"pxlite catalog); the cache needs a directory of its own: set PXLITE_HOME elsewhere "
            f"or move that file"
        )
    cutoff = time.time() - _STALE_TMP_S
    with contextlib.suppress(OSError), os.scandir(tmp_dir) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)


class FileCache:
    """A bounded, LRU, thread- and process-safe cache of downloaded files in one directory.

    ``size_limit_bytes`` bounds the bytes of the stored files (SQLite bookkeeping is not counted).
    Several instances, threads and processes may share one directory; each insertion evicts the
    least recently used entries until the files fit again. A returned path stays valid until an
    insertion (in any process) evicts it, or until :meth:`evict`/:meth:`clear`; a single file
    larger than the whole bound is kept until the next insertion so its path can be used.
    Raises :class:`~pxlite.errors.ConfigError` when the directory cannot be created or written.
    """

    def __init__(self, directory: Path, size_limit_bytes: int) -> None:
        """Open (creating if needed) the cache in ``directory`` bounded to ``size_limit_bytes``."""
        if int(size_limit_bytes) <= 0:
            raise ConfigError(
                f"the file cache bound must be positive, got {size_limit_bytes} bytes; "
                f"set file_cache_size_g to a positive number of GB"
            )
        self.directory = Path(directory).expanduser().absolute()
        self.limit_bytes = int(size_limit_bytes)
        self._tmp_dir = self.directory / _TMP_DIR
        _prepare_directory(self.directory, self._tmp_dir)

        self._Timeout = diskcache.Timeout
        try:
            self._dc = diskcache.Cache(
                str(self.directory),
                timeout=_LOCK_TIMEOUT_S,
                disk=_FileDisk,
                # Our eviction, not diskcache's (see the module docstring); size_limit is only
                # recorded so diskcache's own tools show the same bound.
                size_limit=self.limit_bytes,
                cull_limit=0,
                eviction_policy="least-recently-used",
                statistics=False,
                tag_index=False,
                disk_min_file_size=0,
            )
            self._dc._sql(_COUNTERS_DDL)
            self._dc._sql(
                "INSERT OR IGNORE INTO PxliteCounters VALUES (?, 0), (?, 0)", _COUNTER_NAMES
            )
        except (OSError, sqlite3.Error) as e:
            raise _unwritable(self.directory, e) from e
        self._lock = threading.Lock()
        # Every write transaction of this instance queues here first, so threads wait on a prompt
        # Python lock instead of SQLite's busy handler, which sleeps in growing steps (up to
        # 100 ms). Reentrant because _store looks up and evicts inside its transaction.
        self._write_lock = threading.RLock()
        # Hits are read-only: writing the LRU time on every hit serialised all threads on SQLite's
        # write lock (~5-10k hits/s in total, 30-50 ms p99 with 16 threads). A hit records its
        # time here instead; the times are written before every eviction of this instance (so
        # its LRU order is exact) and at least every _TOUCH_FLUSH_S (other processes see them
        # that late).
        self._touched: dict[str, float] = {}
        self._touched_flushed = time.monotonic()
        # Seqlock against our own deletions: odd while this instance is deleting rows/files. A
        # read-only hit that saw it odd or changed re-checks under the write lock, so a path we
        # return was not already being evicted by this instance.
        self._seq = 0
        self._key_locks: dict[str, list[Any]] = {}
        # Hits and misses of this instance not yet added to PxliteCounters.
        self._hits = 0
        self._misses = 0
        _live.add(self)  # so the counts are saved at process exit
        self._op: CacheOperation | None = None
        self._op_depth = 0

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r}, size_limit_bytes={self.limit_bytes})"

    # ---- public API -------------------------------------------------------------------------

    def get_path(
        self, url: str, fetch: Callable[[Path], str | None], *, version: str | None = None
    ) -> Path:
        """A local path holding the bytes of ``url``, downloading them with ``fetch`` on a miss.

        A hit calls nothing and counts as a use for LRU. On a miss, ``fetch(tmp_path)`` must write
        the object to ``tmp_path`` (inside the cache directory, not existing yet) and return its
        version (etag, generation) or None; the file is then moved into the cache. The key is
        ``(url, version)``, so a new version is a new entry. Concurrent calls for one key in this
        process fetch once and share the result (another process may fetch it too; the first to
        store wins). If ``fetch`` raises, its temp file is removed and the exception propagates
        unchanged; nothing is stored.
        """
        key = _key(url, version)
        found = self._lookup_fast(key)
        if found is None:
            with self._key_lock(key):
                found = self._lookup_fast(key)  # another thread may have fetched it meanwhile
                if found is None:
                    return self._fetch_and_store(key, url, fetch)
        path, size = found
        with self._lock:
            self._hits += 1
            if self._op is not None:
                self._op.sizes[key] = size
        return path

    def put_many(self, items: list[tuple[str, bytes]]) -> int:
        """Store files whose bytes are at hand (outputs just uploaded; content-addressed URLs,
        so no version), all in ONE transaction with one eviction pass: a computed column to
        cloud storage fills the cache once per batch instead of once per file. URLs already
        cached are left as they are; returns how many were stored. Like :meth:`get_path`'s
        misses, each stored file counts as a miss."""
        staged: list[tuple[str, _Staged]] = []
        try:
            for url, data in items:
                key = _key(url, None)
                if self._lookup_fast(key) is not None:
                    continue
                tmp = self._tmp_dir / f"{os.getpid()}-{os.urandom(8).hex()}.part"
                tmp.write_bytes(data)
                staged.append((key, _Staged(str(tmp), len(data), _suffix(url))))
            if not staged:
                return 0
            stored = 0
            with self._deleting(), self._errors(), self._dc._transact() as (sql, cleanup):
                for key, st in staged:
                    if self._lookup(key) is not None:  # another process stored it meanwhile
                        continue
                    self._dc.add(key, st, read=True)
                    stored += 1
                self._flush_touches(sql)
                self._evict_over_limit(sql, cleanup, keep=staged[-1][0])
        except BaseException:
            for _, st in staged:  # rolled back: a file moved into the store has no row
                if st.stored_as is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(st.stored_as)
            raise
        finally:
            for _, st in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(st.path)
        with self._lock:
            self._misses += stored
            op = self._op
            if op is not None:
                for key, st in staged:
                    op.removed.discard(key)
                    op.sizes[key] = st.size
        return stored

    def contains(self, url: str, *, version: str | None = None) -> bool:
        """Whether ``(url, version)`` is cached with its file present; does not count as a use."""
        row = self._sql(
            "SELECT filename FROM Cache WHERE key = ? AND raw = 1", (_key(url, version),)
        ).fetchone()
        return row is not None and os.path.isfile(os.path.join(self.directory, row[0]))

    def info(self) -> CacheInfo:
        """Entries and file bytes in the cache directory now, and the hits and misses of every
        process since the cache was created or cleared (this instance's counts are saved first).
        """
        # Under the write lock no flush of this instance moves counts from memory to the table
        # between the two reads below, so nothing is counted twice or missed.
        with self._write_lock:
            with contextlib.suppress(StorageError):  # locked by another process: add them below
                self._flush_touches_now()
            meta = dict(
                self._sql("SELECT key, value FROM Settings WHERE key IN ('count', 'size')")
            )
            counts = dict(self._sql("SELECT name, value FROM PxliteCounters"))
            with self._lock:
                hits, misses = self._hits, self._misses
        return CacheInfo(
            directory=self.directory,
            count=int(meta.get("count", 0)),
            size_bytes=int(meta.get("size", 0)),
            limit_bytes=self.limit_bytes,
            hits=int(counts.get("hits", 0)) + hits,
            misses=int(counts.get("misses", 0)) + misses,
        )

    def clear(self) -> int:
        """Remove every entry and its file (downloads in flight stay) and set the hit and miss
        counters (of all processes) back to zero; return the number of entries removed."""
        with self._lock:
            if self._op is not None:
                self._op.removed.update(self._op.sizes)
        with self._deleting(), self._errors():
            removed = int(self._dc.clear(retry=True))
            with self._dc._transact(retry=True) as (sql, _):
                sql("UPDATE PxliteCounters SET value = 0")
                with self._lock:
                    self._hits = self._misses = 0
            return removed

    def stored_version(self, url: str, *, version: str | None = None) -> str | None:
        """The object version (etag/generation) the cached copy of ``url`` was downloaded at,
        as returned by its fetch; None when not cached or not known."""
        with self._write_lock, self._errors():
            try:
                handle, tag = self._dc.get(_key(url, version), default=(None, None), read=True,
                                           tag=True)
            except _MissingFile:
                return None
        if handle is not None:
            handle.close()
        return tag

    def evict(self, url: str, *, version: str | None = None) -> bool:
        """Remove the entry ``(url, version)`` and its file; return whether it was there."""
        key = _key(url, version)
        with self._lock:
            if self._op is not None:
                self._op.removed.add(key)
        with self._deleting(), self._errors():
            return bool(self._dc.delete(key, retry=True))

    @contextlib.contextmanager
    def operation(self) -> Iterator[CacheOperation]:
        """Mark one logical operation (e.g. computing a column) and warn if the cache was too small.

        While it is open, every entry fetched or hit through this instance is recorded, from any
        thread (worker pools do not inherit thread-locals). Downloading an entry the operation
        already used means the cache evicted it while it was still needed; at the end of the
        operation one :class:`CacheTooSmallWarning` names ``file_cache_size_g`` and the size that
        would have sufficed (the operation's total bytes). Nested or overlapping operations on one
        instance merge into the outermost one, which warns once.
        """
        with self._lock:
            if self._op_depth == 0:
                self._op = CacheOperation()
            self._op_depth += 1
            op = self._op
        assert op is not None
        try:
            yield op
        finally:
            with self._lock:
                self._op_depth -= 1
                last = self._op_depth == 0
                if last:
                    self._op = None
            if last and op.refetched:
                needed = op.bytes_used
                warnings.warn(
                    f"the download cache is smaller than this operation's working set: "
                    f"{op.refetched} file(s) were evicted while still needed and downloaded "
                    f"again. The operation used {needed:,} bytes; file_cache_size_g is "
                    f"{self.limit_bytes / 1e9:g} GB; set file_cache_size_g to at least "
                    f"{_round_up_gb(needed)} (pxl.configure(file_cache_size_g=...), "
                    f"PXLITE_FILE_CACHE_SIZE_G or config.toml)",
                    CacheTooSmallWarning,
                    stacklevel=3,  # generator -> contextlib.__exit__ -> the caller's `with`
                )

    def close(self) -> None:
        """Write pending LRU times and close this thread's SQLite connection.

        Connections of other threads close when those threads end. The instance stays usable
        (a later call reopens a connection).
        """
        self._flush_touches_now()
        self._dc.close()

    # ---- internals ----------------------------------------------------------------------------

    def _sql(self, query: str, args: tuple = ()) -> Any:
        # diskcache's per-thread connection. Reaching past its public API (here and in _store) is
        # what lets eviction count file bytes only and never evict the entry just written; the
        # Cache/Settings schema has been stable across diskcache 4.x and 5.x.
        with self._errors():
            return self._dc._sql(query, args)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Map diskcache/SQLite failures to pxlite errors (fetch errors never pass through here)."""
        try:
            yield
        except self._Timeout as e:
            raise StorageError(
                f"the file cache {self.directory} stayed locked by another thread or process for "
                f"{_LOCK_TIMEOUT_S:.0f} s; try again",
                retryable=True,
            ) from e
        except sqlite3.OperationalError as e:
            raise _unwritable(self.directory, e) from e

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        # One lock per key being fetched, dropped when nobody holds or waits for it, so the map
        # stays as small as the number of downloads in flight.
        with self._lock:
            entry = self._key_locks.get(key)
            if entry is None:
                entry = self._key_locks[key] = [threading.Lock(), 0]
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._key_locks[key]

    @contextlib.contextmanager
    def _deleting(self) -> Iterator[None]:
        """Hold the write lock with the seqlock odd while this instance deletes rows or files."""
        with self._write_lock:
            self._seq += 1
            try:
                yield
            finally:
                self._seq += 1

    def _lookup_fast(self, key: str) -> tuple[Path, int] | None:
        """``(path, size)`` of a cached entry without a write transaction; None on a miss.

        The row is read from a WAL snapshot and the file checked with one ``stat``; the use is
        recorded in memory for the next flush. Anything doubtful (a deletion by this instance
        running or done meanwhile, a row whose file is missing) is decided by :meth:`_lookup`.
        """
        seq = self._seq
        if seq & 1:
            return self._lookup(key)
        row = self._sql(
            "SELECT filename FROM Cache WHERE key = ? AND raw = 1", (key,)
        ).fetchone()
        if row is None:
            return None
        path = os.path.join(self.directory, row[0])
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return self._lookup(key)
        if self._seq != seq:
            return self._lookup(key)
        now = time.monotonic()
        with self._lock:
            self._touched[key] = time.time()
            due = (
                len(self._touched) >= _TOUCH_FLUSH_N
                or now - self._touched_flushed >= _TOUCH_FLUSH_S
            )
        if due and self._write_lock.acquire(blocking=False):
            # Best effort and never blocking a hit behind another writer of this instance.
            try:
                self._flush_touches_now()
            except (StorageError, ConfigError):
                pass  # LRU hints only; the next flush carries the newer times
            finally:
                self._write_lock.release()
        return Path(path), size

    def _flush_touches(self, sql: Any) -> None:
        """Write pending hit times into diskcache's access_time and add this instance's unsaved
        hit/miss counts to the shared counters, in the caller's transaction (under the write
        lock)."""
        with self._lock:
            touched, self._touched = self._touched, {}
            self._touched_flushed = time.monotonic()
            hits, misses = self._hits, self._misses
            self._hits = self._misses = 0
        for name, n in (("hits", hits), ("misses", misses)):
            if n:
                # An increment, so concurrent processes never overwrite each other's counts.
                sql("UPDATE PxliteCounters SET value = value + ? WHERE name = ?", (n, name))
        for key, when in touched.items():
            # MAX: another process may have recorded a later use of the same entry.
            sql(
                "UPDATE Cache SET access_time = MAX(access_time, ?) WHERE key = ? AND raw = 1",
                (when, key),
            )

    def _flush_touches_now(self) -> None:
        if not (self._touched or self._hits or self._misses):
            return
        with self._write_lock, self._errors(), self._dc._transact() as (sql, _):
            self._flush_touches(sql)

    def _lookup(self, key: str) -> tuple[Path, int] | None:
        """``(path, size)`` of a cached entry, marking it used, atomically; None on a miss.

        The locked path: diskcache's own ``get`` reads the row, opens the file and writes the LRU
        time in one transaction; a row whose file is gone is deleted (counts as a miss).
        """
        with self._write_lock, self._errors():
            try:
                handle = self._dc.get(key, default=None, read=True)
            except _MissingFile:
                self._drop_stale(key)
                return None
        if handle is None:
            return None
        with handle:
            return Path(handle.name), os.fstat(handle.fileno()).st_size

    def _drop_stale(self, key: str) -> None:
        # Re-check inside one transaction so we delete the row only if it is still the stale one
        # (diskcache's add never replaces a live row, so nobody can have refreshed it meanwhile).
        with self._deleting(), self._errors(), self._dc.transact():
            try:
                handle = self._dc.get(key, default=None, read=True)
            except _MissingFile:
                self._dc.delete(key)
            else:
                if handle is not None:
                    handle.close()

    def _fetch_and_store(self, key: str, url: str, fetch: Callable[[Path], str | None]) -> Path:
        with self._lock:
            self._misses += 1
        tmp = self._tmp_dir / f"{os.getpid()}-{os.urandom(8).hex()}.part"
        try:
            fetched_version = fetch(tmp)
            try:
                size = os.stat(tmp).st_size
            except FileNotFoundError:
                raise StorageError(
                    f"downloading {url} into the cache produced no file (the fetch function "
                    f"returned without writing {tmp})",
                    uri=url,
                ) from None
            path, size = self._store(key, url, tmp, size, fetched_version)
        finally:
            # After a successful store the temp file was moved away; otherwise it is debris.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        with self._lock:
            op = self._op
            if op is not None:
                if key in op.sizes and key not in op.removed:
                    op.refetched += 1
                op.removed.discard(key)
                op.sizes[key] = size
        return path

    def _store(
        self, key: str, url: str, tmp: Path, size: int, fetched_version: str | None
    ) -> tuple[Path, int]:
        """Move ``tmp`` into the cache under ``key`` and evict LRU entries, in one transaction."""
        staged = _Staged(str(tmp), size, _suffix(url))
        try:
            with self._deleting(), self._errors(), self._dc._transact() as (sql, cleanup):
                # Another process may have stored the same key while we downloaded: use its copy
                # (our temp file is removed by the caller) rather than replacing a file someone
                # may be reading.
                found = self._lookup(key)
                if found is not None:
                    return found
                # Nested in our transaction, so the add cannot lose a race and always inserts.
                self._dc.add(key, staged, read=True, tag=fetched_version)
                assert staged.stored_as is not None
                self._flush_touches(sql)  # so the eviction order sees every hit of this instance
                self._evict_over_limit(sql, cleanup, keep=key)
            return Path(staged.stored_as), size
        except BaseException:
            # The transaction rolled back: a file already moved into the store has no row.
            if staged.stored_as is not None:
                with contextlib.suppress(OSError):
                    os.unlink(staged.stored_as)
            raise

    def _evict_over_limit(self, sql: Any, cleanup: Callable[[str], None], *, keep: str) -> None:
        """Delete least-recently-used rows (never ``keep``) until the file bytes fit the bound."""
        ((total,),) = sql("SELECT value FROM Settings WHERE key = 'size'").fetchall()
        excess = int(total) - self.limit_bytes
        if excess <= 0:
            return
        victims: list[tuple[int, str]] = []
        cursor = sql(
            "SELECT rowid, size, filename FROM Cache WHERE NOT (key = ? AND raw = 1)"
            " ORDER BY access_time",
            (keep,),
        )
        try:
            for rowid, size, filename in cursor:
                victims.append((rowid, filename))
                excess -= size
                if excess <= 0:
                    break
        finally:
            cursor.close()
        for rowid, filename in victims:
            sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
            cleanup(filename)  # diskcache removes the file after the commit


#: Every open instance, so their unsaved hit/miss counts are written at exit.
_live: weakref.WeakSet[FileCache] = weakref.WeakSet()


@atexit.register
def _save_counts_at_exit() -> None:
    """Best effort: write each instance's unsaved counts (and hit times) once at exit."""
    for cache in list(_live):
        if not (cache._hits or cache._misses or cache._touched) or not cache.directory.is_dir():
            continue
        # A thread still running at exit (a daemon) may hold the lock: never hang the exit.
        if cache._write_lock.acquire(timeout=1.0):
            try:
                cache._flush_touches_now()
            except Exception:
                pass  # locked or removed cache: only these counts are lost
            finally:
                cache._write_lock.release()


_instances: dict[tuple[str, int], FileCache] = {}
_instances_lock = threading.Lock()


def get_cache(settings: Settings) -> FileCache:
    """The process-wide :class:`FileCache` for ``settings``' directory and bound, made lazily.

    One instance per ``(settings.cache_dir, file_cache_size_g)`` so hit/miss counters and
    operation tracking are shared by everything in the process that uses the same cache. Raises
    :class:`~pxlite.errors.ConfigError` when the directory is unusable.
    """
    directory = Path(settings.cache_dir).expanduser().absolute()
    if directory.parent == Path(settings.home).expanduser().absolute():
        private_home(settings.home)
    limit = int(float(settings["file_cache_size_g"]) * 1e9)
    ident = (str(directory), limit)
    with _instances_lock:
        cache = _instances.get(ident)
        if cache is None:
            cache = _instances[ident] = FileCache(directory, limit)
        return cache
