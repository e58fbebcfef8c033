"""Local folders: ``file:///abs/path`` URIs, written atomically (temp file + ``os.replace``).

The file scheme's grammar (plain paths, ``file:`` URIs, relative destinations confined to a base
folder) is :meth:`LocalBackend.canonical_prefix`; ``pxlite.storage`` keeps the per-row helpers
``to_uri``, ``file_path`` and ``join``, since a path is the one form without a scheme.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..config import Settings
from ..errors import ConfigError, ObjectNotFoundError, StorageError
from . import file_path as _path_of
from .base import (
    FOLDERS,
    TEMP_PREFIX,
    ListedObject,
    ObjectInfo,
    StorageBackend,
    atomic_target,
    create_temp,
    note_synced,
    peek_synced,
    sync_data,
    sync_file,
    take_synced,
)

#: A relative path urllib.parse.quote (safe='/') returns unchanged: ASCII letters, digits,
#: '_.-~' and '/'. A listing skips quoting such names (a quarter of its time per file).
_URI_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*").fullmatch

# A full disk or a vanished network mount may recover; a missing permission will not.
_RETRYABLE_ERRNOS = {errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EIO,
                     errno.ESTALE}


#: A temp file untouched this long is no write in progress but the leftover of a killed one:
#: list() then reports it, so check() sees an orphan and check(fix=True) removes it.
STALE_TEMP_S = 3600


def _stale(path: str) -> bool:
    try:
        return time.time() - os.stat(path).st_mtime > STALE_TEMP_S
    except OSError:
        return False  # gone meanwhile: its write finished


def _error(e: OSError, uri: str, doing: str) -> StorageError:
    if isinstance(e, FileNotFoundError):
        return ObjectNotFoundError(f"no file at {uri}", uri=uri)
    return StorageError(f"cannot {doing} {uri}: {e.strerror or e}", uri=uri,
                        retryable=e.errno in _RETRYABLE_ERRNOS)


def _is_file_uri(uri: str) -> bool:
    return uri[:5].lower() == "file:"


def _vanished(uri: str, root: str | None, what: str) -> StorageError:
    where = f"the destination folder {root}" if root else "its folder"
    return StorageError(
        f"{what} {_path_of(uri)} ({uri}), which this operation stored, is missing: {where} was "
        "removed or changed while the operation ran; nothing was committed. Check that no "
        "other program deletes or moves that folder, then run the operation again", uri=uri,
        retryable=False)


def _sync_failed(e: OSError, uri: str, what: str) -> StorageError:
    # Not retryable: after a failed fsync the kernel may have dropped the unwritten pages, so
    # asking again could "succeed" without the bytes ever reaching the disk.
    return StorageError(f"cannot make {what} {uri} durable: {e.strerror or e}; nothing was "
                        "committed", uri=uri, retryable=False)


def make_durable(file_uris: Iterable[str], root_uris: Iterable[str]) -> None:
    """Before the commit that names these local files (file:// URIs): make their bytes and
    directory entries durable and confirm each exists.

    ``root_uris`` are the destination prefixes (``file:///dest/``) the files were written under.
    Every folder from a file's parent up to and including its root, and the root's parent (the
    root may be new itself), is fsynced once per call however many files share it. A file whose
    bytes this process synced when writing it (``put_bytes_new``, ``atomic_target``) is only
    checked to exist; any other file (found already in place) is opened and synced. Opening a
    folder or file that is gone raises :class:`StorageError` (not retryable) naming the file: the
    destination was removed mid-operation and the caller must not commit. Non-``file:`` URIs are
    ignored; a file under none of the roots gets only its own folder synced.
    """
    roots = sorted({os.fspath(_path_of(r)).rstrip(os.sep) or os.sep
                    for r in root_uris if _is_file_uri(r)}, key=len, reverse=True)
    files: dict[str, str] = {}  # path -> uri, deduplicated, in order
    folders: dict[str, tuple[str, str | None]] = {}  # folder -> (first uri under it, its root)
    walked: set[tuple[str | None, str]] = set()
    leaves: set[str] = set()  # the files' own folders
    for uri in file_uris:
        if not _is_file_uri(uri):
            continue
        path = os.fspath(_path_of(uri))
        if path in files:
            continue
        files[path] = uri
        root = next((r for r in roots if path.startswith(r.rstrip(os.sep) + os.sep)), None)
        stop = os.path.dirname(root) if root else None
        folder = os.path.dirname(path)
        leaves.add(folder)
        while (root, folder) not in walked:
            walked.add((root, folder))
            folders.setdefault(folder, (uri, root))
            parent = os.path.dirname(folder)
            if stop is None or folder == stop or parent == folder:
                break
            folder = parent
    # Folders first: a removed destination shows up at its first missing folder. The files'
    # existence is confirmed after their folder entries are synced (never the reverse).
    if os.name != "nt":  # Windows cannot open a folder to sync it (NTFS journals entries)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
        # A folder holding only files this process wrote, and synced in the background after
        # it last linked one there, needs no second sync (most of a batch's many <xx>/ folders).
        # Every other folder is synced here: the folders above them (a change there may have
        # come from anywhere), and a folder holding a file found already in place (another
        # program may have linked it after the background sync and not committed yet).
        theirs = {os.path.dirname(p) for p in files if not peek_synced(p)}
        for folder, (uri, root) in folders.items():
            if folder in leaves and folder not in theirs and FOLDERS.clean(folder):
                if not os.path.isdir(folder):
                    raise _vanished(uri, root, "the file")
                continue
            began = FOLDERS.began()
            try:
                fd = os.open(folder, flags)
            except (FileNotFoundError, NotADirectoryError) as e:
                raise _vanished(uri, root, "the file") from e
            except OSError as e:
                raise _sync_failed(e, folder, "the folder") from e
            try:
                os.fsync(fd)
            except OSError as e:
                raise _sync_failed(e, folder, "the folder") from e
            finally:
                os.close(fd)
            FOLDERS.synced(folder, began)
    for path, uri in files.items():
        root = folders[os.path.dirname(path)][1]
        try:
            if take_synced(path):
                if not stat.S_ISREG(os.stat(path).st_mode):
                    raise FileNotFoundError(path)
            else:
                sync_file(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            raise _vanished(uri, root, "the file") from e
        except OSError as e:
            raise _sync_failed(e, uri, "the file") from e


#: O_TMPFILE (Linux): an unnamed file in a folder, given a name only by linking it into place;
#: nothing is left behind if the process dies mid-write. 0 where the platform has none.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_tmpfile_works = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")


def _new_file(folder: Path) -> tuple[int, str]:
    """An open, writable new file in ``folder``: ``(fd, '')`` for an unnamed O_TMPFILE, else
    ``(fd, temp path)`` (see storage.base.create_temp). Mode 0o666 less the umask either way."""
    global _tmpfile_works
    if _tmpfile_works:
        try:
            return os.open(folder, _O_TMPFILE | os.O_WRONLY, 0o666), ""
        except IsADirectoryError:
            _tmpfile_works = False  # kernel without O_TMPFILE: it sees only O_DIRECTORY
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EISDIR):
                raise
            # this filesystem has no O_TMPFILE (others may): a named temp file here
    return create_temp(folder)


_root_fd: int | None = None


def _link(fd: int, tmp: str, target: str | Path) -> None:
    """Give the written file its name: hard-link the temp file ``tmp``, or, for an unnamed
    O_TMPFILE (``tmp`` ''), its ``/proc/self/fd`` entry followed to the inode (linkat with
    AT_SYMLINK_FOLLOW, which os.link uses only when given a directory fd: any will do for an
    absolute path, so the root folder's, opened once and the same after a fork)."""
    global _root_fd
    if tmp:
        os.link(tmp, target)
        return
    if _root_fd is None:
        _root_fd = os.open("/", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=_root_fd, follow_symlinks=True)


def _named(fd: int, target: Path) -> Path:
    """A temp name beside ``target`` for an unnamed O_TMPFILE (to os.replace it into place)."""
    while True:
        tmp = target.parent / f"{TEMP_PREFIX}{os.urandom(16).hex()}"
        try:
            _link(fd, "", tmp)
            return tmp
        except FileExistsError:
            continue


def _folder_uri(text: str | os.PathLike, base: Path | None) -> str:
    """The ``file:///abs/dir/`` prefix of a destination path or ``file:`` URI (see
    :meth:`LocalBackend.canonical_prefix`)."""
    if isinstance(text, str) and _is_file_uri(text):
        path = _path_of(text)
    else:
        raw = os.path.expanduser(os.fspath(text))
        if not raw:
            raise ConfigError("an empty string is not a destination; give a folder path or URI")
        path = Path(raw)
        if not path.is_absolute():
            anchor = Path(base) if base is not None else Path.cwd()
            path = anchor / path
            if base is not None:
                resolved, root = path.resolve(), anchor.resolve()
                if not resolved.is_relative_to(root):
                    raise ConfigError(
                        f"{os.fspath(text)!r}: the relative destination resolves to {resolved}, "
                        f"outside {root} (through '..' or a symlink); give a folder inside it "
                        "or an absolute path")
    uri = Path(os.path.abspath(path)).as_uri()
    return uri if uri.endswith("/") else uri + "/"


class LocalBackend(StorageBackend):
    """Files in local folders; ``version`` is mtime, size and inode (new on every replace)."""

    # -- grammar: paths (no scheme) and file:///abs/path ---------------------------------------

    @classmethod
    def uri_forms(cls, scheme: str) -> tuple[str, ...]:
        return ("a local path", "file:///path")

    @classmethod
    def canonical_prefix(cls, text: str | os.PathLike, settings: Settings, *,
                         base: Path | None = None) -> str:
        """``file:///abs/dir/`` for a path or ``file:`` URI; a relative path resolves against
        ``base`` (or the current folder) and, when ``base`` is given, may not leave it through
        ``..`` or a symlink. No I/O beyond resolving symlinks."""
        if "\x00" in os.fspath(text):
            raise ConfigError(f"{os.fspath(text)!r} is not a usable destination: it contains a "
                              "NUL character")
        try:
            return _folder_uri(text, base)
        except (RuntimeError, OSError, ValueError) as e:  # a symlink loop, an unreadable folder
            raise ConfigError(f"{os.fspath(text)!r}: cannot resolve this destination ({e})") from e

    # -- operations ----------------------------------------------------------------------------

    def put_file(self, local_path: str | os.PathLike, uri: str,
                 content_type: str | None = None) -> None:
        target = _path_of(uri)
        try:
            if target.exists() and os.path.samefile(local_path, target):
                return  # already in place; copying onto itself would truncate it
            with atomic_target(target) as tmp:
                shutil.copyfile(local_path, tmp)
        except FileNotFoundError as e:
            if not os.path.exists(local_path):
                raise StorageError(f"cannot store {uri}: the source file {local_path} does not "
                                   "exist", uri=uri) from e
            raise _error(e, uri, "write") from e
        except OSError as e:
            raise _error(e, uri, "write") from e

    def put_bytes(self, data: bytes, uri: str, content_type: str | None = None) -> None:
        try:
            with atomic_target(_path_of(uri)) as tmp:
                tmp.write_bytes(data)
        except OSError as e:
            raise _error(e, uri, "write") from e

    def put_bytes_new(self, data: bytes, uri: str, content_type: str | None = None) -> bool:
        # One atomic step instead of exists + write + replace: write an unnamed file (Linux's
        # O_TMPFILE; elsewhere a temp file) beside the target, sync its bytes, and hard-link it
        # into place; an existing target (same content) stays as is. Fewer system calls matter
        # here: this runs once per computed image. The sync runs here, in the writer's thread,
        # so it overlaps with compute; the folder's entry is synced in the background
        # (FOLDERS) and, where that has not happened yet, by make_durable() before the commit.
        target = _path_of(uri)
        try:
            try:
                fd, tmp = _new_file(target.parent)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = _new_file(target.parent)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    sync_data(fd)
                    try:
                        _link(fd, tmp, target)
                    except FileExistsError:
                        return self._repair_existing(fd, tmp, target, len(data))
                    except OSError as e:
                        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV,
                                           errno.EMLINK):
                            raise
                        # a filesystem without hard links: check, then replace
                        if target.exists():
                            return self._repair_existing(fd, tmp, target, len(data))
                        os.replace(tmp or _named(fd, target), target)
                finally:
                    os.close(fd)
                note_synced(target)
                return True
            finally:
                if tmp:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
        except FileNotFoundError as e:
            # The folder was there (or just made) a moment ago: another program removed it.
            raise StorageError(
                f"cannot write {target}: its folder {target.parent} was removed or changed while "
                "the operation ran; check that no other program deletes or moves the destination "
                "folder, then run the operation again", uri=uri, retryable=False) from e
        except OSError as e:
            raise _error(e, uri, "write") from e

    def put_file_new(self, local_path: str | os.PathLike, uri: str,
                     content_type: str | None = None) -> bool:
        # A stat is cheap here (no request), and it keeps the answer exact: a file that was
        # there is not this operation's, so an undo leaves it alone.
        if self.exists(uri):
            return False
        self.put_file(local_path, uri, content_type)
        return True

    @staticmethod
    def _repair_existing(fd: int, tmp: str, target: Path, size: int) -> bool:
        """A content-addressed target exists: keep it, unless its size betrays a file a power
        cut truncated before this fix synced writes (0 bytes under a full name); then the synced
        new file (``fd``, named ``tmp`` or unnamed) replaces it. False either way: the name was
        there before this operation, so undoing the operation must not delete it."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(target).st_size == size:
                return False
        os.replace(tmp or _named(fd, target), target)
        note_synced(target)
        return False

    def get_file(self, uri: str, local_path: str | os.PathLike) -> None:
        source = _path_of(uri)
        try:
            with atomic_target(local_path) as tmp:
                shutil.copyfile(source, tmp)
        except OSError as e:
            raise _error(e, uri, "read") from e

    def open(self, uri: str) -> BinaryIO:
        try:
            return open(_path_of(uri), "rb")
        except IsADirectoryError as e:
            raise ObjectNotFoundError(f"{uri} is a folder, not a file", uri=uri) from e
        except OSError as e:
            raise _error(e, uri, "read") from e

    def exists(self, uri: str) -> bool:
        return _path_of(uri).is_file()

    def stat(self, uri: str) -> ObjectInfo:
        try:
            st = os.stat(_path_of(uri))
        except OSError as e:
            raise _error(e, uri, "stat") from e
        return ObjectInfo(st.st_size, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}")

    def delete(self, uri: str) -> None:
        try:
            _path_of(uri).unlink(missing_ok=True)
        except OSError as e:
            raise _error(e, uri, "delete") from e

    def list(self, prefix_uri: str) -> Iterator[str]:
        # A prefix need not end at a folder boundary: walk its folder, filter by the string prefix.
        folder_uri = prefix_uri[: prefix_uri.rfind("/") + 1]
        folder = _path_of(folder_uri)
        if not folder.is_dir():
            return
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX) and not _stale(os.path.join(root, name)):
                    continue  # an upload in progress, not an object
                uri = Path(root, name).as_uri()
                if uri.startswith(prefix_uri):
                    yield uri

    def list_info(self, prefix_uri: str) -> Iterator[ListedObject]:
        # os.scandir, streamed: a folder of a million files is never held as a list (and
        # DirEntry.stat() costs one system call, the one the size and mtime need anyway).
        # Symlinks to files are listed; symlinked folders are not entered (as os.walk).
        folder_uri = prefix_uri[: prefix_uri.rfind("/") + 1]
        folder = _path_of(folder_uri)
        partial = urllib.parse.unquote(prefix_uri[len(folder_uri):])
        if not folder.is_dir():
            return
        quote = urllib.parse.quote_from_bytes
        encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
        stack = [(str(folder), "")]
        while stack:
            where, rel = stack.pop()
            subdirs = []
            try:
                entries = os.scandir(where)
            except FileNotFoundError:
                continue  # removed while listed
            except OSError as err:
                raise _error(err, folder_uri + quote(os.fsencode(rel)), "list") from err
            with entries:
                for entry in entries:
                    name = rel + entry.name
                    if partial and not name.startswith(partial):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append((entry.path, name + "/"))
                            continue
                        if not entry.is_file():
                            continue  # a FIFO, socket, device or dangling link: no object
                        if entry.name.startswith(TEMP_PREFIX) and not _stale(entry.path):
                            continue  # an upload in progress, not an object
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    # os.fsencode, without its per-call lookups: listings run per file;
                    # a name quote() would leave as it is (most are) is not quoted
                    uri = folder_uri + (name if _URI_SAFE(name) else
                                        quote(name.encode(encoding, errors)))
                    yield ListedObject(uri, name[len(partial):], st.st_size, st.st_mtime, None)
            stack.extend(reversed(subdirs))

    def presign(self, uri: str, expires_s: int) -> str:
        raise ConfigError(f"cannot presign {uri}: presigned URLs need cloud storage; configure a "
                          "cloud destination")

    def fileurl(self, uri: str) -> str:
        return uri

    def check_writable(self, prefix_uri: str) -> None:
        folder = _path_of(prefix_uri)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".pxlite-probe-{os.urandom(16).hex()}"
            with atomic_target(probe, durable=False) as tmp:  # deleted at once
                tmp.write_bytes(b"pxlite write probe")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"the destination folder {folder} is not writable "
                              f"({e.strerror or e}); choose a folder you can write to") from e
