"""Embedding indexes: their definition, ``col.similarity(...)``, and exact top-k searches.

An embedding index on a column (``t.add_embedding_index(t.image, embedding=clip)``, see
:mod:`pxlite.indexing`) keeps one vector per row in a column of the table: a hidden computed
column ``_pxl_ix_<name>`` holding the embedding function's output at the index's precision
(float16 or float32), or, for an Array column of precomputed vectors stored at that precision
already, the column itself. Being a column of the table, the vectors are written, updated,
deleted, copied, backed up and reverted with their rows, in the same transactions.

Every change to that vector column appends the row's rowid to the index's change log (SQL
triggers, :func:`pxlite.catalog.add_vector_log`), whoever writes it. A search reads the
vectors once into an in-memory matrix per connection (:class:`Vectors`), normalised for the
cosine metric, and afterwards applies only what the log says changed: a top-k is then one
matrix-vector product over the rows that pass the query's ``where()`` (BLAS, the cost of a
numpy brute force), exact.

``col.similarity(string=|image=|vector=, idx=)`` is a :class:`SimilarityExpr` (a Float): the
cosine similarity, the inner product, or the L2 distance, as Pixeltable gives them. It is
bound to its index when a query runs (:func:`bind`); a query ordered by it first
(``order_by(sim, asc=False).limit(k)``) is answered by :class:`TopK` over the matrix, any other
use computes it in SQL (sqlite-vec, :mod:`pxlite.vecsql`).
"""

from __future__ import annotations

import copy
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from . import catalog, exprs, media, storage, vecsql
from .catalog import ColumnMeta, IndexMeta, TableMeta
from .errors import NotFoundError, SchemaError
from .exprs import ColumnRef, Expr, RowContext
from .types import ArrayType, Bool, Float, is_pil_image
from .uda import aggregates_in
from .udf import lookup, trusting
from .vectors import numpy

if TYPE_CHECKING:
    from .db import Database
    from .queryplan import Clauses

METRICS = ("cosine", "ip", "l2")
PRECISIONS = {"fp16": "float16", "fp32": "float32"}
#: The query modalities and the index's function for each (Pixeltable's names).
MODALITIES = {"string": "string_embed", "image": "image_embed"}


class EmbeddingIndex(NamedTuple):
    """One embedding index as the catalog records it (``px_indexes.params``)."""

    id: int
    name: str
    col_id: int                  # the indexed column
    value_col: int               # the column holding the vectors (hidden, or the Array itself)
    metric: str
    precision: str               # 'fp16' | 'fp32'
    dim: int
    string_embed: str | None     # qualified function names
    image_embed: str | None
    params: str                  # the JSON these come from (a cache keys on it)

    @property
    def dtype(self) -> str:
        return PRECISIONS[self.precision]

    def describe(self) -> dict[str, Any]:
        """Pixeltable's ``parameters`` of an index in ``get_metadata()``."""
        return {"metric": self.metric, "precision": self.precision, "dim": self.dim,
                "string_embed": self.string_embed, "image_embed": self.image_embed}


def params_json(metric: str, precision: str, dim: int, value_col: int,
                string_embed: str | None, image_embed: str | None) -> str:
    """The catalog's JSON of an embedding index's definition."""
    return json.dumps({"metric": metric, "precision": precision, "dim": dim,
                       "value_col": value_col, "string_embed": string_embed,
                       "image_embed": image_embed}, sort_keys=True)


def of(idx: IndexMeta) -> EmbeddingIndex:
    """The embedding index a catalog record describes; SchemaError for a damaged record."""
    try:
        p = json.loads(idx.params or "")
        out = EmbeddingIndex(idx.id, idx.name, idx.col_id, int(p["value_col"]), p["metric"],
                             p["precision"], int(p["dim"]), p.get("string_embed"),
                             p.get("image_embed"), idx.params or "")
        if out.metric not in METRICS or out.precision not in PRECISIONS:
            raise ValueError(out.metric, out.precision)
        return out
    except (ValueError, TypeError, KeyError) as e:
        raise SchemaError(f"the definition of embedding index {idx.name!r} cannot be read "
                          f"({type(e).__name__}); drop it with t.drop_embedding_index("
                          f"idx_name={idx.name!r}) and add it again") from None


def indexes_on(db: Database, meta: TableMeta, col_id: int | None = None
               ) -> list[EmbeddingIndex]:
    """The embedding indexes of a table (on one column: ``col_id``, its own id) that are
    active: an index is there exactly when its vectors' column is a complete column of the
    table (a revert to a version before the index was added hides that column, and with it
    the index; a revert past its drop brings both back)."""
    out = []
    for i in catalog.indexes(db, meta):
        if i.kind == "embedding" and (col_id is None or i.col_id == col_id):
            e = of(i)
            if active(meta, e):
                out.append(e)
    return out


def active(meta: TableMeta, index: EmbeddingIndex) -> bool:
    """Is the index's vectors' column a complete column of ``meta``?"""
    try:
        return not meta.column_by_id(index.value_col).pending
    except NotFoundError:
        return False


def _own_id(col: ColumnMeta) -> int:
    """A column's id in its table (a joined table's columns are read with shifted ids)."""
    return int(getattr(col, "orig", 0) or col.col_id)


# ---- similarity() --------------------------------------------------------------------------------
class SimilarityExpr(Expr):
    """``col.similarity(string=... | image=... | vector=..., idx=...)``: how close each row's
    vector is to the query's (a Float: cosine similarity, inner product, or L2 distance by
    the index's metric). Bound to its index when a query runs."""

    type = Float

    def __init__(self, ref: ColumnRef, modality: str, value: Any, idx: str | None) -> None:
        self.ref, self.modality, self.value, self.idx_name = ref, modality, value, idx
        self.vref: ColumnRef | None = None      # the vector column, once bound
        self.index: EmbeddingIndex | None = None
        self.query: Any = None                  # the query vector (float32), once bound
        #: Query vectors computed for this expression, shared by its copies (a query rebinds
        #: its expressions to the tables as loaded: copies), so a rerun does not embed again.
        self._vectors: dict[tuple[str, str], Any] = {}

    def children(self) -> list[Expr]:
        return [self.ref] if self.vref is None else [self.ref, self.vref]

    def default_name(self) -> str:
        return "similarity"

    @property
    def higher_is_closer(self) -> bool:
        """Cosine similarity and inner product grow with closeness; the L2 distance shrinks."""
        return self.index is None or self.index.metric != "l2"

    def sql(self) -> tuple[str, list[Any]] | None:
        if self.vref is None or self.index is None:
            return None
        vec_col = f"{self.vref.table.sql}.{self.vref.col.sql}"  # t_<id>.c<id>
        q = self.query.tobytes()
        if self.index.precision == "fp32" and self.index.metric == "cosine":
            body = f"1.0 - vec_distance_cosine({vec_col}, ?)"
        elif self.index.precision == "fp32" and self.index.metric == "l2":
            body = f"vec_distance_l2({vec_col}, ?)"
        else:
            return (f"{vecsql.SCORE}(?, ?, {vec_col}, ?)",
                    [self.index.metric, self.index.dtype, q])
        return f"(CASE WHEN {vec_col} IS NULL THEN NULL ELSE {body} END)", [q]

    def eval(self, row: RowContext) -> Any:
        if self.vref is None or self.index is None:
            raise SchemaError(f"{self!r} is computed in a query (t.select(...), where(), "
                              "order_by()); it cannot be evaluated here")
        v = row.value(self.vref.col)
        if v is None:
            return None
        return vecsql.score(self.index.metric, "float32", v.astype("<f4").tobytes(),
                            self.query.tobytes())

    def to_json(self) -> dict[str, Any]:
        raise SchemaError(f"{self!r} cannot be stored in a column definition: it depends on an "
                          "index and a query value; use it in a query (select, where, order_by)")

    def __repr__(self) -> str:
        v = self.value
        shown = (f"<array {tuple(v.shape)}>" if hasattr(v, "shape") else
                 "<image>" if is_pil_image(v) else repr(v))
        idx = "" if self.idx_name is None else f", idx={self.idx_name!r}"
        return f"{self.ref!r}.similarity({self.modality}={shown}{idx})"


def similarity(ref: ColumnRef, item: Any = None, *, string: Any = None, image: Any = None,
               vector: Any = None, idx: str | None = None) -> SimilarityExpr:
    """``ref.similarity(...)``: see :meth:`pxlite.exprs.ColumnRef.similarity`."""
    given = {k: v for k, v in (("string", string), ("image", image), ("vector", vector))
             if v is not None}
    if item is not None:  # Pixeltable's older spelling: the modality from the value
        if given:
            raise SchemaError("similarity(): pass the value as string=, image= or vector=, "
                              "not also positionally")
        kind = "string" if isinstance(item, str) else "vector" if hasattr(item, "shape") \
            else "image"
        given = {kind: item}
    if len(given) != 1:
        raise SchemaError("similarity() takes exactly one of string=..., image=... or "
                          "vector=... (e.g. t.image.similarity(string='a red car'))")
    if idx is not None and not isinstance(idx, str):
        raise SchemaError(f"similarity(idx=...) takes an index name, got {type(idx).__name__} "
                          f"{idx!r}")
    ((modality, value),) = given.items()
    if isinstance(value, Expr):
        raise SchemaError(f"similarity({modality}=...) takes a value, not an expression "
                          f"({value!r}): it is compared with every row's vector")
    if modality == "string" and not isinstance(value, str):
        raise SchemaError(f"similarity(string=...): expected a str, got {type(value).__name__}")
    if modality == "image" and not (isinstance(value, str) or is_pil_image(value)
                                    or hasattr(value, "__fspath__")):
        raise SchemaError(f"similarity(image=...): expected a PIL image, a file path or a URL, "
                          f"got {type(value).__name__}")
    if modality == "vector":
        value = _query_array(value)
    return SimilarityExpr(ref, modality, value, idx)


def _query_array(value: Any) -> Any:
    np = numpy()
    if isinstance(value, Expr) or not isinstance(value, (np.ndarray, list, tuple)):
        raise SchemaError(f"similarity(vector=...): expected a numpy array, got "
                          f"{type(value).__name__}")
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype.kind not in "fiu" or arr.size == 0:
        raise SchemaError(f"similarity(vector=...): expected a 1-dimensional array of numbers, "
                          f"got shape {arr.shape} and dtype {arr.dtype}")
    return arr.astype(np.float32)


exprs.INDEX_EXPRESSIONS["similarity"] = similarity


# ---- binding a similarity to its index -----------------------------------------------------------
def find(db: Database, meta: TableMeta, col: ColumnMeta, idx: str | None) -> EmbeddingIndex:
    """The embedding index of ``col`` a similarity means: the only one, or the one named
    ``idx``; NotFoundError / SchemaError saying what there is otherwise."""
    found = indexes_on(db, meta, _own_id(col))
    if idx is not None:
        named = [i for i in found if i.name == idx]
        if not named:
            others = ", ".join(repr(i.name) for i in found) or "none"
            raise NotFoundError(f"embedding index {idx!r} not found on column {col.name!r} of "
                                f"{meta.path!r} (its embedding indexes: {others})")
        return named[0]
    if not found:
        raise NotFoundError(f"column {col.name!r} of {meta.path!r} has no embedding index; add "
                            f"one with t.add_embedding_index({col.name!r}, embedding=...)")
    if len(found) > 1:
        raise SchemaError(f"column {col.name!r} of {meta.path!r} has several embedding indexes "
                          f"({', '.join(repr(i.name) for i in found)}); say which with "
                          "similarity(..., idx='name')")
    return found[0]


def bind_all(exprs_: Iterable[Expr], db: Database, settings: Callable[[], Any]) -> None:
    """Bind every similarity among ``exprs_`` (and inside them) to its index (see bind);
    ``settings()`` gives the database's settings (asked only when a query value is embedded)."""
    for e in exprs_:
        for node in e.walk():
            if isinstance(node, SimilarityExpr) and node.vref is None:
                bind(node, db, settings)


def bind(sim: SimilarityExpr, db: Database, settings: Callable[[], Any]) -> None:
    """Resolve the index a similarity uses (as the catalog has it now), its vector column, and
    the query vector (computed with the index's embedding function once)."""
    meta, col = sim.ref.table, sim.ref.col
    index = find(db, meta, col, sim.idx_name)
    vcol = meta.column_by_id(index.value_col)  # complete: find() gives active indexes only
    vecsql.install(db.sqlite)
    key = (index.params, str(db.path))
    q = sim._vectors.get(key)
    if q is None:
        q = sim._vectors[key] = query_vector(
            index, col, sim.modality, sim.value, None if sim.modality == "vector" else settings())
    sim.index, sim.vref, sim.query = index, ColumnRef(meta, vcol), q


def query_vector(index: EmbeddingIndex, col: ColumnMeta, modality: str, value: Any,
                 settings: Any) -> Any:
    """The float32 vector a similarity compares rows with: the value itself (``vector=``) or
    the index's embedding of it."""
    np = numpy()
    if modality == "vector":
        vec = value
    else:
        fn_name = getattr(index, MODALITIES[modality])
        if fn_name is None:
            others = [m for m, f in MODALITIES.items() if getattr(index, f)] + ["vector"]
            raise SchemaError(
                f"embedding index {index.name!r} on column {col.name!r} has no {modality} "
                f"embedding, so it does not take {modality}= queries; it takes "
                f"{', '.join(m + '=' for m in others)}")
        with trusting(settings):
            fn = lookup(fn_name)
        arg = _open_image(value, settings) if modality == "image" else value
        vec = fn.fn(arg)
        vec = np.asarray(vec, dtype=np.float32)
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    if vec.shape[0] != index.dim:
        raise SchemaError(f"similarity({modality}=...): the query vector has {vec.shape[0]} "
                          f"numbers, index {index.name!r} on column {col.name!r} holds vectors "
                          f"of {index.dim}")
    return vec


def _open_image(value: Any, settings: Any) -> Any:
    """A similarity's image: a PIL image as it is, else a path, file:// or remote URL opened
    (remote files through the download cache)."""
    if is_pil_image(value):
        return value
    where = os.fspath(value)
    if "://" in where and not where.lower().startswith("file://"):
        path: Any = media.fetch_local(where, settings)
    else:
        path = storage.file_path(where) if where.lower().startswith("file://") else where
    if not os.path.exists(path):
        raise NotFoundError(f"similarity(image=...): no file at {where}")
    img = media.open_image(path, settings)
    img.load()
    return img


# ---- the vectors in memory -----------------------------------------------------------------------
class Vectors:
    """One index's vectors held in memory for one connection: the rows that have one (sorted
    rowids), their float32 matrix (rows normalised for cosine), and the change-log entry they
    reflect."""

    def __init__(self, index: EmbeddingIndex, np: Any) -> None:
        self.index, self.np = index, np
        self.rowids = np.zeros(0, dtype=np.int64)
        self.buf = np.zeros((0, index.dim), dtype=np.float32)
        self.n = 0
        self.alive = np.zeros(0, dtype=bool)
        self.dead = 0
        self.sq = np.zeros(0, dtype=np.float32)   # squared norms (l2)
        self.seq = -1
        self.schema = -1

    @property
    def matrix(self) -> Any:
        return self.buf[:self.n]

    def _prepared(self, blobs: list[bytes]) -> Any:
        np = self.np
        dt = np.dtype(self.index.dtype).newbyteorder("<")
        m = np.frombuffer(b"".join(blobs), dtype=dt).reshape(len(blobs), self.index.dim)
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
        self._norms()

    def _norms(self) -> None:
        if self.index.metric == "l2":
            m = self.matrix
            self.sq = self.np.einsum("ij,ij->i", m, m)

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
        for p, b in upd:
            if b is None:
                if self.alive[p]:
                    self.alive[p] = False
                    self.dead += 1
            else:
                self.buf[p] = self._prepared([b])[0]
                if not self.alive[p]:
                    self.alive[p] = True
                    self.dead -= 1
        if new:
            new.sort()
            add = self._prepared([b for _, b in new])  # type: ignore[misc]
            need = self.n + len(new)
            if need > len(self.buf):
                grown = np.zeros((max(need, 2 * len(self.buf)), self.index.dim),
                                 dtype=np.float32)
                grown[:self.n] = self.matrix
                self.buf = grown
                self.rowids = np.resize(self.rowids, len(grown))
                self.alive = np.resize(self.alive, len(grown))
            self.buf[self.n:need] = add
            self.rowids[self.n:need] = [r for r, _ in new]
            self.alive[self.n:need] = True
            self.n = need
        if self.dead > max(64, self.n // 4):  # compact
            keep = self.alive[:self.n]
            self.buf = self.matrix[keep].copy()
            self.rowids = self.rowids[:self.n][keep].copy()
            self.n = len(self.rowids)
            self.alive = np.ones(self.n, dtype=bool)
            self.dead = 0
        self._norms()
        return True

    def positions(self, rowids: Any) -> tuple[Any, Any]:
        """Where rows (sorted rowids) are in the matrix: ``(positions, found mask)``."""
        np = self.np
        ids = np.asarray(rowids, dtype=np.int64)
        if not self.n:
            return np.zeros(0, dtype=np.int64), np.zeros(len(ids), dtype=bool)
        pos = np.searchsorted(self.rowids[:self.n], ids)
        safe = np.minimum(pos, self.n - 1)
        found = (pos < self.n) & (self.rowids[safe] == ids) & self.alive[safe]
        return pos[found], found

    def top(self, q: Any, k: int | None, closest_first: bool, positions: Any = None
            ) -> tuple[list[int], list[float]]:
        """The ``k`` rows (all: None) nearest ``q`` (farthest with ``closest_first`` False)
        among ``positions`` (all rows: None), ties by rowid: their rowids and values."""
        np = self.np
        metric = self.index.metric
        m = self.matrix if positions is None else self.buf[positions]
        ids = self.rowids[:self.n] if positions is None else self.rowids[positions]
        if metric == "cosine":
            qn = q / (np.linalg.norm(q) or 1.0)
            key = m @ qn
        elif metric == "ip":
            key = m @ q
        else:
            sq = self.sq if positions is None else self.sq[positions]
            key = 2.0 * (m @ q) - sq  # larger: closer (|x - q|^2 = |x|^2 - 2x.q + |q|^2)
        if not closest_first:
            key = -key
        if positions is None and self.dead:
            key[~self.alive[:self.n]] = -np.inf
        live = len(key) - (self.dead if positions is None else 0)
        k = live if k is None else min(k, live)
        if k <= 0:
            return [], []
        if k < len(key):
            kth = key[np.argpartition(key, len(key) - k)[len(key) - k]]
            sel = np.nonzero(key >= kth)[0]  # the k largest, and every tie at the boundary
        else:
            sel = np.nonzero(key > -np.inf)[0]
        order = sel[np.lexsort((ids[sel], -key[sel]))][:k]
        out_ids = ids[order]
        if metric == "cosine" or metric == "ip":
            vals = key[order] if closest_first else -key[order]
        else:  # exact distances for the rows returned
            vals = np.linalg.norm(m[order] - q, axis=1)
        return [int(i) for i in out_ids], [float(v) for v in vals]


_CACHES: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], Vectors]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def vectors(db: Database, meta: TableMeta, index: EmbeddingIndex, vcol: ColumnMeta) -> Vectors:
    """Inside a read transaction: the index's vectors in memory, current with the snapshot
    (loaded once per connection, then only what the change log lists since)."""
    np = numpy()
    log = f"x_{index.id}"
    hi, lo = db.query(f"SELECT max(seq), min(seq) FROM {log}")[0]
    hi = hi or 0
    schema = db.query("PRAGMA schema_version")[0][0]
    writing = db.in_write_transaction()  # uncommitted rows: not remembered
    key = (index.id, meta.sql)  # a version's view (time travel) is another set of rows
    with _LOCK:
        per_db = _CACHES.setdefault(db, {})
        cached = per_db.get(key)
        if cached is not None and cached.index.params == index.params and \
                cached.schema == schema and cached.seq == hi and not writing:
            return cached
        if cached is not None and cached.index.params == index.params and \
                cached.schema == schema and 0 <= cached.seq < hi and (lo or 0) <= cached.seq + 1 \
                and not writing:
            changed = [r[0] for r in db.query(
                f"SELECT DISTINCT row FROM {log} WHERE seq > ?", (cached.seq,))]
            if len(changed) <= max(1024, cached.n // 8):
                found = dict(db.query(
                    f"SELECT _rowid, {vcol.sql} FROM {meta.sql} WHERE _rowid IN "
                    "(SELECT value FROM json_each(?))", (json.dumps(changed),)))
                if cached.apply({r: _blob(found.get(r)) for r in changed}):
                    cached.seq = hi
                    return cached
        fresh = Vectors(index, np)
        fresh.load([(r[0], r[1]) for r in db.query(
            f"SELECT _rowid, {vcol.sql} FROM {meta.sql} WHERE {vcol.sql} IS NOT NULL "
            "ORDER BY _rowid") if isinstance(r[1], bytes)])
        fresh.seq, fresh.schema = hi, schema
        if not writing:
            per_db[key] = fresh
        return fresh


def _blob(v: Any) -> bytes | None:
    return v if isinstance(v, bytes) else None


def forget(db: Database, index_id: int) -> None:
    """Drop an index's vectors from this connection's memory (the index was dropped)."""
    with _LOCK:
        per_db = _CACHES.get(db, {})
        for key in [k for k in per_db if k[0] == index_id]:
            del per_db[key]


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

    def run(self, db: Database, matching: Callable[[], list[int]] | None
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
        note = (f"order_by {sim!r}: exact top-{'all' if self.k is None else self.k} "
                f"({direction} first){where}, by {sim.index.metric} over the "
                f"{vecs.n - vecs.dead:,} vectors of index {sim.index.name!r} "
                f"({sim.index.precision}) held in memory (numpy); then those {len(ids):,} rows "
                "are read by rowid")
        return new, note

    @staticmethod
    def _unscored(db: Database, meta: TableMeta, sim: SimilarityExpr,
                  rowids: list[int] | None, need: int | None) -> list[int]:
        """Rows without a vector (a failed or missing embedding), in rowid order: a search
        gives them last, after every row with one (None as their similarity)."""
        assert sim.vref is not None
        if need is not None and need <= 0:
            return []
        sql = f"SELECT _rowid FROM {meta.sql} WHERE {sim.vref.col.sql} IS NULL"
        params: list[Any] = []
        if rowids is not None:
            sql += " AND _rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(rowids))
        sql += " ORDER BY _rowid"
        if need is not None:
            sql += " LIMIT ?"
            params.append(need)
        return [r[0] for r in db.query(sql, params)]


def _substitute(e: Expr, target: SimilarityExpr, repl: Expr) -> Expr:
    """``e`` with ``target`` (and copies of it: the same column, query and index) replaced."""
    if isinstance(e, SimilarityExpr):
        same = (e is target or (e.ref.col.col_id == target.ref.col.col_id
                                and e.modality == target.modality and e.index == target.index
                                and _same_value(e.value, target.value)))
        return repl if same else e
    changed: dict[str, Any] = {}
    for k, v in vars(e).items():
        if isinstance(v, Expr):
            nv = _substitute(v, target, repl)
            if nv is not v:
                changed[k] = nv
        elif isinstance(v, list) and any(isinstance(x, Expr) for x in v):
            nl = [_substitute(x, target, repl) if isinstance(x, Expr) else x for x in v]
            if any(a is not b for a, b in zip(nl, v, strict=True)):
                changed[k] = nl
    if not changed:
        return e
    out = copy.copy(e)
    for k, v in changed.items():
        setattr(out, k, v)
    return out


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if hasattr(a, "shape") and hasattr(b, "shape"):
        return a.shape == b.shape and bool((a == b).all())
    try:
        return bool(a == b)
    except Exception:
        return False


def check_vector_type(ctype: Any, what: str) -> tuple[int, str]:
    """An embedding's type must be a 1-dimensional float Array of a fixed length: its length and
    dtype; SchemaError naming ``what`` otherwise."""
    if not isinstance(ctype, ArrayType):
        raise SchemaError(f"{what} is not a valid embedding: it must return an Array, e.g. "
                          f"-> pxl.Array[(512,), pxl.Float]; it returns {ctype!r}")
    if ctype.shape is None or len(ctype.shape) != 1 or ctype.shape[0] is None:
        raise SchemaError(f"{what} is not a valid embedding: it must be a 1-dimensional array "
                          f"of a fixed length, e.g. pxl.Array[(512,), pxl.Float]; it is "
                          f"{ctype!r}")
    if not ctype.dtype.startswith("float"):
        raise SchemaError(f"{what} is not a valid embedding: its elements must be floats, not "
                          f"{ctype.dtype}")
    return int(ctype.shape[0]), ctype.dtype
