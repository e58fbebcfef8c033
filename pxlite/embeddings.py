"""Embedding indexes: their definition, ``col.similarity(...)``, and exact top-k searches.

An embedding index on a column (``t.add_embedding_index(t.image, embedding=clip)``, see
:mod:`pxlite.indexing`) keeps one vector per row in a column of the table: a hidden computed
column ``_pxl_ix_<name>`` holding the embedding function's output at the index's precision
(float16 or float32), or, for an Array column of precomputed vectors, the column itself, its
values rounded to the index's precision where they are read. Being a column of the table, the
vectors are written, updated, deleted, copied, backed up and reverted with their rows, in the
same transactions.

Every change to that vector column appends the row's rowid to the index's change log (SQL
triggers, :func:`pxlite.catalog.add_vector_log`), whoever writes it, so a search holding the
vectors in memory (:mod:`pxlite.vecsearch`) applies only what changed since it read them.

``col.similarity(string=|image=|vector=, idx=)`` is a :class:`SimilarityExpr` (a Float): the
cosine similarity, the inner product, or the L2 distance, as Pixeltable gives them. It is
bound to its index when a query runs (:func:`bind`); a query ordered by it first
(``order_by(sim, asc=False).limit(k)``) is an exact top-k over the vectors in memory
(:class:`pxlite.vecsearch.TopK`), any other use computes it in SQL (sqlite-vec,
:mod:`pxlite.vecsql`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from . import catalog, exprs, media, storage, vecsql
from .catalog import ColumnMeta, IndexMeta, TableMeta
from .errors import NotFoundError, SchemaError
from .exprs import ColumnRef, Expr, RowContext
from .types import ArrayType, Float, is_pil_image
from .udf import lookup, trusting
from .vectors import numpy

if TYPE_CHECKING:
    from .db import Database

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


def stored_dtype(vcol: ColumnMeta) -> str:
    """The element type an index's vector column stores (a hidden column holds the index's
    precision; an Array column its own type, which the index rounds to its precision when it
    reads it)."""
    ctype = vcol.type
    assert isinstance(ctype, ArrayType)
    return ctype.dtype


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
        stored = stored_dtype(self.vref.col)
        plain = stored == self.index.dtype == "float32"  # what sqlite-vec reads
        if plain and self.index.metric == "cosine":
            body = f"1.0 - vec_distance_cosine({vec_col}, ?)"
        elif plain and self.index.metric == "l2":
            body = f"vec_distance_l2({vec_col}, ?)"
        else:
            return (f"{vecsql.SCORE}(?, ?, ?, {vec_col}, ?)",
                    [self.index.metric, stored, self.index.dtype, q])
        return f"(CASE WHEN {vec_col} IS NULL THEN NULL ELSE {body} END)", [q]

    def eval(self, row: RowContext) -> Any:
        if self.vref is None or self.index is None:
            raise SchemaError(f"{self!r} is computed in a query (t.select(...), where(), "
                              "order_by()); it cannot be evaluated here")
        v = row.value(self.vref.col)
        if v is None:
            return None
        v = v.astype(self.index.dtype)  # the index's precision (an fp16 index rounds)
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
