"""Math functions, as methods of Float and Int expressions (Pixeltable's names and semantics:
an Int has the Float methods and they return Float): ``t.x.abs()``, ``t.x.round(2)``,
``t.x.floor()``, ``t.n.pow(2)``, ``t.n.bitwise_and(3)``.

Each computes what Python computes (``round`` is Python's: halves go to the even neighbour, so
``round(2.5) == 2``; SQLite's ``round`` takes them away from zero). SQLite computes where it
agrees bit for bit (same C library for ``pow``/``sqrt``/``exp``/``log``, exact floor arithmetic
for ``round`` to whole numbers); a value Python rejects (``sqrt(-1)``, ``pow(0, -1)``, an
overflow) goes to Python, which raises as it does in Python.
"""

from __future__ import annotations

import builtins
import math
from typing import Any

from ..types import Float, Int
from .builtin import NoSql, SqlArgs, builtin, guarded, sql_for, sql_template

Frag = tuple[str, list[Any]]


def _float(fn: Any) -> Any:
    return builtin("math", Float)(fn)


@_float
def abs(self: float) -> float:
    """Return the absolute value (``abs``), as a float."""
    return float(builtins.abs(self))


@sql_for(abs)
def _(a: SqlArgs) -> Frag:
    return sql_template("abs(CAST({x} AS REAL))", x=a.sql("self"))


@_float
def ceil(self: float) -> float:
    """Return the smallest whole number >= the value, as a float (``float(math.ceil(x))``;
    an infinity is returned as it is, as in SQL)."""
    return float(math.ceil(self)) if math.isfinite(self) else float(self)


@_float
def floor(self: float) -> float:
    """Return the largest whole number <= the value, as a float (``float(math.floor(x))``;
    an infinity is returned as it is, as in SQL)."""
    return float(math.floor(self)) if math.isfinite(self) else float(self)


# + 0.0: a float result, and -0.0 (SQLite's ceil(-0.5)) becomes Python's 0.0.
sql_for(ceil)(lambda a: sql_template("(ceil({x}) + 0.0)", x=a.sql("self")))
sql_for(floor)(lambda a: sql_template("(floor({x}) + 0.0)", x=a.sql("self")))


@_float
def round(self: float, digits: int | None = None) -> float:
    """Round to ``digits`` decimal digits (Python's ``round(x, digits or 0)``: a half goes to
    the even neighbour, ``round(2.5) == 2.0``), as a float."""
    return float(builtins.round(self, digits or 0))


@sql_for(round)
def _(a: SqlArgs) -> Frag:
    if a.literal("digits") not in (None, 0):
        raise NoSql
    x = a.sql("self")
    if a.expr("self").type.name == Int.name:
        return sql_template("({x} + 0.0)", x=x)
    # |x| below 2**52 has a fractional part; |x| - floor(|x|) is exact there (Sterbenz), so
    # the comparisons with 0.5 decide as Python's correctly rounded round() does.
    whole = ("(CASE WHEN abs({x}) - floor(abs({x})) < 0.5 THEN floor(abs({x})) "
             "WHEN abs({x}) - floor(abs({x})) > 0.5 THEN floor(abs({x})) + 1.0 "
             "ELSE floor(abs({x})) + (floor(abs({x})) % 2) END)")
    return sql_template(f"(CASE WHEN NOT abs({{x}}) < 4503599627370496.0 THEN {{x}} + 0.0 "
                        f"WHEN {{x}} < 0 THEN -{whole} ELSE {whole} + 0.0 END)", x=x)


@_float
def pow(self: float, other: float) -> float:
    """Raise to the power ``other`` in floating point (``math.pow``): an error for a result
    that is not a real number or overflows."""
    return math.pow(self, other)


@sql_for(pow)
def _(a: SqlArgs) -> Frag:
    return guarded(a, "({x} > 0 AND abs(pow({x}, {y})) < 9e999)", "pow({x}, {y})",
                   x=a.sql("self"), y=a.sql("other"))


@_float
def sqrt(self: float) -> float:
    """Return the square root (``math.sqrt``)."""
    return math.sqrt(self)


@_float
def exp(self: float) -> float:
    """Return e raised to the value (``math.exp``)."""
    return math.exp(self)


@_float
def log(self: float) -> float:
    """Return the natural logarithm (``math.log``)."""
    return math.log(self)


@_float
def log10(self: float) -> float:
    """Return the base-10 logarithm (``math.log10``)."""
    return math.log10(self)


# Where C's function and Python's agree (outside it, Python raises: a domain or range error).
sql_for(sqrt)(lambda a: guarded(a, "coalesce({x} >= 0, 1)", "sqrt({x})", x=a.sql("self")))
sql_for(exp)(lambda a: guarded(a, "coalesce({x} < 709.0, 1)", "exp({x})", x=a.sql("self")))
sql_for(log)(lambda a: guarded(a, "coalesce({x} > 0, 1)", "ln({x})", x=a.sql("self")))
sql_for(log10)(lambda a: guarded(a, "coalesce({x} > 0, 1)", "log10({x})", x=a.sql("self")))


@_float
def to_int(self: float) -> int:
    """Return the value truncated toward zero (``int``); an error beyond the 64 bits of an
    Int."""
    out = int(self)
    if not -(2**63) <= out < 2**63:
        raise OverflowError(f"int({self!r}) does not fit in an Int (64 bits)")
    return out


@sql_for(to_int)
def _(a: SqlArgs) -> Frag:
    return guarded(a, "coalesce(abs({x}) < 9.2e18, 1)", "CAST({x} AS INTEGER)", x=a.sql("self"))


def _int(fn: Any) -> Any:
    return builtin("math", Int)(fn)


@_int
def to_float(self: int) -> float:
    """Return the integer as a float (``float``)."""
    return float(self)


@_int
def bitwise_and(self: int, other: int) -> int:
    """Return ``self & other``."""
    return self & other


@_int
def bitwise_or(self: int, other: int) -> int:
    """Return ``self | other``."""
    return self | other


@_int
def bitwise_xor(self: int, other: int) -> int:
    """Return ``self ^ other``."""
    return self ^ other


sql_for(to_float)(lambda a: sql_template("CAST({x} AS REAL)", x=a.sql("self")))
sql_for(bitwise_and)(lambda a: sql_template("({x} & {y})", x=a.sql("self"), y=a.sql("other")))
sql_for(bitwise_or)(lambda a: sql_template("({x} | {y})", x=a.sql("self"), y=a.sql("other")))
# a ^ b is (a | b) - (a & b); the difference is a ^ b itself, so it never overflows.
sql_for(bitwise_xor)(lambda a: sql_template("(({x} | {y}) - ({x} & {y}))", x=a.sql("self"),
                                            y=a.sql("other")))
