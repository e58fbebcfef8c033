"""Expressions over a table's columns.

Built with Python operators from column references (``t.label == 'x'``, ``t.image.width > 100``,
``t.image.rotate(90)``), an expression can be compiled to SQL when SQLite can compute it
(:meth:`Expr.sql` returns ``None`` otherwise) and evaluated in Python on one row
(:meth:`Expr.eval`). Expressions serialize to JSON (:meth:`Expr.to_json`, :func:`from_json`) so
computed-column definitions survive in the catalog and are rebuilt in a new process.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import jsonpath, sqlcall
from .config import resolve as resolve_settings
from .errors import ComputeError, NotFoundError, PxliteError, SchemaError
from .types import (
    ArrayType,
    Bool,
    ColumnType,
    Date,
    Float,
    Image,
    Int,
    Json,
    String,
    Timestamp,
    as_type,
    parse_type,
    type_of_value,
)

if TYPE_CHECKING:
    from .catalog import ColumnMeta, TableMeta
    from .udf import Function


class MediaResolver(Protocol):
    """Turns stored media URIs into values: ``value`` (PIL image or local path), ``fileurl``,
    ``localpath``. Supplied by the table layer, which knows the settings and the cache."""

    def value(self, col: ColumnMeta, uri: str) -> Any: ...
    def fileurl(self, uri: str) -> str: ...
    def localpath(self, uri: str) -> str: ...


#: The attribute by which a function (``Function.fn``) says it can work from a reduced decode of
#: the image it is called on: ``request(full_size, *other_args, **kwargs) -> (w, h) | None``, the
#: smallest decoded size (upright pixels) it needs from an image of ``full_size``, or None when
#: it needs every pixel. Set by the built-in ``thumbnail`` and ``resize``.
DECODE_REQUEST = "pxlite_decode_request"

#: Above this many values, ``isin`` binds one JSON array instead of one parameter per value
#: (SQLite refuses statements with more than 32,766 parameters).
_MAX_IN_PARAMS = 500


#: Builders of the expressions an index gives a column (``col.similarity(...)``), registered by
#: the module that defines them (pxlite.embeddings), which sits above this one.
INDEX_EXPRESSIONS: dict[str, Callable[..., Expr]] = {}

#: Expressions of columns computed when read, by (table uid, column id, definition).
_ON_READ: dict[tuple[str, int, str | None], Expr] = {}


class RowContext:
    """What an expression needs to evaluate on one row: raw stored values and media access."""

    def __init__(self, raw: dict[int, Any], errors: dict[int, tuple[Any, Any]] | None = None,
                 media: MediaResolver | None = None, rowid: int | None = None) -> None:
        self.rowid = rowid           # for messages about this row
        self.raw = raw               # col_id -> stored SQL value
        self.errors = errors or {}   # col_id -> (errortype, errormsg)
        self.media = media
        self._cache: dict[int, Any] = {}
        self._opened: list[Any] = []  # images this row opened from files (see close_opened)

    @property
    def settings(self) -> Any:
        """The effective settings of the database being read (for functions that need them)."""
        s = getattr(self.media, "settings", None)
        if s is None:
            s = resolve_settings()
        return s

    def close_opened(self, keep: Iterable[Any] = ()) -> None:
        """Close the image files this row opened (an expression may have read only a header,
        e.g. ``t.image.width``, which leaves the file open), except values handed on."""
        kept = {id(v) for v in keep}
        for img in self._opened:
            if id(img) not in kept:
                with contextlib.suppress(Exception):
                    img.close()
        self._opened.clear()

    def stored(self, col: ColumnMeta) -> Any:
        """A cell's stored value, checked to be of the column's stored kind (a crafted file
        may hold anything): a media column's URI before anything opens it."""
        raw = self.raw.get(col.col_id)
        if raw is not None and not isinstance(raw, col.type.stored_as):
            where = f", row {self.rowid}" if self.rowid is not None else ""
            try:
                col.type.load(raw)
            except SchemaError as e:
                raise SchemaError(f"column {col.name!r}{where}: {e}") from None
        return raw

    def value(self, col: ColumnMeta) -> Any:
        if col.col_id in self._cache:
            return self._cache[col.col_id]
        raw = self.raw.get(col.col_id)
        with self._naming_row(col):
            if raw is None:
                v = None
            elif col.type.is_media:
                if self.media is None:
                    raise SchemaError(f"column {col.name!r}: media values are not available here")
                col.type.load(raw)  # a URI, not whatever a crafted file holds
                v = self.media.value(col, raw)
                if hasattr(v, "close"):
                    self._opened.append(v)
            else:
                v = col.type.load(raw)
        self._cache[col.col_id] = v
        return v

    def reduced_value(self, col: ColumnMeta, request: Callable[[tuple[int, int]], Any]) -> Any:
        """An Image cell's value for one call that needs only ``request``'s pixels (see
        :data:`DECODE_REQUEST`): a JPEG may come decoded at reduced scale, several times faster.

        Such a reduced image is handed to that call only and never enters this row's cache,
        which other expressions of the row (a ``rotate`` beside a ``thumbnail``) read for full
        pixels. Without a resolver that can reduce, this is :meth:`value`.
        """
        open_reduced = getattr(self.media, "reduced_value", None)
        raw = self.raw.get(col.col_id)
        if open_reduced is None or not isinstance(raw, str):
            return self.value(col)  # nothing to open, or a crafted value value() reports
        cached = self._cache.get(col.col_id)
        with self._naming_row(col):
            col.type.load(raw)
            v, shared = open_reduced(col, raw, request, cached)
        if v is not cached:
            self._opened.append(v)
            if shared:
                self._cache[col.col_id] = v
        return v

    @contextlib.contextmanager
    def _naming_row(self, col: ColumnMeta) -> Iterator[None]:
        """A damaged stored value's error names the column and row it came from."""
        try:
            yield
        except SchemaError as e:
            if self.rowid is None or "stored value" not in str(e):
                raise
            raise SchemaError(f"column {col.name!r}, row {self.rowid}: {e}") from None


def lit(value: Any) -> Expr:
    """Wrap a plain Python value as a Literal (expressions pass through)."""
    return value if isinstance(value, Expr) else Literal(value)


class Expr:
    """Base of all expression nodes."""

    type: ColumnType = Json

    # ---- building ------------------------------------------------------------------------------
    def __eq__(self, other: Any) -> Expr:  # type: ignore[override]
        if other is None:
            return IsNull(self)
        return Compare("==", self, lit(other))

    def __ne__(self, other: Any) -> Expr:  # type: ignore[override]
        if other is None:
            return Not(IsNull(self))
        return Compare("!=", self, lit(other))

    def __lt__(self, other: Any) -> Expr:
        return Compare("<", self, lit(other))

    def __le__(self, other: Any) -> Expr:
        return Compare("<=", self, lit(other))

    def __gt__(self, other: Any) -> Expr:
        return Compare(">", self, lit(other))

    def __ge__(self, other: Any) -> Expr:
        return Compare(">=", self, lit(other))

    def __and__(self, other: Any) -> Expr:
        return And(self, _as_pred(other))

    def __rand__(self, other: Any) -> Expr:
        return And(_as_pred(other), self)

    def __or__(self, other: Any) -> Expr:
        return Or(self, _as_pred(other))

    def __ror__(self, other: Any) -> Expr:
        return Or(_as_pred(other), self)

    def __invert__(self) -> Expr:
        return Not(self)

    def __add__(self, other: Any) -> Expr:
        return Arith("+", self, lit(other))

    def __radd__(self, other: Any) -> Expr:
        return Arith("+", lit(other), self)

    def __sub__(self, other: Any) -> Expr:
        return Arith("-", self, lit(other))

    def __rsub__(self, other: Any) -> Expr:
        return Arith("-", lit(other), self)

    def __mul__(self, other: Any) -> Expr:
        return Arith("*", self, lit(other))

    def __rmul__(self, other: Any) -> Expr:
        return Arith("*", lit(other), self)

    def __truediv__(self, other: Any) -> Expr:
        return Arith("/", self, lit(other))

    def __rtruediv__(self, other: Any) -> Expr:
        return Arith("/", lit(other), self)

    def __mod__(self, other: Any) -> Expr:
        return Arith("%", self, lit(other))

    def __rmod__(self, other: Any) -> Expr:
        return Arith("%", lit(other), self)

    def __neg__(self) -> Expr:
        return Arith("-", Literal(0), self)

    def __bool__(self) -> bool:
        raise SchemaError(
            "an expression has no truth value: combine conditions with & | ~ (not and/or/not), "
            "and use .isin([...]) instead of 'in'"
        )

    __hash__ = object.__hash__

    def isin(self, values: Iterable[Any]) -> Expr:
        """True where the value is one of ``values``."""
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise SchemaError(f"isin() takes a list of values, got {values!r}")
        return IsIn(self, [v for v in values])

    def is_null(self) -> Expr:
        return IsNull(self)

    def is_not_null(self) -> Expr:
        return Not(IsNull(self))

    def astype(self, ctype: Any) -> Expr:
        return Cast(self, as_type(ctype))

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: the methods above (astype, isin...)
        # always win over a Json field of the same name, which stays reachable as ['name'].
        if name.startswith("_"):
            raise AttributeError(name)
        from .udf import methods_for

        fn = methods_for(self.type).get(name)
        if fn is None:
            if self.type.name == Json.name:  # a field: t.meta.camera (Pixeltable: a registered
                return JsonPath(self, [name])  # Json method such as len() wins over a field)
            raise AttributeError(
                f"{self!r} (type {self.type.name}) has no attribute or method {name!r}"
            )
        if fn.is_property:
            return Call(fn, [self], {})
        return _BoundMethod(fn, self)

    def __getitem__(self, index: Any) -> Expr:
        """A JSON path step: ``t.meta['camera']``, ``t.meta.tags[0]``, ``[-1]``, ``[:2]``."""
        if self.type.name != Json.name:
            raise SchemaError(f"{self!r} is a {self.type.name}, not Json: only Json expressions "
                              "take [key], [index] or [start:stop]")
        return JsonPath(self, [index])

    # An expression is no container: without these, Python would iterate a Json expression
    # through __getitem__ (0, 1, 2, ... for ever) for ``list(e)`` or ``x in e``.
    __iter__ = None

    def __contains__(self, item: Any) -> bool:
        raise SchemaError("'in' cannot test an expression; use .isin([...]) for 'is one of', "
                          "or .contains(x) on a String or Json expression")

    # ---- inspecting ----------------------------------------------------------------------------
    def children(self) -> list[Expr]:
        return []

    def columns(self) -> set[int]:
        """The col_ids this expression reads."""
        out: set[int] = set()
        for c in self.children():
            out |= c.columns()
        return out

    def stored_batch(self) -> tuple[int, Callable[[list[Any]], list[Any]]] | None:
        """Where this expression's value, as stored, follows from one stored column's value by
        a conversion that can run over many rows in one call: that column's col_id and the
        function from its stored values (none NULL) to this expression's. Computations use it
        to fill such a column a batch at a time (see :mod:`pxlite.compute`); None for
        anything else (evaluated row by row)."""
        return None

    def walk(self) -> Iterable[Expr]:
        yield self
        for c in self.children():
            yield from c.walk()

    def rewrite(self, visit: Callable[[Expr], Expr | None]) -> Expr:
        """This expression with nodes replaced: ``visit(node)`` gives a node's replacement
        (None: keep the node and look inside it). A node is copied only when one of its
        children changes; the children are its Expr-valued attributes (and lists, tuples and
        dicts of them), the convention of every node in this module."""
        new = visit(self)
        if new is not None:
            return new
        changed = {k: nv for k, v in vars(self).items()
                   if (nv := _rewrite_value(v, visit)) is not v}
        if not changed:
            return self
        out = copy.copy(self)
        for k, v in changed.items():
            setattr(out, k, v)
        return out

    def default_name(self) -> str:
        return "col"

    # ---- running -------------------------------------------------------------------------------
    # Two SQL forms. sql(): a value that compares, sorts and groups in SQLite the way the Python
    # values do (what where, order_by and group_by use). sql_value(): a value that decode()
    # turns into exactly what eval() returns (what a select output or a function's argument
    # uses). They differ only for Json: sql_value() is the JSON text, sql() its SQL scalar
    # (a JSON string as text, a number as a number, true as 1, null and a missing key as NULL).
    def sql(self) -> tuple[str, list[Any]] | None:
        """``(sql, params)`` when SQLite can compute this, else None (see above)."""
        return None

    def sql_value(self) -> tuple[str, list[Any]] | None:
        """``(sql, params)`` of this expression's value, for :meth:`decode` (see above)."""
        return self.sql()

    def decode(self, value: Any) -> Any:
        """The Python value of what :meth:`sql_value` computed (None stays None)."""
        return None if value is None else self.type.from_sql(value)

    def decoder(self) -> Callable[[Any], Any] | None:
        """What :meth:`decode` does to a value that is not None, as one quick callable; None
        where SQLite's value already is the Python value (Int, Float, String): a query
        decoding many values skips those."""
        if self.type.name in _IDENTITY_TYPES:
            return None
        return _DECODERS.get(self.type.name, self.type.from_sql)

    def sql_json_type(self) -> tuple[str, list[Any]] | None:
        """For a Json expression: SQLite's ``json_type`` of its value (``'text'``,
        ``'integer'``, ``'real'``, ``'true'``, ``'false'``, ``'null'``, ``'array'``,
        ``'object'``; NULL when missing)."""
        v = self.sql_value()
        return None if v is None else (f"json_type({v[0]})", v[1])

    def eval(self, row: RowContext) -> Any:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class _BoundMethod:
    def __init__(self, fn: Function, base: Expr) -> None:
        self.fn, self.base = fn, base
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Expr:
        try:
            self.fn.signature.bind(self.base, *args, **kwargs)
        except TypeError as e:
            raise SchemaError(f"{self.fn.method_name}(): {e}") from None
        return Call(self.fn, [self.base, *args], kwargs)

    def __repr__(self) -> str:
        return f"<method {self.fn.method_name} of {self.base!r}>"


def _as_pred(x: Any) -> Expr:
    if not isinstance(x, Expr):
        raise SchemaError(f"cannot combine a condition with {x!r}; both sides must be expressions")
    return x


class ColumnRef(Expr):
    """A reference to one column of one table (by id, so renames do not break it)."""

    def __init__(self, table: TableMeta, col: ColumnMeta) -> None:
        self.table, self.col = table, col
        self.type = col.type

    def __getattr__(self, name: str) -> Any:
        if name in ("errortype", "errormsg"):
            return ErrorAttr(self, name)
        if name in ("fileurl", "localpath") and self.col.type.is_media:
            return MediaAttr(self, name)
        return super().__getattr__(name)

    def similarity(self, item: Any = None, *, string: Any = None, image: Any = None,
                   vector: Any = None, idx: str | None = None) -> Expr:
        """How close each row is to a query value, by this column's embedding index
        (Pixeltable's ``similarity``): ``string='a red car'``, ``image=`` (a PIL image, a path
        or a URL) or ``vector=`` (a numpy array). A Float: the cosine similarity, the inner
        product or the L2 distance, as the index's metric says; ``idx`` names the index when
        the column has several. Use it in ``select``, ``where`` and ``order_by``:
        ``t.order_by(sim, asc=False).limit(10)`` is an exact top-10 search."""
        return INDEX_EXPRESSIONS["similarity"](self, item, string=string, image=image,
                                               vector=vector, idx=idx)

    def columns(self) -> set[int]:
        if not self.col.stored:  # computed when read: what its expression reads
            return {self.col.col_id} | self._computed_on_read().columns()
        return {self.col.col_id}

    def default_name(self) -> str:
        return self.col.name

    def sql(self) -> tuple[str, list[Any]] | None:
        if not self.col.stored:
            return None  # computed when read: evaluated in Python
        # Qualified by its table (t_<id>.c<id>): the same SQL serves a statement over one table
        # and a join, where both tables have a column c1.
        if self.type.name == Json.name:  # the SQL scalar of the stored JSON text
            return f"({self.table.sql}.{self.col.sql} ->> '$')", []
        return f"{self.table.sql}.{self.col.sql}", []

    def sql_value(self) -> tuple[str, list[Any]] | None:
        return (f"{self.table.sql}.{self.col.sql}", []) if self.col.stored else None

    def eval(self, row: RowContext) -> Any:
        if not self.col.stored:
            if self.col.col_id not in row._cache:
                row._cache[self.col.col_id] = self._computed_on_read().eval(row)
            return row._cache[self.col.col_id]
        return row.value(self.col)

    def _computed_on_read(self) -> Expr:
        """The expression of a column added with ``stored=False`` (built once, shared)."""
        key = (self.table.uid, self.col.col_id, self.col.expr)
        expr = _ON_READ.get(key)
        if expr is None:
            expr = _ON_READ[key] = column_expr(self.table, self.col)
        return expr

    def to_json(self) -> dict[str, Any]:
        return {"col": self.col.col_id}

    def __repr__(self) -> str:
        return self.col.name


class ErrorAttr(Expr):
    """``col.errortype`` / ``col.errormsg``: the error stored for a cell, or None."""

    type = String

    def __init__(self, ref: ColumnRef, attr: str) -> None:
        self.ref, self.attr = ref, attr

    def children(self) -> list[Expr]:
        return [self.ref]

    def default_name(self) -> str:
        return f"{self.ref.col.name}_{self.attr}"

    def sql(self) -> tuple[str, list[Any]]:
        col = self.ref.col
        return f"{self.ref.table.sql}.{col.sql_et if self.attr == 'errortype' else col.sql_em}", []

    def eval(self, row: RowContext) -> Any:
        et, em = row.errors.get(self.ref.col.col_id, (None, None))
        return et if self.attr == "errortype" else em

    def to_json(self) -> dict[str, Any]:
        return {"err": self.attr, "of": self.ref.to_json()}

    def __repr__(self) -> str:
        return f"{self.ref!r}.{self.attr}"


class MediaAttr(Expr):
    """``col.fileurl`` (where the file lives) / ``col.localpath`` (a local path to its bytes)."""

    type = String

    def __init__(self, ref: ColumnRef, attr: str) -> None:
        self.ref, self.attr = ref, attr

    def children(self) -> list[Expr]:
        return [self.ref]

    def default_name(self) -> str:
        return f"{self.ref.col.name}_{self.attr}"

    def sql(self) -> None:
        return None

    def eval(self, row: RowContext) -> Any:
        uri = row.raw.get(self.ref.col.col_id)
        if uri is None or row.media is None:
            return None
        if self.attr == "fileurl":
            return row.media.fileurl(uri)
        return row.media.localpath(uri)

    def to_json(self) -> dict[str, Any]:
        return {"media": self.attr, "of": self.ref.to_json()}

    def __repr__(self) -> str:
        return f"{self.ref!r}.{self.attr}"


#: Casts of a JSON value SQLite does itself: target type -> (the json_type values it takes,
#: the conversion of the scalar {k}). Any other value goes to Python (which raises for it).
_JSON_CASTS: dict[str, tuple[str, str]] = {
    String.name: ("'text'", "{k}"),
    Int.name: ("'integer'", "{k}"),
    Float.name: ("'integer', 'real'", "CAST({k} AS REAL)"),
    Bool.name: ("'true', 'false'", "{k}"),
}


def sql_template(template: str, **parts: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    """Fill ``{name}`` placeholders with SQL fragments, gathering their parameters in the
    order the placeholders appear (a fragment used twice binds its parameters twice)."""
    params: list[Any] = []

    def fill(m: re.Match[str]) -> str:
        sql, p = parts[m.group(1)]
        params.extend(p)
        return sql

    return _PLACEHOLDER.sub(fill, template), params


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Literal(Expr):
    def __init__(self, value: Any) -> None:
        if isinstance(value, tuple):
            value = tuple(value)
        if isinstance(value, int) and not isinstance(value, bool) and type(value) is not int:
            value = int(value)  # IntEnums (PIL.Image.Transpose...) are stored as plain ints
        self.value = value
        self.type = type_of_value(value)

    def sql(self) -> tuple[str, list[Any]] | None:
        v = self.value
        if v is None or isinstance(v, (int, float, str)):
            return "?", [int(v) if isinstance(v, bool) else v]
        if isinstance(v, _dt.date):  # a datetime or a date, as their columns store them
            return "?", [self.type.to_sql(v)]
        return None

    def eval(self, row: RowContext) -> Any:
        return self.value

    def default_name(self) -> str:
        return "literal"

    def to_json(self) -> dict[str, Any]:
        return {"lit": lit_to_json(self.value)}

    def __repr__(self) -> str:
        return repr(self.value)


def lit_to_json(v: Any) -> Any:
    if isinstance(v, tuple):
        return {"tuple": [lit_to_json(x) for x in v]}
    if isinstance(v, list):
        return [lit_to_json(x) for x in v]
    if isinstance(v, dict):
        return {"dict": {k: lit_to_json(x) for k, x in v.items()}}
    if isinstance(v, _dt.datetime):
        return {"ts": v.isoformat()}
    if isinstance(v, _dt.date):
        return {"date": v.isoformat()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SchemaError(f"cannot store the literal {v!r} ({type(v).__name__}) in a column definition")


def _lit_from_json(v: Any) -> Any:
    if isinstance(v, list):
        return [_lit_from_json(x) for x in v]
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_lit_from_json(x) for x in v["tuple"])
        if "dict" in v:
            return {k: _lit_from_json(x) for k, x in v["dict"].items()}
        if "ts" in v:
            return _dt.datetime.fromisoformat(v["ts"])
        if "date" in v:
            return _dt.date.fromisoformat(v["date"])
    return v


def _compare_values(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return _COMPARE[op](a, b)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_SQL_OP = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
#: The json_type values a Json value compares with, by the other side's type.
_SCALAR_KINDS = {String.name: "'text'", Int.name: "'integer', 'real', 'true', 'false'",
                 Float.name: "'integer', 'real', 'true', 'false'",
                 Bool.name: "'integer', 'real', 'true', 'false'"}


def _json_comparison(op: str, flip: bool, other: ColumnType) -> Callable[..., Any]:
    """The Python comparison of a JSON value (its text) with a value of type ``other``, for
    SQL: 1, 0 or NULL, or the SchemaError :meth:`Compare.eval` raises."""

    def compare(value: Any, o: Any, desc: str) -> Any:
        a, b = json.loads(value), other.from_sql(o)
        try:
            r = _compare_values(op, b, a) if flip else _compare_values(op, a, b)
        except TypeError as e:
            raise SchemaError(f"cannot compare {desc}: {e}") from None
        return None if r is None else int(bool(r))

    return compare


def _bind_literal_for(lhs: Expr, rhs: Expr) -> tuple[str, list[Any]] | None:
    """SQL for ``rhs`` when compared with ``lhs``: a literal is converted with lhs's column type
    (so a datetime or bool compares the way it is stored)."""
    if isinstance(rhs, Literal) and isinstance(lhs, ColumnRef) and rhs.value is not None:
        try:
            return "?", [lhs.type.to_sql(rhs.value)]
        except SchemaError:
            return None
    return rhs.sql()


class Compare(Expr):
    type = Bool

    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        self.op, self.left, self.right = op, left, right

    def children(self) -> list[Expr]:
        return [self.left, self.right]

    def sql(self) -> tuple[str, list[Any]] | None:
        if Json.name in (self.left.type.name, self.right.type.name):
            return self._json_sql()
        lhs = _bind_literal_for(self.right, self.left)
        rhs = _bind_literal_for(self.left, self.right)
        if lhs is None or rhs is None:
            return None
        return f"({lhs[0]} {_SQL_OP[self.op]} {rhs[0]})", lhs[1] + rhs[1]

    def _json_sql(self) -> tuple[str, list[Any]] | None:
        """A Json value against a string, number or bool, as Python compares them: equal only
        to the same kind of value (a JSON string to a string, a number or bool to a number or
        bool: true is 1, as in Python), ordered only within a kind. Other pairs go to the
        Python comparison (an order across kinds raises there, as in :meth:`eval`)."""
        flip = self.right.type.name == Json.name
        j, o = (self.right, self.left) if flip else (self.left, self.right)
        op = _FLIPPED[self.op] if flip else self.op
        json_kinds = _SCALAR_KINDS.get(o.type.name)
        if json_kinds is None or (isinstance(o, Literal) and o.value is None):
            return None  # Json on both sides, a date, None...: Python
        k, ov, jv, jt = j.sql(), o.sql(), j.sql_value(), j.sql_json_type()
        if k is None or ov is None or jv is None or jt is None:
            return None
        # SQL text of a JSON array or object starts with [ or {: only a string that does can
        # be mistaken for one. A number never equals text.
        if op in ("==", "!=") and (o.type.name != String.name or (
                isinstance(o, Literal) and not o.value.startswith(("[", "{")))):
            return f"({k[0]} {_SQL_OP[op]} {ov[0]})", k[1] + ov[1]
        key = sqlcall.register(f"pxlite.compare:{self.op}:{flip}:{o.type.name}",
                               _json_comparison(self.op, flip, o.type))
        desc: tuple[str, list[Any]] = ("?", [f"{self.left!r} {self.op} {self.right!r}"])
        return sql_template(
            f"(CASE WHEN {{k}} IS NULL OR {{o}} IS NULL THEN NULL WHEN {{jt}} IN ({json_kinds}) "
            f"THEN {{k}} {_SQL_OP[op]} {{o}} ELSE {sqlcall.SQL_NAME}({{key}}, {{jv}}, {{o}}, "
            "{desc})"
            " END)", k=k, o=ov, jt=jt, key=("?", [key]), jv=jv, desc=desc)

    def eval(self, row: RowContext) -> Any:
        a, b = self.left.eval(row), self.right.eval(row)
        # compare the way SQL would: a datetime column against an ISO string literal, etc.
        if isinstance(self.left, ColumnRef) and isinstance(self.right, Literal) and b is not None:
            with contextlib.suppress(SchemaError):  # not convertible: compare as given
                b = self.left.type.from_sql(self.left.type.to_sql(b))
        try:
            return _compare_values(self.op, a, b)
        except TypeError as e:
            raise SchemaError(
                f"cannot compare {self.left!r} {self.op} {self.right!r}: {e}") from None

    def to_json(self) -> dict[str, Any]:
        return {"cmp": self.op, "l": self.left.to_json(), "r": self.right.to_json()}

    def __repr__(self) -> str:
        return f"{self.left!r} {self.op} {self.right!r}"


class IsNull(Expr):
    type = Bool

    def __init__(self, arg: Expr) -> None:
        self.arg = arg

    def children(self) -> list[Expr]:
        return [self.arg]

    def sql(self) -> tuple[str, list[Any]] | None:
        # A stored cell is NULL exactly when its value is None (a Json column's too: None is
        # never stored as the JSON text 'null'), and the bare column can use an index.
        s = self.arg.sql_value() if isinstance(self.arg, ColumnRef) else self.arg.sql()
        return None if s is None else (f"({s[0]} IS NULL)", s[1])

    def eval(self, row: RowContext) -> Any:
        if isinstance(self.arg, ColumnRef):  # no need to load media to know it is missing
            return row.raw.get(self.arg.col.col_id) is None
        return self.arg.eval(row) is None

    def to_json(self) -> dict[str, Any]:
        return {"isnull": self.arg.to_json()}

    def __repr__(self) -> str:
        return f"{self.arg!r} == None"


class IsIn(Expr):
    type = Bool

    def __init__(self, arg: Expr, values: list[Any]) -> None:
        self.arg, self.values = arg, values

    def children(self) -> list[Expr]:
        return [self.arg]

    def sql(self) -> tuple[str, list[Any]] | None:
        s = self.arg.sql()
        if s is None or (self.arg.type.name == Json.name and not all(
                isinstance(v, (int, float)) or (isinstance(v, str) and not v.startswith(
                    ("[", "{"))) for v in self.values)):
            return None  # a Json value against lists, dates...: Python compares
        params: list[Any] = []
        json_arg = self.arg.type.name == Json.name
        for v in self.values:
            b = Literal(v).sql() if json_arg else _bind_literal_for(self.arg, Literal(v))
            if b is None:
                return None
            params += b[1]
        if not params:
            return "(0)", []
        if len(params) > _MAX_IN_PARAMS:  # SQLite caps bound parameters: one JSON array instead
            return f"({s[0]} IN (SELECT value FROM json_each(?)))", [*s[1], json.dumps(params)]
        return f"({s[0]} IN ({', '.join('?' * len(params))}))", s[1] + params

    def eval(self, row: RowContext) -> Any:
        v = self.arg.eval(row)
        return None if v is None else v in self.values

    def to_json(self) -> dict[str, Any]:
        return {"isin": self.arg.to_json(), "values": lit_to_json(list(self.values))}

    def __repr__(self) -> str:
        return f"{self.arg!r}.isin({self.values!r})"


class _Connective(Expr):
    """``&`` / ``|`` with SQL's three-valued logic: ``dominant`` decides alone (False for AND,
    True for OR); otherwise a None on either side makes the result None."""

    type = Bool
    sql_op: str
    symbol: str
    json_key: str
    dominant: bool

    def __init__(self, left: Expr, right: Expr) -> None:
        self.left, self.right = left, right

    def children(self) -> list[Expr]:
        return [self.left, self.right]

    def sql(self) -> tuple[str, list[Any]] | None:
        a, b = self.left.sql(), self.right.sql()
        if a is None or b is None:
            return None
        return f"({a[0]} {self.sql_op} {b[0]})", a[1] + b[1]

    def eval(self, row: RowContext) -> Any:
        a = self.left.eval(row)
        if a is not None and bool(a) is self.dominant:
            return self.dominant
        b = self.right.eval(row)
        if b is not None and bool(b) is self.dominant:
            return self.dominant
        return None if a is None or b is None else not self.dominant

    def to_json(self) -> dict[str, Any]:
        return {self.json_key: [self.left.to_json(), self.right.to_json()]}

    def __repr__(self) -> str:
        return f"({self.left!r}) {self.symbol} ({self.right!r})"


class And(_Connective):
    sql_op, symbol, json_key, dominant = "AND", "&", "and", False


class Or(_Connective):
    sql_op, symbol, json_key, dominant = "OR", "|", "or", True


class Not(Expr):
    type = Bool

    def __init__(self, arg: Expr) -> None:
        self.arg = arg

    def children(self) -> list[Expr]:
        return [self.arg]

    def sql(self) -> tuple[str, list[Any]] | None:
        s = self.arg.sql()
        return None if s is None else (f"(NOT {s[0]})", s[1])

    def eval(self, row: RowContext) -> Any:
        v = self.arg.eval(row)
        return None if v is None else not v

    def to_json(self) -> dict[str, Any]:
        return {"not": self.arg.to_json()}

    def __repr__(self) -> str:
        if isinstance(self.arg, IsNull):
            return f"{self.arg.arg!r} != None"
        return f"~({self.arg!r})"


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "%": operator.mod,
}


class Arith(Expr):
    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        self.op, self.left, self.right = op, left, right
        numeric = {Int.name, Float.name}
        lt, rt = left.type.name, right.type.name
        if op == "+" and lt == rt == String.name:
            self.type = String
        elif lt in numeric and rt in numeric:
            self.type = Float if (op == "/" or Float.name in (lt, rt)) else Int
        else:
            hint = (": a Json value takes .astype(pxl.Float) (or Int, String) first"
                    if Json.name in (lt, rt) else "")
            raise SchemaError(f"cannot compute {left!r} {op} {right!r}: {op} needs numbers "
                              f"(or + on two strings), got {lt} and {rt}{hint}")

    def children(self) -> list[Expr]:
        return [self.left, self.right]

    def sql(self) -> tuple[str, list[Any]] | None:
        if self.op == "%":  # SQL's % differs from Python's for negative numbers
            return None
        a, b = self.left.sql(), self.right.sql()
        if a is None or b is None:
            return None
        if self.type.name == String.name:
            return f"({a[0]} || {b[0]})", a[1] + b[1]
        if self.op == "/":  # true division, as in Python; NULL on /0 where Python would raise
            return f"(CAST({a[0]} AS REAL) / {b[0]})", a[1] + b[1]
        return f"({a[0]} {self.op} {b[0]})", a[1] + b[1]

    def eval(self, row: RowContext) -> Any:
        a, b = self.left.eval(row), self.right.eval(row)
        if a is None or b is None:
            return None
        try:
            return _ARITH[self.op](a, b)
        except ZeroDivisionError:
            return None

    def default_name(self) -> str:
        return self.left.default_name()

    def to_json(self) -> dict[str, Any]:
        return {"arith": self.op, "l": self.left.to_json(), "r": self.right.to_json()}

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


class JsonPath(Expr):
    """A path into a Json value: ``t.meta.camera.model``, ``t.meta['a b']``, ``t.meta.tags[0]``,
    ``[-1]``, ``[:2]`` (see :mod:`pxlite.jsonpath` for the semantics and the SQL). Usable
    wherever an expression is; ``.astype(pxl.String)`` etc. gives a typed value."""

    type = Json

    def __init__(self, anchor: Expr, elements: list[Any]) -> None:
        checked: list[jsonpath.Element] = [jsonpath.check_element(el) for el in elements]
        if isinstance(anchor, JsonPath):  # t.meta.a.b: one path, one lookup
            checked = anchor._elements + checked
            anchor = anchor._anchor
        # Underscored: any other attribute name would hide a JSON field of that name.
        self._anchor: Expr = anchor
        self._elements: list[jsonpath.Element] = checked

    def children(self) -> list[Expr]:
        return [self._anchor]

    def default_name(self) -> str:
        return jsonpath.column_name(self._anchor.default_name(), self._elements)

    def _sql(self, build: Callable[[tuple[str, list[Any]], list[jsonpath.Element]],
                                   tuple[str, list[Any]]]) -> tuple[str, list[Any]] | None:
        doc = self._anchor.sql_value()
        if doc is None:
            return None
        if jsonpath.can_compile(self._elements):
            return build(doc, self._elements)
        # A slice with a step: Python walks the path, called from SQL on the document.
        elements = self._elements
        key = sqlcall.register(
            f"pxlite.jsonpath:{json.dumps(jsonpath.to_json(elements))}",
            lambda v: None if v is None else Json.to_sql(jsonpath.evaluate(json.loads(v),
                                                                           elements)))
        return build((f"{sqlcall.SQL_NAME}(?, {doc[0]})", [key, *doc[1]]), [])

    def sql(self) -> tuple[str, list[Any]] | None:
        return self._sql(jsonpath.scalar_sql)

    def sql_value(self) -> tuple[str, list[Any]] | None:
        return self._sql(jsonpath.value_sql)

    def sql_json_type(self) -> tuple[str, list[Any]] | None:
        return self._sql(jsonpath.json_type_sql)

    def eval(self, row: RowContext) -> Any:
        return jsonpath.evaluate(self._anchor.eval(row), self._elements)

    def to_json(self) -> dict[str, Any]:
        return {"jpath": jsonpath.to_json(self._elements), "of": self._anchor.to_json()}

    def __repr__(self) -> str:
        return f"{self._anchor!r}{jsonpath.text(self._elements)}"


class _ValueFirst(Expr):
    """A node that builds its value's SQL (sql_value); its comparable SQL follows from it: the
    same, or the SQL scalar of a Json value."""

    def sql(self) -> tuple[str, list[Any]] | None:
        v = self.sql_value()
        if v is None or self.type.name != Json.name:
            return v
        return f"({v[0]} ->> '$')", v[1]


class Cast(_ValueFirst):
    def __init__(self, arg: Expr, ctype: ColumnType) -> None:
        self.arg, self.type = arg, ctype

    def children(self) -> list[Expr]:
        return [self.arg]

    def eval(self, row: RowContext) -> Any:
        v = self.arg.eval(row)
        return None if v is None else self.type.from_sql(self.type.to_sql(v))

    def stored_batch(self) -> tuple[int, Callable[[list[Any]], list[Any]]] | None:
        arg = self.arg
        if not isinstance(arg, ColumnRef) or not arg.col.stored:
            return None
        fn = self.type.stored_cast_from(arg.type) if isinstance(self.type, ArrayType) else None
        return None if fn is None else (arg.col.col_id, fn)

    def sql_value(self) -> tuple[str, list[Any]] | None:
        """SQLite converts where it gives Python's answer (a JSON string to String, a JSON
        number to Float, Int to Float...); any other value goes to the Python cast, which
        converts it or raises as :meth:`eval` does."""
        src, dst = self.arg.type.name, self.type.name
        av = self.arg.sql_value()
        if av is None:
            return None
        if src == dst and self.arg.type.same_kind(self.type):  # (Arrays: also shape, dtype)
            return av
        if src == Int.name and dst == Float.name:
            return sql_template("CAST({a} AS REAL)", a=av)
        source, target = self.arg.type, self.type
        def cast(v: Any) -> Any:
            value = None if v is None else source.from_sql(v)  # JSON null is None too
            return None if value is None else target.to_sql(value)

        key = sqlcall.register(f"pxlite.cast:{src}->{target!r}", cast)
        python = (f"{sqlcall.SQL_NAME}(?, {av[0]})", [key, *av[1]])
        native = _JSON_CASTS.get(dst) if src == Json.name else None
        jt, k = self.arg.sql_json_type(), self.arg.sql()
        if native is None or jt is None or k is None:
            return python
        json_kinds, json_conv = native
        return sql_template(
            f"(CASE WHEN {{jt}} IN ({json_kinds}) THEN {json_conv} WHEN {{k}} IS NULL THEN NULL "
            "ELSE {py} END)", jt=jt, k=k, py=python)

    def default_name(self) -> str:
        return self.arg.default_name()

    def to_json(self) -> dict[str, Any]:
        return {"cast": repr(self.type), "arg": self.arg.to_json()}

    def __repr__(self) -> str:
        return f"{self.arg!r}.astype({self.type!r})"


class Call(_ValueFirst):
    """A function call: a built-in image function or a user's @udf."""

    def __init__(self, fn: Function, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = [lit(a) for a in args]
        self.kwargs = {k: lit(v) for k, v in kwargs.items()}
        self.type = fn.return_type
        # A None for a parameter that does not accept it gives None without a call (Pixeltable
        # does the same): a missing input is a missing output.
        # (Only for values from the row: a literal None given for an option is the caller's
        # mistake, which the function itself reports.)
        pos, kw = fn.required(len(self.args), self.kwargs)
        self._required_pos = [i for i in pos if not isinstance(self.args[i], Literal)]
        self._required_kw = [k for k in kw if not isinstance(self.kwargs[k], Literal)]
        # Called directly on a stored Image column, a function that needs fewer pixels may get
        # a reduced decode. Anything else in between (a chain, a column computed when read)
        # hands it the full image, as before.
        first = self.args[0] if self.args else None
        self._decode_request = getattr(fn.fn, DECODE_REQUEST, None) if (
            isinstance(first, ColumnRef) and first.col.stored
            and first.col.type.name == Image.name) else None

    def children(self) -> list[Expr]:
        return [*self.args, *self.kwargs.values()]

    def default_name(self) -> str:
        return self.fn.method_name

    def eval(self, row: RowContext) -> Any:
        if self._decode_request is not None:
            want = self._decode_request
            rest = [a.eval(row) for a in self.args[1:]]
            kwargs = {k: v.eval(row) for k, v in self.kwargs.items()}
            ref = self.args[0]
            assert isinstance(ref, ColumnRef)
            args = [row.reduced_value(ref.col, lambda full: want(full, *rest, **kwargs)), *rest]
        else:
            args = [a.eval(row) for a in self.args]
            kwargs = {k: v.eval(row) for k, v in self.kwargs.items()}
        if any(args[i] is None for i in self._required_pos) or any(
                kwargs[k] is None for k in self._required_kw):
            return None
        if self.fn.wants_settings:
            kwargs["settings"] = row.settings
        return self.fn.fn(*args, **kwargs)

    def sql_value(self) -> tuple[str, list[Any]] | None:
        """A built-in function's own SQL (SQLite's functions, where they give Python's answer,
        else its Python implementation called from SQL); None for a user's UDF, which runs in
        Python outside SQLite (it may be slow, do I/O or hold the GIL)."""
        if self.fn.sql is None and not self.fn.in_sql:
            return None
        try:
            args = SqlArgs(self)
        except NoSql:
            return None
        built = None
        if self.fn.sql is not None:
            with contextlib.suppress(NoSql):  # not natively: Python's, if it may be called
                built = self.fn.sql(args)
        if built is None and self.fn.in_sql:
            with contextlib.suppress(NoSql):  # an argument SQL cannot compute
                built = args.python()
        return built

    def to_json(self) -> dict[str, Any]:
        return {"call": self.fn.name, "args": [a.to_json() for a in self.args],
                "kwargs": {k: v.to_json() for k, v in self.kwargs.items()}}

    def __repr__(self) -> str:
        params = [repr(a) for a in self.args[1:]] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        if self.fn.is_property:
            return f"{self.args[0]!r}.{self.fn.method_name}"
        if self.fn.is_method:
            return f"{self.args[0]!r}.{self.fn.method_name}({', '.join(params)})"
        allp = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.fn.method_name}({', '.join(allp)})"


class NoSql(Exception):
    """Raised inside a function's SQL builder: this call cannot be computed in SQL."""


_IDENTITY_TYPES = frozenset({Int.name, Float.name, String.name})
#: The types' from_sql as the builtins they call (a Python frame less per value).
_DECODERS: dict[str, Callable[[Any], Any]] = {
    Bool.name: bool, Timestamp.name: _dt.datetime.fromisoformat,
    Date.name: _dt.date.fromisoformat, Json.name: json.loads}


class SqlArgs:
    """What a built-in function's SQL builder (``Function.sql``) gets: the call's arguments
    by parameter name, with the defaults the call did not give.

    ``sql(name)`` is an argument's SQL value, ``literal(name)`` its value when it is a literal
    (the builder may then specialise, e.g. bind a fixed pattern), and ``python()`` the whole
    call run by its Python implementation from inside SQLite (through :mod:`pxlite.sqlcall`):
    the fallback for values SQLite would compute differently. A builder raises :class:`NoSql`
    (or returns None) when it cannot express the call at all.
    """

    def __init__(self, call: Call) -> None:
        self.call = call
        try:
            bound = call.fn.signature.bind(*call.args, **call.kwargs)
        except TypeError:
            raise NoSql from None
        bound.apply_defaults()
        self.args: dict[str, Any] = dict(bound.arguments)

    def expr(self, name: str) -> Expr:
        return lit(self.args[name])

    def is_literal(self, name: str) -> bool:
        return isinstance(self.expr(name), Literal)

    def literal(self, name: str) -> Any:
        """The argument's value when it is a literal; NoSql otherwise."""
        e = self.expr(name)
        if not isinstance(e, Literal):
            raise NoSql
        return e.value

    def sql(self, name: str) -> tuple[str, list[Any]]:
        """The argument's SQL value (:meth:`Expr.sql_value`); NoSql when it has none."""
        s = self.expr(name).sql_value()
        if s is None:
            raise NoSql
        return s

    def python(self) -> tuple[str, list[Any]]:
        """``pxl_call(key, args...)``: SQLite calls the function's Python implementation, with
        the same rule as :meth:`Call.eval` (None for a required input gives None)."""
        call = self.call
        exprs = [*call.args, *call.kwargs.values()]
        sqls: list[tuple[str, list[Any]]] = []
        decoders: list[Callable[[Any], Any] | None] = []
        baked: dict[int, Any] = {}  # literals SQL cannot bind (lists, dicts): kept in Python
        for i, e in enumerate(exprs):
            s = e.sql_value()
            if s is None and isinstance(e, Literal):
                baked[i] = e.value
                continue
            if s is None:
                raise NoSql
            sqls.append(s)
            decoders.append(None if e.type.name in _IDENTITY_TYPES else e.type.from_sql)
        required = set(call._required_pos) | {len(call.args) + list(call.kwargs).index(k)
                                              for k in call._required_kw}
        types = ",".join(repr(e.type) for e in exprs)
        key = (f"{call.fn.name}|{len(call.args)}|{','.join(call.kwargs)}|{types}|"
               f"{sorted(required)}|{json.dumps(lit_to_json(list(baked.items())))}")
        sqlcall.register(key, _python_in_sql(call.fn, len(call.args), list(call.kwargs),
                                             decoders, required, baked, call.type))
        holes = "".join(f", {s[0]}" for s in sqls)
        return f"{sqlcall.SQL_NAME}(?{holes})", [key, *(p for s in sqls for p in s[1])]


def _python_in_sql(fn: Function, n_args: int, kw_names: list[str],
                   decoders: list[Callable[[Any], Any] | None], required: set[int],
                   baked: dict[int, Any], rtype: ColumnType) -> Callable[..., Any]:
    """A function's Python implementation as SQLite calls it: SQL values in (decoded to
    Python values), the result out as its type stores it."""
    n = n_args + len(kw_names)
    pairs = list(zip([i for i in range(n) if i not in baked], decoders, strict=True))
    name, py = fn.method_name, fn.fn
    encode = _result_encoder(rtype)

    def failed(e: Exception, vals: Iterable[Any]) -> ComputeError:
        shown = ", ".join(repr(v)[:60] for v in vals)
        return ComputeError(f"{name}({shown}) failed: {type(e).__name__}: {e}",
                            errortype=type(e).__name__)

    if n == 1 and not baked and decoders == [None] and required == {0}:
        # The common case (t.s.upper()): one value SQLite passes as it is.
        def run1(v: Any) -> Any:
            if v is None:
                return None
            try:
                out = py(v)
            except PxliteError:
                raise
            except Exception as e:
                raise failed(e, [v]) from e
            return encode(out)

        return run1

    def run(*sql_values: Any) -> Any:
        vals = [None] * n
        for i, v in baked.items():
            vals[i] = v
        for (i, dec), v in zip(pairs, sql_values, strict=True):
            vals[i] = v if dec is None or v is None else dec(v)
        if any(vals[i] is None for i in required):
            return None
        try:
            out = py(*vals[:n_args], **dict(zip(kw_names, vals[n_args:], strict=True)))
        except PxliteError:
            raise
        except Exception as e:
            raise failed(e, vals) from e
        return encode(out)

    return run


def _result_encoder(rtype: ColumnType) -> Callable[[Any], Any]:
    """A function result as SQL stores it (the type's validating to_sql, with a shortcut for
    a str result of a String function: SQLite takes it as it is)."""
    to_sql = rtype.to_sql
    if rtype.name == String.name:
        return lambda out: out if type(out) is str else (None if out is None else to_sql(out))
    return lambda out: None if out is None else to_sql(out)


class MissingCall(Expr):
    """A call whose function cannot be imported any more: the column errors, the table works."""

    def __init__(self, name: str, error: str, data: dict[str, Any], ctype: ColumnType,
                 args: list[Expr] | None = None) -> None:
        self.name, self.error, self.data, self.type = name, error, data, ctype
        self.args = args or []  # still known: what the column reads (its dependencies)

    def children(self) -> list[Expr]:
        return self.args

    def eval(self, row: RowContext) -> Any:
        raise NotFoundError(self.error)

    def to_json(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:
        return f"{self.name}(...)  # missing: {self.error}"


def column_expr(table: TableMeta, col: ColumnMeta, settings: Any = None) -> Expr:
    """The expression a computed column is defined by, rebuilt from the catalog. A definition
    pxlite cannot read (a damaged or crafted file) is a SchemaError naming the column.
    ``settings`` (the database's) say which modules may be imported to find its functions
    (``udf_modules``); by default the process-wide settings do."""
    from .udf import trusting

    try:
        data = json.loads(col.expr or "")
        if not isinstance(data, dict):
            raise TypeError("not an object")
        with trusting(settings):
            return from_json(data, table, col.type)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, SchemaError,
            NotFoundError) as e:
        raise SchemaError(
            f"the definition of computed column {col.name!r} of {table.path!r} cannot be read "
            f"({type(e).__name__}: {str(e)[:120]}); a damaged or crafted database file? Drop "
            "the column, or restore the file from a backup") from None


def from_json(data: dict[str, Any], table: TableMeta, ctype: ColumnType | None = None) -> Expr:
    """Rebuild an expression from :meth:`Expr.to_json` output against a table's columns."""
    if "col" in data:
        return ColumnRef(table, table.column_by_id(data["col"]))
    if "lit" in data:
        return Literal(_lit_from_json(data["lit"]))
    if "err" in data:
        return ErrorAttr(from_json(data["of"], table), data["err"])  # type: ignore[arg-type]
    if "media" in data:
        return MediaAttr(from_json(data["of"], table), data["media"])  # type: ignore[arg-type]
    if "cmp" in data:
        return Compare(data["cmp"], from_json(data["l"], table), from_json(data["r"], table))
    if "isnull" in data:
        return IsNull(from_json(data["isnull"], table))
    if "isin" in data:
        return IsIn(from_json(data["isin"], table), _lit_from_json(data["values"]))
    if "and" in data:
        return And(*(from_json(d, table) for d in data["and"]))
    if "or" in data:
        return Or(*(from_json(d, table) for d in data["or"]))
    if "not" in data:
        return Not(from_json(data["not"], table))
    if "arith" in data:
        return Arith(data["arith"], from_json(data["l"], table), from_json(data["r"], table))
    if "cast" in data:
        return Cast(from_json(data["arg"], table), parse_type(data["cast"]))
    if "jpath" in data:
        return JsonPath(from_json(data["of"], table), jsonpath.from_json(data["jpath"]))
    if "call" in data:
        from .udf import lookup

        try:
            fn = lookup(data["call"])
        except NotFoundError as e:
            args = [from_json(a, table) for a in data.get("args", [])] + [
                from_json(v, table) for v in data.get("kwargs", {}).values()]
            return MissingCall(data["call"], str(e), data, ctype or Json, args)
        return Call(fn, [from_json(a, table) for a in data["args"]],
                    {k: from_json(v, table) for k, v in data["kwargs"].items()})
    raise SchemaError(f"unreadable expression in the catalog: {data!r}")


def split_conjuncts(pred: Expr) -> list[Expr]:
    """``a & b & c`` -> ``[a, b, c]`` so the SQL-able parts can be pushed down separately."""
    if isinstance(pred, And):
        return split_conjuncts(pred.left) + split_conjuncts(pred.right)
    return [pred]


def _rewrite_value(v: Any, visit: Callable[[Expr], Expr | None]) -> Any:
    """An attribute's value with its expressions rewritten (see :meth:`Expr.rewrite`); the
    same object when nothing in it changed."""
    if isinstance(v, Expr):
        return v.rewrite(visit)
    if isinstance(v, (list, tuple)) and any(isinstance(x, Expr) for x in v):
        items = [_rewrite_value(x, visit) for x in v]
        if all(a is b for a, b in zip(items, v, strict=True)):
            return v
        return items if isinstance(v, list) else tuple(items)
    if isinstance(v, dict) and any(isinstance(x, Expr) for x in v.values()):
        new = {k: _rewrite_value(x, visit) for k, x in v.items()}
        return v if all(new[k] is v[k] for k in v) else new
    return v
