"""Json functions, as methods of Json expressions (Pixeltable's names and semantics):
``t.meta.tags.len()``, ``t.meta.scores.mean()``, ``t.meta.get('author', 'unknown')``,
``t.meta.keys()``; and ``dumps(t.meta)``.

A None (a null, a missing path) gives None without a call, except where a function says what
it does with one (``is_empty``, ``get``, ``concat``, ``merge``). A method of this name wins
over a field of the same name (as in Pixeltable): ``t.meta.keys`` is the method,
``t.meta['keys']`` the field. ``len`` and ``is_empty`` run in SQLite (``json_array_length``,
``json_each``); the others are Python's, called from inside the query. Paths into a Json value
(``t.meta.camera.model``) are expressions, not functions (see :mod:`pxlite.jsonpath`).
"""

from __future__ import annotations

import builtins
import json as _json
from typing import Any

from ..types import Json
from .builtin import SqlArgs, builtin, guarded, sql_for, sql_template

Frag = tuple[str, list[Any]]


def _json_method(fn: Any) -> Any:
    return builtin("json", Json)(fn)


def _numbers(value: Any, fn: str) -> list:
    if not isinstance(value, list) or builtins.any(
            isinstance(x, bool) or not isinstance(x, (int, float)) for x in value):
        raise ValueError(f"{fn}() takes a JSON array of numbers, got {_json.dumps(value)[:60]}")
    return value


@builtin("json", None)
def dumps(obj: object) -> str:
    """The value as JSON text (``json.dumps``)."""
    return _json.dumps(obj)


@_json_method
def len(self: object) -> int:
    """The number of elements of an array, keys of an object or characters of a string (an
    error for a number or bool; None for null)."""
    if isinstance(self, (list, dict, str)):
        return builtins.len(self)
    raise ValueError(f"len() is not defined for a JSON {type(self).__name__}")


@sql_for(len)
def _(a: SqlArgs) -> Frag:
    v = a.sql("self")
    return guarded(a, "coalesce(json_type({v}) IN ('array', 'object'), 1)",
                   "(CASE json_type({v}) WHEN 'array' THEN json_array_length({v}) "
                   "WHEN 'object' THEN (SELECT count(*) FROM json_each({v})) END)", v=v)


@_json_method
def is_empty(self: Any | None) -> bool:
    """True for null (or a missing path), an empty array, object or string; False otherwise
    (numbers and bools included)."""
    if self is None:
        return True
    if isinstance(self, (list, dict, str)):
        return builtins.len(self) == 0
    return False


@sql_for(is_empty)
def _(a: SqlArgs) -> Frag:
    return sql_template(
        "(CASE WHEN {v} IS NULL THEN 1 ELSE CASE json_type({v}) WHEN 'null' THEN 1 "
        "WHEN 'array' THEN json_array_length({v}) = 0 "
        "WHEN 'object' THEN NOT EXISTS (SELECT 1 FROM json_each({v})) "
        "WHEN 'text' THEN ({v} ->> '$') = '' ELSE 0 END END)", v=a.sql("self"))


@_json_method
def contains(self: object, value: object) -> bool:
    """True if ``value`` is an element of the array or a key of the object; False
    otherwise."""
    return isinstance(self, (list, dict)) and value in self


@builtin("json", Json, returns=Json)
def get(self: Any | None, key: str, default: Any | None = None) -> Any:
    """The object's value for ``key``, else ``default`` (``dict.get``; ``default`` for
    anything that is not an object)."""
    return self.get(key, default) if isinstance(self, dict) else default


@_json_method
def sum(self: object) -> float:
    """The sum of an array of numbers (0 for an empty one)."""
    return float(builtins.sum(_numbers(self, "sum")))


@_json_method
def min(self: object) -> float | None:
    """The smallest number of an array of numbers (None for an empty one)."""
    nums = _numbers(self, "min")
    return float(builtins.min(nums)) if nums else None


@_json_method
def max(self: object) -> float | None:
    """The largest number of an array of numbers (None for an empty one)."""
    nums = _numbers(self, "max")
    return float(builtins.max(nums)) if nums else None


@_json_method
def mean(self: object) -> float | None:
    """The mean of an array of numbers (None for an empty one)."""
    nums = _numbers(self, "mean")
    return builtins.sum(nums) / builtins.len(nums) if nums else None


@_json_method
def count(self: object, value: object) -> int:
    """How many elements of the array equal ``value`` (``list.count``)."""
    if not isinstance(self, list):
        raise ValueError("count() is only defined for a JSON array")
    return self.count(value)


@_json_method
def keys(self: object) -> list:
    """The keys of an object, as a list."""
    if not isinstance(self, dict):
        raise ValueError("keys() is only defined for a JSON object")
    return builtins.list(self.keys())


@_json_method
def values(self: object) -> list:
    """The values of an object, as a list (in the keys' order)."""
    if not isinstance(self, dict):
        raise ValueError("values() is only defined for a JSON object")
    return builtins.list(self.values())


@_json_method
def items(self: object) -> list:
    """The ``[key, value]`` pairs of an object, as a list."""
    if not isinstance(self, dict):
        raise ValueError("items() is only defined for a JSON object")
    return [[k, v] for k, v in self.items()]


@_json_method
def flatten(self: object) -> list:
    """The elements of an array with nested arrays spliced in, one level deep."""
    if not isinstance(self, list):
        raise ValueError("flatten() is only defined for a JSON array")
    out: list = []
    for x in self:
        if isinstance(x, list):
            out.extend(x)
        else:
            out.append(x)
    return out


@_json_method
def concat(self: Any | None, other: Any | None) -> list | None:
    """The two arrays one after the other (None if either is null)."""
    if self is None or other is None:
        return None
    if isinstance(self, list) and isinstance(other, list):
        return self + other
    raise ValueError("concat() is only defined for two JSON arrays")


@_json_method
def merge(self: Any | None, other: Any | None) -> dict | None:
    """The two objects merged, ``other`` winning on a shared key (None if either is null)."""
    if self is None or other is None:
        return None
    if isinstance(self, dict) and isinstance(other, dict):
        return {**self, **other}
    raise ValueError("merge() is only defined for two JSON objects")
