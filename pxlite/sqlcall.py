"""Python that SQL statements call back into: the SQL function ``pxl_call(key, arg, ...)``.

Some functions cannot be computed by SQLite the way Python computes them (a regular
expression, ``str.upper`` beyond ASCII, banker's rounding, ``str.format``...). Rather than pull
every row into Python for such an expression, pxlite keeps the whole query one SQL statement
and has SQLite call the Python implementation for those values: an expression's SQL holds
``pxl_call(?, ...)`` with the key of a callback registered here (by the expression layer, when
it builds that SQL, in the same process). :func:`install` adds ``pxl_call`` to a connection;
the database layer does so for every connection it opens.

A callback takes and returns SQL values (text, integers, reals, NULL); converting them to and
from Python values is the registering side's business. A key that is not registered (SQL built
in another process and run here: never done by pxlite) is a ComputeError naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import ComputeError

#: The SQL function's name. It is reserved: a statement pxlite builds never names another.
SQL_NAME = "pxl_call"

_callbacks: dict[str, Callable[..., Any]] = {}
_lock = threading.Lock()


def register(key: str, fn: Callable[..., Any]) -> str:
    """Make ``fn`` callable from SQL as ``pxl_call(key, ...)``; returns ``key``. Registering the
    same key again keeps the first callback (a key names one behaviour for the process's life)."""
    if key not in _callbacks:
        with _lock:
            _callbacks.setdefault(key, fn)
    return key


def is_registered(key: str) -> bool:
    """Whether a callback is registered under ``key``."""
    return key in _callbacks


def dispatch(key: str, *args: Any) -> Any:
    """The body of ``pxl_call``: run the callback registered as ``key`` on ``args``."""
    fn = _callbacks.get(key)
    if fn is None:
        raise ComputeError(f"SQL called the Python function {key!r}, which is not registered in "
                           "this process (a statement built elsewhere?)")
    return fn(*args)


def install(conn: Any) -> None:
    """Add ``pxl_call`` to an apsw connection (deterministic: same key and arguments, same
    result, so SQLite may compute a constant call once)."""
    conn.create_scalar_function(SQL_NAME, dispatch, -1, deterministic=True)
