"""writes.py: every write goes through one operation, and a new storage backend plugs in."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import storage, writes
from pxlite.errors import ConfigError, ObjectNotFoundError
from pxlite.storage.base import ObjectInfo, StorageBackend

STORE: dict[str, bytes] = {}
_LOCK = threading.Lock()


class MemoryBackend(StorageBackend):
    """A whole storage service in a dict: enough to be a destination (see the test below)."""

    def put_file(self, local_path, uri, content_type=None) -> None:
        with open(local_path, "rb") as f:
            self.put_bytes(f.read(), uri)

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        with _LOCK:
            STORE[uri] = bytes(data)

    def get_file(self, uri: str, local_path) -> None:
        with open(local_path, "wb") as f:
            f.write(self._get(uri))

    def open(self, uri: str) -> BinaryIO:
        return io.BytesIO(self._get(uri))

    def _get(self, uri: str) -> bytes:
        with _LOCK:
            if uri not in STORE:
                raise ObjectNotFoundError(f"no object {uri}", uri=uri)
            return STORE[uri]

    def stat(self, uri: str) -> ObjectInfo:
        return ObjectInfo(len(self._get(uri)), None)

    def delete(self, uri: str) -> None:
        with _LOCK:
            STORE.pop(uri, None)

    def list(self, prefix_uri: str) -> Iterator[str]:
        with _LOCK:
            return iter(sorted(u for u in STORE if u.startswith(prefix_uri)))

    def presign(self, uri: str, expires_s: int) -> str:
        raise ConfigError("mem:// has no presigned URLs")

    def fileurl(self, uri: str) -> str:
        return uri


def registered_mem(monkeypatch: pytest.MonkeyPatch, backend: str) -> Iterator[dict[str, bytes]]:
    """Register ``backend`` (``module:Class``) as ``mem://`` for one test, over an empty STORE."""
    monkeypatch.setattr(storage, "_registry", dict(storage._registry))  # undone after the test
    STORE.clear()
    storage.register_backend("mem", backend)
    yield STORE
    storage.clear_backends()


@pytest.fixture
def mem(monkeypatch):
    yield from registered_mem(monkeypatch, "test_writes:MemoryBackend")


def test_a_registered_backend_is_a_usable_destination(tmp_path, mem):
    db = pxl.connect(tmp_path / "m.pxl")
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8, 6), c), "k": i}
              for i, c in enumerate(["red", "green", "blue"])])
    st = t.add_computed_column(rot=t.image.rotate(90), destination="mem://bucket/out")
    assert st.num_errors == 0 and len(mem) == 3
    assert all(u.startswith("mem://bucket/out/") for u in mem)
    rows = t.select(t.k, t.rot, t.rot.fileurl).order_by(t.k).collect()
    assert rows[0]["rot"].size == (8, 6) and rows[0]["rot_fileurl"] in mem
    t.delete(where=t.k == 0)
    assert len(mem) == 2 and rows[0]["rot_fileurl"] not in mem
    assert pxl.check(db=db).ok
    with pytest.raises(ConfigError, match="bucket"):
        t.add_computed_column(x=t.image.rotate(1), destination="mem://")
    # the default grammar cleans a prefix as the built-in backends do
    for bad, why in [("mem://bucket/a/../b/", "'..' segment"), ("mem://bucket/a//b/", "'//'"),
                     ("mem://bucket/a\x01/", "forbidden character"), ("mem://bucket/a?x", "'?'")]:
        with pytest.raises(ConfigError, match=re.escape(why)):
            t.add_computed_column(x=t.image.rotate(1), destination=bad)
    assert t.columns() == ["image", "k", "rot"]


def test_registering_a_scheme_twice_needs_clobber(mem):
    storage.register_backend("mem", "test_writes:MemoryBackend")  # the same: a no-op
    with pytest.raises(ConfigError, match="clobber=True"):
        storage.register_backend("mem", "somewhere.else:Backend")
    with pytest.raises(ConfigError, match="clobber=True"):
        storage.register_backend("s3", "somewhere.else:Backend")
    storage.register_backend("mem", "somewhere.else:Backend", clobber=True)
    with pytest.raises(ConfigError, match="scheme"):
        storage.register_backend("Not A Scheme", "x:Y")


def test_every_write_goes_through_the_one_operation(tmp_path, monkeypatch):
    used: list[str] = []
    real = writes.Operation.committing

    def committing(self, recheck=None):
        used.append(self.meta.path)
        return real(self, recheck)

    monkeypatch.setattr(writes.Operation, "committing", committing)
    db = pxl.connect(tmp_path / "w.pxl")
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    calls = [
        lambda: t.insert(image=Image.new("RGB", (4, 4)), k=1),
        lambda: t.update({"k": t.k + 1}),
        lambda: t.add_column(note=pxl.String),
        lambda: t.rename_column("note", "remark"),
        lambda: t.drop_column("remark"),
        lambda: t.add_computed_column(rot=t.image.rotate(90)),
        lambda: t.recompute_columns("rot"),
        lambda: t.move_media("rot", str(tmp_path / "elsewhere")),
        lambda: t.delete(where=t.k > 5),
        lambda: db.drop_table("t"),
    ]
    for i, call in enumerate(calls):
        before = len(used)
        call()
        assert len(used) > before, f"call {i} did not use writes.Operation"


def test_undo_keeps_a_file_another_writer_named_meanwhile(tmp_path, monkeypatch):
    """An aborted insert undoes its files after its rollback, under the write lock again: a
    file another writer named in between (identical content) is kept."""
    p = tmp_path / "u.pxl"
    a, b = pxl.connect(p), pxl.connect(p)
    ta = a.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    tb = b.get_table("t")
    red = Image.new("RGB", (4, 4), "red")
    real = writes.Operation.undo

    def undo(self):
        tb.insert(image=red, n=2)  # the other writer, between the rollback and the undo
        real(self)

    monkeypatch.setattr(writes.Operation, "undo", undo)
    with pytest.raises(pxl.errors.ComputeError):
        ta.insert([{"image": red, "n": 1}, {"n": "not a number"}])
    monkeypatch.undo()
    rows = tb.collect()
    assert [r["n"] for r in rows] == [2] and rows[0]["image"].size == (4, 4)
    assert pxl.check(db=a).ok


# ---- who is writing now (px_writers) ------------------------------------------------------------
def _writer_rows(db) -> list[tuple]:
    return db.db.query("SELECT id, pid, kind FROM px_writers ORDER BY id")


def test_a_writer_registers_before_its_files_and_is_gone_when_it_ends(tmp_path, monkeypatch):
    """An insert of media is a registered writer while it stores files (another connection
    sees its row), and its row is gone when it returns."""
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("t", {"image": pxl.Image})
    other = pxl.connect(tmp_path / "x.pxl")
    seen: list[list[tuple]] = []
    real = writes.Operation.track

    def track(op, uri, created):
        seen.append(_writer_rows(other))
        return real(op, uri, created)

    monkeypatch.setattr(writes.Operation, "track", track)
    t.insert(image=Image.new("RGB", (8, 8), "red"))
    assert seen and [kind for _, _, kind in seen[0]] == ["insert"]
    assert _writer_rows(db) == []
    other.close()
    db.close()


def test_dead_writers_are_ignored_and_removed(tmp_path):
    """A row of a process that is gone (its pid free, or reused by a process that started
    later), or of an operation of this process that ended without removing it, holds back no
    delete, and goes with the next write transaction that looks."""
    import os
    import subprocess
    import sys

    from pxlite import catalog

    db = pxl.connect(tmp_path / "x.pxl")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    me = os.getpid()
    with db.db.transaction():
        catalog.add_writer(db.db, "a" * 12, dead_pid, writes._host(), "1", "insert")
        catalog.add_writer(db.db, "b" * 12, me, writes._host(), writes.process_start(me),
                           "insert")  # this process, but no running operation of it
        # a live process (our parent), but not the one that registered: it started earlier
        catalog.add_writer(db.db, "c" * 12, os.getppid(), writes._host(), "0", "insert")
        live_elsewhere = catalog.add_writer(db.db, "d" * 12, me, "another-host", "", "insert")
    with db.db.transaction():
        assert [w.id for w in writes.live_writers(db.db)] == [live_elsewhere]
    assert [r[0] for r in _writer_rows(db)] == [live_elsewhere]
    assert writes.busy_uids(db.db) == {"d" * 12}
    db.close()
