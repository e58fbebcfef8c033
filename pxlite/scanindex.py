"""The scan index: a covering index of a wide table's narrow columns, so that scans which need
none of its wide values do not read them.

SQLite keeps a row's values together on its table's pages. A table whose rows hold a wide
Array (a 512-float32 vector is 2 KB: one row per 4 KB page) is therefore read whole by any query
that scans it, even one that needs none of its vectors: a ``count()``, a ``group_by`` on a
label, or the ``where`` of a filtered similarity search (for 100,000 such rows, 412 MB read to
find the 10% with ``cat == 3``: 120 ms; 3.6 ms from this index). Postgres moves such values
out of the row (TOAST); here a table with a wide column gets one index of its narrow columns,
``t_<id>_scan``. SQLite keeps it current in every write's own transaction, whichever code
writes, and its planner reads it instead of the table whenever a query needs nothing else
(``SCAN ... USING COVERING INDEX``), a ``count()`` included. It costs the narrow values once
more in the file (about 2 MB per 100,000 rows of a few numbers) and an index entry per written
row, small beside writing the wide value.

The index leads with the rowid: its entries are in the table's order, so new rows append to
its end as they do to the table (led by a column of random values, such as content-addressed
file names, every insert lands on a random page: 3x the insert time of 200,000 rows, against
1.17x), and a scan of it gives rows in rowid order (so ``ORDER BY _rowid`` reads it too).

Which tables: those with an Array column of at least :data:`WIDE_BYTES` per row, or of a free
shape (size unknown), including the hidden vectors of an embedding index on an Image or
String column. Which columns: after the rowid, the table's own stored columns of narrow types
(numbers, booleans, times, strings, media references), by position; not Json or Array values,
and not the error columns. The index is made again whenever that set changes (a column added,
dropped, hidden or brought back by a revert), which reads the table once, as an
``ALTER TABLE ... DROP COLUMN`` does anyway. A file written before the index existed gets it
at its table's next schema change or embedding index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import vectors
from .types import ArrayType, JsonType

if TYPE_CHECKING:
    from .catalog import ColumnMeta
    from .db import Database

#: An Array column of at least this many bytes per row makes its table wide: 512 bytes is
#: 128 float32s, a row to an eighth of a 4 KB page, where a row of a few numbers takes ~1/150.
WIDE_BYTES = 512


def index_name(store: str) -> str:
    """The scan index of a data table (``t_<id>`` -> ``t_<id>_scan``)."""
    return f"{store}_scan"


def is_wide(col: ColumnMeta) -> bool:
    """Does this column's value make a row wide: an Array of WIDE_BYTES or more, or of a free
    shape?"""
    t = col.type
    if not isinstance(t, ArrayType):
        return False
    if t.shape is None or any(d is None for d in t.shape):
        return True
    return math.prod(d for d in t.shape if d is not None) * vectors.item_bytes(t.dtype) \
        >= WIDE_BYTES


def wanted(columns: Iterable[ColumnMeta]) -> list[str]:
    """The SQL columns the scan index of a table with these columns should hold, in order:
    ``_rowid`` then the narrow ones (none when no column is wide; the rowid alone when none is
    narrow, for counts)."""
    own = [c for c in columns if c.base_table is None and c.stored]
    if not any(is_wide(c) for c in own):
        return []
    return ["_rowid"] + [c.sql for c in sorted(own, key=lambda c: c.position)
                         if not isinstance(c.type, (ArrayType, JsonType))]


def current(db: Database, store: str) -> list[str]:
    """The SQL columns the table's scan index holds now, in order (none: no index)."""
    return [r[0] for r in db.query("SELECT name FROM pragma_index_info(?) ORDER BY seqno",
                                   (index_name(store),))]


def sync(db: Database, store: str, columns: Iterable[ColumnMeta]) -> None:
    """Inside the caller's write transaction: make the table's scan index the one its columns
    call for (made, remade or dropped; nothing when it is already right)."""
    want = wanted(columns)
    have = current(db, store)
    if want == have:
        return
    if have:
        db.execute(f"DROP INDEX {index_name(store)}")
    if want:
        # Names from integer column ids: nothing user-made in this statement.
        db.execute(f"CREATE INDEX {index_name(store)} ON {store} ({', '.join(want)})")


def release(db: Database, store: str, sql_column: str) -> None:
    """Inside the caller's write transaction: drop the scan index if it holds ``sql_column``
    (SQLite refuses to drop an indexed column); the caller syncs once the column is gone."""
    if sql_column in current(db, store):
        db.execute(f"DROP INDEX {index_name(store)}")
