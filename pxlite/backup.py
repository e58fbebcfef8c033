"""Consistent backups: ``db.backup(path)`` writes a copy of the database file and of the files
its media folder holds for it, as a pair (``path`` + ``path.media/``) that opens on its own.

1. **Deletes wait.** Every table is registered as being written (writes.deletes_held): a file a
   row stops naming meanwhile is not deleted until the backup ends, so every file the copied
   catalog names is still there to copy.
2. **The catalog,** through SQLite's online backup API (apsw ``Connection.backup``) in one step:
   one read snapshot of the file while other connections and programs keep writing (WAL).
3. **The media files it names** (rows, and the versions it keeps), copied from the media folder
   after the catalog copy. Files are immutable and content-addressed, so what the copy names is
   exactly what it needs. Files in other destinations (a bucket, another folder) are referenced,
   not copied: back those up with the storage's own tools.

The copy is written under temporary names and put in place at the end (synced first): an
interrupted backup leaves no half pair under ``path``. Opened, the pair is a new database (its
own identity, places.py): it reads everything, owns its own media folder, and never deletes a
file in the original's other locations.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import apsw

from . import catalog, storage, writes
from .db import APPLICATION_ID, Database
from .errors import AlreadyExistsError, DatabaseError, NotFoundError, SchemaError, check_choice
from .media import MEDIA_REF
from .places import Places, file_id
from .results import UpdateStatus


def backup(places: Places, path: str | os.PathLike[str], *,
           if_exists: str = "error") -> UpdateStatus:
    """Write a consistent copy of the database to ``path`` and the media files it names to
    ``path.media/`` (see the module docstring); ``if_exists='replace'`` replaces an earlier
    backup (a pxlite database) there. Returns the number of media files copied; files the
    catalog names but the media folder lacks count as errors (``check`` reports them too)."""
    t0 = time.perf_counter()
    check_choice(if_exists, "if_exists", ("error", "replace"))
    if not isinstance(path, (str, os.PathLike)):
        raise SchemaError(f"backup() takes the path of the copy to write, got "
                          f"{type(path).__name__} {path!r}")
    target = Path(path).expanduser().absolute()
    media_target = target.with_name(target.name + ".media")
    _check_target(places, target, media_target, if_exists)
    tag = f".pxlite-backup-{os.getpid()}-{time.monotonic_ns()}"
    tmp, tmp_media = target.with_name(f".{target.name}{tag}"), target.with_name(
        f".{media_target.name}{tag}")
    try:
        with writes.deletes_held(places, "backup"):
            _copy_catalog(places.db, tmp)
            copied, missing = _copy_media(places, tmp, tmp_media)
        _put_in_place(tmp, tmp_media, target, media_target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(tmp_media, ignore_errors=True)
    return UpdateStatus("Backed up", copied, len(missing), time.perf_counter() - t0, "file",
                        errors=[f"not in the media folder: {u}" for u in missing[:10]])


def _check_target(places: Places, target: Path, media_target: Path, if_exists: str) -> None:
    if not target.parent.is_dir():
        raise NotFoundError(f"cannot back up to {target}: the folder {target.parent} does not "
                            "exist; create it first")
    if target == places.db.path or (target.exists() and file_id(target) == file_id(
            places.db.path)):
        raise SchemaError(f"cannot back up {places.db.path} onto itself; pass another path")
    if os.path.realpath(media_target) == os.path.realpath(places.media_dir):
        raise SchemaError(f"cannot back up to {target}: its media folder would be this "
                          f"database's own ({places.media_dir})")
    if not (target.exists() or media_target.exists()):
        return
    if if_exists == "error":
        raise AlreadyExistsError(f"{target} (or {media_target}) exists already; pass "
                                 "if_exists='replace' to replace an earlier backup, or "
                                 "another path")
    if target.exists() and not _is_pxlite_file(target):
        raise DatabaseError(f"{target} is not a pxlite database: not replaced by a backup; "
                            "pass another path")


def _is_pxlite_file(path: Path) -> bool:
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return conn.pragma("application_id") == APPLICATION_ID
        finally:
            conn.close()
    except apsw.Error:
        return False


def _copy_catalog(db: Database, tmp: Path) -> None:
    """SQLite's online backup of the catalog into ``tmp``, in one step (one read snapshot), as
    a file of its own: rollback journal, no operation registered as writing into it."""
    dest = apsw.Connection(str(tmp))
    try:
        with dest.backup("main", db.sqlite, "main") as b:
            while not b.done:
                b.step(-1)
        dest.pragma("journal_mode", "delete")
        dest.execute("DELETE FROM px_writers")  # nothing writes into the copy
    finally:
        dest.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_media(places: Places, catalog_copy: Path, tmp_media: Path
                ) -> tuple[int, list[str]]:
    """Copy the files of the media folder that the catalog copy names (rows and kept
    versions) into ``tmp_media``, synced; returns (files copied, the named ones missing)."""
    copy = Database(catalog_copy, create=False)
    try:
        named: set[str] = set()
        with copy.read():
            for meta in catalog.live_tables(copy):
                for sql_table, sql_col in catalog.media_cells(copy, meta):
                    named.update(r[0] for r in copy.query(
                        f"SELECT DISTINCT {sql_col} FROM {sql_table} WHERE substr({sql_col}, 1, "
                        "?) = ?", (len(MEDIA_REF), MEDIA_REF)))
    finally:
        copy.close()
    tmp_media.mkdir()
    copied: list[str] = []
    missing: list[str] = []
    root = os.path.realpath(places.media_dir)
    for stored in sorted(named):
        src = storage.file_path(places.resolve(stored))
        rel = os.path.relpath(os.path.realpath(src), root)
        if rel.startswith(os.pardir):  # a crafted reference out of the folder: not copied
            missing.append(places.resolve(stored))
            continue
        dst = tmp_media / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(src, dst)
        except FileNotFoundError:
            missing.append(places.resolve(stored))
            continue
        copied.append(dst.as_uri())
    # The local backend, like every backend, is loaded through the registry on use.
    from .storage.local import make_durable

    make_durable(copied, [tmp_media.as_uri() + "/"])
    return len(copied), missing


def _put_in_place(tmp: Path, tmp_media: Path, target: Path, media_target: Path) -> None:
    """Both copies are complete and synced: move them to their names (replacing an earlier
    backup, whose media folder goes only once the new pair is in place)."""
    old_media = None
    if media_target.exists():
        old_media = media_target.with_name(media_target.name + f".old-{os.getpid()}")
        os.replace(media_target, old_media)
    os.replace(tmp_media, media_target)
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if old_media is not None:
        shutil.rmtree(old_media, ignore_errors=True)
