"""Helpers for the function and JSON path tests: evaluate one expression over every row of a
table twice, once by SQLite (its ``sql_value()``, decoded) and once by Python (``eval`` on each
row), and check the two agree value for value (type included) or both fail."""

from __future__ import annotations

import math
from typing import Any

import apsw

from pxlite import plan, sqlcall
from pxlite.exprs import Expr, RowContext


class Failed:
    """An evaluation that raised (the two paths must both raise for the same row)."""

    def __init__(self, e: BaseException) -> None:
        self.error = e

    def __repr__(self) -> str:
        return f"<failed: {type(self.error).__name__}: {self.error}>"

    def __eq__(self, other: object) -> bool:  # a failure is a failure, whichever path raised
        return isinstance(other, Failed)

    __hash__ = None  # type: ignore[assignment]


def each(fn: Any, values: list[Any], *args: Any) -> list[Any]:
    """The expected values: ``fn(v, *args)`` for each value, None for None, a Failed where it
    raises."""
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(fn(v, *args))
        except Exception as e:
            out.append(Failed(e))
    return out


def shown(values: list[Any]) -> list[Any]:
    """Values with each failure as the text 'failed' (for comparisons that print well)."""
    return ["failed" if isinstance(v, Failed) else v for v in values]


def _raw_rows(t: Any) -> list[tuple[int, RowContext]]:
    meta = t._meta()
    sel = ", ".join(plan.cell_columns(c) for c in meta.columns)
    out = []
    for r in t._conn.db.query(f"SELECT _rowid, {sel} FROM {meta.sql} ORDER BY _rowid"):
        raw = {c.col_id: r[1 + 3 * i] for i, c in enumerate(meta.columns)}
        out.append((r[0], RowContext(raw, {}, None, rowid=r[0])))
    return out


def by_python(t: Any, e: Expr) -> list[Any]:
    """``e.eval`` on each row, in rowid order (a Failed where it raises)."""
    out: list[Any] = []
    for _, rc in _raw_rows(t):
        try:
            out.append(e.eval(rc))
        except Exception as err:
            out.append(Failed(err))
    return out


def by_sql(t: Any, e: Expr, *, key: bool = False) -> list[Any]:
    """SQLite's value of ``e`` for each row (``sql()`` when ``key``, else ``sql_value()``
    decoded), one statement per row so that a failure belongs to its row."""
    s = e.sql() if key else e.sql_value()
    assert s is not None, f"{e!r} has no SQL"
    meta = t._meta()
    out: list[Any] = []
    for rowid, _ in _raw_rows(t):
        try:
            v = t._conn.db.query(f"SELECT {s[0]} FROM {meta.sql} WHERE _rowid = ?",
                                 [*s[1], rowid])[0][0]
            out.append(v if key else e.decode(v))
        except Exception as err:
            out.append(Failed(err))
    return out


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (a float is not an int, a bool not an int); both NaN;
    lists and dicts element by element; two failures."""
    if isinstance(a, Failed) or isinstance(b, Failed):
        return isinstance(a, Failed) and isinstance(b, Failed)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def check(t: Any, e: Expr) -> list[Any]:
    """Both paths agree on every row; returns the values (Failed where both raised)."""
    py, sq = by_python(t, e), by_sql(t, e)
    bad = [(i, p, s) for i, (p, s) in enumerate(zip(py, sq, strict=True)) if not same(p, s)]
    assert not bad, f"{e!r}: SQL and Python differ (row index, Python, SQL): {bad}"
    return py


def python_calls(t: Any, e: Expr) -> int:
    """How many times SQLite called Python (``pxl_call``) computing ``e`` over the table: 0
    means SQLite computed every row itself. (A call that raises counts, and gives NULL.)"""
    s = e.sql_value()
    assert s is not None
    calls = []

    def counting(key: str, *args: Any) -> Any:
        calls.append(key)
        try:
            return sqlcall.dispatch(key, *args)
        except Exception:  # counted; the value does not matter here
            return None

    conn = apsw.Connection(str(t._conn.db.path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.create_scalar_function(sqlcall.SQL_NAME, counting, -1)
        conn.execute(f"SELECT {s[0]} FROM {t._meta().sql}", s[1]).fetchall()
    finally:
        conn.close()
    return len(calls)
