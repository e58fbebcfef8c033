"""Built-in functions usable in pxlite expressions, by family: ``string``, ``math``,
``timestamp``, ``date``, ``json`` (methods of those types' expressions), ``image`` (methods of
Image expressions), ``net``. A family loads on first use (``pxlite.functions.timestamp``)."""

from __future__ import annotations

import importlib
from types import ModuleType

_FAMILIES = ("date", "image", "json", "math", "net", "string", "timestamp")


def __getattr__(name: str) -> ModuleType:
    # pxl.functions.timestamp.make_timestamp(...) without importing the family first
    if name in _FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FAMILIES])
