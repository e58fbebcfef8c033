"""Local folders: ``file:///abs/path`` URIs, written atomically (temp file + ``os.replace``)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, ObjectNotFoundError, StorageError
from . import local_path as _path_of
from .base import TEMP_PREFIX, ObjectInfo, StorageBackend, atomic_target, create_temp

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


class LocalBackend(StorageBackend):
    """Files in local folders; ``version`` is mtime, size and inode (new on every replace)."""

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
        # One atomic step instead of exists + write + replace: write a temp file beside the
        # target and hard-link it into place; an existing target (same content) stays as is.
        # Fewer system calls matter here: this runs once per computed image.
        target = _path_of(uri)
        try:
            try:
                fd, tmp = create_temp(target.parent)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = create_temp(target.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                try:
                    os.link(tmp, target)
                    return True
                except FileExistsError:
                    return False
                except OSError as e:
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                        raise
                    # a filesystem without hard links: check, then replace
                    if target.exists():
                        return False
                    os.replace(tmp, target)
                    return True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as e:
            raise _error(e, uri, "write") from e

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

    def presign(self, uri: str, expires_s: int) -> str:
        raise ConfigError(f"cannot presign {uri}: presigned URLs need cloud storage; configure a "
                          "cloud destination")

    def fileurl(self, uri: str) -> str:
        return uri

    def check_writable(self, prefix_uri: str) -> None:
        folder = _path_of(prefix_uri)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".pxlite-probe-{uuid.uuid4().hex}"
            with atomic_target(probe) as tmp:
                tmp.write_bytes(b"pxlite write probe")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"the destination folder {folder} is not writable "
                              f"({e.strerror or e}); choose a folder you can write to") from e
