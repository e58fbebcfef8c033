"""Built-in functions usable in pxlite expressions: the aggregates ``count``, ``sum``, ``min``,
``max``, ``mean`` and ``make_list`` (``import pxlite.functions as pxlf``; from ``globals``), and
the families ``pxlite.functions.image`` (image methods) and ``pxlite.functions.net``."""

from .globals import count, make_list, max, mean, min, sum

__all__ = ["count", "make_list", "max", "mean", "min", "sum"]
