"""JSON paths (``t.meta.camera.model``, ``t.meta.tags[0]``, ``[-1]``, ``[:2]``): their Python
evaluation and the SQLite SQL that computes the same values.

A path is a list of elements: a ``str`` (an object's key), an ``int`` (a list's index, negative
from the end) or a ``slice`` (part of a list; ``'*'`` is the whole list). Evaluation follows
Pixeltable: a missing key, an index out of range or a step into a value of the wrong kind gives
None, never an error; a slice (or ``'*'``) applies the rest of the path to each element of the
part it selects, giving a list with None where the rest does not resolve.

In SQL a path without slices is one ``->`` / ``->>`` lookup with a bound SQLite path
(``$."camera"."model"``, ``$."tags"[#-1]``): keys are JSON-quoted, so any key works and no user
text reaches the SQL itself. A slice is a ``json_each`` subquery that rebuilds the list with
``json_group_array`` in index order; each element is looked up again in its list (SQLite caches
the parsed document within a statement), which keeps a string element a JSON string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import SchemaError

Element = str | int | slice
#: SQL and its parameters.
Frag = tuple[str, list[Any]]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_element(el: Any) -> Element:
    """A path element as given by a user (``[...]`` or an attribute), checked."""
    if isinstance(el, bool) or not isinstance(el, (str, int, slice)):
        raise SchemaError(f"a JSON path step is a key (str), an index (int) or a slice, got "
                          f"{type(el).__name__} {el!r}")
    if isinstance(el, slice):
        for part in (el.start, el.stop, el.step):
            if part is not None and (isinstance(part, bool) or not isinstance(part, int)):
                raise SchemaError(f"a JSON path slice takes whole numbers, got {el!r}")
        if el.step == 0:
            raise SchemaError("a JSON path slice step cannot be zero")
    return el


def evaluate(value: Any, elements: list[Element], start: int = 0) -> Any:
    """``elements[start:]`` applied to a Python JSON value (see the module docstring)."""
    for i in range(start, len(elements)):
        el = elements[i]
        if el == "*" or isinstance(el, slice):
            if not isinstance(value, list):
                return None
            items = value if el == "*" else value[el]  # type: ignore[index]
            return [evaluate(v, elements, i + 1) for v in items]
        if isinstance(el, int):
            value = value[el] if isinstance(value, list) and -len(value) <= el < len(value) \
                else None
        else:
            value = value.get(el) if isinstance(value, dict) else None
    return value


def _sqlite_path(elements: list[Element]) -> str:
    """SQLite's path text for keys and indexes (no slices)."""
    out = ["$"]
    for el in elements:
        if isinstance(el, str):
            out.append("." + json.dumps(el))
        else:
            assert isinstance(el, int)
            out.append(f"[{el}]" if el >= 0 else f"[#{el}]")
    return "".join(out)


def _is_spread(el: Element) -> bool:
    return el == "*" or isinstance(el, slice)


def can_compile(elements: list[Element]) -> bool:
    """Whether SQL can compute the path: every slice has step 1 (or none)."""
    return all(not isinstance(el, slice) or el.step in (None, 1) for el in elements)


def value_sql(doc: Frag, elements: list[Element], depth: int = 0) -> Frag:
    """SQL for the JSON text of ``elements`` applied to the JSON text ``doc`` (NULL where the
    path does not resolve); requires :func:`can_compile`."""
    if not elements:
        return doc
    cut = next((i for i, el in enumerate(elements) if _is_spread(el)), len(elements))
    head, rest = elements[:cut], elements[cut:]
    here = doc if not head else (f"({doc[0]} -> ?)", [*doc[1], _sqlite_path(head)])
    if not rest:
        return here
    return _spread_sql(here, rest[0], rest[1:], depth)


def scalar_sql(doc: Frag, elements: list[Element]) -> Frag:
    """SQL for the SQL scalar of the path's value (``->>``: text, number, 1/0 for true/false,
    NULL for null or missing; an array or object as its JSON text)."""
    if not any(_is_spread(el) for el in elements):
        return f"({doc[0]} ->> ?)", [*doc[1], _sqlite_path(elements)]
    v = value_sql(doc, elements)
    return f"({v[0]} ->> '$')", v[1]


def json_type_sql(doc: Frag, elements: list[Element]) -> Frag:
    """SQL for ``json_type`` of the path's value (NULL when missing)."""
    if not any(_is_spread(el) for el in elements):
        return f"json_type({doc[0]}, ?)", [*doc[1], _sqlite_path(elements)]
    v = value_sql(doc, elements)
    return f"json_type({v[0]})", v[1]


def _spread_sql(lst: Frag, el: Element, rest: list[Element], depth: int) -> Frag:
    """A slice (or '*') of the list ``lst``, with ``rest`` applied to each element."""
    alias = f"je{depth}"  # a json_each alias per nesting level
    # Each element is looked up again in its list by index (json_each's value column would
    # hand a string element over as SQL text, no longer JSON).
    elem: Frag = (f"({lst[0]} -> ('$[' || {alias}.key || ']'))", list(lst[1]))
    inner = value_sql(elem, rest, depth + 1)
    if any(_is_spread(r) for r in rest):  # a list made by a subquery: json() marks it as JSON
        inner = (f"json({inner[0]})", inner[1])  # again (SQL would nest it as a string)
    where, wparams = [], []
    if isinstance(el, slice):
        for bound, op in ((el.start, ">="), (el.stop, "<")):
            if bound is None:
                continue
            if bound >= 0:
                where.append(f"{alias}.key {op} ?")
                wparams.append(bound)
            else:  # from the end: n + bound
                where.append(f"{alias}.key {op} json_array_length({lst[0]}) + ?")
                wparams += [*lst[1], bound]
    cond = (" WHERE " + " AND ".join(where)) if where else ""
    sql = (f"(CASE WHEN json_type({lst[0]}) = 'array' THEN (SELECT json_group_array({inner[0]} "
           f"ORDER BY {alias}.key) FROM json_each({lst[0]}) AS {alias}{cond}) END)")
    return sql, [*lst[1], *inner[1], *lst[1], *wparams]


def text(elements: list[Element]) -> str:
    """The path as written after an expression: ``.camera.model``, ``.tags[0]``, ``['a b']``,
    ``[1:3]``."""
    out = []
    for el in elements:
        if isinstance(el, slice):
            step = "" if el.step is None else f":{el.step}"
            out.append(f"[{'' if el.start is None else el.start}:"
                       f"{'' if el.stop is None else el.stop}{step}]")
        elif isinstance(el, int):
            out.append(f"[{el}]")
        elif el != "*" and _IDENT.match(el):
            out.append(f".{el}")
        else:
            out.append(f"[{el!r}]")
    return "".join(out)


def column_name(prefix: str, elements: list[Element]) -> str:
    """A default output name for a path, as Pixeltable makes it: ``meta.tags[0]`` gives
    ``meta_tags0`` (dots become underscores, other punctuation goes, ``*`` is ``star``)."""
    raw = prefix + text(elements).replace("'*'", "*")
    name = "".join("_" if c == "." else "star" if c == "*" else c if c.isalnum() or c == "_"
                   else "" for c in raw).lstrip("_")
    return name if _IDENT.match(name) else "col"


def to_json(elements: list[Element]) -> list[Any]:
    """Elements as JSON (a slice as ``{"slice": [start, stop, step]}``)."""
    return [{"slice": [el.start, el.stop, el.step]} if isinstance(el, slice) else el
            for el in elements]


def from_json(data: Any) -> list[Element]:
    """:func:`to_json`'s output back as elements (checked: a crafted catalog may hold
    anything)."""
    if not isinstance(data, list):
        raise SchemaError(f"unreadable JSON path {data!r}")
    out: list[Element] = []
    for d in data:
        if isinstance(d, dict) and isinstance(d.get("slice"), list) and len(d["slice"]) == 3:
            out.append(check_element(slice(*d["slice"])))
        else:
            out.append(check_element(d))
    return out
