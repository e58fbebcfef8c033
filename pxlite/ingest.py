"""Turning inserted Python values into the values SQLite stores, fast.

``insert()`` of 100,000 plain rows must stay within 2x of a bare ``executemany``, so the per-row
work is a small function generated for the table's input columns (the technique ``dataclasses``
uses): straight-line code with a type fast path per column, falling back to the full validating
converter for anything unusual (None, other types, values that need checking). Column names
reach the generated code only as bound constants, never as source text.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import media, storage
from .catalog import ColumnMeta
from .errors import (
    ComputeError,
    ConfigError,
    NotFoundError,
    SchemaError,
    StorageError,
    failed_cell,
)
from .types import is_pil_image
from .writes import Operation

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

#: Fast-path guards by type name: the value is stored as is when the guard holds.
_FAST_GUARD = {
    "Int": "type({v}) is int and {lo} <= {v} <= {hi}",
    "String": "type({v}) is str and {v}.isascii()",
    "Float": "type({v}) is float and {v} == {v}",  # NaN fails v == v and takes the full path
}

CellError = tuple[int, ColumnMeta, str, str]   # (rowid, column, errortype, errormsg)

#: The errors of a value that cannot be stored in a column (its cell's error, under on_error).
INPUT_ERRORS = (SchemaError, StorageError, ConfigError, NotFoundError)


def failed_input(on_error: str, e: BaseException, table_path: str, row: int, col: ColumnMeta,
                 value: Any = None) -> list[Any]:
    """A value of an insert or update that cannot be stored in ``col`` (one of INPUT_ERRORS):
    under on_error='abort', and always for a Required column (it cannot be left empty), raise a
    ComputeError naming the row, the column and the cause; else return the cell to store,
    ``[None, errortype, errormsg]``."""
    why = "" if col.type.nullable else " (Required: cannot be left empty)"
    # What to do about it, unless the column cannot be left empty anyway
    hint = "" if why else ("; nothing was written. Pass on_error='ignore' to store the other "
                           "rows, with this cell left empty and its error kept")
    return failed_cell(
        on_error, e, ComputeError(
            f"row {row}, column {col.name!r}{why} of {table_path!r}: {e}{hint}",
            table=table_path, row=row, column=col.name, value=value,
            errortype=type(e).__name__),
        required=not col.type.nullable)


class RowConverter:
    """Converts input rows (dicts) to parameter tuples ``(rowid, v1, v2, ...)`` for one insert.

    Rows that are not dicts of known columns go to ``check_row``, which raises. Errors follow
    ``on_error``: 'abort' raises a ComputeError naming row, column and value;
    'ignore' stores None and records the error in :attr:`errors` (Required columns always abort).
    """

    def __init__(self, table_path: str, inputs: list[ColumnMeta],
                 convs: list[Callable[[Any], Any]], on_error: str,
                 check_row: Callable[[int, Any], None], known: frozenset[str]) -> None:
        self.path = table_path
        self.inputs = inputs
        self.convs = convs
        self.on_error = on_error
        self.errors: list[CellError] = []
        self._check_row = check_row   # raises for a row that is not a dict of known columns
        self._known = known
        self._convert = self._generate()

    def _full(self, j: int, v: Any, i: int, rowid: int) -> Any:
        """The validating path for column ``j`` of input row ``i``."""
        c = self.inputs[j]
        if v is None:
            if not c.type.nullable:
                raise SchemaError(f"row {i}: column {c.name!r} of {self.path!r} is Required; "
                                  "give it a value")
            return None
        try:
            return self.convs[j](v)
        except INPUT_ERRORS as e:
            try:
                _, et, em = failed_input(self.on_error, e, self.path, i, c, v)
            except ComputeError as err:  # on_error='abort': the frames below add nothing
                raise err.with_traceback(None) from err.__cause__
            self.errors.append((rowid, c, et, em))
            return None

    def _generate(self) -> Callable[[Any, int, int], tuple]:
        lines = ["def convert(row, i, rowid):",
                 "    if type(row) is not dict or not row.keys() <= KNOWN:",
                 "        check_row(i, row)",
                 "    get = row.get"]
        env: dict[str, Any] = {"full": self._full, "check_row": self._check_row,
                               "KNOWN": self._known}
        for j, c in enumerate(self.inputs):
            v = f"v{j}"
            env[f"N{j}"] = c.name
            lines.append(f"    {v} = get(N{j})")
            guard = _FAST_GUARD.get(c.type.name)
            if guard and not c.type.is_media:
                cond = guard.format(v=v, lo=_INT_MIN, hi=_INT_MAX)
                lines.append(f"    if not ({cond}):")
                lines.append(f"        {v} = full({j}, {v}, i, rowid)")
            else:
                lines.append(f"    {v} = full({j}, {v}, i, rowid)")
        values = "".join(f"v{j}, " for j in range(len(self.inputs)))
        lines.append(f"    return (rowid, {values})")
        exec("\n".join(lines), env)
        return env["convert"]

    def rows(self, rows: Iterable[Any], base: int) -> Iterator[tuple]:
        """Parameter tuples for ``rows``, rowids from ``base`` (lazily; map keeps the per-row
        loop in C)."""
        return map(self._convert, rows, itertools.count(), itertools.count(base))


# ---- media values --------------------------------------------------------------------------------
class MediaInput:
    """Turns inserted media values (a path, a URL, a PIL image, bytes) into the stored reference
    for one operation: a local path stays where it is (a ``file://`` reference), a URL is stored
    as given, a PIL image or bytes becomes a new file at the input destination; with
    ``input_media_dest`` set, every input is persisted there. Returns the stored form
    (relative inside the database's media folder)."""

    def __init__(self, op: Operation) -> None:
        self.op = op
        self.persist = bool(op.settings.get("input_media_dest"))
        self._cwd: str | None = None

    def __call__(self, value: Any, col: ColumnMeta) -> str:
        return self.op.places.stored(self.store(value, col))

    def store(self, value: Any, col: ColumnMeta) -> str:
        """The absolute URI of the stored input."""
        op = self.op
        kind = col.type.kind  # type: ignore[attr-defined]
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            if _URL.match(value) and not value.lower().startswith("file://"):
                storage.scheme_of(value)  # an unknown scheme is an error now, not at first read
                return self._persist_url(value, col) if self.persist else value
            if value.lower().startswith("file://"):
                path: Any = storage.file_path(value)
            else:  # strings, not Path objects: this runs for every inserted path
                path = os.path.expanduser(value)
                if not os.path.isabs(path):
                    if self._cwd is None:  # once per operation: getcwd() is a system call
                        self._cwd = os.getcwd()
                    path = os.path.join(self._cwd, path)
            ext = media.check_local_file(path, kind)
            if self.persist:
                return op.upload(path, ext, col, op.input_prefix())
            return storage.to_uri(path)
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            ext = media.check_header(data[: media.HEADER_BYTES], kind, "the bytes given")
            return op.write_bytes(data, ext, col, op.input_prefix())
        if kind == "image" and is_pil_image(value):
            data, ext = media.encode_image(value, media.input_format(value))
            return op.write_bytes(data, ext, col, op.input_prefix())
        raise SchemaError(
            f"expected {col.type.expect()}, got {type(value).__name__} {str(value)[:60]!r}"
        )

    def _persist_url(self, url: str, col: ColumnMeta) -> str:
        """Copy a URL's file to the input destination with ONE download: the downloaded file is
        uploaded, and the upload also makes it the cache entry of the persisted copy (no
        upload->download)."""
        import tempfile

        op = self.op
        kind = col.type.kind  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory(prefix="pxlite-in-") as tmp:
            local = Path(tmp) / "download"
            storage.get_backend(url, op.settings).get_file(url, local)
            with open(local, "rb") as f:
                ext = media.check_header(f.read(media.HEADER_BYTES), kind, f"the file at {url}")
            return op.upload(local, ext, col, op.input_prefix())
