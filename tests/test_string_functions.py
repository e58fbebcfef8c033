"""String functions as methods: each computed by SQLite (its SQL, where SQLite computes it) and by
Python (eval) on the same values (ASCII, Unicode beyond ASCII, NUL, whitespace, empty, None),
with the same results; the ones SQLite computes natively do so for plain ASCII text."""

from __future__ import annotations

import pytest
from sqlcheck import Failed, by_sql, check, each, python_calls, shown

import pxlite as pxl
from pxlite.errors import SchemaError
from pxlite.functions import string as pstr

VALUES = ["Hello World", "", None, "straße", "ǆemal ǅ", "İstanbul", "ÀÉÎ õ", "a\x00b\x00c",
          "  \t padded \u3000\x85", "-42", "+7", "日本語テキスト", "emoji 😀 x", "MiXeD CaSe",
          "a.b*c.b*c", "[bracket]", "ﬁ ligature", "aaaa", "title case words", "x\ny\r\nz",
          "x\xa0", "\u2003y", "tab\t"]
SUBS = ["b", "", "ß", "\x00", "a", "ẞ", "o", None, "W", " ", "😀", "[", "x", "aa", "ll",
        "World", "e", "CaSe", "c", "\n", "\xa0", "y", None]


@pytest.fixture
def t(db):
    t = db.create_table("s", {"s": pxl.String, "sub": pxl.String, "n": pxl.Int})
    t.insert([{"s": s, "sub": sub, "n": i - 5} for i, (s, sub) in
              enumerate(zip(VALUES, SUBS, strict=True))])
    return t


def expected(fn, *args):
    """What Python's own str method gives for each value (None for a None input)."""
    return each(fn, VALUES, *args)


values = shown


@pytest.mark.parametrize("name", ["lower", "upper", "capitalize", "casefold", "swapcase",
                                  "title", "isalnum", "isalpha", "isascii", "isdecimal",
                                  "isdigit", "isidentifier", "islower", "isnumeric", "isspace",
                                  "istitle", "isupper", "reverse", "splitlines"])
def test_no_argument_methods_are_pythons(t, name):
    got = check(t, getattr(t.s, name)())
    py = {"reverse": lambda s: s[::-1], "splitlines": lambda s: s.splitlines()}.get(
        name, lambda s: getattr(s, name)())
    assert values(got) == values(expected(py))


def test_upper_beyond_ascii_and_lower_are_pythons(t):
    assert pstr.upper("straße") == "STRASSE"
    got = dict(zip(VALUES, check(t, t.s.upper()), strict=True))
    assert got["straße"] == "STRASSE" and got["ǆemal ǅ"] == "ǄEMAL Ǆ"
    assert got["a\x00b\x00c"] == "A\x00B\x00C"
    assert check(t, t.s.lower())[VALUES.index("İstanbul")] == "İstanbul".lower()  # 'i̇stanbul'


def test_case_functions_run_in_sqlite_for_ascii_text(db):
    t = db.create_table("a", {"s": pxl.String})
    t.insert([{"s": s} for s in ["Hello", "", None, "MiXeD 123 !?", "x\ty"]])
    for e in (t.s.lower(), t.s.upper(), t.s.capitalize(), t.s.casefold(), t.s.len(),
              t.s.strip(), t.s.lstrip(), t.s.rstrip(), t.s.startswith("H"), t.s.endswith("o"),
              t.s.contains("e"), t.s.contains("E", case=False), t.s.find("l"),
              t.s.replace("l", "L"), t.s.slice(1, -1), t.s.count("l"),
              t.s.removeprefix("He"), t.s + "!"):
        check(t, e)
        assert python_calls(t, e) == 0, e
    # beyond ASCII, or with a NUL, Python takes over for those rows only
    t.insert([{"s": "straße"}, {"s": "a\x00b"}])
    assert python_calls(t, t.s.upper()) == 2
    assert python_calls(t, t.s.len()) == 1
    assert python_calls(t, t.s.split()) == 7  # split is Python's: one call a row


def test_len_counts_characters_past_a_nul(t):
    got = check(t, t.s.len())
    assert got == [None if v is None else len(v) for v in VALUES]


@pytest.mark.parametrize("case", [True, False])
def test_contains_startswith_endswith(t, case):
    for sub in ["b", "", "ß", "\x00", "ẞ", "W", "😀", "world"]:
        assert check(t, t.s.contains(sub, case=case)) == expected(
            lambda s, x=sub: (x in s) if case else (x.lower() in s.lower()))
    # a column as the argument (None gives None)
    got = check(t, t.s.contains(t.sub))
    assert got == [None if s is None or x is None else x in s for s, x in zip(VALUES, SUBS,
                                                                                strict=True)]
    for sub in ["", "a", "He", "ǆ", "\x00", "c", "x"]:
        assert check(t, t.s.startswith(sub)) == expected(lambda s, x=sub: s.startswith(x))
        assert check(t, t.s.endswith(sub)) == expected(lambda s, x=sub: s.endswith(x))
    check(t, t.s.startswith(t.sub))
    check(t, t.s.endswith(t.sub))


def test_find_count_and_regex(t):
    for sub in ["b", "", "ß", "\x00", "o", "😀"]:
        assert check(t, t.s.find(sub)) == expected(lambda s, x=sub: s.find(x))
        assert check(t, t.s.rfind(sub)) == expected(lambda s, x=sub: s.rfind(x))
    assert check(t, t.s.find("a", 1, -1)) == expected(lambda s: s.find("a", 1, -1))
    assert values(check(t, t.s.index("a"))) == values(expected(lambda s: s.index("a")))
    assert values(check(t, t.s.rindex("b", 1))) == values(expected(lambda s: s.rindex("b", 1)))
    for pattern in ["b*c", "a", "aa", "", "[ae]", "\x00", "ß"]:
        import re

        assert check(t, t.s.count(pattern)) == expected(lambda s, p=pattern: len(re.findall(p, s)))
    assert check(t, t.s.match(r"\w+")) == expected(lambda s: bool(re.match(r"\w+", s)))
    assert check(t, t.s.match("hello", case=False)) == expected(
        lambda s: bool(re.match("hello", s, re.I)))
    assert check(t, t.s.fullmatch(r"[a-z ]+")) == expected(
        lambda s: bool(re.fullmatch(r"[a-z ]+", s)))
    assert check(t, t.s.contains_re("b.c")) == expected(lambda s: bool(re.search("b.c", s)))
    assert check(t, t.s.findall("[aeiou]")) == expected(lambda s: re.findall("[aeiou]", s))
    assert check(t, t.s.replace_re("[aeiou]", "_", n=1)) == expected(
        lambda s: re.sub("[aeiou]", "_", s, count=1))
    # a bad pattern fails on both paths
    assert all(isinstance(v, Failed) for v, s in zip(check(t, t.s.match("(")), VALUES,
                                                     strict=True) if s is not None)


def test_replace_strip_slice(t):
    for sub, repl in [("b", "X"), ("", "-"), ("ß", "ss"), ("\x00", "0"), ("aa", "a")]:
        assert check(t, t.s.replace(sub, repl)) == expected(
            lambda s, a=sub, b=repl: s.replace(a, b))
        assert check(t, t.s.replace(sub, repl, 1)) == expected(
            lambda s, a=sub, b=repl: s.replace(a, b, 1))
    check(t, t.s.replace(t.sub, "#"))
    for name in ("strip", "lstrip", "rstrip"):
        for chars in (None, "", " \t", "a\x00", "ǆ日"):
            assert check(t, getattr(t.s, name)(chars)) == expected(
                lambda s, c=chars, n=name: getattr(s, n)(c))
        check(t, getattr(t.s, name)(t.sub))
    for args in [(1, 3), (None, 2), (-3, None), (2, None), (-100, 100), (3, 1), (-2, -1),
                 (None, None), (0, -1), (1, None, 2), (None, None, -1)]:
        assert check(t, t.s.slice(*args)) == expected(lambda s, a=args: s[slice(*a)])
    check(t, t.s.slice(t.n, t.n + 3))  # column arguments: Python's rules


def test_building_strings(t):
    assert check(t, t.s.zfill(6)) == expected(lambda s: s.zfill(6))
    assert check(t, t.s.center(9, "*")) == expected(lambda s: s.center(9, "*"))
    assert check(t, t.s.ljust(5)) == expected(lambda s: s.ljust(5))
    assert check(t, t.s.rjust(5, "0")) == expected(lambda s: s.rjust(5, "0"))
    assert check(t, t.s.pad(7, side="both")) == expected(lambda s: s.center(7))
    assert check(t, t.s.pad(7, side="right", fillchar="-")) == expected(lambda s: s.rjust(7, "-"))
    assert values(check(t, t.s.pad(7, side="middle"))) == [
        None if v is None else "failed" for v in VALUES]  # a bad side: Python's ValueError
    assert check(t, t.s.repeat(2)) == expected(lambda s: s * 2)
    assert check(t, t.s.removeprefix("He")) == expected(lambda s: s.removeprefix("He"))
    assert check(t, t.s.removeprefix("")) == expected(lambda s: s.removeprefix(""))
    check(t, t.s.removeprefix(t.sub))
    assert check(t, t.s.removesuffix("c")) == expected(lambda s: s.removesuffix("c"))
    assert check(t, t.s.normalize("NFKD")) == expected(
        lambda s: __import__("unicodedata").normalize("NFKD", s))
    assert check(t, t.s.slice_replace(1, 2, "_")) == expected(lambda s: s[:1] + "_" + s[2:])
    assert check(t, t.s.wrap(5)) == expected(lambda s: __import__("textwrap").wrap(s, 5))
    assert check(t, t.s.fill(5)) == expected(lambda s: __import__("textwrap").fill(s, 5))
    assert check(t, t.s + "!" + t.sub) == [
        None if s is None or x is None else s + "!" + x for s, x in zip(VALUES, SUBS,
                                                                        strict=True)]


def test_format_without_arguments(t):
    assert values(check(t, t.s.format())) == values(expected(lambda s: s.format()))


def test_format_with_arguments(db):
    t = db.create_table("f", {"tpl": pxl.String, "n": pxl.Int, "x": pxl.Float})
    t.insert([{"tpl": "{} and {n:03d}", "n": 7, "x": 1.5}, {"tpl": "{0}-{0}", "n": None, "x": 2.0},
              {"tpl": "{", "n": 1, "x": 0.0}, {"tpl": None, "n": 1, "x": 0.0}])
    got = check(t, t.tpl.format(t.x, n=t.n))
    assert got[0] == "1.5 and 007"
    assert got[1] is None      # a None argument gives None, as for every function
    assert isinstance(got[2], Failed) and got[3] is None


def test_split_and_partition_give_json(t):
    for args in [(), (" ",), ("b",), (None, 1), ("\x00",)]:
        assert check(t, t.s.split(*args)) == expected(lambda s, a=args: s.split(*a))
        assert check(t, t.s.rsplit(*args)) == expected(lambda s, a=args: s.rsplit(*a))
    assert values(check(t, t.s.split(""))) == values(expected(lambda s: s.split("")))
    assert check(t, t.s.partition("b")) == expected(lambda s: list(s.partition("b")))
    assert check(t, t.s.rpartition("b")) == expected(lambda s: list(s.rpartition("b")))
    # a path into the list a function returns
    assert check(t, t.s.split(" ")[0]) == expected(lambda s: s.split(" ")[0])
    assert check(t, t.s.split(" ")[-1].astype(pxl.String).upper()) == expected(
        lambda s: s.split(" ")[-1].upper())


def test_join_is_a_function(db):
    t = db.create_table("j", {"words": pxl.Json})
    t.insert([{"words": ["a", "b"]}, {"words": []}, {"words": None}, {"words": [1]}])
    got = check(t, pstr.join("-", t.words))
    assert got[:3] == ["a-b", "", None] and isinstance(got[3], Failed)


def test_queries_use_functions(t):
    rows = t.where(t.s.lower().startswith("h")).select(t.s, up=t.s.upper()).collect()
    assert rows.to_dicts() == [{"s": "Hello World", "up": "HELLO WORLD"}]
    assert t.where(t.s.len() == 0).count() == 1
    assert t.where(t.s.contains("ß") | t.s.contains("😀")).count() == 2
    ordered = t.where(t.s != None).order_by(t.s.len(), t.s).select(t.s).collect()["s"]  # noqa: E711
    assert ordered == sorted([v for v in VALUES if v is not None], key=lambda v: (len(v), v))


def test_functions_persist_in_computed_columns(tmp_path):
    path = tmp_path / "p.pxl"
    db = pxl.connect(path)
    t = db.create_table("p", {"s": pxl.String})
    t.insert([{"s": "Straße"}, {"s": None}])
    t.add_computed_column(up=t.s.upper())
    t.add_computed_column(n=t.s.len())
    t.add_computed_column(words=t.s.split("a"))
    t.add_computed_column(first=t.s.split("a")[0].astype(pxl.String))
    db.close()
    db = pxl.connect(path)
    t = db.get_table("p")
    assert t.select(t.up, t.n, t.words, t.first).collect().to_dicts() == [
        {"up": "STRASSE", "n": 6, "words": ["Str", "ße"], "first": "Str"},
        {"up": None, "n": None, "words": None, "first": None}]
    t.insert([{"s": "abc"}])
    assert t.where(t.s == "abc").select(t.up, t.words).collect().to_dicts() == [
        {"up": "ABC", "words": ["", "bc"]}]
    db.close()


def test_bad_calls_are_clear_errors(t):
    with pytest.raises(SchemaError, match="startswith"):
        t.s.startswith()
    with pytest.raises(SchemaError, match="lower"):
        t.s.lower(1)
    with pytest.raises(AttributeError, match="no attribute or method 'upperr'"):
        t.s.upperr()
    with pytest.raises(SchemaError, match="not Json"):
        t.s[0]


def test_sql_path_errors_name_the_function_and_value(t):
    out = by_sql(t, t.s.index("zzz"))
    err = next(v for v in out if isinstance(v, Failed)).error
    assert "index(" in str(err) and "ValueError" in str(err)
