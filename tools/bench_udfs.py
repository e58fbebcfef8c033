"""UDFs the benchmarks (and the executor tests) compute: a module of their own, so worker
processes and Dask workers can import them by name."""

from __future__ import annotations

import PIL.Image

import pxlite as pxl


@pxl.udf
def pixel_hash(img: PIL.Image.Image) -> int:
    """Plain Python over every pixel value: it holds the GIL the whole time."""
    total = 0
    for v in img.convert("L").tobytes():
        total = (total * 31 + v) % 1_000_000_007
    return total
