"""Turning inserted Python values into the values SQLite stores, fast.

``insert()`` of 100,000 plain rows must stay within 2x of a bare ``executemany``, so the per-row
work is a small function generated for the table's input columns (the technique ``dataclasses``
uses): straight-line code with a type fast path per column, falling back to the full validating
converter for anything unusual (None, other types, values that need checking). Column names
reach the generated code only as bound constants, never as source text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .catalog import ColumnMeta
from .errors import ComputeError, ConfigError, NotFoundError, SchemaError, StorageError

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

#: Fast-path guards by type name: the value is stored as is when the guard holds.
_FAST_GUARD = {
    "Int": "type({v}) is int and {lo} <= {v} <= {hi}",
    "String": "type({v}) is str and {v}.isascii()",
    "Float": "type({v}) is float and {v} == {v}",  # NaN fails v == v and takes the full path
}

CellError = tuple[int, ColumnMeta, str, str]   # (rowid, column, errortype, errormsg)


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
        except (SchemaError, StorageError, ConfigError, NotFoundError) as e:
            if self.on_error == "abort" or not c.type.nullable:
                why = "" if c.type.nullable else " (Required: cannot be left empty)"
                raise ComputeError(f"row {i}, column {c.name!r}{why} of {self.path!r}: {e}",
                                   table=self.path, row=i, column=c.name, value=v,
                                   errortype=type(e).__name__) from e
            self.errors.append((rowid, c, type(e).__name__, str(e)))
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
        exec("\n".join(lines), env)  # noqa: S102  (code built above from fixed templates only)
        return env["convert"]  # type: ignore[no-any-return]

    def rows(self, rows: Iterable[Any], base: int) -> Iterator[tuple]:
        """Parameter tuples for ``rows``, rowids from ``base`` (lazily; map keeps the per-row
        loop in C)."""
        return map(self._convert, rows, itertools.count(), itertools.count(base))
