"""The iterator call: what ``frame_iterator(t.video, fps=1)`` (and the other iterator
factories) return for an expression, and what ``create_view(..., iterator=...)`` consumes.

An :class:`IteratorCall` is a plain, frozen value: the input expression over the base table,
the iterator class (:class:`pxlite.iterators.base.ComponentIterator`) and its complete, checked
arguments. It serialises to JSON (:meth:`IteratorCall.to_json`) for the catalog and is rebuilt
against the same table (:meth:`IteratorCall.from_json`), the iterator found again by its
qualified name, like a UDF. :func:`make_call` is what every factory runs: an expression gives a
call (types and arguments checked now, so mistakes surface when the view is defined), a plain
value (a local path, a PIL image, a string) gives the running iterator itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError
from ..exprs import Expr, Literal, from_json, lit_to_json
from ..iterators.base import ComponentIterator, lookup_iterator
from ..types import ColumnType, Int, Required

if TYPE_CHECKING:
    from ..catalog import TableMeta

#: The column every iterator view has besides the iterator's outputs: an output's 0-based
#: position among the outputs of its input row (Pixeltable's ``pos``).
POS_COLUMN = "pos"


@dataclass(frozen=True, eq=False)
class IteratorCall:
    """An iterator applied to an expression, with checked arguments: what
    ``create_view(..., iterator=...)`` takes (see the module docstring).

    - ``input``: the expression over the base table whose value feeds the iterator, one row at
      a time (``t.video``);
    - ``iterator``: the iterator class; ``name`` its qualified name;
    - ``args``: the complete, normalised arguments (JSON-able literals, defaults filled in);
    - ``output_schema``: the output columns in order, name -> pxlite column type (without
      ``pos``; :meth:`columns` adds it first);
    - :meth:`open` runs the iterator on one input value; :meth:`to_json` /
      :meth:`from_json` store and rebuild the call.
    """

    iterator: type[ComponentIterator]
    input: Expr
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.iterator.name

    @property
    def output_schema(self) -> dict[str, ColumnType]:
        return self.iterator.output_schema(self.args)

    @property
    def unstored(self) -> tuple[str, ...]:
        """Outputs Pixeltable keeps unstored (see :attr:`ComponentIterator.unstored`)."""
        return tuple(c for c in self.iterator.unstored if c in self.output_schema)

    def columns(self) -> dict[str, ColumnType]:
        """Every column a view of this call has besides the base's: ``pos`` then the outputs."""
        return {POS_COLUMN: Required[Int], **self.output_schema}

    def open(self, value: Any) -> ComponentIterator:
        """The running iterator over one input value (use it as a context manager, or close
        it). A None input has no outputs."""
        return self.iterator(value, **self.args)

    def to_json(self) -> dict[str, Any]:
        """The catalog form: ``{"iterator": name, "input": <expr json>, "args": <literals>}``."""
        return {"iterator": self.name, "input": self.input.to_json(),
                "args": lit_to_json(self.args)}

    @staticmethod
    def from_json(data: Mapping[str, Any], table: TableMeta) -> IteratorCall:
        """Rebuild a call stored by :meth:`to_json` against the base table it was made for;
        an unknown iterator is a NotFoundError, damaged data a SchemaError."""
        cls = lookup_iterator(str(data.get("iterator")))  # NotFoundError: named, not damaged
        try:
            expr = from_json(data["input"], table)
            args = from_json({"lit": data.get("args")}, table)
            stored = args.value if isinstance(args, Literal) else None
            if not isinstance(stored, dict):
                raise TypeError("args is not an object")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SchemaError(f"unreadable iterator call in the catalog ({type(e).__name__}: "
                              f"{str(e)[:120]}); a damaged or crafted database file?") from None
        return IteratorCall(cls, expr, cls.check_args(stored))

    def __eq__(self, other: object) -> bool:
        """Equal when they store the same (an expression's ``==`` builds a comparison)."""
        return isinstance(other, IteratorCall) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.iterator.short_name()}({self.input!r}{', ' if shown else ''}{shown})"


def make_call(cls: type[ComponentIterator], value: Any, args: dict[str, Any]
              ) -> IteratorCall | ComponentIterator:
    """What a user-facing iterator factory returns: an :class:`IteratorCall` for an
    expression (its type and the arguments checked now), or the running iterator for a plain
    value. Either way a missing optional package is a clear error naming the pip extra."""
    cls.check_installed()
    if not isinstance(value, Expr):
        if value is None:
            raise SchemaError(f"{cls.short_name()}(): the input is None")
        return cls(value, **args)
    if not value.type.same_kind(cls.input_type):
        raise SchemaError(f"{cls.short_name()}(): the input must be a {cls.input_type.name} "
                          f"expression, got {value!r} of type {value.type.name}")
    for k, v in args.items():
        if isinstance(v, Expr):
            raise SchemaError(f"{cls.short_name()}(): {k} must be a constant, not the "
                              f"expression {v!r}")
        try:
            lit_to_json(v)
        except SchemaError:
            raise SchemaError(f"{cls.short_name()}(): the argument {k}={v!r} cannot be stored "
                              "in a view definition; use numbers, strings, lists, None") from None
    return IteratorCall(cls, value, cls.check_args(args))
