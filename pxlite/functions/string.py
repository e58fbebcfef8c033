"""String functions, as methods of String expressions (Pixeltable's names and semantics, each the
Python ``str`` method or ``re`` function of the same name): ``t.caption.lower()``,
``t.name.startswith('a')``, ``t.s.split(',')``, and ``+`` concatenates.

In SQL where SQLite gives Python's answer: its ``lower``/``upper`` only know ASCII, so they run
on ASCII text and Python does the rest (``'straße'.upper() == 'STRASSE'``); SQLite's ``length``
and ``substr`` stop at a NUL character, so text holding one goes to Python; regular expressions,
``format``, ``split`` and the ``is*`` tests are Python's own (called from inside the query).
"""

from __future__ import annotations

import builtins
import re
import textwrap
import unicodedata
from typing import Any

from ..iterators.string import string_splitter as string_splitter  # Pixeltable keeps it here
from ..types import String
from .builtin import NoSql, SqlArgs, builtin, guarded, literal_str, sql_for, sql_template

Frag = tuple[str, list[Any]]

#: Every character Python's ``str.strip()`` removes by default (``str.isspace``), for SQLite's
#: ``trim``, which strips only spaces unless told which characters.
WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
#: Conditions (true for NULL) under which SQLite's text functions agree with Python's.
_ASCII = "coalesce(length({s}) = octet_length({s}), 1)"     # ASCII, no NUL
_BOTH_ASCII = ("(coalesce(length({s}) = octet_length({s}), 1) AND "
               "coalesce(length({sub}) = octet_length({sub}), 1))")
_NO_NUL = "coalesce(instr({s}, char(0)) = 0, 1)"
_NO_NUL_CHARS = "coalesce(instr({ch}, char(0)) = 0, 1)"
_REGEX_SPECIAL = set(".^$*+?{}[]\\|()")


def _string(family_fn: Any) -> Any:
    return builtin("string", String)(family_fn)


# ---- case ------------------------------------------------------------------------------------
@_string
def lower(self: str) -> str:
    """Return a copy of the string with all cased characters lowercased (``str.lower``)."""
    return self.lower()


@_string
def upper(self: str) -> str:
    """Return a copy of the string with all cased characters uppercased (``str.upper``):
    ``'straße'.upper() == 'STRASSE'``."""
    return self.upper()


@_string
def capitalize(self: str) -> str:
    """Return the string with its first character capitalized and the rest lowercased
    (``str.capitalize``)."""
    return self.capitalize()


@_string
def casefold(self: str) -> str:
    """Return a casefolded copy of the string, for caseless matching (``str.casefold``)."""
    return self.casefold()


@_string
def swapcase(self: str) -> str:
    """Return a copy with uppercase characters lowercased and vice versa (``str.swapcase``)."""
    return self.swapcase()


@_string
def title(self: str) -> str:
    """Return a titlecased copy: words start uppercase, the rest lowercase (``str.title``)."""
    return self.title()


def _ascii_only(native: str) -> Any:
    def build(a: SqlArgs) -> Frag:
        return guarded(a, _ASCII, native, s=a.sql("self"))
    return build


sql_for(lower)(_ascii_only("lower({s})"))
sql_for(upper)(_ascii_only("upper({s})"))
sql_for(casefold)(_ascii_only("lower({s})"))
sql_for(capitalize)(_ascii_only("(upper(substr({s}, 1, 1)) || lower(substr({s}, 2)))"))


# ---- length, search --------------------------------------------------------------------------
@_string
def len(self: str) -> int:
    """Return the number of characters in the string (``len(str)``)."""
    return builtins.len(self)


@sql_for(len)
def _(a: SqlArgs) -> Frag:
    return guarded(a, _NO_NUL, "length({s})", s=a.sql("self"))


@_string
def contains(self: str, substr: str, case: bool = True) -> bool:
    """Return True if the string contains ``substr`` (``substr in str``); with
    ``case=False``, ignoring case (both lowercased)."""
    if case:
        return substr in self
    return substr.lower() in self.lower()


@sql_for(contains)
def _(a: SqlArgs) -> Frag:
    case = a.literal("case")
    if case is True:
        return sql_template("(instr({s}, {sub}) > 0)", s=a.sql("self"), sub=a.sql("substr"))
    if case is False:
        return guarded(a, _BOTH_ASCII,
                       "(instr(lower({s}), lower({sub})) > 0)", s=a.sql("self"),
                       sub=a.sql("substr"))
    raise NoSql


@_string
def contains_re(self: str, pattern: str, flags: int = 0) -> bool:
    """Return True if a match of the regular expression ``pattern`` is in the string
    (``re.search``)."""
    return bool(re.search(pattern, self, flags))


@_string
def startswith(self: str, substr: str) -> bool:
    """Return True if the string starts with ``substr`` (``str.startswith``)."""
    return self.startswith(substr)


@sql_for(startswith)
def _(a: SqlArgs) -> Frag:
    # Byte prefixes of UTF-8 text are character prefixes; bytes see past a NUL. (substr() of
    # an empty blob is NULL: then only the empty string is a prefix.)
    return sql_template(
        "(CASE WHEN {s} IS NULL OR {sub} IS NULL THEN NULL ELSE coalesce(substr(CAST({s} AS "
        "BLOB), 1, octet_length({sub})) = CAST({sub} AS BLOB), octet_length({sub}) = 0) END)",
        s=a.sql("self"), sub=a.sql("substr"))


@_string
def endswith(self: str, substr: str) -> bool:
    """Return True if the string ends with ``substr`` (``str.endswith``)."""
    return self.endswith(substr)


@sql_for(endswith)
def _(a: SqlArgs) -> Frag:
    return sql_template(
        "(CASE WHEN {s} IS NULL OR {sub} IS NULL THEN NULL WHEN octet_length({sub}) = 0 THEN 1 "
        "ELSE coalesce(substr(CAST({s} AS BLOB), -octet_length({sub})) = CAST({sub} AS BLOB), "
        "0) END)",
        s=a.sql("self"), sub=a.sql("substr"))


@_string
def find(self: str, substr: str, start: int = 0, end: int | None = None) -> int:
    """Return the lowest index of ``substr`` within ``str[start:end]``, or -1 (``str.find``)."""
    return self.find(substr, start, end)


@sql_for(find)
def _(a: SqlArgs) -> Frag:
    if a.literal("start") != 0 or a.literal("end") is not None:
        raise NoSql
    return sql_template("(instr({s}, {sub}) - 1)", s=a.sql("self"), sub=a.sql("substr"))


@_string
def rfind(self: str, substr: str, start: int | None = 0, end: int | None = None) -> int:
    """Return the highest index of ``substr`` within ``str[start:end]``, or -1
    (``str.rfind``)."""
    return self.rfind(substr, start, end)


@_string
def index(self: str, substr: str, start: int = 0, end: int | None = None) -> int:
    """Like :func:`find`, but an error when ``substr`` is not found (``str.index``)."""
    return self.index(substr, start, end)


@_string
def rindex(self: str, substr: str, start: int | None = 0, end: int | None = None) -> int:
    """Like :func:`rfind`, but an error when ``substr`` is not found (``str.rindex``)."""
    return self.rindex(substr, start, end)


@_string
def count(self: str, pattern: str, flags: int = 0) -> int:
    """Return the number of non-overlapping matches of the regular expression ``pattern``
    (``len(re.findall(pattern, str, flags))``; Pixeltable's ``count`` takes a pattern)."""
    return builtins.len(re.findall(pattern, self, flags))


@sql_for(count)
def _(a: SqlArgs) -> Frag:
    # A pattern without regular-expression syntax counts as the plain text it is: the bytes
    # replace() removes, divided by its length.
    p = literal_str(a, "pattern")
    if a.literal("flags") != 0 or not p or "\x00" in p or _REGEX_SPECIAL & set(p):
        raise NoSql
    return sql_template(
        "((octet_length({s}) - octet_length(replace({s}, {p}, ''))) / octet_length({p}))",
        s=a.sql("self"), p=("?", [p]))


@_string
def findall(self: str, pattern: str, flags: int = 0) -> list:
    """Return every match of the regular expression ``pattern``, as a list
    (``re.findall``)."""
    return re.findall(pattern, self, flags)


@_string
def match(self: str, pattern: str, case: bool = True, flags: int = 0) -> bool:
    """Return True if the regular expression ``pattern`` matches at the start of the string
    (``re.match``); ``case=False`` ignores case."""
    if not case:
        flags |= re.IGNORECASE
    return bool(re.match(pattern, self, flags))


@_string
def fullmatch(self: str, pattern: str, case: bool = True, flags: int = 0) -> bool:
    """Return True if the regular expression ``pattern`` matches the whole string
    (``re.fullmatch``); ``case=False`` ignores case."""
    if not case:
        flags |= re.IGNORECASE
    return bool(re.fullmatch(pattern, self, flags))


# ---- building new strings --------------------------------------------------------------------
@_string
def replace(self: str, substr: str, repl: str, n: int | None = None) -> str:
    """Replace occurrences of ``substr`` with ``repl``: the first ``n``, or all when ``n`` is
    None (``str.replace``)."""
    return self.replace(substr, repl, -1 if n is None else n)


@sql_for(replace)
def _(a: SqlArgs) -> Frag:
    if a.literal("n") is not None:
        raise NoSql
    # SQLite's replace() leaves the text alone for an empty substr (Python inserts repl
    # between every character) and finds no NUL character.
    return guarded(a, "coalesce(octet_length({sub}) > 0 AND instr({sub}, char(0)) = 0, 1)",
                   "replace({s}, {sub}, {r})",
                   s=a.sql("self"), sub=a.sql("substr"), r=a.sql("repl"))


@_string
def replace_re(self: str, pattern: str, repl: str, n: int | None = None, flags: int = 0) -> str:
    """Replace matches of the regular expression ``pattern`` with ``repl`` (all, or the
    first ``n``) (``re.sub``)."""
    return re.sub(pattern, repl, self, count=n or 0, flags=flags)


#: Per trim function: SQL stripping whitespace, SQL stripping {ch}. A first character in 33..126
#: (unicode()) or a last byte in 0x21..0x7e shows there is nothing to strip at that end, which
#: spares trim() its scan of the 29 whitespace characters.
_STRIP = {
    "trim": ("(CASE WHEN unicode({s}) BETWEEN 33 AND 126 AND substr(CAST({s} AS BLOB), -1) "
             "BETWEEN x'21' AND x'7e' THEN {s} ELSE trim({s}, {ws}) END)", "trim({s}, {ch})"),
    "ltrim": ("(CASE WHEN unicode({s}) BETWEEN 33 AND 126 THEN {s} ELSE ltrim({s}, {ws}) END)",
              "ltrim({s}, {ch})"),
    "rtrim": ("(CASE WHEN substr(CAST({s} AS BLOB), -1) BETWEEN x'21' AND x'7e' THEN {s} "
              "ELSE rtrim({s}, {ws}) END)", "rtrim({s}, {ch})"),
}


def _strip(kind: str) -> Any:
    default, given = _STRIP[kind]

    def build(a: SqlArgs) -> Frag:
        s, ws = a.sql("self"), ("?", [WHITESPACE])
        if a.is_literal("chars"):
            chars = a.literal("chars")
            if chars is None:
                return sql_template(default, s=s, ws=ws)
            if not isinstance(chars, str) or "\x00" in chars:
                raise NoSql  # SQLite reads the characters to strip up to a NUL
            return sql_template(given, s=s, ch=("?", [chars]))
        # a None for chars strips whitespace, as in Python
        return guarded(a, _NO_NUL_CHARS, given, s=s, ch=sql_template(
            "coalesce({c}, {ws})", c=a.sql("chars"), ws=ws))
    return build


@_string
def strip(self: str, chars: str | None = None) -> str:
    """Return a copy without leading and trailing ``chars`` (whitespace by default)
    (``str.strip``)."""
    return self.strip(chars)


@_string
def lstrip(self: str, chars: str | None = None) -> str:
    """Return a copy without leading ``chars`` (whitespace by default) (``str.lstrip``)."""
    return self.lstrip(chars)


@_string
def rstrip(self: str, chars: str | None = None) -> str:
    """Return a copy without trailing ``chars`` (whitespace by default) (``str.rstrip``)."""
    return self.rstrip(chars)


sql_for(strip)(_strip("trim"))
sql_for(lstrip)(_strip("ltrim"))
sql_for(rstrip)(_strip("rtrim"))


@_string
def slice(self: str, start: int | None = None, stop: int | None = None,
          step: int | None = None) -> str:
    """Return ``str[start:stop:step]``."""
    return self[start:stop:step]


@sql_for(slice)
def _(a: SqlArgs) -> Frag:
    start, stop = a.literal("start"), a.literal("stop")
    if a.literal("step") not in (None, 1) or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int))
            for v in (start, stop)):
        raise NoSql

    s = a.sql("self")

    def index(v: int | None, default: Frag) -> Frag:  # Python's index rules, 0-based
        if v is None:
            return default
        if v < 0:
            return sql_template("max(length({s}) + {v}, 0)", s=s, v=("?", [v]))
        return "?", [v]

    first = index(start, ("0", []))
    end = index(stop, sql_template("length({s})", s=s))
    return guarded(a, _NO_NUL, "substr({s}, {first} + 1, max({end} - {first}, 0))", s=s,
                   first=first, end=end)


@_string
def slice_replace(self: str, start: int | None = None, stop: int | None = None,
                  repl: str | None = None) -> str:
    """Replace ``str[start:stop]`` with ``repl``."""
    return self[:start] + (repl or "") + self[stop:]


@_string
def removeprefix(self: str, prefix: str) -> str:
    """Return the string without ``prefix`` if it starts with it (``str.removeprefix``)."""
    return self.removeprefix(prefix)


@sql_for(removeprefix)
def _(a: SqlArgs) -> Frag:
    return sql_template(
        "(CASE WHEN {p} IS NULL THEN NULL "
        "WHEN substr(CAST({s} AS BLOB), 1, octet_length({p})) = CAST({p} AS BLOB) "
        "THEN CAST(substr(CAST({s} AS BLOB), octet_length({p}) + 1) AS TEXT) ELSE {s} END)",
        s=a.sql("self"), p=a.sql("prefix"))


@_string
def removesuffix(self: str, suffix: str) -> str:
    """Return the string without ``suffix`` if it ends with it (``str.removesuffix``)."""
    return self.removesuffix(suffix)


@_string
def repeat(self: str, n: int) -> str:
    """Return the string repeated ``n`` times (``str * n``)."""
    return self * n


@_string
def reverse(self: str) -> str:
    """Return the string reversed (``str[::-1]``)."""
    return self[::-1]


@_string
def zfill(self: str, width: int) -> str:
    """Pad with ``0`` on the left (after a sign) to ``width`` characters (``str.zfill``)."""
    return self.zfill(width)


@_string
def center(self: str, width: int, fillchar: str = " ") -> str:
    """Return the string centered in ``width`` characters (``str.center``)."""
    return self.center(width, fillchar)


@_string
def ljust(self: str, width: int, fillchar: str = " ") -> str:
    """Return the string left-justified in ``width`` characters (``str.ljust``)."""
    return self.ljust(width, fillchar)


@_string
def rjust(self: str, width: int, fillchar: str = " ") -> str:
    """Return the string right-justified in ``width`` characters (``str.rjust``)."""
    return self.rjust(width, fillchar)


@_string
def pad(self: str, width: int, side: str = "left", fillchar: str = " ") -> str:
    """Pad to ``width`` characters: ``side='left'`` is ``ljust``, ``'right'`` ``rjust``,
    ``'both'`` ``center`` (Pixeltable's naming)."""
    if side == "left":
        return self.ljust(width, fillchar)
    if side == "right":
        return self.rjust(width, fillchar)
    if side == "both":
        return self.center(width, fillchar)
    raise ValueError(f"pad(side=...) takes 'left', 'right' or 'both', got {side!r}")


@_string
def format(self: str, *args: Any, **kwargs: Any) -> str:
    """Format the string with ``args`` and ``kwargs`` (``str.format``):
    ``t.template.format(t.name, n=t.count)``."""
    return self.format(*args, **kwargs)


@_string
def normalize(self: str, form: str) -> str:
    """Return the Unicode normal form ``form`` ('NFC', 'NFKC', 'NFD', 'NFKD')
    (``unicodedata.normalize``)."""
    return unicodedata.normalize(form, self)  # type: ignore[arg-type]


@_string
def fill(self: str, width: int) -> str:
    """Wrap the paragraph to lines of at most ``width`` characters, as one string
    (``textwrap.fill``)."""
    return textwrap.fill(self, width)


@_string
def wrap(self: str, width: int) -> list:
    """Wrap the paragraph to lines of at most ``width`` characters, as a list
    (``textwrap.wrap``)."""
    return textwrap.wrap(self, width)


# ---- splitting -------------------------------------------------------------------------------
@_string
def split(self: str, sep: str | None = None, maxsplit: int = -1) -> list:
    """Return the words of the string, split at ``sep`` (runs of whitespace by default), as a
    list (``str.split``)."""
    return self.split(sep, maxsplit)


@_string
def rsplit(self: str, sep: str | None = None, maxsplit: int = -1) -> list:
    """Like :func:`split`, from the right (``str.rsplit``)."""
    return self.rsplit(sep, maxsplit)


@_string
def splitlines(self: str, keepends: bool = False) -> list:
    """Return the lines of the string, as a list (``str.splitlines``)."""
    return self.splitlines(keepends)


@_string
def partition(self: str, sep: str = " ") -> list:
    """Split at the first ``sep``: [before, sep, after] (``str.partition``, as a list)."""
    return list(self.partition(sep))


@_string
def rpartition(self: str, sep: str = " ") -> list:
    """Split at the last ``sep``: [before, sep, after] (``str.rpartition``, as a list)."""
    return list(self.rpartition(sep))


# ---- tests -----------------------------------------------------------------------------------
def _test(name: str) -> Any:
    def test(self: str) -> bool:
        return bool(getattr(self, name)())
    test.__name__ = test.__qualname__ = name
    test.__doc__ = f"Return ``str.{name}()``."
    test.__annotations__ = {"self": "str", "return": "bool"}
    return _string(test)


isalnum = _test("isalnum")
isalpha = _test("isalpha")
isascii = _test("isascii")
isdecimal = _test("isdecimal")
isdigit = _test("isdigit")
isidentifier = _test("isidentifier")
islower = _test("islower")
isnumeric = _test("isnumeric")
isspace = _test("isspace")
istitle = _test("istitle")
isupper = _test("isupper")


@builtin("string", None)
def join(sep: str, elements: list) -> str:
    """Return the strings of ``elements`` joined by ``sep`` (``sep.join(elements)``)."""
    return sep.join(elements)
