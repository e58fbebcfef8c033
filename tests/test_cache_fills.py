"""Outputs uploaded to cloud storage enter the download cache through one filler thread
(pxlite.media._fill_later): it gathers them into batches of FILL_BATCH, one cache transaction
each, and settle_cache_fills() (every write operation calls it before returning) wakes it at
once instead of letting it wait out its gathering time."""

from __future__ import annotations

import threading

import pytest

from pxlite import config, media
from pxlite.cache import FileCache


@pytest.fixture
def batches(monkeypatch):
    """The sizes of the batches the filler hands to the cache (which stores them as usual)."""
    sizes: list[int] = []
    real = FileCache.put_many

    def counting(self, items):
        sizes.append(len(items))
        return real(self, items)

    monkeypatch.setattr(FileCache, "put_many", counting)
    return sizes


def _outputs(n: int, tag: str) -> list[tuple[str, bytes]]:
    return [(f"s3://bucket/out/{tag}{i}.jpg", f"{tag}{i}".encode() * 100) for i in range(n)]


def test_the_filler_gathers_a_full_batch_into_one_transaction(batches, monkeypatch):
    monkeypatch.setattr(media, "FILL_BATCH", 4)
    monkeypatch.setattr(media, "FILL_GATHER_S", 60.0)  # only a full batch or a settle wakes it
    settings = config.resolve()
    first, second = _outputs(4, "a"), _outputs(3, "c")
    for uri, data in first:
        media._fill_later(uri, settings, data)
    stored = threading.Event()
    for _ in range(200):  # a full batch wakes the filler, no settle needed
        if batches:
            stored.set()
            break
        threading.Event().wait(0.1)
    assert stored.is_set() and batches == [4]
    for uri, data in second:
        media._fill_later(uri, settings, data)
    media.settle_cache_fills()
    assert batches == [4, 3]
    from pxlite.cache import get_cache
    cache = get_cache(settings)
    assert all(cache.contains(u) for u, _ in first + second)


def test_settling_wakes_the_filler_at_once(batches, monkeypatch):
    """Fewer outputs than a batch: the filler would wait its gathering time (a minute here);
    settle_cache_fills() wakes it, so it returns as soon as they are stored."""
    monkeypatch.setattr(media, "FILL_GATHER_S", 60.0)
    settings = config.resolve()
    for uri, data in _outputs(2, "b"):
        media._fill_later(uri, settings, data)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (media.settle_cache_fills(), done.set()))
    waiter.start()
    waiter.join(20)  # far below the gathering time: it was woken, not timed out
    assert done.is_set()
    assert batches == [2]
