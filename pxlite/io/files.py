"""``import_files``: a local folder or a bucket prefix becomes rows, one per file.

The listing is streamed page by page (``StorageBackend.list_info``: size, mtime and etag come
with it, no request per object) and rows are committed in brief batches, so a million keys
take bounded memory and other programs keep reading and writing meanwhile. Cloud objects are
never downloaded: rows hold their URIs, read on demand through the cache as inserted URLs are.
Local files get insert's header check (64 bytes each).

Idempotent by URI: a file whose URI the media column already holds is skipped, found through an
index on the column (one indexed lookup per batch, never a table scan). So running the same
call again adds only what is new, and an interrupted import (an error, Ctrl-C, a killed
process) resumes from what its committed batches hold.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import operator
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import catalog, media, plan, storage, types, writes
from ..catalog import ColumnMeta, TableMeta
from ..errors import NotFoundError, SchemaError, check_on_error
from ..ingest import INPUT_ERRORS, failed_input
from ..progress import bar as progress_bar
from ..results import UpdateStatus
from ..storage.base import ListedObject

if TYPE_CHECKING:
    from ..connection import Connection

#: Rows per committed batch, and the longest a batch collects before it commits (seconds).
#: The write lock is held only while a batch is written (about 0.1 s for 20,000 rows), not
#: while it is listed and checked; each commit waits for an fsync, which a busy disk makes
#: slow, so batches are as large as memory and a resumable granularity allow.
BATCH_ROWS = 20_000
BATCH_SECONDS = 5.0

#: The columns a new table gets besides the media column: (name, type, cloud only).
FILE_COLUMNS = (("key", types.String, False), ("size", types.Int, False),
                ("mtime", types.Timestamp, False), ("etag", types.String, True))


def compile_glob(pattern: str | None) -> tuple[re.Pattern[str] | None, str]:
    """A glob over keys relative to the source (``*`` within a folder, ``**/`` any folders,
    ``?`` one character, ``[...]`` a set) as a regex, and its literal leading folders (the
    listing can start there). None matches everything."""
    if pattern is None:
        return None, ""
    if not isinstance(pattern, str) or not pattern or pattern.startswith("/"):
        raise SchemaError(f"glob must be a relative pattern such as '**/*.jpg', got {pattern!r}")
    parts = pattern.split("/")
    literal = []
    for p in parts[:-1]:
        if any(ch in p for ch in "*?["):
            break
        literal.append(p)
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        out.append(_segment(part, pattern) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z"), "".join(p + "/" for p in literal)


def _segment(part: str, pattern: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = part.find("]", i + 2 if part[i + 1:i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise SchemaError(f"glob {pattern!r}: '[' without a closing ']'")
            body = part[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def source_prefix(source: Any, settings: Any) -> str:
    """The canonical prefix URI of a source folder or bucket prefix; a local folder must exist
    (NotFoundError) and be a folder (SchemaError)."""
    if not isinstance(source, (str, os.PathLike)):
        raise SchemaError(f"source must be a folder path or a bucket prefix URI (s3://bucket/"
                          f"prefix/), got {type(source).__name__}")
    prefix = storage.canonical_prefix(os.fspath(source), settings)
    if storage.is_local(prefix):
        path = storage.file_path(prefix)
        if not path.exists():
            raise NotFoundError(f"no folder at {path}; check the path")
        if not path.is_dir():
            raise SchemaError(f"{path} is a file; import_files takes a folder (or insert the "
                              "file with t.insert)")
    return prefix


class _Plan:
    """What one import writes: the table, its media column, and which file columns it fills."""

    def __init__(self, meta: TableMeta, column: str) -> None:
        self.meta = meta
        self.col = meta.column(column)
        if not self.col.type.is_media or self.col.is_computed:
            what = "computed" if self.col.is_computed else self.col.type.name
            raise SchemaError(f"column {column!r} of {meta.path!r} is not a media input column "
                              f"(it is {what}); pass column= naming an Image, Video, Audio or "
                              "Document input column")
        self.extra: list[tuple[str, ColumnMeta]] = []
        for name, t, _ in FILE_COLUMNS:
            c = next((c for c in meta.columns if c.name == name), None)
            if c is not None and not c.is_computed and c.type.name == t.name:
                self.extra.append((name, c))
        self.key = next((c for n, c in self.extra if n == "key"), None)
        self.kind: str = self.col.type.kind  # type: ignore[attr-defined]
        #: A local source's folder, ending in '/' (files are this plus their key).
        self.root = ""
        #: Did rows of earlier imports fail (media cell empty, key kept)? Only then are keys
        #: looked up too (a scan: the key column has no index). This import's own failures
        #: need no lookup: each file is listed once.
        self.failed_before = False
        #: The last rowid this import committed, while it is the only writer of a table it
        #: found empty (its batches then need no lookup); None: look up every batch.
        self.last_rowid: int | None = None

    def picker(self) -> Any:
        """From ``(key, size, mtime, etag)``, the values of the file columns the table has,
        in ``extra``'s order, as a tuple."""
        names = [n for n, _, _ in FILE_COLUMNS]
        idx = [names.index(n) for n, _ in self.extra]
        if len(idx) > 1:
            return operator.itemgetter(*idx)
        return (lambda values: (values[idx[0]],)) if idx else (lambda values: ())

    def find_failed(self, db: Any) -> None:
        """Look at the table before the first batch: empty (no lookups needed while no one
        else writes), or holding failed rows of an earlier import (keys looked up too)."""
        meta, col = self.meta, self.col
        if not db.query(f"SELECT 1 FROM {meta.sql} LIMIT 1"):
            self.last_rowid = 0
        if self.key is not None:
            self.failed_before = bool(db.query(
                f"SELECT 1 FROM {meta.sql} WHERE {col.sql} IS NULL AND {col.sql_et} IS NOT NULL "
                "LIMIT 1"))


def import_files(conn: Connection, path: str, source: Any, *, column: str = "image",
                 glob: str | None = None, media_type: Any = None, on_error: str = "abort",
                 existing: bool = False) -> UpdateStatus:
    """Add a row per file under ``source`` matching ``glob`` to the table at ``path`` (made
    when missing, unless ``existing``: with the media column ``column`` of ``media_type``,
    default Image, plus ``key``, ``size``, ``mtime`` and, for cloud sources, ``etag``). Files
    whose URI the column holds already are skipped. Nothing is written when the source is
    missing, refused, empty or matches nothing (each a clear error)."""
    t0 = time.perf_counter()
    check_on_error(on_error)
    catalog.check_path(path)
    settings = conn.settings()
    prefix = source_prefix(source, settings)
    matcher, narrow = compile_glob(glob)
    backend = storage.get_backend(prefix, settings)
    listed = 0

    def matching() -> Iterator[ListedObject]:
        nonlocal listed
        for o in backend.list_info(prefix + narrow):
            listed += 1
            key = narrow + o.key
            if matcher is None or matcher.match(key):
                yield o._replace(key=key) if narrow else o

    # Every listed file, as it comes: without a glob, straight from the listing (a generator
    # less per file; nothing is filtered, so none listed is none matching).
    objects = matching() if matcher is not None or narrow else \
        iter(backend.list_info(prefix))
    first = next(objects, None)  # the first page: a missing bucket or folder fails here
    if first is None:
        what = f"no file under {prefix}" if listed == 0 else \
            f"{listed:,} file(s) under {prefix}, none matching glob {glob!r}"
        raise NotFoundError(f"import_files: {what}; nothing was imported")
    cloud = not storage.is_local(prefix)
    meta = _table(conn, path, column, media_type, cloud, existing)
    plan_ = _Plan(meta, column)
    plan_.find_failed(conn.db)
    if not cloud:
        plan_.root = os.path.join(storage.file_path(prefix), "")
    bar = progress_bar(lambda: None, f"{meta.name}: import_files", settings, unit="file")
    added = errors = 0
    try:
        for batch in _batches(itertools.chain((first,), objects)):
            a, e = _commit(conn, plan_, batch, cloud, on_error)
            added, errors = added + a, errors + e
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(added=added, refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return UpdateStatus("Inserted", added, errors, time.perf_counter() - t0)


def _batches(objects: Iterator[ListedObject]) -> Iterator[list[ListedObject]]:
    """Brief batches: at most BATCH_ROWS objects, or what BATCH_SECONDS of listing found."""
    batch: list[ListedObject] = []
    started = time.monotonic()
    for o in objects:
        batch.append(o)
        n = len(batch)
        if n >= BATCH_ROWS or (not n % 64 and time.monotonic() - started > BATCH_SECONDS):
            yield batch
            batch, started = [], time.monotonic()
    if batch:
        yield batch


def _table(conn: Connection, path: str, column: str, media_type: Any, cloud: bool,
           existing: bool) -> TableMeta:
    """The table to import into (made when missing), with an index on the media column."""
    db = conn.db
    if not existing and catalog.path_kind(db, path) is None:
        mtype = types.as_type(media_type if media_type is not None else types.Image)
        if not mtype.is_media:
            raise SchemaError(f"media_type must be a media type (pxl.Image, pxl.Video, pxl.Audio "
                              f"or pxl.Document), got {mtype!r}")
        schema: dict[str, Any] = {column: mtype}
        for name, t, cloud_only in FILE_COLUMNS:
            if cloud or not cloud_only:
                schema[name] = t
        conn.create_table(path, schema, if_exists="ignore")
    elif media_type is not None:
        raise SchemaError(f"table {path!r} exists: its column {column!r} has its type already; "
                          "leave media_type= out")
    meta = catalog.load_table(db, path)
    col = meta.column(column)
    with db.transaction():
        catalog.ensure_value_index(db, meta, col)
    return meta


def _present(db: Any, meta: TableMeta, p: _Plan, stored: list[str],
             keys: list[str]) -> set[str]:
    """Which of ``stored`` the media column holds already (by its index), plus the keys of
    rows that failed before (on_error='ignore' keeps their key with an empty media cell)."""
    col = p.col
    found = {r[0] for r in db.query(
        f"SELECT {col.sql} FROM {meta.sql} WHERE {col.sql} IN (SELECT value FROM json_each(?))",
        (json.dumps(stored),))}
    c = p.key
    if p.failed_before and c is not None:
        found |= {"key:" + r[0] for r in db.query(
            f"SELECT {c.sql} FROM {meta.sql} WHERE {col.sql} IS NULL AND {col.sql_et} IS NOT "
            f"NULL AND {c.sql} IN (SELECT value FROM json_each(?))", (json.dumps(keys),))}
    return found


class _Raced(Exception):
    """Another writer added rows between a batch's check and its commit."""


def _commit(conn: Connection, p: _Plan, batch: list[ListedObject], cloud: bool,
            on_error: str) -> tuple[int, int]:
    """One brief transaction: the batch's new files as rows. Returns (rows added, errors)."""
    try:
        return _commit_once(conn, p, batch, cloud, on_error)
    except _Raced:
        p.last_rowid = None  # from now on every batch asks which files are there
        return _commit_once(conn, p, batch, cloud, on_error)


def _commit_once(conn: Connection, p: _Plan, batch: list[ListedObject], cloud: bool,
                 on_error: str) -> tuple[int, int]:
    db = conn.db
    meta = catalog.load_table(db, p.meta.path)
    last = f"SELECT coalesce(max(_rowid), 0) FROM {meta.sql}"
    # Rows in URI order: the index on the media column grows at its end, not all over.
    batch = sorted(batch, key=_URI)
    stored = [conn.stored(o.uri) for o in batch]
    # Into a table this import found empty, and that nobody else has written since, every
    # listed file is new (a listing names each file once): no lookup needed.
    trusted = p.last_rowid is not None and db.query(last)[0][0] == p.last_rowid
    if trusted:
        new = list(zip(batch, stored, strict=True))
    else:
        with db.read():
            present = _present(db, meta, p, stored, [o.key for o in batch])
        new = [(o, s) for o, s in zip(batch, stored, strict=True)
               if s not in present and "key:" + o.key not in present]
    if not new:
        return 0, 0
    if any(c.is_computed and c.stored for c in meta.columns):
        p.last_rowid = None
        return _insert(conn, p, new, on_error)
    cols = [p.col] + [c for _, c in p.extra]
    rows, errors = _rows(p, new, cloud, on_error)
    insert_sql = plan.insert(meta, cols)
    with writes.operation(conn.places, meta, kind="insert", capture="new_rows",
                          recheck=lambda m: writes.current_table(conn.db, m)):
        base = db.query(last)[0][0] + 1
        if trusted and base - 1 != p.last_rowid:
            raise _Raced  # rolled back; the batch is done again, with the lookup
        db.executemany(insert_sql, [(base + i, *r) for i, r in enumerate(rows)])
        for i, et, em in errors:
            db.execute(plan.set_cell_errors(meta, p.col), (et, em, base + i))
    if p.last_rowid is not None:
        p.last_rowid = base + len(rows) - 1
    return len(rows), len(errors)


_URI = operator.attrgetter("uri")


def _rows(p: _Plan, new: list[tuple[ListedObject, str]], cloud: bool, on_error: str
          ) -> tuple[list[tuple[Any, ...]], list[tuple[int, str, str]]]:
    """The rows' values (media reference, then the file columns) and the header errors of
    local files ``(index, errortype, errormsg)``; under on_error='abort' a bad file raises."""
    rows: list[tuple[Any, ...]] = []
    errors: list[tuple[int, str, str]] = []
    seconds: dict[int, str] = {}
    pick = p.picker()
    for i, (o, stored) in enumerate(new):
        value: Any = stored
        if not cloud:
            try:  # the path is the folder's plus the listed key (no URI parsing per file)
                _check_header(p.root + o.key, p.kind)
            except INPUT_ERRORS as e:
                _, et, em = failed_input(on_error, e, p.meta.path, i, p.col, o.uri)
                errors.append((i, et, em))
                value = None
        mtime = None if o.mtime is None else utc_iso(o.mtime, seconds)
        rows.append((value, *pick((o.key, o.size, mtime, o.etag))))
    return rows, errors


def utc_iso(t: float, seconds: dict[int, str]) -> str:
    """Timestamp's stored form of the time ``t`` (seconds since the epoch): UTC, ISO 8601 to
    the microsecond, exactly ``datetime.fromtimestamp(t, UTC).isoformat(timespec=
    'microseconds')`` (the same half-even rounding of the microseconds), with each second's
    text made once in ``seconds``: files listed together share their seconds."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1
    elif us < 0:
        us += 1_000_000
        whole -= 1
    sec = int(whole)
    text = seconds.get(sec)
    if text is None:
        if len(seconds) > 4096:
            seconds.clear()
        text = seconds[sec] = _dt.datetime.fromtimestamp(sec, _dt.UTC).isoformat()[:-6]
    return f"{text}.{us:06d}+00:00"


def _check_header(path: str, kind: str) -> None:
    """insert's header check of a listed file: its first bytes, read without blocking (a FIFO
    put in the file's place since the listing reads as empty). The listing stat()ed it as a
    regular file already, so only a failure takes media.check_local_file's full path, for its
    message."""
    try:
        fd = os.open(path, _READ_FLAGS)
        try:
            head = os.read(fd, media.HEADER_BYTES)
        finally:
            os.close(fd)
    except OSError:
        media.check_local_file(path, kind)  # type: ignore[arg-type]  # raises, saying why
        return
    found = media.sniff(head)
    if found is None or found[0] != kind:  # (the message is made only for a file that fails)
        media.check_header(head, kind, f"file {path!r}")


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


def _insert(conn: Connection, p: _Plan, new: list[tuple[ListedObject, str]],
            on_error: str) -> tuple[int, int]:
    """The batch through the table's insert (which computes its computed columns)."""
    t = conn.get_table(p.meta.path)
    rows = []
    for o, _ in new:
        row: dict[str, Any] = {p.col.name: o.uri}
        for name, c in p.extra:
            row[c.name] = {"key": o.key, "size": o.size, "etag": o.etag,
                           "mtime": None if o.mtime is None else
                           _dt.datetime.fromtimestamp(o.mtime, _dt.UTC)}[name]
        rows.append(row)
    status = t.insert(rows, on_error=on_error)
    return status.num_rows, status.num_errors
