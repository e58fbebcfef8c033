"""Vector distances in SQL: sqlite-vec loaded into pxlite's own connection, or numpy in its place.

An embedding index's vectors are BLOBs in a column of the table (float32 vectors in exactly the
format sqlite-vec reads). A query that computes a similarity in SQL (``select(sim)``,
``where(sim > 0.3)``) calls sqlite-vec's ``vec_distance_cosine`` / ``vec_distance_l2`` on
them. :func:`install` loads the extension into one apsw connection (never the process-wide
connection hooks; extension loading is switched off again right after). Where it cannot load
(no wheel for the platform, an SQLite built without extension loading, or
``PXLITE_SQLITE_VEC=0`` in the environment), the same SQL functions are registered with numpy
implementations: the same SQL runs and gives the same values, and a note says so once. Float16
vectors, other element types, and the inner product, which sqlite-vec does not compute, always
use ``pxl_vec_score`` (numpy).

sqlite-vec and numpy are imported on first use.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from typing import Any

from .errors import SchemaError
from .vectors import numpy

#: The SQL function computing what sqlite-vec does not: ``pxl_vec_score(metric, dtype,
#: precision, blob, query)`` with metric 'cosine' (a similarity), 'ip' or 'l2' (a distance), a
#: stored vector of element type ``dtype`` taken at ``precision`` (an element type too: a float32
#: column searched by an fp16 index is rounded to float16 first).
SCORE = "pxl_vec_score"

_installed: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_noted: list[str] = []


def _np() -> Any:
    return numpy()


def _vector(blob: Any, dtype: str = "float32", precision: str | None = None) -> Any:
    np = _np()
    if not isinstance(blob, bytes):
        raise SchemaError(f"a vector must be a BLOB, got {type(blob).__name__}")
    v = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<"))
    if precision is not None and precision != dtype:
        v = v.astype(precision)
    return v.astype(np.float64)


def _pair(a: Any, b: Any, dtype: str = "float32", precision: str | None = None
          ) -> tuple[Any, Any]:
    x, y = _vector(a, dtype, precision), _vector(b)
    if x.shape != y.shape:
        raise SchemaError(f"vector lengths differ: {x.shape[0]} and {y.shape[0]}")
    return x, y


def cosine_distance(a: Any, b: Any, dtype: str = "float32", precision: str | None = None
                    ) -> float | None:
    """1 - cos(a, b), as sqlite-vec's ``vec_distance_cosine``."""
    x, y = _pair(a, b, dtype, precision)
    np = _np()
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return None if norm == 0.0 else 1.0 - float(x @ y) / norm


def l2_distance(a: Any, b: Any, dtype: str = "float32", precision: str | None = None
                ) -> float:
    """The Euclidean distance, as sqlite-vec's ``vec_distance_l2``."""
    x, y = _pair(a, b, dtype, precision)
    return float(_np().linalg.norm(x - y))


def score(metric: str, dtype: str, blob: Any, query: Any, precision: str | None = None
          ) -> float | None:
    """``pxl_vec_score``: cosine similarity, inner product, or L2 distance of a stored vector
    (of ``dtype``, rounded to ``precision`` when given) and a float32 query vector; NULL for a
    NULL vector."""
    if blob is None:
        return None
    if metric == "cosine":
        d = cosine_distance(blob, query, dtype, precision)
        return None if d is None else 1.0 - d
    if metric == "ip":
        x, y = _pair(blob, query, dtype, precision)
        return float(x @ y)
    return l2_distance(blob, query, dtype, precision)


def _fallback(conn: Any) -> None:
    conn.create_scalar_function("vec_distance_cosine", lambda a, b: cosine_distance(a, b), 2,
                                deterministic=True)
    conn.create_scalar_function("vec_distance_l2", lambda a, b: l2_distance(a, b), 2,
                                deterministic=True)


def _load(conn: Any) -> str:
    """Load sqlite-vec into ``conn``; its version, or raise why it cannot."""
    import sqlite_vec  # here: an optional dependency ('pxlite[vectors]')

    conn.enable_load_extension(True)
    try:
        conn.load_extension(sqlite_vec.loadable_path())
    finally:
        conn.enable_load_extension(False)
    return str(conn.execute("SELECT vec_version()").fetchall()[0][0])


def install(conn: Any) -> str:
    """Make the vector SQL functions available on an apsw connection (once): sqlite-vec when it
    loads, else numpy (with a one-time note). Returns which: ``'sqlite-vec v0.1.9'`` or
    ``'numpy (...why...)'``."""
    with _lock:
        done = _installed.get(conn)
        if done is not None:
            return done
        conn.create_scalar_function(SCORE, lambda m, d, p, b, q: score(m, d, b, q, p), 5,
                                    deterministic=True)
        if os.environ.get("PXLITE_SQLITE_VEC", "1").strip().lower() in ("0", "false", "no", "off"):
            _fallback(conn)
            how = "numpy (sqlite-vec switched off by PXLITE_SQLITE_VEC=0)"
        else:
            try:
                how = f"sqlite-vec {_load(conn)}"
            except Exception as e:  # ImportError, a missing .so, an SQLite without loading
                _fallback(conn)
                how = f"numpy (sqlite-vec could not be loaded: {type(e).__name__}: {e})"
                if not _noted:
                    _noted.append(how)
                    warnings.warn(
                        f"pxlite: the sqlite-vec extension could not be loaded ({type(e).__name__}"
                        f": {e}); vector distances in SQL are computed with numpy instead (same "
                        "results, slower; similarity top-k searches are not affected). Install "
                        "it with: pip install 'pxlite[vectors]'", RuntimeWarning, stacklevel=3)
        _installed[conn] = how
        return how


def installed(conn: Any) -> str | None:
    """What :func:`install` chose for this connection, or None before it ran."""
    return _installed.get(conn)
