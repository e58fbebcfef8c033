"""Built-in functions usable in pxlite expressions, by family: ``string``, ``math``,
``timestamp``, ``date``, ``json``, ``image``, ``video``, ``audio``, ``document`` (methods of
those types' expressions), ``net``. A family loads on first use
(``pxlite.functions.timestamp``). The aggregates ``count``, ``sum``, ``min``, ``max``,
``mean`` and ``make_list`` are here (``import pxlite.functions as pxlf``; from ``globals``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from .globals import count, make_list, max, mean, min, sum

__all__ = ["count", "make_list", "max", "mean", "min", "sum"]

_FAMILIES = ("audio", "date", "document", "image", "json", "math", "net", "string", "timestamp",
             "video")


def __getattr__(name: str) -> ModuleType:
    # pxl.functions.timestamp.make_timestamp(...) without importing the family first
    if name in _FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FAMILIES])
