"""Media values: recognise files by their header, encode images, name and write output files,
and get a local path to any stored file.

Files pxlite writes are content-addressed: ``<prefix><table-uid>/<col-id>/<xx>/<sha256>.<ext>``,
so a retried write is idempotent and a column's files can be listed by prefix. Reading goes
through the storage registry; remote bytes come from the download cache.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import storage
from .config import Settings
from .errors import ObjectNotFoundError, PxliteError, SchemaError
from .storage.base import TEMP_PREFIX

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .catalog import ColumnMeta

# (kind, extension, predicate on the first 64 bytes)
_SIGNATURES: list[tuple[str, str, Any]] = [
    ("image", "jpg", lambda h: h[:3] == b"\xff\xd8\xff"),
    ("image", "png", lambda h: h[:8] == b"\x89PNG\r\n\x1a\n"),
    ("image", "gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ("image", "webp", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("image", "bmp", lambda h: h[:2] == b"BM" and len(h) >= 26),
    ("image", "tiff", lambda h: h[:4] in (b"II*\x00", b"MM\x00*")),
    ("image", "ico", lambda h: h[:4] == b"\x00\x00\x01\x00"),
    ("image", "avif", lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"avif", b"avis")),
    ("image", "heic", lambda h: h[4:8] == b"ftyp" and h[8:12] in (b"heic", b"heix", b"mif1")),
    ("image", "ppm", lambda h: h[:2] in (b"P4", b"P5", b"P6") and h[2:3] in (b"\n", b" ", b"\r")),
    ("audio", "wav", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WAVE"),
    ("audio", "mp3", lambda h: h[:3] == b"ID3" or h[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")),
    ("audio", "flac", lambda h: h[:4] == b"fLaC"),
    ("audio", "ogg", lambda h: h[:4] == b"OggS"),
    ("audio", "m4a", lambda h: h[4:8] == b"ftyp" and h[8:11] == b"M4A"),
    ("video", "avi", lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI "),
    ("video", "mkv", lambda h: h[:4] == b"\x1a\x45\xdf\xa3"),
    ("video", "mp4", lambda h: h[4:8] == b"ftyp"),
    ("video", "mpg", lambda h: h[:4] == b"\x00\x00\x01\xba"),  # MPEG program stream
    ("document", "pdf", lambda h: h[:5] == b"%PDF-"),
    ("document", "zip", lambda h: h[:4] == b"PK\x03\x04"),  # docx/xlsx/pptx/odt
]

HEADER_BYTES = 64


def sniff(head: bytes) -> tuple[str, str] | None:
    """``(kind, ext)`` for a file's first bytes, or None when unrecognised."""
    for kind, ext, pred in _SIGNATURES:
        if pred(head):
            return kind, ext
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3  # a multibyte char cut at the end of the sample
    return b"\x00" not in head


def check_header(head: bytes, kind: str, what: str) -> str:
    """Check a file's first bytes against a media kind; return its extension or raise."""
    found = sniff(head)
    if found and found[0] == kind:
        return found[1]
    if kind == "document" and (found is None and head and _looks_like_text(head)):
        return "txt"
    if not head:
        raise SchemaError(f"{what} is empty; expected a {kind} file")
    detail = f"it looks like {found[0]} ({found[1]})" if found else "its header is not recognised"
    if kind == "image" and head.lstrip()[:1] == b"<":
        detail = "it looks like HTML or XML text"
    raise SchemaError(f"{what} is not a valid {kind} file: {detail}")


def check_local_file(path: Path, kind: str) -> str:
    """Check that a local path is a regular file with a header of ``kind``; return its extension.

    Only regular files are media: a FIFO, device or socket would block a read forever (while
    the caller holds the write lock) or stream without end. The path is opened non-blocking and
    checked with fstat before a byte is read, so neither can hang the check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SchemaError(f"file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise SchemaError(f"{str(path)!r} is a folder, not a {kind} file") from None
    except OSError as e:
        raise SchemaError(f"cannot read {str(path)!r}: {e.strerror}") from None
    except ValueError:
        raise SchemaError(f"{str(path)!r} is not a usable path: it contains a NUL character"
                          ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SchemaError(f"{str(path)!r} is a folder, not a {kind} file")
        if not stat.S_ISREG(mode):
            what = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
                    "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                    "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise SchemaError(f"{str(path)!r} is {what}, not a {kind} file; only regular files "
                              "can be media values")
        try:
            head = os.read(fd, HEADER_BYTES)
        except OSError as e:
            raise SchemaError(f"cannot read {str(path)!r}: {e.strerror}") from None
    finally:
        os.close(fd)
    return check_header(head, kind, f"file {str(path)!r}")


# ---- encoding --------------------------------------------------------------------------------
FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp"}


def check_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    f = str(fmt).lower()
    if f not in FORMATS:
        raise SchemaError(f"unknown image format {fmt!r}; use 'jpeg', 'png' or 'webp'")
    return "jpeg" if f == "jpg" else f


def has_alpha(img: PILImage.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )


def input_format(img: PILImage.Image) -> str | None:
    """The format that stores an inserted image without losing what its mode holds: PNG for
    16-bit images (JPEG would cut them to 8 bits), TIFF for 32-bit integer and floating-point
    ones (PNG has neither); None (the default: JPEG, or PNG with alpha) for everything else."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return "png"
    if img.mode in ("I", "F"):
        return "tiff"
    return None


def encode_image(img: PILImage.Image, fmt: str | None = None) -> tuple[bytes, str]:
    """Encode an image: JPEG quality 90, or PNG when it has alpha; ``fmt`` overrides
    ('tiff' only for :func:`input_format`'s lossless floating-point case)."""
    if fmt == "tiff":
        buf = io.BytesIO()
        img.save(buf, format="TIFF")
        return buf.getvalue(), "tiff"
    fmt = check_format(fmt) or ("png" if has_alpha(img) else "jpeg")
    if fmt == "jpeg":
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("L" if img.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
        return _saved(img, "JPEG", quality=90), FORMATS[fmt]
    if fmt == "png":
        if img.mode in ("F", "CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        return _saved(img, "PNG", compress_level=1), FORMATS[fmt]
    buf = io.BytesIO()
    if img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if has_alpha(img) else "RGB")
    img.save(buf, format="WEBP", quality=90)
    return buf.getvalue(), FORMATS[fmt]


#: Encode into an anonymous in-memory file where the OS has them (Linux): see _saved.
ENCODE_TO_MEMFD = hasattr(os, "memfd_create")


def _saved(img: PILImage.Image, fmt: str, **params: Any) -> bytes:
    """``img`` encoded (JPEG, PNG) as bytes. Pillow holds the GIL while it encodes into a
    Python buffer (BytesIO) but releases it while it encodes into a real file, so where the OS
    has anonymous in-memory files (Linux's memfd) the encoding goes into one and is read back:
    computed image columns then encode on all their threads at once instead of one at a time
    (the same bytes; encoding is a fifth to a third of a computed image's CPU)."""
    global ENCODE_TO_MEMFD
    fd = -1
    if ENCODE_TO_MEMFD:
        try:
            fd = os.memfd_create("pxlite-encode", os.MFD_CLOEXEC)
        except OSError as e:  # out of descriptors or memory: this once; not allowed: never again
            if e.errno in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL):
                ENCODE_TO_MEMFD = False
    if fd < 0:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **params)
        return buf.getvalue()
    with open(fd, "w+b", buffering=0) as f:
        img.save(f, format=fmt, **params)
        size = os.fstat(fd).st_size
        parts, done = [], 0
        while done < size:
            chunk = os.pread(fd, size - done, done)
            if not chunk:
                break
            parts.append(chunk)
            done += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)


# ---- files made by functions -------------------------------------------------------------
_temp_lock = threading.Lock()
_temp_dir: str | None = None


def temp_output_path(suffix: str) -> str:
    """A fresh path for a media file a function makes (``extract_audio``...): in a folder of
    this process's own, removed when the process exits. A computed column that stores such a
    file deletes it once its bytes are read (:func:`output_file`)."""
    global _temp_dir
    import atexit
    import tempfile

    with _temp_lock:
        if _temp_dir is None or not os.path.isdir(_temp_dir):
            _temp_dir = tempfile.mkdtemp(prefix="pxlite-out-")
            atexit.register(shutil.rmtree, _temp_dir, True)
        fd, path = tempfile.mkstemp(suffix=suffix, dir=_temp_dir)
    os.close(fd)
    return path


def output_file(value: Any, kind: str, what: str) -> tuple[bytes, str]:
    """The bytes and extension of a media file a function returned as a local path, checked to
    be a ``kind`` file (video, audio, document); a file from :func:`temp_output_path` is
    deleted once read."""
    if not isinstance(value, (str, os.PathLike)):
        raise SchemaError(f"expected a {kind} file path from {what}, got {type(value).__name__}")
    path = Path(os.fspath(value))
    ext = check_local_file(path, kind)
    data = path.read_bytes()
    if _temp_dir is not None and os.path.dirname(os.path.abspath(path)) == _temp_dir:
        with contextlib.suppress(OSError):
            path.unlink()
    return data, ext


# ---- THE object-key grammar -------------------------------------------------------------------
# Every file pxlite writes is named <table uid>/<col id>/<xx>/<sha256>.<ext>, where <xx> is the
# first two hex digits of the SHA-256 of its bytes: content addressing makes a retried write
# idempotent and a column's files a prefix listing. A write a crash interrupted leaves
# <table uid>/<col id>/<xx>/.pxlite-tmp-<32 hex> (storage.base.TEMP_PREFIX) in that folder.
_HASHED_NAME = r"(?P<xx>[0-9a-f]{2})/(?P=xx)[0-9a-f]{62}\.[A-Za-z0-9]{1,8}"
_KEY = re.compile(r"(?P<uid>[0-9a-f]{12})/(?P<col>\d+)/(?:" + _HASHED_NAME
                  + r"|[0-9a-f]{2}/\.pxlite-tmp-[0-9a-f]{32})")
_HASHED_TAIL = re.compile("/" + _HASHED_NAME + "$")


def key_folder(table_uid: str, col_id: int | None = None) -> str:
    """The folder (relative to a location's prefix, ending in '/') of a table's files, or of
    one column's: the one place the ``<table uid>/<col id>/`` part of a key is spelled."""
    return f"{table_uid}/" if col_id is None else f"{table_uid}/{col_id}/"


def object_key(table_uid: str, col_id: int, digest: str, ext: str) -> str:
    """The content-addressed key of a file pxlite writes for a column (``digest``: SHA-256 hex)."""
    return f"{key_folder(table_uid, col_id)}{digest[:2]}/{digest}.{ext}"


def key_owner(key: str) -> str | None:
    """The table uid of a key in pxlite's shape (a written file or a killed write's temp file),
    None for anything else."""
    m = _KEY.fullmatch(key)
    return m["uid"] if m is not None else None


_KEY_AT_END = re.compile(r"(?<![^/])[0-9a-f]{12}/\d+/" + _HASHED_NAME + r"\Z")


def split_key(uri: str) -> tuple[str, str] | None:
    """A URI of a file pxlite wrote, split into ``(prefix, key)``: where it lives (the
    destination) and the content-addressed key ``<table uid>/<col id>/<xx>/<sha256>.<ext>``;
    None when the URI does not end in such a key (a user's file)."""
    m = _KEY_AT_END.search(uri)
    return (uri[:m.start()], m.group()) if m is not None else None


def is_content_addressed(uri: str) -> bool:
    """True for files pxlite named by their content hash: their bytes can never change."""
    return bool(_HASHED_TAIL.search(uri))


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex of a file's bytes, read in 1 MB chunks (memory stays flat for big files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_file(data: bytes, ext: str, prefix: str, table_uid: str, col_id: int,
               settings: Settings) -> tuple[str, bool]:
    """Write bytes under a destination prefix; return ``(uri, created)``.

    ``created`` is False when the storage said identical content was already there (content
    addressing); True when this write made it, or may have (a cloud service that cannot refuse
    a write of an existing key gets one plain PUT, counted as created: see
    :meth:`pxlite.storage.base.StorageBackend.put_bytes_new`). Either way an aborted operation
    never deletes a file a committed row names: its undo passes the one delete gate.
    """
    digest = hashlib.sha256(data).hexdigest()
    uri = storage.join(prefix, object_key(table_uid, col_id, digest, ext))
    created = storage.get_backend(uri, settings).put_bytes_new(
        data, uri, content_type=_CONTENT_TYPES.get(ext))
    if not storage.is_local(uri):
        _fill_later(uri, settings, data)
    return uri, created


def upload_file(path: Path, ext: str, prefix: str, table_uid: str, col_id: int,
                settings: Settings) -> tuple[str, bool]:
    """Copy a local file under a destination prefix (content-addressed); ``(uri, created)``
    as :func:`write_file` says it: one conditional create (or one plain upload) per file,
    never a HEAD before it."""
    uri = storage.join(prefix, object_key(table_uid, col_id, file_digest(path), ext))
    created = storage.get_backend(uri, settings).put_file_new(
        path, uri, content_type=_CONTENT_TYPES.get(ext))
    # like write_file: the bytes are at hand, so reading the file back costs no download
    _keep_in_cache(uri, settings, lambda dest: shutil.copyfile(path, dest))
    return uri, created


def _keep_in_cache(uri: str, settings: Settings, write: Callable[[Path], object]) -> None:
    """A file just stored in cloud storage also enters the local download cache, from the same
    bytes (within its bound), so reading it back costs no download. Content-addressed keys never
    change, so the entry needs no version. A cache that cannot take it never fails the write."""
    if storage.is_local(uri):
        return
    from .cache import get_cache  # here, not at import: it loads diskcache

    def fill(dest: Path) -> str | None:
        write(dest)
        return None

    with contextlib.suppress(PxliteError, OSError):
        get_cache(settings).get_path(uri, fill)


#: Encoded outputs waiting to enter the cache (their bytes held in memory) at most: an upload
#: that would start one more waits for a slot.
FILLS_WAITING = 32
#: The filler gathers this many outputs per cache transaction, waiting at most FILL_GATHER_S
#: for them (or less: a settle_cache_fills() call wakes it at once). One output per transaction
#: cost each a transaction's statements, its LRU flush and eviction pass.
FILL_BATCH = 16
FILL_GATHER_S = 0.05
_fills_lock = threading.Lock()
_fills_done = threading.Condition(_fills_lock)
_fills_more = threading.Condition(_fills_lock)
_fill_slots = threading.BoundedSemaphore(FILLS_WAITING)
_waiting: list[tuple[str, Settings, bytes]] = []  # outputs not yet handed to the filler
_busy = False              # the filler has fills in hand or waiting (under _fills_lock)
_settling = 0              # threads in settle_cache_fills() (under _fills_lock)
_filler: Any = None        # one thread: the cache serializes its writers anyway


def _fill_later(uri: str, settings: Settings, data: bytes) -> None:
    """:func:`_keep_in_cache` for bytes just uploaded, on a thread of its own: the upload
    threads go on uploading instead of queueing for the cache's write lock (a computed column
    to S3 ran ~15% slower with each upload thread filling the cache itself), and the filler
    stores all the outputs waiting at once in one cache transaction.
    :func:`settle_cache_fills` waits for them; every write operation does before it returns."""
    global _filler, _busy
    from concurrent.futures import ThreadPoolExecutor

    _fill_slots.acquire()
    with _fills_lock:
        if _filler is None:
            _filler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pxlite-cache-fill")
        _waiting.append((uri, settings, data))
        start, _busy = not _busy, True
        if len(_waiting) >= FILL_BATCH:
            _fills_more.notify()
    if start:
        _filler.submit(_drain_fills)


def _drain_fills() -> None:
    """The filler: store every waiting output, a batch (per cache) per transaction, until
    none is left."""
    global _busy
    while True:
        with _fills_lock:
            if len(_waiting) < FILL_BATCH and not _settling:
                _fills_more.wait(FILL_GATHER_S)
            batch = _waiting[:]
            del _waiting[:]
            if not batch:
                _busy = False
                _fills_done.notify_all()
                return
        try:
            _store_fills(batch)
        except BaseException:
            with _fills_lock:  # never leave settle_cache_fills() or an upload waiting
                for _ in _waiting:
                    _fill_slots.release()
                del _waiting[:]
                _busy = False
                _fills_done.notify_all()
            raise
        finally:
            for _ in batch:
                _fill_slots.release()


def _store_fills(batch: list[tuple[str, Settings, bytes]]) -> None:
    from .cache import get_cache  # here, not at import: it loads diskcache

    by_cache: dict[int, tuple[Any, list[tuple[str, bytes]]]] = {}
    caches: dict[int, Any] = {}  # settings -> cache, found once per batch
    for uri, settings, data in batch:
        with contextlib.suppress(PxliteError, OSError):
            cache = caches.get(id(settings))
            if cache is None:
                cache = caches[id(settings)] = get_cache(settings)
            by_cache.setdefault(id(cache), (cache, []))[1].append((uri, data))
    for cache, items in by_cache.values():
        with contextlib.suppress(PxliteError, OSError):  # a full cache never fails a write
            cache.put_many(items)


def settle_cache_fills() -> None:
    """Wait until the outputs uploaded so far (by any thread) are in the download cache."""
    global _settling
    with _fills_done:
        _settling += 1
        try:
            _fills_more.notify()
            while _busy:
                _fills_done.wait()
        finally:
            _settling -= 1


def content_type(ext: str) -> str | None:
    """The MIME type stored with a file of this extension (None when unknown)."""
    return _CONTENT_TYPES.get(ext.lower())


_CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
                  "bmp": "image/bmp", "tiff": "image/tiff", "pdf": "application/pdf",
                  "mp4": "video/mp4", "mpg": "video/mpeg", "wav": "audio/wav", "mp3": "audio/mpeg",
                  "txt": "text/plain"}


# ---- the database's own media folder --------------------------------------------------------
#: Stored references to files in a database's own media folder start with this: ``media:<key>``.
MEDIA_REF = "media:"


class MediaFolder:
    """A database's own media folder, and the relative form of references into it.

    Files in the folder beside the database file are stored as ``media:<key>`` (relative), so
    the pair (database file + media folder) can be copied or moved and each copy works on its
    own files; a copy of the database file alone finds its references missing instead of
    touching the original's. Everything else is stored as its absolute canonical URI. Rows,
    pending deletes and locations hold the stored form; storage backends get :meth:`uri`.
    """

    def __init__(self, prefix_uri: str) -> None:
        if not prefix_uri.startswith("file:///") or not prefix_uri.endswith("/"):
            raise ValueError(
                f"a media folder is a file:/// prefix ending in '/', not {prefix_uri!r}")
        self.prefix = prefix_uri

    def stored(self, uri: str) -> str:
        """The form to store for ``uri``: relative when it lies in the media folder."""
        if uri.startswith(self.prefix):
            return MEDIA_REF + uri[len(self.prefix):]
        return uri

    def uri(self, stored: str) -> str:
        """The absolute URI a stored reference names (other values come back unchanged)."""
        if not stored.startswith(MEDIA_REF):
            return stored
        key = stored[len(MEDIA_REF):]
        if ".." in key or key.startswith("/") or "\x00" in key:
            import urllib.parse

            parts = urllib.parse.unquote(key).split("/")
            if key.startswith("/") or "\x00" in key or ".." in parts:
                raise ObjectNotFoundError(
                    f"stored reference {stored!r} points outside the database's media folder; "
                    "it is not a file pxlite wrote (a damaged or crafted database?)", uri=stored)
        return self.prefix + key


# ---- reading ---------------------------------------------------------------------------------
def content_matches_name(uri: str) -> bool:
    """For a local content-addressed file: do its bytes hash to its name? (Remote: True.)

    The last check before pxlite deletes a local file it believes it wrote: only a file whose
    SHA-256 is its own name can be pxlite's output (or an identical copy of it).
    """

    if not storage.is_local(uri):
        return True
    path = storage.file_path(uri)
    if path.name.startswith(TEMP_PREFIX):
        return True  # a write a crash interrupted: partial by nature, pxlite's by its name
    try:
        digest = file_digest(path)
    except FileNotFoundError:
        return True  # nothing to delete, nothing to protect
    except OSError:
        return False
    return digest == path.name.split(".", 1)[0]


def local_delete_refusal(uri: str, location_uri: str) -> str | None:
    """Why a local file pxlite believes it wrote under ``location_uri`` must not be deleted,
    or None when it may be.

    Its real folder must lie inside the location's real folder: a symlinked ``<uid>/`` (or
    deeper) folder pointing at another database's files is never followed out of the location
    being cleaned. And its bytes must hash to its name (see :func:`content_matches_name`).
    """
    path, root = storage.file_path(uri), storage.file_path(location_uri)
    real_parent, real_root = os.path.realpath(path.parent), os.path.realpath(root)
    if not (real_parent + os.sep).startswith(real_root.rstrip(os.sep) + os.sep):
        return (f"its folder is really {real_parent}, outside the location {real_root} "
                "(reached through a symlink)")
    if not content_matches_name(uri):
        return "it does not hold the content its name says"
    return None


def fetch_local(uri: str, settings: Settings, *, refresh: bool = False) -> Path:
    """A local path holding the bytes of ``uri``; remote files are downloaded into the cache.

    A cache hit costs no network. The version (etag/generation) of a downloaded file is recorded
    with it; ``refresh=True`` asks the server for the current version and downloads again only
    when it changed. Files pxlite wrote are content-addressed and never need that check.
    """
    if storage.is_local(uri):
        p = storage.file_path(uri)
        if not p.exists():
            raise ObjectNotFoundError(f"file {str(p)!r} does not exist any more", uri=uri)
        return p
    backend = storage.get_backend(uri, settings)
    from .cache import get_cache  # here, not at import: it loads diskcache

    cache = get_cache(settings)
    immutable = is_content_addressed(uri)
    # Web URLs are not asked for a version: a presigned GET URL answers HEAD with 403 and a
    # server without HEAD would send the whole body twice. Refreshing re-downloads them.
    versioned = not immutable and storage.scheme_of(uri) != "http"
    if refresh and not immutable and cache.contains(uri):
        current = backend.stat(uri).version if versioned else None
        if current is None or current != cache.stored_version(uri):
            cache.evict(uri)

    def fetch(dest: Path) -> str | None:
        # The version is read before the bytes: if the object changes in between, the older
        # version is recorded and the next refresh downloads again (never the reverse).
        version = backend.stat(uri).version if versioned else None
        backend.get_file(uri, dest)
        return version

    return cache.get_path(uri, fetch)


def fileurl(uri: str, settings: Settings) -> str:
    """The user-facing location of a stored file (e.g. the Azure https URL of an az:// URI)."""
    # Only Azure's short az:// form differs from its user-facing https URL; every other URI is
    # already where the file lives, and answering must not need credentials or a client.
    if storage.scheme_of(uri) != "azure" or uri.startswith(("https://", "http://")):
        return uri
    return storage.get_backend(uri, settings).fileurl(uri)


# ---- decoding: pixel limit, memory budget, orientation ----------------------------------------
#: EXIF tag 274 (0x0112): how the stored pixels must be turned to stand upright.
_ORIENTATION = 0x0112
#: A charge older than this no longer holds other threads back (see _DecodeBudget).
_CHARGE_TTL_S = 60.0
#: How often a waiting thread re-checks for holders that ended without freeing their image.
_BUDGET_POLL_S = 0.5


def decoded_bytes(width: int, height: int, mode: str) -> int:
    """The memory Pillow takes to hold an image's pixels: it stores 1 byte per pixel for modes
    1/L/P, 2 for 16-bit modes, and 4 for everything else (RGB is stored padded as RGBX)."""
    per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return width * height * per_pixel


class _DecodeBudget:
    """The process-wide budget (``decode_memory_mb``) for decoded pixels held by worker threads.

    A worker thread (any thread but the main one: compute pools, Dask worker threads, the user's
    own pools) is *charged* for an image from the moment it opens it until the image is freed;
    before opening it waits while the other threads' charges plus its own would exceed the
    budget. So however many cores, the images worker threads hold at once (decoded or about to
    be) fit the budget, except that one image larger than the whole budget is held alone.

    Each thread carries one charge, for its latest image: a thread starting a new image has
    moved on from the last one (and a thread that needs two images at once, such as
    ``blend``, is never stuck waiting on itself). Charges of threads that ended, and charges
    older than ``_CHARGE_TTL_S`` (an image kept alive by a result the user holds, or by an
    error's traceback), stop holding others back, so the budget can slow a pool down but
    never deadlock it. The main thread is not charged and never waits: what it holds is the
    user's (a notebook's images), and a pool must not wait for those.
    """

    def __init__(self) -> None:
        # Reentrant: release() runs from weakref finalizers, which a garbage collection may
        # start inside any allocation, including one made while this thread holds the lock.
        self._cond = threading.Condition(threading.RLock())
        #: thread ident -> (thread, bytes, token, monotonic time of the charge)
        self._charges: dict[int, tuple[threading.Thread, int, int, float]] = {}
        self._tokens = 0

    def charged(self) -> int:
        """Bytes charged now by live threads within the TTL (for tests and diagnostics)."""
        with self._cond:
            return sum(n for n, _ in self._live(time.monotonic()))

    def _live(self, now: float) -> list[tuple[int, float]]:
        """``(bytes, since)`` of the charges that still count; drops the others."""
        live = []
        for ident, (thread, nbytes, _, since) in list(self._charges.items()):
            if not thread.is_alive() or now - since > _CHARGE_TTL_S:
                self._charges.pop(ident, None)
            else:
                live.append((nbytes, since))
        return live

    def acquire(self, nbytes: int, limit: int) -> tuple[int, int] | None:
        """Wait until ``nbytes`` (at most ``limit``) fit beside the other threads' charges, then
        charge them to this thread; returns the charge's key for :meth:`release` (None in the
        main thread, which is never charged)."""
        me = threading.current_thread()
        if me is threading.main_thread() or me.ident is None:
            return None
        need = min(nbytes, limit)
        with self._cond:
            if self._charges.pop(me.ident, None) is not None:
                self._cond.notify_all()  # this thread moved on from its previous image
            while True:
                now = time.monotonic()
                others = self._live(now)
                if not others or sum(n for n, _ in others) + need <= limit:
                    break
                oldest = min(since for _, since in others)
                self._cond.wait(min(_BUDGET_POLL_S, max(0.01, oldest + _CHARGE_TTL_S - now)))
            self._tokens += 1
            self._charges[me.ident] = (me, need, self._tokens, time.monotonic())
            return me.ident, self._tokens

    def release(self, key: tuple[int, int]) -> None:
        """End a charge (its image was freed), unless the thread has moved on already."""
        ident, token = key
        with self._cond:
            charge = self._charges.get(ident)
            if charge is not None and charge[2] == token:
                self._charges.pop(ident, None)
                self._cond.notify_all()


_budget = _DecodeBudget()


def decode_budget_bytes(settings: Settings) -> int:
    """``decode_memory_mb`` in bytes."""
    return int(settings["decode_memory_mb"]) * 1024 * 1024


def _charge(img: PILImage.Image, nbytes: int, limit: int) -> None:
    """Charge the calling thread for ``img``'s pixels until ``img`` is freed (waiting first
    while they do not fit the budget)."""
    key = _budget.acquire(nbytes, limit)
    if key is not None:
        weakref.finalize(img, _budget.release, key)


def image_orientation(img: PILImage.Image) -> int:
    """The EXIF orientation (1-8) an opened image declares, read from its header only; 1 when
    it has none or it is damaged. (Formats whose EXIF may follow the pixels, such as PNG, are
    read only when the header already carried it, so this never decodes.)"""
    if "exif" not in img.info and img.format not in ("TIFF", "MPO"):
        return 1
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block never makes the image itself unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


#: ``request(full_size) -> (width, height) | None``: the smallest decoded size (upright pixels)
#: a function needs from an image whose full upright size is ``full_size``; None for all pixels.
DecodeRequest = Callable[[tuple[int, int]], tuple[int, int] | None]


@dataclass(frozen=True)
class Reduction:
    """Where the full image lies in an image decoded at reduced scale (see :func:`open_image`).

    ``full_size`` is the full upright image's size; ``box`` is its extent in the reduced image's
    pixel coordinates. libjpeg's scaled decode rounds the reduced size up, so the last row and
    column of the reduced image cover only part of a block; the box says exactly which part (as
    Pillow's own ``draft`` reports it), and after an EXIF turn that part may sit on the left or
    top. A resample given this box keeps the geometry of the full decode to a fraction of a
    pixel, so the reduced path's output matches the full one's (tests measure PSNR)."""

    full_size: tuple[int, int]
    box: tuple[float, float, float, float]

    def map_box(self, box: tuple[float, float, float, float] | None = None
                ) -> tuple[float, float, float, float]:
        """``box`` (full-image coordinates; default the whole image) in the reduced image's
        pixels, clamped to its extent (float rounding must not step outside it: Pillow refuses
        such a box)."""
        w, h = self.full_size
        x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
        bx0, by0, bx1, by1 = self.box
        sx, sy = (bx1 - bx0) / w, (by1 - by0) / h

        def clamp(v: float, lo: float, hi: float) -> float:
            return min(max(v, lo), hi)

        return (clamp(bx0 + x0 * sx, bx0, bx1), clamp(by0 + y0 * sy, by0, by1),
                clamp(bx0 + x1 * sx, bx0, bx1), clamp(by0 + y1 * sy, by0, by1))


#: Images open_image decoded at reduced scale, by id (a PIL image is not hashable), until freed.
_REDUCED: dict[int, Reduction] = {}
#: The decode request of the Resolver.reduced_value call running in this thread: passed this
#: way (not as an argument) so a subclass's ``value`` hook still runs around the opening.
_REQUEST: contextvars.ContextVar[DecodeRequest | None] = contextvars.ContextVar(
    "pxlite_decode_request", default=None)


def reduction_of(img: object) -> Reduction | None:
    """How ``img`` maps onto its full image if :func:`open_image` decoded it at reduced scale;
    None for every other image (full decodes, and anything derived from a reduced one)."""
    return _REDUCED.get(id(img))


def _remember(img: PILImage.Image, reduction: Reduction | None) -> None:
    if reduction is not None:
        _REDUCED[id(img)] = reduction
        weakref.finalize(img, _REDUCED.pop, id(img), None)


def _turned_box(orientation: int, size: tuple[int, int],
                box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``box`` in an image of ``size`` as it lies after ``ImageOps.exif_transpose`` applies
    ``orientation`` (the same transpose per tag as Pillow's table)."""
    a, b = size
    x0, y0, x1, y1 = box
    return {
        1: (x0, y0, x1, y1),
        2: (a - x1, y0, a - x0, y1),            # FLIP_LEFT_RIGHT
        3: (a - x1, b - y1, a - x0, b - y0),    # ROTATE_180
        4: (x0, b - y1, x1, b - y0),            # FLIP_TOP_BOTTOM
        5: (y0, x0, y1, x1),                    # TRANSPOSE
        6: (b - y1, x0, b - y0, x1),            # ROTATE_270
        7: (b - y1, a - x1, b - y0, a - x0),    # TRANSVERSE
        8: (y0, a - x1, y1, a - x0),            # ROTATE_90
    }[orientation]


def _draft(img: PILImage.Image, orientation: int, request: DecodeRequest) -> Reduction | None:
    """Ask libjpeg for a reduced decode (DCT scaling by 1/2, 1/4 or 1/8: Pillow's ``draft``)
    when ``request`` needs fewer pixels; must run before the pixels are loaded. The request is
    in upright pixels, so for orientations 5-8 (a quarter turn) its sides are swapped here.
    Only baseline/progressive JPEG files (format JPEG) scale at decode; anything else, or a
    request that would not halve a side, decodes in full (None)."""
    if img.format != "JPEG":
        return None
    w, h = img.size
    turned = orientation >= 5
    full = (h, w) if turned else (w, h)
    want = request(full)
    if want is None:
        return None
    rw, rh = (want[1], want[0]) if turned else want
    if rw < 1 or rh < 1 or min(w // rw, h // rh) < 2:
        return None  # libjpeg's scale would be 1: nothing to gain
    drafted = img.draft(None, (rw, rh))
    if drafted is None or img.size == (w, h):
        return None
    return Reduction(full, _turned_box(orientation, img.size, drafted[1]))


def open_image(path: Path | str, settings: Settings, name: str | None = None,
               reduce: DecodeRequest | None = None) -> PILImage.Image:
    """Open an image, upright, refusing declared sizes over ``max_image_pixels``; its pixels
    are decoded under the ``decode_memory_mb`` budget.

    The limit is checked here on the header's declared size, before any pixel is decoded, so a
    decompression bomb is refused without using its memory; Pillow's own process-wide limit is
    left alone (it belongs to the user's program as much as to pxlite).

    Orientation: an image whose EXIF orientation tag says its stored pixels are turned (phone
    photos: usually 6, "rotate 90 degrees clockwise to view") is returned as it is meant to be
    seen, i.e. through Pillow's ``ImageOps.exif_transpose``: ``width``/``height``, computed
    columns, UDFs, thumbnails and ``_repr_html_`` all see the upright image, and its EXIF no
    longer carries the tag (so an output saved from it is not turned a second time). This is
    what viewers and browsers show; Pixeltable and plain ``PIL.Image.open`` hand out the
    stored, sideways pixels instead. Such an image is decoded at once (turning needs the
    pixels); every other image stays lazy (header only) until its pixels are touched.

    Memory: in a worker thread (not the main one) the image's decoded size (width x height x
    bytes per pixel) is charged to the process-wide ``decode_memory_mb`` budget from this call
    until the image is freed; the call waits while the budget is used up by other threads (see
    :class:`_DecodeBudget`).

    Reduced decode: with ``reduce`` (a :data:`DecodeRequest`), a JPEG whose function needs
    fewer pixels (``thumbnail``, a strong ``resize``) is decoded at 1/2, 1/4 or 1/8 scale by
    libjpeg, several times faster and in a fraction of the memory; :func:`reduction_of` then
    tells how it maps onto the full image, and the charge is the reduced size. Such an image
    is only for the function that asked (see :meth:`Resolver.reduced_value`).
    """
    from PIL import Image, ImageOps

    limit = settings["max_image_pixels"]
    shown = name if name and not name.startswith("file://") else os.fspath(path)
    try:
        # By file name, so Pillow closes the file itself once the pixels are loaded.
        img = Image.open(os.fspath(path))
    except Image.DecompressionBombError as e:
        raise SchemaError(f"image {shown!r} is too large to decode safely ({e})") from e
    except FileNotFoundError as e:
        raise ObjectNotFoundError(f"file {shown!r} does not exist any more", uri=name) from e
    except (OSError, SyntaxError, ValueError) as e:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
        if head.lstrip()[:1] == b"<":
            raise SchemaError(f"{shown!r} is not an image: it is HTML or XML text") from e
        raise SchemaError(f"cannot read image {shown!r}: {e}") from e
    if img.width * img.height > limit:
        img.close()
        raise SchemaError(
            f"image {shown!r} declares {img.width}x{img.height} = "
            f"{img.width * img.height:,} pixels, over the limit of {limit:,} (max_image_pixels); "
            "raise max_image_pixels if the file is trusted"
        )
    orientation = image_orientation(img)
    reduction = None if reduce is None else _draft(img, orientation, reduce)
    nbytes = decoded_bytes(img.width, img.height, img.mode)  # after a draft: the reduced size
    budget = decode_budget_bytes(settings)
    if orientation == 1:
        _charge(img, nbytes, budget)
        _remember(img, reduction)  # still lazy: the function's resample loads it, reduced
        return img
    # Turned pixels: decode and transpose now, charged for the upright copy that is returned.
    key = _budget.acquire(nbytes, budget)
    try:
        with img:
            upright = ImageOps.exif_transpose(img)
    except Exception as e:
        if key is not None:
            _budget.release(key)
        raise SchemaError(f"cannot read image {shown!r}: {e}") from e
    assert upright is not None
    if key is not None:
        weakref.finalize(upright, _budget.release, key)
    _remember(upright, reduction)
    return upright


# ---- values for expressions and results ----------------------------------------------------
class Resolver:
    """Media access for expressions and results: values, file URLs, local paths.

    Takes stored references (``media:<key>`` for files in the database's own media folder,
    absolute URIs otherwise) as well as absolute URIs."""

    def __init__(self, settings: Settings | Callable[[], Settings], folder: MediaFolder
                 ) -> None:
        self._settings = settings
        self.folder = folder

    @property
    def settings(self) -> Settings:
        """The settings media is read with. Given as a function, it is called at the first
        media access (a query reading no media never resolves the settings: environment,
        config file), then kept."""
        if callable(self._settings):
            self._settings = self._settings()
        return self._settings

    def value(self, col: ColumnMeta, uri: str) -> Any:
        """A cell's user-facing value: a lazily loaded PIL image, or a local path."""
        uri = self.folder.uri(uri)
        if "://" not in uri:  # pxlite stores URIs only; anything else comes from a crafted file
            raise SchemaError(f"the stored value {uri[:80]!r} is not a file reference (a damaged "
                              "or crafted database file?); fix or delete the row")
        if col.type.name != "Image":
            return str(fetch_local(uri, self.settings))
        # A local image: open_image reports a missing file itself (no exists() per row). Its
        # errors name the stored reference (the URL), not the cache file behind it.
        path = storage.file_path(uri) if storage.is_local(uri) else fetch_local(uri, self.settings)
        return open_image(path, self.settings, name=uri, reduce=_REQUEST.get())

    def reduced_value(self, col: ColumnMeta, uri: str, request: DecodeRequest,
                      cached: Any = None) -> tuple[Any, bool]:
        """An Image cell's value for one function that needs only ``request``'s pixels:
        ``(image, shared)``.

        ``shared`` False: the image was decoded at reduced scale (:func:`reduction_of` says
        how) and belongs to that one call; it must never serve another expression, which may
        need full pixels (a row caches values per column, so it is not cached). ``shared``
        True: the cell's ordinary value, fit for the row's cache: ``cached`` (the row's value
        so far) when its pixels are already decoded (reducing would decode a second time), or
        a full open when no reduction applies (not a JPEG, a small image, a mild resize).

        The opening goes through :meth:`value` (the request travels in a context variable),
        so a subclass's checks around ``value`` apply here too.
        """
        if cached is not None and not getattr(cached, "tile", None):
            return cached, True  # decoded already (or not lazily opened): use those pixels
        token = _REQUEST.set(request)
        try:
            img = self.value(col, uri)
        finally:
            _REQUEST.reset(token)
        if reduction_of(img) is not None:
            return img, False
        if cached is not None:  # a second, full, lazy open: keep the row's own
            with contextlib.suppress(Exception):
                img.close()
            return cached, True
        return img, True

    def fileurl(self, uri: str) -> str:
        return fileurl(self.folder.uri(uri), self.settings)

    def localpath(self, uri: str) -> str:
        return str(fetch_local(self.folder.uri(uri), self.settings))
