"""Array values: numpy arrays in, numpy arrays out, stored compactly as a BLOB.

An ``Array`` column (``pxl.Array[(512,), pxl.Float]``) stores each value as the array's raw
little-endian bytes in the column's element type (float16, float32, float64, ints, bool): a
512-float embedding takes 2,048 bytes, not the ~10 KB of its JSON text. When the column's type
fixes every dimension the shape is the type's and the BLOB is the bare elements, exactly the
float32 vector format sqlite-vec reads (``vec_distance_cosine(blob, ?)`` works on such a
column); when a dimension is free (``None``) the BLOB starts with the value's shape (one byte:
the number of dimensions, then each dimension as an unsigned 32-bit integer).

An inserted value is checked against the column's shape and element type before anything is
stored: lists and tuples of numbers are taken as arrays; a float column takes any float or
integer array (converted, e.g. float64 to float32, as the column declares); an integer column
takes integer arrays whose values fit; a Bool column takes bool arrays. Anything else is a
:class:`SchemaError` saying what was expected and what came.

numpy is imported on first use (``import pxlite`` stays cheap); without it an Array column is
an error saying how to install it.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from typing import Any

from .errors import SchemaError

#: The element types an Array may have, by numpy's name. pxl.Float is float32, pxl.Int int64 and
#: pxl.Bool bool, as in Pixeltable.
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "bool")
_FLOATS = ("float16", "float32", "float64")

Shape = tuple[int | None, ...] | None


def item_bytes(dtype: str) -> int:
    """The bytes of one element of a DTYPES type (its name's bits / 8; bool: 1), without
    importing numpy."""
    return 1 if dtype == "bool" else int("".join(c for c in dtype if c.isdigit())) // 8


def numpy() -> Any:
    """numpy, imported now (it is heavy: pxlite imports it only when arrays are used)."""
    try:
        import numpy as np
    except ImportError as e:
        raise SchemaError("Array values need numpy: pip install 'pxlite[vectors]'") from e
    return np


def check_dtype(dtype: Any) -> str:
    """The element type's name for what a user wrote (``'float32'``, ``np.float16``, a numpy
    dtype), or a SchemaError listing the ones there are."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "__name__", None) or str(dtype)
    if not isinstance(dtype, str):
        with contextlib.suppress(TypeError):
            name = numpy().dtype(dtype).name
    if name not in DTYPES:
        raise SchemaError(f"{dtype!r} is not an Array element type; use pxl.Float (float32), "
                          f"pxl.Int (int64), pxl.Bool or one of {', '.join(DTYPES)}")
    return name


def check_shape(shape: Any) -> Shape:
    """A shape as a tuple of positive ints and ``None`` (a free dimension), or None (any)."""
    if shape is None:
        return None
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape or len(shape) > 32 or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and 0 < d < 2**31)
            for d in shape):
        raise SchemaError(f"{shape!r} is not an Array shape; give a tuple of positive sizes, "
                          "None for a free one, e.g. (512,) or (None, 3)")
    return tuple(shape)


def shape_text(shape: Shape) -> str:
    """``(512,)``, ``(None, 3)``; ``None`` for any shape."""
    return "None" if shape is None else repr(tuple(shape))


def fixed(shape: Shape) -> bool:
    """Every dimension given: values are stored without a header."""
    return shape is not None and all(d is not None for d in shape)


def _got(arr: Any) -> str:
    return f"an array of shape {tuple(arr.shape)} and dtype {arr.dtype}"


def as_array(value: Any, shape: Shape, dtype: str, expected: str) -> Any:
    """``value`` (an ndarray, or a list/tuple of numbers) as an array of ``dtype`` and a
    ``shape`` the type allows; a SchemaError naming ``expected`` and what came otherwise."""
    np = numpy()
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise SchemaError(f"expected {expected}, got a ragged list (rows of different "
                              "lengths)") from None
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise SchemaError(f"expected {expected}, got {type(value).__name__} "
                          f"{str(value)[:60]!r}")
    kind, target = arr.dtype.kind, np.dtype(dtype)
    if dtype in _FLOATS:
        ok = kind in "fiu"
    elif dtype == "bool":
        ok = kind == "b"
    else:
        ok = kind in "iu" and (np.can_cast(arr.dtype, target, "safe") or arr.size == 0 or (
            int(arr.min()) >= np.iinfo(target).min and int(arr.max()) <= np.iinfo(target).max))
    if not ok:
        raise SchemaError(f"expected {expected}, got {_got(arr)}"
                          + ("" if kind in "fiub" else " (not numbers)"))
    if shape is not None and (arr.ndim != len(shape) or any(
            d is not None and d != n for d, n in zip(shape, arr.shape, strict=True))):
        raise SchemaError(f"expected {expected}, got {_got(arr)}")
    return arr.astype(target.newbyteorder("<"), copy=False)


def encode(value: Any, shape: Shape, dtype: str, expected: str) -> bytes:
    """The BLOB stored for ``value`` (see the module docstring)."""
    arr = as_array(value, shape, dtype, expected)
    data = arr.tobytes()
    if fixed(shape):
        return data
    return struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape) + data


def decode(blob: bytes, shape: Shape, dtype: str) -> Any:
    """The array a stored BLOB holds (a writable array of its own); ValueError for a BLOB whose
    size does not match (a damaged or crafted file)."""
    np = numpy()
    dt = np.dtype(dtype).newbyteorder("<")
    if fixed(shape):
        dims: tuple[int, ...] = tuple(shape)  # type: ignore[arg-type]
        start = 0
    else:
        if not blob:
            raise ValueError("empty array value")
        ndim = blob[0]
        dims = struct.unpack_from(f"<{ndim}I", blob, 1)
        start = 1 + 4 * ndim
        if shape is not None and (ndim != len(shape) or any(
                d is not None and d != n for d, n in zip(shape, dims, strict=True))):
            raise ValueError(f"stored shape {dims} does not fit {shape_text(shape)}")
    count = 1
    for d in dims:
        count *= d
    if len(blob) - start != count * dt.itemsize:
        raise ValueError(f"{len(blob) - start} bytes cannot hold shape {dims} of {dtype}")
    return np.frombuffer(bytearray(blob[start:]), dtype=dt).reshape(dims)


def stored_cast(shape: Shape, source: str, target: str
                ) -> Callable[[list[bytes]], list[bytes]] | None:
    """Converting many stored values of one fixed shape from element type ``source`` to
    ``target`` at once: a function from their BLOBs to the converted BLOBs, the same bytes the
    value-by-value cast (:func:`decode`, then :func:`encode`) gives, in one numpy call for the
    lot rather than several per value (a stored ``t.vec.astype(pxl.Array[(512,), np.float16])``
    is such a cast; per value it would cost more than writing the row). None where that cast is
    not a plain element conversion (a free dimension, a cast that may refuse some values); a
    BLOB of the wrong size is a ValueError for the whole lot (the caller then goes value by
    value, which says which one)."""
    if not fixed(shape) or not (source == target or (target in _FLOATS and source != "bool")):
        return None
    count = 1
    for d in shape:  # type: ignore[union-attr]
        count *= d  # type: ignore[operator]

    def cast(blobs: list[bytes]) -> list[bytes]:
        np = numpy()
        src, dst = np.dtype(source).newbyteorder("<"), np.dtype(target).newbyteorder("<")
        size, step = count * src.itemsize, count * dst.itemsize
        if any(len(b) != size for b in blobs):
            raise ValueError(f"a stored value is not {size} bytes of {source}")
        data = np.frombuffer(b"".join(blobs), dtype=src).astype(dst).tobytes()
        return [data[i:i + step] for i in range(0, len(data), step)]

    return cast
