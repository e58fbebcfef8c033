"""The download cache (pxlite.cache): real files and a real diskcache directory, no mocks.

Faults are injected with fetch functions that raise or misbehave; concurrency with real threads
and a spawned process.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pxlite.cache import (
    CacheTooSmallWarning,
    FileCache,
    _round_up_gb,
    get_cache,
)
from pxlite.config import Settings
from pxlite.errors import ConfigError, StorageError

MB = 1_000_000
FILE = 200_000  # five of these fill a 1 MB cache exactly


class Fetcher:
    """A fetch function that writes deterministic bytes per URL and counts its calls."""

    def __init__(self, size: int = FILE, delay: float = 0.0, version: str | None = "etag-1"):
        self.size = size
        self.delay = delay
        self.version = version
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def payload(self, url: str) -> bytes:
        seed = url.encode()
        return (seed * (self.size // len(seed) + 1))[: self.size]

    def for_url(self, url: str):
        def fetch(tmp: Path) -> str | None:
            with self._lock:
                self.calls.append(url)
            assert not tmp.exists()
            if self.delay:
                time.sleep(self.delay)
            tmp.write_bytes(self.payload(url))
            return self.version

        return fetch


def no_fetch(tmp: Path) -> str | None:
    raise AssertionError("a cache hit must not fetch")


def stored_files(directory: Path) -> list[Path]:
    """Payload files in the cache directory (not diskcache's database, not temp files)."""
    return [
        p
        for p in directory.rglob("*")
        if p.is_file() and not p.name.startswith("cache.db") and ".tmp" not in p.parts
    ]


@pytest.fixture
def cache(tmp_path: Path):
    c = FileCache(tmp_path / "fc", MB)
    yield c
    c.close()


def test_miss_then_hit(cache: FileCache) -> None:
    f = Fetcher()
    url = "s3://bucket/images/cat.PNG"
    p1 = cache.get_path(url, f.for_url(url))
    p2 = cache.get_path(url, no_fetch)
    assert f.calls == [url]
    assert p1 == p2 and p1.read_bytes() == f.payload(url)
    assert p1.is_relative_to(cache.directory) and p1.suffix == ".png"
    assert cache.contains(url)
    info = cache.info()
    assert (info.count, info.size_bytes, info.hits, info.misses) == (1, FILE, 1, 1)
    assert info.limit_bytes == MB and info.directory == cache.directory
    assert not list((cache.directory / ".tmp").iterdir())


def test_put_many_stores_a_batch_in_one_transaction(cache: FileCache, monkeypatch) -> None:
    """Outputs whose bytes are at hand enter the cache together: one transaction, one eviction
    pass; a URL already cached is left as it is; the bound holds; nothing is left in .tmp."""
    transactions = []
    real = cache._dc._transact

    def counting(*a, **k):  # an outermost transaction begins when this thread has none open
        if cache._dc._txn_id != threading.get_ident():
            transactions.append(1)
        return real(*a, **k)

    cache.get_path("s3://b/old.jpg", Fetcher().for_url("s3://b/old.jpg"))
    monkeypatch.setattr(cache._dc, "_transact", counting)
    items = [(f"s3://b/out/{i}.jpg", bytes([i]) * FILE) for i in range(4)]
    items.append(("s3://b/old.jpg", b"other bytes"))  # already there: kept as it is
    assert cache.put_many(items) == 4
    assert len(transactions) == 1
    monkeypatch.undo()
    for url, data in items[:4]:
        assert cache.get_path(url, no_fetch).read_bytes() == data
    assert cache.get_path("s3://b/old.jpg", no_fetch).read_bytes() != b"other bytes"
    # Over the bound: the least recently used go (out/0-2, read before old.jpg was).
    more = [(f"s3://b/more/{i}.jpg", bytes([9]) * FILE) for i in range(3)]
    assert cache.put_many(more) == 3
    info = cache.info()
    assert info.size_bytes <= MB and info.count == 5
    assert [cache.contains(u) for u, _ in items] == [False, False, False, True, True]
    assert all(cache.contains(u) for u, _ in more)
    assert not list((cache.directory / ".tmp").iterdir())


def test_version_is_part_of_the_key(cache: FileCache) -> None:
    url = "gs://b/x.jpg"
    f1, f2 = Fetcher(size=1000), Fetcher(size=2000)
    p1 = cache.get_path(url, f1.for_url(url), version="1")
    assert cache.get_path(url, no_fetch, version="1") == p1
    assert not cache.contains(url, version="2") and not cache.contains(url)
    p2 = cache.get_path(url, f2.for_url(url), version="2")
    assert p1 != p2 and p2.stat().st_size == 2000 and p1.stat().st_size == 1000
    assert len(f1.calls) == len(f2.calls) == 1
    assert cache.contains(url, version="1") and cache.contains(url, version="2")


def test_threads_on_one_uncached_url_fetch_once(cache: FileCache) -> None:
    f = Fetcher(delay=0.2)
    url = "https://example.com/a.jpg"
    start = threading.Barrier(16)
    paths: list[Path] = []

    def worker() -> None:
        start.wait()
        paths.append(cache.get_path(url, f.for_url(url)))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert f.calls == [url]
    assert len(paths) == 16 and len(set(paths)) == 1 and paths[0].is_file()
    info = cache.info()
    assert (info.misses, info.hits) == (1, 15)


def test_different_urls_fetch_in_parallel(cache: FileCache) -> None:
    # Every fetch waits for all the others: this only completes if downloads of different keys
    # really overlap (no global lock around fetch).
    n = 8
    together = threading.Barrier(n, timeout=10)
    f = Fetcher(size=1000)

    def fetch_for(url: str):
        inner = f.for_url(url)

        def fetch(tmp: Path) -> str | None:
            together.wait()
            return inner(tmp)

        return fetch

    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        url = f"s3://b/{i}.png"
        try:
            results[url] = cache.get_path(url, fetch_for(url))
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results.values())) == n
    for url, p in results.items():
        assert p.read_bytes() == f.payload(url)
    assert cache.info().count == n


def test_eviction_keeps_the_bound_and_lru_order(cache: FileCache) -> None:
    f = Fetcher()
    urls = [f"s3://b/{c}.jpg" for c in "abcde"]
    paths = {u: cache.get_path(u, f.for_url(u)) for u in urls}
    assert cache.info().size_bytes == MB  # exactly at the bound: nothing evicted yet
    cache.get_path(urls[0], no_fetch)  # "a" becomes the most recently used
    cache.get_path("s3://b/f.jpg", f.for_url("s3://b/f.jpg"))
    # "b" was the least recently used, so it went; "a" survived because it was just read.
    assert cache.contains(urls[0]) and not cache.contains(urls[1])
    assert not paths[urls[1]].exists() and paths[urls[0]].exists()
    info = cache.info()
    assert info.count == 5 and info.size_bytes <= MB
    assert sum(p.stat().st_size for p in stored_files(cache.directory)) == info.size_bytes
    # A bigger file evicts as many entries as it needs, oldest first.
    cache.get_path("s3://b/big.jpg", Fetcher(size=450_000).for_url("s3://b/big.jpg"))
    # Needs 450 KB: c, d, e (the three oldest) go; a and f were used more recently.
    assert [u for u in urls if cache.contains(u)] == [urls[0]]
    assert cache.contains("s3://b/f.jpg") and cache.contains("s3://b/big.jpg")
    assert cache.info().size_bytes <= MB


def test_file_larger_than_the_cache_stays_until_the_next_insertion(cache: FileCache) -> None:
    f = Fetcher()
    cache.get_path("s3://b/small.jpg", f.for_url("s3://b/small.jpg"))
    huge = cache.get_path("s3://b/huge.tif", Fetcher(size=MB + 1).for_url("s3://b/huge.tif"))
    assert huge.stat().st_size == MB + 1  # the path we handed out is usable
    assert not cache.contains("s3://b/small.jpg")
    cache.get_path("s3://b/next.jpg", f.for_url("s3://b/next.jpg"))
    assert not huge.exists() and cache.info().size_bytes == FILE


def test_working_set_larger_than_cache_warns_once(cache: FileCache) -> None:
    f = Fetcher()
    urls = [f"s3://b/{i}.jpg" for i in range(8)]  # 1.6 MB through a 1 MB cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cache.operation() as op:
            for _ in range(2):  # the second pass needs files the first pass evicted
                for u in urls:
                    assert cache.get_path(u, f.for_url(u)).stat().st_size == FILE
    relevant = [w for w in caught if issubclass(w.category, CacheTooSmallWarning)]
    assert len(relevant) == 1
    msg = str(relevant[0].message)
    assert "file_cache_size_g" in msg and "0.0016" in msg
    assert relevant[0].filename == __file__  # points at the caller's `with`
    assert op.bytes_used == 8 * FILE and op.refetched == 8


def test_working_set_that_fits_does_not_warn(cache: FileCache) -> None:
    f = Fetcher()
    urls = [f"s3://b/{i}.jpg" for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cache.operation():
            for _ in range(3):
                for u in urls:
                    cache.get_path(u, f.for_url(u))
        # Thrashing outside an operation, and re-fetching what the user evicted on purpose
        # inside one, are not the working-set problem.
        for u in [f"s3://b/{i}.jpg" for i in range(10)] * 2:
            cache.get_path(u, f.for_url(u))
        with cache.operation():
            cache.get_path(urls[0], f.for_url(urls[0]))
            assert cache.evict(urls[0])
            cache.get_path(urls[0], f.for_url(urls[0]))
            cache.clear()
            cache.get_path(urls[0], f.for_url(urls[0]))


def test_nested_operations_warn_once(cache: FileCache) -> None:
    f = Fetcher()
    urls = [f"s3://b/{i}.jpg" for i in range(6)]
    with pytest.warns(CacheTooSmallWarning) as record, cache.operation(), cache.operation():
        for u in urls + urls:
            cache.get_path(u, f.for_url(u))
    assert len(record) == 1 and "0.0012" in str(record[0].message)


class Boom(Exception):
    pass


def test_failing_fetch_leaves_nothing_and_reraises(cache: FileCache) -> None:
    url = "s3://b/bad.jpg"
    err = Boom("connection reset")

    def fetch(tmp: Path) -> str | None:
        tmp.write_bytes(b"partial download")
        raise err

    with pytest.raises(Boom) as exc:
        cache.get_path(url, fetch)
    assert exc.value is err
    assert not cache.contains(url)
    assert cache.info().count == 0
    assert not list((cache.directory / ".tmp").iterdir())
    assert stored_files(cache.directory) == []
    f = Fetcher()
    assert cache.get_path(url, f.for_url(url)).read_bytes() == f.payload(url)  # a retry works


def test_fetch_that_writes_nothing_is_a_storage_error(cache: FileCache) -> None:
    with pytest.raises(StorageError, match="produced no file"):
        cache.get_path("s3://b/x.jpg", lambda tmp: None)
    assert cache.info().count == 0


def test_clear_evict_and_info(cache: FileCache) -> None:
    f = Fetcher(size=1000)
    paths = [cache.get_path(f"s3://b/{i}", f.for_url(f"s3://b/{i}")) for i in range(3)]
    assert paths[0].suffix == ".bin"
    info = cache.info()
    assert (info.count, info.size_bytes, info.misses, info.hits) == (3, 3000, 3, 0)
    assert cache.evict("s3://b/0") is True and cache.evict("s3://b/0") is False
    assert not paths[0].exists()
    assert cache.clear() == 2
    info = cache.info()
    assert (info.count, info.size_bytes) == (0, 0)
    assert stored_files(cache.directory) == []


def test_file_deleted_behind_the_caches_back_is_fetched_again(cache: FileCache) -> None:
    f = Fetcher()
    url = "s3://b/gone.jpg"
    cache.get_path(url, f.for_url(url)).unlink()
    assert not cache.contains(url)
    p = cache.get_path(url, f.for_url(url))
    assert len(f.calls) == 2 and p.read_bytes() == f.payload(url)
    assert cache.info().count == 1 and cache.info().size_bytes == FILE


def test_unwritable_directory_is_a_config_error(tmp_path: Path) -> None:
    # A path under a regular file fails for root too (chmod would not stop root).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    for bad in (blocker / "file_cache", blocker):
        with pytest.raises(ConfigError) as exc:
            FileCache(bad, MB)
        msg = str(exc.value)
        assert str(bad) in msg and "PXLITE_HOME" in msg and "permissions" in msg
    with pytest.raises(ConfigError):
        FileCache(tmp_path / "ok", 0)


def test_refuses_a_foreign_database_named_cache_db(tmp_path: Path) -> None:
    d = tmp_path / "fc"
    d.mkdir()
    con = sqlite3.connect(d / "cache.db")
    con.execute("PRAGMA application_id = 1886940276")  # what a pxlite catalog would carry
    con.execute("CREATE TABLE t (x)")
    con.close()
    before = (d / "cache.db").read_bytes()
    with pytest.raises(ConfigError, match="not a pxlite download cache"):
        FileCache(d, MB)
    assert (d / "cache.db").read_bytes() == before


def test_get_cache_is_one_instance_per_directory_and_bound(tmp_path: Path) -> None:
    def settings_for(gb: float) -> Settings:
        return Settings(values={"file_cache_size_g": gb}, providers={}, sources={}, home=tmp_path)

    a = get_cache(settings_for(0.001))
    assert a is get_cache(settings_for(0.001))
    assert a.directory == tmp_path / "file_cache" and a.limit_bytes == MB
    b = get_cache(settings_for(0.002))
    assert b is not a and b.limit_bytes == 2 * MB


def test_round_up_gb() -> None:
    assert _round_up_gb(1_600_000) == "0.0016"
    assert _round_up_gb(1_200_000) == "0.0012"
    assert _round_up_gb(1_234_000_000) == "1.3"
    assert _round_up_gb(12_000_000_000) == "12"
    assert _round_up_gb(12_300_000_000) == "13"


def _child(directory: str, seen_url: str, new_url: str) -> tuple[str, bytes]:
    c = FileCache(Path(directory), MB)
    path = c.get_path(seen_url, no_fetch)  # written by the parent: must be a hit
    c.get_path(new_url, Fetcher(size=1234).for_url(new_url))
    return str(path), path.read_bytes()


def test_second_process_sees_entries(cache: FileCache) -> None:
    f = Fetcher()
    url = "s3://b/shared.jpg"
    parent_path = cache.get_path(url, f.for_url(url))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        child_path, data = pool.apply(_child, (str(cache.directory), url, "s3://b/child.jpg"))
    assert Path(child_path) == parent_path and data == f.payload(url)
    assert cache.get_path("s3://b/child.jpg", no_fetch).stat().st_size == 1234


def test_import_does_not_load_diskcache() -> None:
    """pxlite.cache is the diskcache wrapper; ``import pxlite`` (and an all-local session)
    loads neither: they are imported where the first remote file is read."""
    code = ("import sys, pxlite; assert 'diskcache' not in sys.modules, 'eager import'; "
            "assert 'pxlite.cache' not in sys.modules, 'eager import'")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=25))
def test_lru_matches_a_model(accesses: list[int]) -> None:
    # Six URLs of 1000 bytes through a 3000-byte cache behave like an LRU of capacity 3.
    with tempfile.TemporaryDirectory() as d:
        c = FileCache(Path(d), 3000)
        f = Fetcher(size=1000)
        model: OrderedDict[int, None] = OrderedDict()
        try:
            for i in accesses:
                url = f"s3://b/{i}.jpg"
                before = len(f.calls)
                c.get_path(url, f.for_url(url))
                assert (len(f.calls) > before) == (i not in model)
                model[i] = None
                model.move_to_end(i)
                if len(model) > 3:
                    model.popitem(last=False)
                assert {j for j in range(6) if c.contains(f"s3://b/{j}.jpg")} == set(model)
                assert c.info().size_bytes <= 3000
        finally:
            c.close()


def test_hits_reach_other_instances_lru_order(tmp_path: Path) -> None:
    # Hits are written to disk lazily; close() (and the periodic flush) must make them visible
    # to another instance, standing in for another process, before it evicts.
    f = Fetcher()
    urls = [f"s3://b/{c}.jpg" for c in "abcde"]
    first = FileCache(tmp_path / "fc", MB)
    for u in urls:
        first.get_path(u, f.for_url(u))
    first.get_path(urls[0], no_fetch)
    first.close()
    second = FileCache(tmp_path / "fc", MB)
    second.get_path("s3://b/f.jpg", f.for_url("s3://b/f.jpg"))
    assert second.contains(urls[0]) and not second.contains(urls[1])
    second.close()


def test_hit_and_miss_counts_are_shared_and_hits_write_nothing(tmp_path: Path,
                                                               monkeypatch) -> None:
    """Counters live in the cache's database: each instance (standing in for a process) adds
    its counts with an increment, a hit writes nothing until the periodic flush, info() adds
    this instance's unsaved counts, and clear() sets the shared counters back to zero."""
    import pxlite.cache as cache_mod

    f = Fetcher()
    a, b = FileCache(tmp_path / "fc", MB), FileCache(tmp_path / "fc", MB)
    try:
        a.get_path("s3://b/x.jpg", f.for_url("s3://b/x.jpg"))  # a miss, saved with the store
        con = a._dc._con
        before = con.total_changes
        for _ in range(3):
            a.get_path("s3://b/x.jpg", no_fetch)
        assert con.total_changes == before  # hits are read-only
        b.get_path("s3://b/x.jpg", no_fetch)
        # b's hit is not saved yet: a sees its own counts (saved and unsaved) only.
        assert (a.info().hits, a.info().misses) == (3, 1)
        assert (b.info().hits, b.info().misses) == (4, 1)  # b's info() saved b's hit
        assert (a.info().hits, a.info().misses) == (4, 1)
        monkeypatch.setattr(cache_mod, "_TOUCH_FLUSH_S", 0.0)  # every hit is due for a flush
        b.get_path("s3://b/x.jpg", no_fetch)  # counted after its flush: still unsaved
        b.get_path("s3://b/x.jpg", no_fetch)  # this one's flush saves the previous hit
        assert a.info().hits == 5 and b.info().hits == 6
        assert a.clear() == 1
        assert (a.info().hits, a.info().misses) == (0, 0)
        assert (b.info().hits, b.info().misses) == (0, 0)
    finally:
        a.close()
        b.close()
