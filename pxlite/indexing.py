"""Adding and dropping embedding indexes (``t.add_embedding_index``, ``t.drop_embedding_index``).

Adding one on a String or Image column computes the embedding of every row into a hidden
computed column (``_pxl_ix_<index name>``, the vectors at the index's precision) the way any
computed column is added (:mod:`pxlite.jobs`): outside the write lock, in brief commits, on the
chosen executor (threads, worker processes, a Dask cluster), resumable by running the same call
again after an interruption. A row whose embedding fails keeps its error in that column and is
not found by searches. An index on an Array column of precomputed vectors reads the column
itself, rounding its values to the index's precision as it reads them (an fp16 index on a
float32 column searches the float16 values, keeping no second copy). Then, in one brief
transaction, the index is recorded with its change log and triggers (see
:mod:`pxlite.embeddings`). From then on every insert computes its rows' vectors with the row,
every update of the indexed column recomputes them, and deletes take them away, each in its own
transaction, because they are a column of the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import typing
from typing import TYPE_CHECKING, Any

from . import catalog, embeddings, jobs, scanindex, vecsearch, versions, writes
from .catalog import ColumnMeta, IndexMeta, TableMeta
from .compute import Interrupted
from .embeddings import METRICS, PRECISIONS, EmbeddingIndex
from .errors import AlreadyExistsError, NotFoundError, SchemaError, check_choice
from .exprs import Call, Cast, ColumnRef, Expr
from .types import ArrayType
from .udf import Function, hint_type

if TYPE_CHECKING:
    from .places import Places

#: The column types an embedding index takes, and the query modality each is embedded as.
_MODALITY_OF = {"String": "string", "Image": "image"}


def hidden_name(idx_name: str) -> str:
    """The hidden column holding an index's vectors (a name of at most 63 characters)."""
    name = catalog.HIDDEN_PREFIX + idx_name
    if len(name) > catalog.MAX_NAME_LENGTH:
        name = catalog.HIDDEN_PREFIX + hashlib.sha1(idx_name.encode()).hexdigest()[:16]
    return name


def _functions(col: ColumnMeta, embedding: Any, string_embed: Any, image_embed: Any
               ) -> dict[str, Function]:
    """The embedding function for each query modality (Pixeltable's rules: ``string_embed`` /
    ``image_embed`` as given; ``embedding`` fills each modality its first parameter takes, or
    both of a multimodal pair such as ``pxlite.functions.clip.clip``)."""
    out: dict[str, Function] = {}
    for modality, given in (("string", string_embed), ("image", image_embed)):
        if given is None:
            continue
        if not isinstance(given, Function):
            raise SchemaError(f"{modality}_embed must be a pxlite function (a @pxl.udf), got "
                              f"{type(given).__name__} {given!r}")
        if _takes(given) != modality:
            raise SchemaError(f"the function {given.name} is not a valid {modality} embedding: "
                              f"it must take a single {modality} parameter")
        out[modality] = given
    if embedding is not None:
        candidates = [embedding] if isinstance(embedding, Function) else [
            f for f in (getattr(embedding, "string_embed", None),
                        getattr(embedding, "image_embed", None)) if isinstance(f, Function)]
        if not candidates:
            raise SchemaError(f"embedding= must be a pxlite function (a @pxl.udf) returning an "
                              f"Array, got {type(embedding).__name__} {embedding!r}")
        matched = False
        for f in candidates:
            m = _takes(f)
            if m is not None:
                out.setdefault(m, f)
                matched = True
        if not matched:
            raise SchemaError(f"the function {candidates[0].name} is not a valid embedding: it "
                              "must take a single string or image parameter")
    return out


def _takes(fn: Function) -> str | None:
    """The modality a function embeds: its first parameter's type ('string' or 'image'), if it
    has at most one parameter without a default."""
    params = list(fn.signature.parameters.values())
    if not params or sum(1 for p in params if p.default is p.empty) > 1:
        return None
    try:
        hint = typing.get_type_hints(fn.fn).get(params[0].name)
        return _MODALITY_OF.get(hint_type(hint, fn.name).name) if hint is not None else None
    except SchemaError:
        return None


def _definition(col: ColumnMeta, fns: dict[str, Function], path: str) -> int:
    """Validate the indexed column and functions; the vectors' length."""
    ctype = col.type
    dims = {m: embeddings.check_vector_type(f.return_type, f"the function {f.name}")[0]
            for m, f in fns.items()}
    if isinstance(ctype, ArrayType):
        if not col.stored:
            raise SchemaError(f"cannot index column {col.name!r} of {path!r}: it is computed "
                              "when read (stored=False)")
        dim, _ = embeddings.check_vector_type(ctype, f"column {col.name!r}")
        for m, d in dims.items():
            if d != dim:
                raise SchemaError(f"the function {fns[m].name} returns vectors of {d} numbers, "
                                  f"but column {col.name!r} holds vectors of {dim}")
        return dim
    modality = _MODALITY_OF.get(ctype.name)
    if modality is None:
        raise SchemaError(f"type {ctype!r} of column {col.name!r} is not a valid type for an "
                          "embedding index: index a String, Image or Array column")
    if modality not in fns:
        if not fns:
            raise SchemaError("add_embedding_index() needs an embedding function: embedding=, "
                              "string_embed= or image_embed= (an Array column of precomputed "
                              "vectors needs none)")
        raise SchemaError(f"the embedding function given does not take the type {ctype!r} of "
                          f"column {col.name!r}; pass {modality}_embed=")
    if len(set(dims.values())) > 1:
        raise SchemaError(f"the embedding functions return vectors of different lengths "
                          f"({dims}); one index holds one length")
    return dims[modality]


def add_embedding_index(places: Places, meta: TableMeta, col: ColumnMeta, *,
                        idx_name: str | None, embedding: Any, string_embed: Any,
                        image_embed: Any, metric: str, precision: str, if_exists: str,
                        executor: Any) -> None:
    """See :meth:`pxlite.table.Table.add_embedding_index` (``col`` is a column of ``meta``)."""
    check_choice(metric, "metric", METRICS)
    check_choice(precision, "precision", tuple(PRECISIONS))
    check_choice(if_exists, "if_exists", ("error", "ignore", "replace"))
    if idx_name is not None:
        catalog.check_name(idx_name, "index")
    db = places.db
    existing = catalog.indexes(db, meta)
    stale = [i for i in existing if i.kind == "embedding" and i.name == idx_name
             and not embeddings.active(meta, embeddings.of(i))]
    if stale:  # a dropped index kept for an undo: its name is taken anew, so it cannot return
        with writes.operation(places, meta, recheck=lambda m: writes.current_columns(db, m)):
            catalog.drop_index(db, stale[0])
        existing = catalog.indexes(db, meta)
    named = next((i for i in existing if i.name == idx_name), None)
    if named is not None:
        if named.kind != "embedding":
            raise SchemaError(f"index {idx_name!r} of {meta.path!r} is not an embedding index "
                              "(a B-tree index); choose another idx_name")
        if if_exists == "ignore":
            return
        if if_exists == "error":
            raise AlreadyExistsError(f"duplicate index name: {meta.path!r} already has an "
                                     f"index named {idx_name!r}; pass if_exists='ignore' or "
                                     "'replace', or choose another idx_name")
    fns = _functions(col, embedding, string_embed, image_embed)
    dim = _definition(col, fns, meta.path)
    names = {m: f.name for m, f in fns.items()}
    if named is None and idx_name is None:
        same = [e for e in embeddings.indexes_on(db, meta, col.col_id)
                if (e.metric, e.precision, e.string_embed, e.image_embed) ==
                (metric, precision, names.get("string"), names.get("image"))]
        if same:
            if if_exists == "ignore":
                return
            if if_exists == "error":
                raise AlreadyExistsError(
                    f"column {col.name!r} of {meta.path!r} has an identical embedding index "
                    f"already ({same[0].name!r}); pass if_exists='ignore', or give another "
                    "idx_name")
            named = next(i for i in existing if i.id == same[0].id)
    if named is not None:  # if_exists='replace': the name goes to the new index for good
        drop(places, meta, named)
        with writes.operation(places, catalog.load_table(db, meta.path)):
            catalog.drop_index(db, named)
        idx_name = named.name
        meta = catalog.load_table(db, meta.path)
        existing = catalog.indexes(db, meta)
    if idx_name is None:
        taken = {i.name for i in existing}
        idx_name = next(f"idx{k}" for k in itertools.count() if f"idx{k}" not in taken)
    dtype = PRECISIONS[precision]
    # An Array column is the index's vectors as it is, whatever its precision: a second copy
    # would cost the file and every insert more than rounding to the index's precision when the
    # vectors are read (embeddings.stored_dtype).
    direct = isinstance(col.type, ArrayType)
    value = col if direct else _build(places, meta, col, idx_name, fns, dim, dtype, executor)
    params = embeddings.params_json(metric, precision, dim, value.col_id, names.get("string"),
                                    names.get("image"))
    with writes.operation(places, catalog.load_table(db, meta.path),
                          recheck=lambda m: writes.current_columns(db, m)) as op:
        current = op.meta
        vcol = current.column_by_id(value.col_id)
        if vcol.pending:
            raise SchemaError(f"the vectors of index {idx_name!r} are not complete; run the same "
                              "add_embedding_index(...) again")
        idx = catalog.add_index(db, current, current.column_by_id(col.col_id), idx_name,
                                "embedding", params)
        catalog.add_vector_log(db, current, idx)
        # (a table from a file older than scan indexes gets its own here: searches filter by it)
        scanindex.sync(db, current.store, current.columns)


def _build(places: Places, meta: TableMeta, col: ColumnMeta, idx_name: str,
           fns: dict[str, Function], dim: int, dtype: str, executor: Any) -> ColumnMeta:
    """Compute the index's vectors into its hidden column (the jobs way: resumable, brief
    commits, on the executor); the column, complete."""
    db = places.db
    target = ArrayType((dim,), dtype)
    ref = ColumnRef(meta, col)
    source: Expr = ref if isinstance(col.type, ArrayType) else \
        Call(fns[_MODALITY_OF[col.type.name]], [ref], {})
    expr = Cast(source, target)
    name = hidden_name(idx_name)
    old = next((c for c in meta.columns if c.name == name), None)
    if old is not None and not old.pending:
        # left by an add that stopped after computing it, before recording the index
        if old.expr == json.dumps(expr.to_json()):
            return old
        with writes.operation(places, meta, recheck=lambda m: writes.current_columns(db, m)
                              ) as op:
            op.drop_column(op.meta.column(name))
        meta = catalog.load_table(db, meta.path)
    try:
        jobs.add_computed_column(places, meta, name, expr, destination=None, on_error="ignore",
                                 format=None, if_exists="error", stored=True, executor=executor)
    except Interrupted as e:
        raise Interrupted(f"interrupted: the embedding index {idx_name!r} on column "
                          f"{col.name!r} of {meta.path!r} is being built; run the same "
                          "add_embedding_index(...) again to resume it") from e
    return catalog.load_table(db, meta.path).column(name)


def drop(places: Places, meta: TableMeta, idx: IndexMeta) -> None:
    """Drop an embedding index: its record, change log and triggers, and its hidden column."""
    db = places.db
    with writes.operation(places, meta, recheck=lambda m: writes.current_columns(db, m)) as op:
        drop_in(op, idx)


def drop_in(op: writes.Operation, idx: IndexMeta) -> None:
    """Inside an operation's transaction: see :func:`drop`. In a versioned table the hidden
    column is only hidden by the version that drops it, and the index's record stays (inactive:
    see embeddings.active), so a revert past the drop brings the index back with its vectors."""
    db = op.db
    index = embeddings.of(idx) if idx.params else None
    vcol = None
    if index is not None:
        with contextlib.suppress(NotFoundError):
            vcol = op.meta.column_by_id(index.value_col)
    if vcol is not None and vcol.hidden and versions.hides(db, op.meta, vcol):
        catalog.drop_vector_log(db, idx)
    else:
        catalog.drop_index(db, idx)
    if vcol is not None and vcol.hidden:
        op.drop_column(vcol)
    vecsearch.forget(db, idx.id)


def settle(db: Any, meta: TableMeta) -> None:
    """Inside a revert's transaction, once the table has the columns of the version it went
    back to: each embedding index is active exactly when its vectors' column is there; an
    index that became active again gets its change log and triggers back (its vectors came
    back with their rows), one that went inactive loses them."""
    for idx in catalog.indexes(db, meta):
        if idx.kind != "embedding":
            continue
        on = embeddings.active(meta, embeddings.of(idx))
        if on and not catalog.has_vector_log(db, idx):
            catalog.add_vector_log(db, meta, idx)
        elif not on and catalog.has_vector_log(db, idx):
            catalog.drop_vector_log(db, idx)
        vecsearch.forget(db, idx.id)


def drop_embedding_index(places: Places, meta: TableMeta, *, column: ColumnMeta | None,
                         idx_name: str | None, if_not_exists: str) -> None:
    """See :meth:`pxlite.table.Table.drop_embedding_index`."""
    check_choice(if_not_exists, "if_not_exists", ("error", "ignore"))
    if (column is None) == (idx_name is None):
        raise SchemaError("drop_embedding_index() takes either column= or idx_name=, not both "
                          "or neither")
    all_idx = listed(places.db, meta)
    if column is not None:
        found = [i for i in all_idx if i.col_id == column.col_id and i.kind == "embedding"]
        one = _only(found, if_not_exists,
                    f"column {column.name!r} of {meta.path!r} does not have an embedding index",
                    f"column {column.name!r} of {meta.path!r} has multiple embedding indexes "
                    f"({', '.join(repr(i.name) for i in found)}); drop one with idx_name=")
        if one is not None:
            drop(places, meta, one)
        return
    found = [i for i in all_idx if i.name == idx_name]
    if not found:
        pending = next((c for c in meta.columns if c.pending and isinstance(idx_name, str)
                        and c.name == hidden_name(idx_name)), None)
        if pending is not None:  # an interrupted build: cancel it
            with writes.operation(places, meta) as op:
                jobs.drop_pending(op, pending)
            return
        if if_not_exists == "ignore":
            return
        raise NotFoundError(f"index {idx_name!r} does not exist on {meta.path!r}; "
                            "get_metadata()['indexes'] lists its indexes")
    if found[0].kind != "embedding":
        raise SchemaError(f"index {idx_name!r} of {meta.path!r} is not an embedding index (a "
                          "B-tree index); drop it with t.drop_index(idx_name=...)")
    drop(places, meta, found[0])


def drop_any(op: writes.Operation, col: ColumnMeta | None, idx_name: str | None,
             if_not_exists: str) -> None:
    """Inside ``op``'s transaction: :meth:`pxlite.table.Table.drop_index`, the index on
    ``col`` or named ``idx_name``, of either kind."""
    meta, db = op.meta, op.db
    if col is not None:
        found = [i for i in listed(db, meta) if i.col_id == col.col_id]
        what = f"column {col.name!r}"
    else:
        found = [i for i in listed(db, meta) if i.name == idx_name]
        what = f"the name {idx_name!r}"
    one = _only(found, if_not_exists,
                f"{meta.path!r} has no index on {what}; get_metadata()['indexes'] lists its "
                "indexes",
                f"{what} of {meta.path!r} has several indexes ("
                f"{', '.join(i.name for i in found)}); drop one by idx_name=")
    if one is None:
        return
    if one.kind == "embedding":
        drop_in(op, one)
    else:
        catalog.drop_index(db, one)


def _only(found: list[IndexMeta], if_not_exists: str, missing: str, several: str
          ) -> IndexMeta | None:
    """The one index ``found`` for a drop: None when there is none and ``if_not_exists`` is
    'ignore'; a NotFoundError (``missing``) or SchemaError (``several``) otherwise."""
    if not found:
        if if_not_exists == "ignore":
            return None
        raise NotFoundError(missing)
    if len(found) > 1:
        raise SchemaError(several)
    return found[0]


def drop_indexes_of(op: writes.Operation, col: ColumnMeta) -> None:
    """Inside an operation's transaction, before ``col`` is dropped: the embedding indexes on it
    go too (with their hidden columns)."""
    for idx in catalog.indexes(op.db, op.meta):
        if idx.kind == "embedding" and (idx.col_id == col.col_id or (
                idx.params and embeddings.of(idx).value_col == col.col_id)):
            drop_in(op, idx)


def listed(db: Any, meta: TableMeta) -> list[IndexMeta]:
    """The indexes a table has now (an embedding index hidden by a revert is not one)."""
    return [i for i in catalog.indexes(db, meta)
            if i.kind != "embedding" or embeddings.active(meta, embeddings.of(i))]


def metadata(db: Any, meta: TableMeta) -> dict[int, EmbeddingIndex]:
    """The embedding indexes of a table, by index id (for get_metadata)."""
    return {e.id: e for e in embeddings.indexes_on(db, meta)}
