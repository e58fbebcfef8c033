"""Exact similarity searches over an embedding index's vectors held in memory.

A search reads an index's vectors (a column of the table, see :mod:`pxlite.embeddings`) once
into a float32 matrix per connection (:class:`Vectors`, rows normalised for the cosine metric),
and afterwards applies only the rows the index's change log lists since (SQL triggers log every
write to the table, whoever makes it). A query ordered first by a similarity (:class:`TopK`) is
then one matrix-vector product over the rows its ``where()`` selects, and an exact top-k, ties
broken by rowid; the query is rewritten to read just those rows, in that order, with the
similarities found.

A filtered search of thousands of rows first narrows them with an int8 *sketch* of the matrix
(a quarter of its bytes, made by the first such search, then kept current row by row): each
row's score from the sketch comes with a bound on its error, and only the rows whose bound
leaves them a chance of the top-k (usually a few dozen) are scored in float32. Scattered rows
are read from memory at its bandwidth, so a quarter of the bytes is most of the time saved.

The rows a search's ``where()`` selects come from numpy over columns held in memory when its
conditions allow (:mod:`pxlite.vecfilter`); else from SQLite, remembered per connection until
the database changes (:func:`filtered_rowids`), so searches repeated over one filter, such as
one album or one label, evaluate it once.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import catalog
from .catalog import ColumnMeta, TableMeta
from .embeddings import EmbeddingIndex, SimilarityExpr, stored_dtype
from .errors import SchemaError
from .exprs import Expr, RowContext
from .types import Bool, Float
from .uda import aggregates_in
from .vectors import numpy

if TYPE_CHECKING:
    from .db import Database
    from .queryplan import Clauses


# ---- the vectors in memory -----------------------------------------------------------------------
class Vectors:
    """One index's vectors held in memory for one connection: the rows that have one (sorted
    rowids), their float32 matrix (rows normalised for cosine), and the change-log entry they
    reflect."""

    def __init__(self, index: EmbeddingIndex, np: Any, stored: str) -> None:
        self.index, self.np = index, np
        self.stored = stored  # the element type of the BLOBs read (see embeddings.stored_dtype)
        self.rowids = np.zeros(0, dtype=np.int64)
        self.buf = np.zeros((0, index.dim), dtype=np.float32)
        self.n = 0
        self.alive = np.zeros(0, dtype=bool)
        self.dead = 0
        self.sq = np.zeros(0, dtype=np.float32)   # squared norms (l2)
        # The int8 sketch of the matrix (see _candidates), made by the first search that can
        # use it, then kept current row by row: codes, scale and error bound per row of buf.
        self.codes: Any = None
        self.scale: Any = None
        self.slack: Any = None
        self.narrowed: tuple[int, int] | None = None  # the last top(): rows before, after it
        self.seq = -1
        self.schema = -1

    @property
    def matrix(self) -> Any:
        return self.buf[:self.n]

    def _prepared(self, blobs: list[bytes]) -> Any:
        np = self.np
        dt = np.dtype(self.stored).newbyteorder("<")
        m = np.frombuffer(b"".join(blobs), dtype=dt).reshape(len(blobs), self.index.dim)
        if self.stored != self.index.dtype:  # an Array column searched at another precision
            m = m.astype(self.index.dtype)
        m = m.astype(np.float32)
        if self.index.metric == "cosine":
            norms = np.linalg.norm(m, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            m /= norms
        return m

    def load(self, rows: list[tuple[int, bytes]]) -> None:
        """All vectors anew: ``(rowid, blob)`` in rowid order."""
        np = self.np
        self.rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self.buf = self._prepared([r[1] for r in rows]) if rows else \
            np.zeros((0, self.index.dim), dtype=np.float32)
        self.n = len(rows)
        self.alive = np.ones(self.n, dtype=bool)
        self.dead = 0
        self.codes = self.scale = self.slack = None
        self._norms()

    def _norms(self) -> None:
        """The squared norms the l2 metric needs, of every row (after a load)."""
        if self.index.metric == "l2":
            m = self.buf
            self.sq = self.np.einsum("ij,ij->i", m, m)

    def _norms_of(self, positions: Any) -> None:
        """The squared norms of the rows at ``positions`` (rewritten or added), not of all."""
        if self.index.metric == "l2" and len(positions):
            m = self.buf[positions]
            self.sq[positions] = self.np.einsum("ij,ij->i", m, m)

    def _per_row(self) -> list[str]:
        """The attributes holding one entry per row of ``buf`` (all grown and compacted
        together): the rowids, whether each row is alive, its squared norm (l2 only), and its
        sketch once made."""
        names = ["buf", "rowids", "alive"]
        if self.index.metric == "l2":
            names.append("sq")
        if self.codes is not None:
            names += ["codes", "scale", "slack"]
        return names

    def apply(self, rows: dict[int, bytes | None]) -> bool:
        """Apply changed rows (rowid -> new blob, None: gone or without a vector); False when
        that needs a reload instead (a new row before the last one: a reused rowid)."""
        np = self.np
        ids = np.fromiter(rows, dtype=np.int64, count=len(rows))
        pos = np.searchsorted(self.rowids[:self.n], ids)
        known = (pos < self.n) & (self.rowids[np.minimum(pos, max(self.n - 1, 0))] == ids) \
            if self.n else np.zeros(len(ids), dtype=bool)
        last = int(self.rowids[self.n - 1]) if self.n else -(2**63)
        new = [(int(r), rows[int(r)]) for r, k in zip(ids, known, strict=True) if not k
               and rows[int(r)] is not None]
        if any(r <= last for r, _ in new):
            return False
        upd = [(int(p), rows[int(r)]) for r, p, k in zip(ids, pos, known, strict=True) if k]
        rewritten = []
        for p, b in upd:
            if b is None:
                if self.alive[p]:
                    self.alive[p] = False
                    self.dead += 1
            else:
                self.buf[p] = self._prepared([b])[0]
                rewritten.append(p)
                if not self.alive[p]:
                    self.alive[p] = True
                    self.dead -= 1
        if rewritten:
            self._norms_of(np.array(rewritten, dtype=np.int64))
            if self.codes is not None:
                self._sketch_rows(np.array(rewritten, dtype=np.int64))
        if new:
            new.sort()
            add = self._prepared([b for _, b in new])  # type: ignore[misc]
            need = self.n + len(new)
            if need > len(self.buf):
                cap = max(need, 2 * len(self.buf))
                for name in self._per_row():
                    setattr(self, name, _grown(np, getattr(self, name), self.n, cap))
            self.buf[self.n:need] = add
            self.rowids[self.n:need] = [r for r, _ in new]
            self.alive[self.n:need] = True
            self._norms_of(np.arange(self.n, need))
            if self.codes is not None:
                self._sketch_rows(np.arange(self.n, need))
            self.n = need
        if self.dead > max(64, self.n // 4):  # compact
            keep = self.alive[:self.n].copy()
            for name in self._per_row():
                setattr(self, name, getattr(self, name)[:self.n][keep].copy())
            self.n = len(self.rowids)
            self.alive = np.ones(self.n, dtype=bool)
            self.dead = 0
        return True

    # ---- the int8 sketch: a filtered search reads a quarter of the bytes, and stays exact ----
    def _sketch_rows(self, positions: Any) -> None:
        """(Re)make the sketch of the matrix rows at ``positions``: each row ``x`` as int8
        codes ``c`` and a scale ``s`` (``x ~ s c``), and ``slack``, a bound on how far
        ``s (c . v)`` computed in float32 can be from ``x . v`` computed in float32, per unit
        of ``|v|`` (rows with a NaN or an infinity: unbounded, so always rescored)."""
        np = self.np
        dim = self.index.dim
        u = 2.0 ** -24  # float32's unit roundoff
        # A float32 dot product of dim terms errs by at most dim*u*|x||v|, whatever the order
        # of summation; the exact and the sketched products' errors together fit in 3*dim*u.
        rel = 3.0 * dim * u + 1e-7
        for s in range(0, len(positions), 4096):
            part = positions[s:s + 4096]
            m = self.buf[part]
            amax = np.abs(m).max(axis=1)
            ok = np.isfinite(amax)
            if not ok.all():
                m = np.where(ok[:, None], m, np.float32(0))
            live = ok & (amax > 0)
            scale = np.where(live, amax / np.float32(127), np.float32(1)).astype(np.float32)
            inv = np.where(live, np.float32(127) / np.where(live, amax, 1), np.float32(1))
            c = np.rint(m * inv.astype(np.float32)[:, None])
            np.clip(c, -127, 127, out=c)
            resid = m - c * scale[:, None]
            # The residual and both norms computed in float32 err by a few u (relative, and
            # u|x| for the residual's products): bounded above here, generously.
            err = np.sqrt(np.einsum("ij,ij->i", resid, resid)).astype(np.float64)
            norm = np.sqrt(np.einsum("ij,ij->i", m, m)).astype(np.float64) * (1 + dim * u)
            err = err * (1 + 3 * dim * u) + 2 * u * norm
            slack = np.nextafter((err + rel * (norm + err)).astype(np.float32),
                                 np.float32(np.inf))
            slack[~ok] = np.inf
            codes = c.astype(np.int8)
            self.codes[part], self.scale[part], self.slack[part] = codes, scale, slack

    def _sketch_ready(self) -> None:
        np = self.np
        if self.codes is None:
            cap = len(self.buf)
            self.codes = np.zeros((cap, self.index.dim), dtype=np.int8)
            self.scale = np.ones(cap, dtype=np.float32)
            self.slack = np.full(cap, np.inf, dtype=np.float32)
            self._sketch_rows(np.arange(self.n))

    def _candidates(self, v: Any, k: int, closest_first: bool, positions: Any) -> Any:
        """The ``positions`` that can be among the ``k`` closest to ``v`` (the vector the
        matrix is multiplied by): a quarter of the bytes of the exact product are read (the
        int8 sketch), and every row whose bound leaves it a chance is kept, to be scored exactly
        by the caller. Exact: a row is dropped only when even its best score is below the k-th
        best of the worst scores, so at least k rows score strictly higher than it."""
        np = self.np
        vn = float(np.linalg.norm(v.astype(np.float64)))
        if not np.isfinite(vn):
            return positions
        self._sketch_ready()
        approx = _gathered_dot(np, self.codes, positions, v, _BLOCK8)
        with np.errstate(invalid="ignore", over="ignore"):  # rows with NaN or inf: kept
            key = approx.astype(np.float64) * self.scale[positions]
            bound = vn * self.slack[positions].astype(np.float64)
            if self.index.metric == "l2":  # the key is 2 x.v - |x|^2, as in top()
                sq = self.sq[positions].astype(np.float64)
                key = 2.0 * key - sq
                bound = 2.0 * bound + 2.0 ** -21 * (sq + 2.0 * vn * np.sqrt(np.abs(sq)))
            if not closest_first:
                key = -key
            lower, upper = key - bound, key + bound
        lower[np.isnan(lower)] = -np.inf
        upper[np.isnan(upper)] = np.inf
        kth = np.partition(lower, len(lower) - k)[len(lower) - k]
        return positions[upper >= kth]

    def positions(self, rowids: Any) -> tuple[Any, Any]:
        """Where rows (sorted rowids) are in the matrix: ``(positions, found mask)``."""
        np = self.np
        ids = np.asarray(rowids, dtype=np.int64)
        if not self.n:
            return np.zeros(0, dtype=np.int64), np.zeros(len(ids), dtype=bool)
        first = int(self.rowids[0])
        if int(self.rowids[self.n - 1]) - first == self.n - 1:  # no gaps (rowids are sorted
            pos = ids - first                                    # and unique): arithmetic
            safe = np.clip(pos, 0, self.n - 1)
            found = (pos >= 0) & (pos < self.n) & self.alive[safe]
            return pos[found], found
        pos = np.searchsorted(self.rowids[:self.n], ids)
        safe = np.minimum(pos, self.n - 1)
        found = (pos < self.n) & (self.rowids[safe] == ids) & self.alive[safe]
        return pos[found], found

    def _dot(self, v: Any, positions: Any) -> Any:
        """The product of the rows at ``positions`` (all: None) with the float32 vector ``v``
        (picked rows a block at a time, :func:`_gathered_dot`: for a 10% filter over 100,000
        vectors that is 20 MB less written than one array of the selection, and no page
        faults)."""
        if positions is None:
            return self.matrix @ v
        return _gathered_dot(self.np, self.buf, positions, v, _BLOCK)

    def top(self, q: Any, k: int | None, closest_first: bool, positions: Any = None
            ) -> tuple[list[int], list[float]]:
        """The ``k`` rows (all: None) nearest ``q`` (farthest with ``closest_first`` False)
        among ``positions`` (all rows: None), ties by rowid: their rowids and values."""
        np = self.np
        metric = self.index.metric
        q = np.asarray(q, dtype=np.float32)
        v = q / (np.linalg.norm(q) or 1.0) if metric == "cosine" else q
        self.narrowed = None
        if positions is not None and k is not None and len(positions) >= _SKETCH_MIN \
                and 8 * k <= len(positions):
            before = len(positions)
            positions = self._candidates(v, k, closest_first, positions)
            self.narrowed = (before, len(positions))
        ids = self.rowids[:self.n] if positions is None else self.rowids[positions]
        if metric == "l2":
            # larger: closer (|x - q|^2 = |x|^2 - 2x.q + |q|^2)
            sq = self.sq[:self.n] if positions is None else self.sq[positions]
            key = 2.0 * self._dot(v, positions) - sq
        else:
            key = self._dot(v, positions)
        if not closest_first:
            key = -key
        if positions is None and self.dead:  # removed rows, not yet compacted away
            positions = np.flatnonzero(self.alive[:self.n])
            key, ids = key[positions], ids[positions]
        raw = key
        unscored = np.isnan(key)  # a vector with a NaN (or inf - inf): ranked last
        if unscored.any():
            key = np.where(unscored, -np.inf, key)
        k = len(key) if k is None else min(k, len(key))
        if k <= 0:
            return [], []
        if k < len(key):
            kth = key[np.argpartition(key, len(key) - k)[len(key) - k]]
            sel = np.nonzero(key >= kth)[0]  # the k largest, and every tie at the boundary
        else:
            sel = np.arange(len(key))
        order = sel[np.lexsort((ids[sel], -key[sel]))][:k]
        out_ids = ids[order]
        if metric == "cosine" or metric == "ip":
            vals = raw[order] if closest_first else -raw[order]
        else:  # exact distances for the rows returned
            rows = order if positions is None else positions[order]
            vals = np.linalg.norm(self.buf[rows] - q, axis=1)
        return [int(i) for i in out_ids], [float(v) for v in vals]


#: Rows a filtered search copies at a time (see Vectors._dot): 128 KB of 512 float32s.
_BLOCK = 64
#: Rows of int8 codes a filtered search copies at a time (Vectors._candidates).
_BLOCK8 = 256
#: A filtered search of at least this many rows first narrows them with the int8 sketch.
_SKETCH_MIN = 2048


def _gathered_dot(np: Any, matrix: Any, positions: Any, v: Any, rows: int) -> Any:
    """The float32 products of ``matrix``'s rows at ``positions`` with ``v``, ``rows`` rows at
    a time: each block is copied into a small buffer that stays in the CPU cache (converted to
    float32 there when the matrix holds another type: the int8 sketch), not into one new
    array as large as the selection."""
    out = np.empty(len(positions), dtype=np.float32)
    block = np.empty((min(rows, len(positions)), matrix.shape[1]), dtype=matrix.dtype)
    floats = None if matrix.dtype == np.float32 else np.empty(block.shape, dtype=np.float32)
    for s in range(0, len(positions), rows):
        part = positions[s:s + rows]
        b = block[:len(part)]
        np.take(matrix, part, axis=0, out=b)
        if floats is not None:
            np.copyto(floats[:len(part)], b, casting="unsafe")
            b = floats[:len(part)]
        np.matmul(b, v, out=out[s:s + len(part)])
    return out


def _grown(np: Any, a: Any, n: int, cap: int) -> Any:
    """``a``'s first ``n`` rows in a new zeroed array of ``cap`` rows."""
    out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
    out[:n] = a[:n]
    return out

_CACHES: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], Vectors]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def vectors(db: Database, meta: TableMeta, index: EmbeddingIndex, vcol: ColumnMeta) -> Vectors:
    """Inside a read transaction: the index's vectors in memory, current with the snapshot
    (loaded once per connection, then only what the change log lists since)."""
    np = numpy()
    log = catalog.vector_log_of(index.id)
    now = log_mark(db, log)
    writing = db.in_write_transaction()  # uncommitted rows: not remembered
    key = (index.id, meta.sql)  # a version's view (time travel) is another set of rows
    with _LOCK:
        per_db = _CACHES.setdefault(db, {})
        cached = per_db.get(key)
        if cached is not None and cached.index.params == index.params and not writing:
            changed = changed_since(db, log, cached.seq, cached.schema, now, cached.n)
            if changed == []:
                return cached
            if changed:
                found = dict(db.query(
                    f"SELECT _rowid, {vcol.sql} FROM {meta.sql} WHERE _rowid IN "
                    "(SELECT value FROM json_each(?))", (json.dumps(changed),)))
                if cached.apply({r: _blob(found.get(r)) for r in changed}):
                    cached.seq = now.hi
                    return cached
        fresh = Vectors(index, np, stored_dtype(vcol))
        fresh.load([(r[0], r[1]) for r in db.query(
            f"SELECT _rowid, {vcol.sql} FROM {meta.sql} WHERE {vcol.sql} IS NOT NULL "
            "ORDER BY _rowid") if isinstance(r[1], bytes)])
        fresh.seq, fresh.schema = now.hi, now.schema
        if not writing:
            per_db[key] = fresh
        return fresh


class LogMark(NamedTuple):
    """Where an index's change log stands in the caller's read: its last and first entries,
    and the schema version."""

    hi: int
    lo: int
    schema: int


def log_mark(db: Database, log: str) -> LogMark:
    """The mark of change log ``log`` (``x_<index id>``) now."""
    hi, lo = db.query(f"SELECT max(seq), min(seq) FROM {log}")[0]
    return LogMark(hi or 0, lo or 0, db.query("PRAGMA schema_version")[0][0])


def changed_since(db: Database, log: str, seq: int, schema: int, now: LogMark, rows: int
                  ) -> list[int] | None:
    """For an in-memory copy of ``rows`` rows made at log entry ``seq`` under ``schema`` (the
    vectors, vecfilter's columns): the rows the log lists since, to be read again to bring it
    to ``now``; ``[]`` when it is current; None when it must be read anew (another schema, a
    log trimmed past ``seq`` or a copy from later, or more than an eighth of its rows)."""
    if schema != now.schema or not 0 <= seq <= now.hi or seq + 1 < now.lo:
        return None
    if seq == now.hi:
        return []
    changed = [r[0] for r in db.query(f"SELECT DISTINCT row FROM {log} WHERE seq > ?", (seq,))]
    return changed if len(changed) <= max(1024, rows // 8) else None


def _blob(v: Any) -> bytes | None:
    return v if isinstance(v, bytes) else None


def forget(db: Database, index_id: int) -> None:
    """Drop an index's vectors from this connection's memory (the index was dropped)."""
    with _LOCK:
        per_db = _CACHES.get(db, {})
        for key in [k for k in per_db if k[0] == index_id]:
            del per_db[key]


def rowid_array(db: Database, plan_sql: str, params: Any) -> Any:
    """The rowids a statement selects (its one column, in any order) as a sorted int64 numpy
    array. SQLite joins them into one text that numpy parses: a filtered search may select
    tens of thousands of rows, and a Python tuple per row would cost it more than the search."""
    np = numpy()
    text = db.query(f"WITH m(r) AS ({plan_sql}) SELECT group_concat(r) FROM m", params)[0][0]
    out = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)
    if len(out) > 1 and bool((out[1:] < out[:-1]).any()):  # (an index scan gives its order)
        out.sort()
    return out


#: A connection remembers the rowids of its last few filtered searches' where() (entries, and
#: rowids in all): see filtered_rowids.
_FILTER_ENTRIES = 8
_FILTER_ROWS = 1_000_000
_FILTERS: weakref.WeakKeyDictionary[Any, OrderedDict[Any, tuple[tuple[int, int], Any]]] = \
    weakref.WeakKeyDictionary()
#: SQL that gives another answer each time it runs, whatever the data: never remembered.
_VOLATILE = re.compile(r"random(blob)?\s*\(|'now'|current_(date|time|timestamp)|changes\s*\("
                       r"|last_insert_rowid", re.IGNORECASE)


def filtered_rowids(db: Database, sql: str, params: Sequence[Any]) -> Any:
    """:func:`rowid_array` of a search's where(), remembered per connection while the database
    stays as it was: a filter cache, as search engines keep one for their filter clauses. An
    app showing "photos like this one in this album" runs many searches with one where(); its
    rows are then found once per change of the database instead of once per search (a scan of
    2 ms for 100,000 rows, as long as the search itself).

    Keyed by the statement and its parameters, and valid while
    :meth:`pxlite.db.Database.catalog_stamp` is unchanged (another connection's commit, or
    any change this connection makes, moves it). Not used inside a write transaction, for SQL
    that answers differently each time (``random()``, ``'now'``), nor for more than
    ``_FILTER_ROWS`` rowids; the ``_FILTER_ENTRIES`` most recent are kept."""
    stamp = db.catalog_stamp()
    key: Any = (sql, tuple(params))
    try:
        hash(key)
    except TypeError:
        stamp = None
    if stamp is None or _VOLATILE.search(sql):
        return rowid_array(db, sql, params)
    with _LOCK:
        per_db = _FILTERS.setdefault(db, OrderedDict())
        hit = per_db.get(key)
        if hit is not None and hit[0] == stamp:
            per_db.move_to_end(key)
            return hit[1]
    out = rowid_array(db, sql, params)
    out.flags.writeable = False  # shared by the searches that find it
    if len(out) <= _FILTER_ROWS:
        with _LOCK:
            for old in [k for k, (s, _) in per_db.items() if s != stamp]:
                del per_db[old]  # stale: the database changed since
            per_db[key] = (stamp, out)
            while len(per_db) > _FILTER_ENTRIES or \
                    sum(len(a) for _, a in per_db.values()) > _FILTER_ROWS:
                per_db.popitem(last=False)
    return out


# ---- top-k queries -------------------------------------------------------------------------------
class _Lookup(Expr):
    """A value per row from a mapping computed before the query (rowid -> value): the
    similarities, and places, of the rows a top-k search found. Evaluated in Python."""

    def __init__(self, table: TableMeta, values: dict[int, Any], rtype: Any, name: str) -> None:
        self.table, self.values, self.type, self.name = table, values, rtype, name

    #: Up to this many rows, SQLite computes the values itself (a CASE over the rowids): the
    #: query then runs no Python per row. Beyond, Python looks them up (a CASE costs per row).
    SQL_ROWS = 512

    def sql(self) -> tuple[str, list[Any]] | None:
        if not self.values or len(self.values) > self.SQL_ROWS:
            return None
        whens = " ".join("WHEN ? THEN ?" for _ in self.values)
        return (f"(CASE {self.table.sql}._rowid {whens} END)",
                [x for kv in self.values.items() for x in kv])

    def eval(self, row: RowContext) -> Any:
        return None if row.rowid is None else self.values.get(row.rowid)

    def default_name(self) -> str:
        return self.name

    def to_json(self) -> dict[str, Any]:
        raise SchemaError("a search's results cannot be stored")

    def __repr__(self) -> str:
        return self.name


class _RowidIn(Expr):
    """The rows a search found (their rowids), as a SQL condition."""

    type = Bool

    def __init__(self, table: TableMeta, rowids: list[int]) -> None:
        self.table, self.rowids = table, rowids
        self._set = set(rowids)

    def sql(self) -> tuple[str, list[Any]]:
        return (f"{self.table.sql}._rowid IN (SELECT value FROM json_each(?))",
                [json.dumps(self.rowids)])

    def eval(self, row: RowContext) -> Any:
        return row.rowid in self._set

    def to_json(self) -> dict[str, Any]:
        raise SchemaError("a search's results cannot be stored")

    def __repr__(self) -> str:
        return f"rowid in <{len(self.rowids)} rows found>"


class TopK:
    """A query ordered first by a similarity: its rows come from an exact top-k over the
    index's vectors in memory, among the rows its ``where()`` selects (see :meth:`run`)."""

    def __init__(self, clauses: Clauses, sim: SimilarityExpr, asc: bool) -> None:
        self.clauses, self.sim, self.asc = clauses, sim, asc

    @staticmethod
    def of(clauses: Clauses) -> TopK | None:
        """The top-k search a query's clauses ask for, or None (the similarity is not the first
        sort key, or the query groups, samples, joins, or reads the newest rows first)."""
        if not clauses.order or clauses.group is not None or clauses.sample is not None \
                or len(clauses.tables) != 1 or clauses.reverse:
            return None
        first, asc = clauses.order[0]
        if not isinstance(first, SimilarityExpr) or first.index is None or \
                first.ref.table.id != clauses.tables[0].meta.id:
            return None
        if aggregates_in([e for _, e in clauses.outputs] + [e for e, _ in clauses.order]):
            return None
        return TopK(clauses, first, asc)

    @property
    def k(self) -> int | None:
        c = self.clauses
        return None if c.limit is None else c.limit + (c.offset or 0)

    def run(self, db: Database, matching: Callable[[], Sequence[int]] | None
            ) -> tuple[Clauses, str]:
        """Find the rows (``matching()``: the rowids the query's where() selects, in rowid
        order; None: no where) and return the query rewritten to read just them, in the
        search's order, with the similarity's values as found; and a line for explain()."""
        c, sim = self.clauses, self.sim
        assert sim.index is not None and sim.vref is not None
        meta = c.tables[0].meta
        closest_first = self.asc != sim.higher_is_closer
        vecs = vectors(db, meta, sim.index, sim.vref.col)
        rowids = None if matching is None else matching()
        positions = None
        if rowids is not None:
            positions, _ = vecs.positions(rowids)
        ids, vals = vecs.top(sim.query, self.k, closest_first, positions)
        if self.k is None or len(ids) < self.k:  # rows without a vector come after
            need = None if self.k is None else self.k - len(ids)
            ids += self._unscored(db, meta, sim, rowids, need)
        scores = dict(zip(ids, vals, strict=False))
        place = {r: i for i, r in enumerate(ids)}
        replaced = _Lookup(meta, scores, Float, sim.default_name())
        outputs = [(n, _substitute(e, sim, replaced)) for n, e in c.outputs]
        order = [(_Lookup(meta, place, Float, "search order"), True)]
        new = c._replace(outputs=outputs, where=_RowidIn(meta, ids), order=order)
        where = "" if rowids is None else f" among the {len(rowids):,} rows where() selects"
        direction = "closest" if closest_first else "farthest"
        narrowed = "" if vecs.narrowed is None else (
            f" (an int8 sketch of the vectors, with a bound on its error, left "
            f"{vecs.narrowed[1]:,} of those {vecs.narrowed[0]:,} rows to score in float32)")
        note = (f"order_by {sim!r}: exact top-{'all' if self.k is None else self.k} "
                f"({direction} first){where}, by {sim.index.metric} over the "
                f"{vecs.n - vecs.dead:,} vectors of index {sim.index.name!r} "
                f"({sim.index.precision}) held in memory (numpy){narrowed}; then those "
                f"{len(ids):,} rows are read by rowid")
        return new, note

    @staticmethod
    def _unscored(db: Database, meta: TableMeta, sim: SimilarityExpr,
                  rowids: Sequence[int] | None, need: int | None) -> list[int]:
        """Rows without a vector (a failed or missing embedding), in rowid order: a search
        gives them last, after every row with one (None as their similarity)."""
        assert sim.vref is not None
        if need is not None and need <= 0:
            return []
        sql = f"SELECT _rowid FROM {meta.sql} WHERE {sim.vref.col.sql} IS NULL"
        params: list[Any] = []
        if rowids is not None:
            sql += " AND _rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(r) for r in rowids]))
        sql += " ORDER BY _rowid"
        if need is not None:
            sql += " LIMIT ?"
            params.append(need)
        return [r[0] for r in db.query(sql, params)]


def _substitute(e: Expr, target: SimilarityExpr, repl: Expr) -> Expr:
    """``e`` with ``target`` (and copies of it: the same column, query and index) replaced."""
    def visit(node: Expr) -> Expr | None:
        if not isinstance(node, SimilarityExpr):
            return None
        same = (node is target or (node.ref.col.col_id == target.ref.col.col_id
                                   and node.modality == target.modality
                                   and node.index == target.index
                                   and _same_value(node.value, target.value)))
        return repl if same else node
    return e.rewrite(visit)


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if hasattr(a, "shape") and hasattr(b, "shape"):
        return a.shape == b.shape and bool((a == b).all())
    try:
        return bool(a == b)
    except Exception:
        return False
