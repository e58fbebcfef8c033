"""How the built-in scalar functions (string, math, timestamp, date, json) are declared.

Each is a plain Python function, the reference for what it computes (Pixeltable documents its
functions as the Python ones, and so does pxlite). :func:`builtin` registers it under
``pxlite.functions.<family>.<name>`` as a method (or property) of its type; :func:`sql_for`
attaches SQL for the values SQLite computes exactly as Python does, usually as
``guarded(args, condition, native)``: SQLite's answer where ``condition`` holds (ASCII text, no
NUL character, a positive base...), the Python function called from SQLite elsewhere. A
function without SQL of its own is still computed inside the query: SQLite calls its Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exprs import NoSql, SqlArgs, sql_template
from ..types import ColumnType
from ..udf import Function, register

Frag = tuple[str, list[Any]]
Builder = Callable[[SqlArgs], Frag | None]

__all__ = ["NoSql", "SqlArgs", "builtin", "guarded", "sql_for", "sql_template"]


def builtin(family: str, of: ColumnType | None, *, is_property: bool = False,
            returns: ColumnType | None = None) -> Callable[[Callable[..., Any]], Function]:
    """Register a built-in function of ``family``: a method (or a property) of ``of``
    expressions, or, with ``of=None``, a plain function (``make_timestamp(...)``). The return
    type comes from the hint unless ``returns`` says it (any JSON value: ``Json``)."""

    def wrap(fn: Callable[..., Any]) -> Function:
        func = Function(fn, name=f"pxlite.functions.{family}.{fn.__name__}",
                        is_method=of is not None, is_property=is_property, method_of=of,
                        in_sql=True, return_type=returns)
        register(func)
        return func

    return wrap


def sql_for(func: Function) -> Callable[[Builder], Builder]:
    """Attach an SQL builder to a built-in function (see :class:`pxlite.exprs.SqlArgs`)."""

    def wrap(build: Builder) -> Builder:
        func.sql = build
        return build

    return wrap


def guarded(args: SqlArgs, condition: str, native: str, **parts: Frag) -> Frag:
    """``CASE WHEN condition THEN native ELSE <the Python function> END``, the templates
    filled from ``parts``. ``condition`` must hold for NULL inputs when ``native`` gives NULL
    for them (so a NULL costs no call into Python): wrap its tests in ``coalesce(..., 1)``."""
    return sql_template(f"(CASE WHEN {condition} THEN {native} ELSE {{py}} END)",
                        py=args.python(), **parts)


def literal_str(args: SqlArgs, name: str) -> str:
    """An argument that must be a literal string for the native SQL (else NoSql: Python)."""
    v = args.literal(name)
    if not isinstance(v, str):
        raise NoSql
    return v
