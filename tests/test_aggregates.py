"""Aggregates and group_by: pxlite.functions' count/sum/min/max/mean/make_list, @pxl.uda, in SQL
and in Python (the same results), NULLs and error cells skipped, and the mistakes refused."""

from __future__ import annotations

import datetime
import random
import typing

import pytest

import pxlite as pxl
import pxlite.functions as pxlf
from pxlite.errors import ComputeError, SchemaError


# Identity UDFs: an argument wrapped in one of these needs Python, so the aggregate runs there.
@pxl.udf
def py_int(x: int | None) -> int | None:
    return x


@pxl.udf
def py_float(x: float | None) -> float | None:
    return x


@pxl.udf
def py_str(x: str | None) -> str | None:
    return x


@pxl.udf
def py_json(x: dict | None) -> dict | None:
    return x


@pxl.udf
def inverse(x: int) -> float:
    return 1 / x  # fails for 0: an error cell with on_error='ignore'


LABELS = ["Ünïcødé", "b", None, "Ünïcødé", "a", "b", None, "日本", "a", "b"]


@pytest.fixture
def t(db):
    t = db.create_table("t", {"label": pxl.String, "n": pxl.Int, "x": pxl.Float,
                              "ts": pxl.Timestamp, "j": pxl.Json})
    t.insert([{"label": lab, "n": None if i == 4 else i - 3, "x": None if i % 4 == 1 else i * 0.25,
               "ts": datetime.datetime(2024, 1, 1 + i), "j": {"i": i, "s": "é"}}
              for i, lab in enumerate(LABELS)])
    return t


def test_the_functions_module_exports_pixeltables_aggregates():
    assert {"count", "sum", "min", "max", "mean", "make_list"} <= set(pxlf.__all__)
    assert pxl.functions.count is pxlf.count and pxlf.count.__doc__
    assert repr(pxlf.mean) == "<pxlite aggregate pxlite.functions.globals.mean>"


def test_group_by_in_sql(t):
    q = t.group_by(t.label).select(t.label, n=pxlf.count(t.n), s=pxlf.sum(t.n),
                                   lo=pxlf.min(t.x), hi=pxlf.max(t.label), m=pxlf.mean(t.x),
                                   xs=pxlf.make_list(t.n))
    assert q.plan().python == [] and "GROUP BY" in q.collect_sql()[0]
    rs = q.collect()
    # groups in key order, None last (as order_by puts it)
    assert rs["label"] == ["a", "b", "Ünïcødé", "日本", None]
    assert rs["n"] == [1, 3, 2, 1, 2]          # the None n (row 4, label 'a') is not counted
    assert rs["s"] == [5, 6, -3, 4, 2]
    assert rs["lo"] == [1.0, None, 0.0, 1.75, 0.5]  # every x of 'b' is None
    assert rs["hi"] == ["a", "b", "Ünïcødé", "日本", None]
    assert rs["m"] == [1.5, None, 0.375, 1.75, 1.0]
    assert rs["xs"] == [[5], [-2, 2, 6], [-3, 0], [4], [-1, 3]]
    assert rs.errors_skipped == 0 and "skipped" not in repr(rs)


@pytest.mark.parametrize("fn", ["count", "sum", "min", "max", "mean", "make_list"])
def test_sql_and_python_give_the_same_results(t, fn):
    agg = getattr(pxlf, fn)
    for col, wrap in ((t.n, py_int), (t.x, py_float), (t.label, py_str)):
        if fn in ("sum", "mean") and col.type.name == "String":
            continue
        in_sql = t.group_by(t.label).select(t.label, v=agg(col))
        in_py = t.group_by(t.label).select(t.label, v=agg(wrap(col)))
        assert in_sql.plan().python == [] and in_py.plan().python
        assert in_py.collect().to_dicts() == in_sql.collect().to_dicts(), (fn, col)
        whole_sql, whole_py = t.select(v=agg(col)).collect(), t.select(v=agg(wrap(col))).collect()
        assert whole_py.to_dicts() == whole_sql.to_dicts(), (fn, col)


def test_float_sums_are_the_same_bit_for_bit(db):
    """SQLite sums floats with a compensated sum; so does the Python path."""
    rng = random.Random(7)
    t = db.create_table("f", {"g": pxl.Int, "x": pxl.Float})
    t.insert([{"g": i % 3, "x": rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 8)}
              for i in range(3000)])
    for agg in (pxlf.sum, pxlf.mean):
        sql = t.group_by(t.g).select(t.g, v=agg(t.x)).collect()["v"]
        py = t.group_by(t.g).select(t.g, v=agg(py_float(t.x))).collect()["v"]
        assert sql == py


def test_whole_table_and_timestamps(t):
    rs = t.select(pxlf.count(t.n), pxlf.max(t.ts), first=pxlf.min(t.ts)).collect()
    assert rs.to_dicts() == [{"count": 9, "max": datetime.datetime(2024, 1, 10),
                              "first": datetime.datetime(2024, 1, 1)}]
    # a query (where) as one group; an empty one still gives one row
    assert t.where(t.n > 2).select(pxlf.count(t.n), pxlf.sum(t.n)).collect()[0] == \
        {"count": 4, "sum": 18}
    empty = t.where(t.n > 100).select(n=pxlf.count(t.n), s=pxlf.sum(t.n), m=pxlf.mean(t.x),
                                      xs=pxlf.make_list(t.label)).collect()
    assert empty.to_dicts() == [{"n": 0, "s": None, "m": None, "xs": []}]
    py_empty = t.where(t.n > 100).select(n=pxlf.count(py_int(t.n))).collect()
    assert py_empty.to_dicts() == [{"n": 0}]


def test_make_list_of_json_and_strings(t):
    rs = t.where(t.label == "Ünïcødé").select(js=pxlf.make_list(t.j),
                                              ls=pxlf.make_list(t.label)).collect()
    assert rs[0] == {"js": [{"i": 0, "s": "é"}, {"i": 3, "s": "é"}], "ls": ["Ünïcødé"] * 2}
    py = t.where(t.label == "Ünïcødé").select(js=pxlf.make_list(py_json(t.j))).collect()
    assert py[0]["js"] == rs[0]["js"]


def test_group_by_after_where_with_order_and_limit(t):
    q = t.where(t.n >= 0).group_by(t.label)
    rs = q.select(t.label, n=pxlf.count(t.n)).order_by(pxlf.count(t.n), asc=False) \
        .order_by(t.label).limit(2).collect()
    assert rs.to_dicts() == [{"label": "b", "n": 2}, {"label": "a", "n": 1}]
    total = pxlf.sum(t.n)
    ordered = t.group_by(t.label).select(t.label, s=total).order_by(total).collect()
    assert ordered["s"] == [-3, 2, 4, 5, 6]
    paged = t.group_by(t.label).select(t.label).limit(2, offset=1).collect()["label"]
    assert paged == ["b", "Ünïcødé"]
    assert t.group_by(t.label).count() == 5 and t.where(t.n > 3).group_by(t.label).count() == 3
    # the same through Python
    py = t.where(py_int(t.n) >= 0).group_by(t.label).select(t.label, n=pxlf.count(t.n)) \
        .order_by(t.label, asc=False).collect()
    assert py["label"] == [None, "日本", "Ünïcødé", "b", "a"] and py["n"] == [1, 1, 1, 2, 1]


def test_group_keys_are_expressions_and_outputs_may_compute_on_them(t):
    rs = t.group_by(t.n > 0).select(pos=t.n > 0, twice=pxlf.count(t.n) * 2,
                                    k=pxlf.max(t.n) + 100).collect()
    assert rs.to_dicts() == [{"pos": False, "twice": 8, "k": 100},
                             {"pos": True, "twice": 10, "k": 106},
                             {"pos": None, "twice": 0, "k": None}]
    # a key that needs Python: groups in Python
    py = t.group_by(t.n % 2).select(odd=t.n % 2, c=pxlf.count(t.label)).collect()
    # Python's %: -3 % 2 == 1; rows with n odd: 0, 2, 6, 8 (labels Ü, None, None, a)
    assert py.to_dicts() == [{"odd": 0, "c": 5}, {"odd": 1, "c": 2}, {"odd": None, "c": 1}]
    # group_by without aggregates: the distinct keys; without select: the keys themselves
    assert t.group_by(t.label).select(t.label).collect()["label"] == \
        ["a", "b", "Ünïcødé", "日本", None]
    assert t.group_by(t.label, t.n > 0).collect().names == ["label", "col"]


def test_errors_are_skipped_and_counted(db):
    t = db.create_table("e", {"g": pxl.String, "n": pxl.Int})
    t.insert([{"g": "a" if i < 3 else "b", "n": i} for i in range(6)])
    t.add_computed_column(inv=inverse(t.n), on_error="ignore")  # row n=0 is an error cell
    assert t.where(t.inv.errortype != None).count() == 1  # noqa: E711
    for q in (t.group_by(t.g).select(t.g, c=pxlf.count(t.inv), s=pxlf.sum(t.inv)),
              t.group_by(t.g).select(t.g, c=pxlf.count(py_float(t.inv)),
                                     s=pxlf.sum(py_float(t.inv)))):
        rs = q.collect()
        assert rs["c"] == [2, 3] and rs["s"] == [1.5, pytest.approx(1 / 3 + 1 / 4 + 1 / 5)]
        assert rs.errors_skipped == 1
        assert "aggregates skipped 1 error cell)" in repr(rs) and "skipped 1 error" in \
            rs._repr_html_()
    both = t.select(pxlf.count(t.inv), pxlf.count(t.n)).collect()
    assert both.to_dicts() == [{"count": 5, "count_1": 6}] and both.errors_skipped == 1
    assert t.select(pxlf.count(t.n)).collect().errors_skipped == 0


def test_python_aggregates_over_image_properties_and_columns_computed_when_read(db, jpegs, pngs):
    t = db.create_table("im", {"image": pxl.Image, "kind": pxl.String})
    t.insert([{"image": p, "kind": p.suffix} for p in jpegs[:3] + pngs[:2]])
    t.add_computed_column(w=t.image.width, stored=False)
    rs = t.group_by(t.kind).select(t.kind, n=pxlf.count(t.image), w=pxlf.mean(t.image.width),
                                   h=pxlf.max(t.image.height)).collect()
    assert rs.to_dicts() == [{"kind": ".jpg", "n": 3, "w": 64.0, "h": 48},
                             {"kind": ".png", "n": 2, "w": 40.0, "h": 30}]
    assert t.select(pxlf.sum(t.w)).collect()[0]["sum"] == 3 * 64 + 2 * 40
    text = t.group_by(t.kind).select(pxlf.mean(t.image.width)).plan().python
    assert any("width" in x and "Python function" in x for x in text)
    # counting images needs no decoding: SQL
    assert t.select(pxlf.count(t.image)).plan().python == []


@pxl.uda
class longest(pxl.Aggregator):
    """The longest string (ties: the first)."""

    def __init__(self, at_least: int = 0) -> None:
        self.best: str | None = None
        self.at_least = at_least

    def update(self, s: str) -> None:
        if len(s) >= self.at_least and (self.best is None or len(s) > len(self.best)):
            self.best = s

    def value(self) -> str | None:
        return self.best


@pxl.uda
class nones(pxl.Aggregator):
    def __init__(self) -> None:
        self.n = 0

    def update(self, v: int | None) -> None:
        self.n += v is None

    def value(self) -> int:
        return self.n


def test_a_user_defined_aggregate(t):
    rs = t.group_by(t.label).select(t.label, l=longest(t.label), n=nones(t.n)).collect()
    assert rs["l"] == ["a", "b", "Ünïcødé", "日本", None]  # None is skipped (s: str)
    assert rs["n"] == [1, 0, 0, 0, 0]  # v: int | None takes None
    assert rs.types[1].name == "String" and rs.names == ["label", "l", "n"]
    words = t.select(w=longest(t.label, at_least=3)).collect()
    assert words[0]["w"] == "Ünïcødé"
    assert "longest(label, at_least=3)" in repr(t.select(longest(t.label, at_least=3)))
    assert longest.__doc__.startswith("The longest") and longest.method_name == "longest"


def test_aggregate_mistakes_are_refused(t):
    with pytest.raises(SchemaError, match="calls an aggregate"):
        t.where(pxlf.sum(t.n) > 0)
    with pytest.raises(SchemaError, match="cannot call an aggregate"):
        t.group_by(pxlf.sum(t.n))
    with pytest.raises(SchemaError, match=r"reads n outside an aggregate.*not a group_by\(\) key"):
        t.group_by(t.label).select(pxlf.sum(t.n) + t.n).collect()
    with pytest.raises(SchemaError, match="outside an aggregate"):
        t.select(t.label, pxlf.count(t.n)).collect()
    with pytest.raises(SchemaError, match="cannot itself call an aggregate"):
        pxlf.sum(pxlf.count(t.n))
    with pytest.raises(SchemaError, match=r"sum\(\) takes numbers"):
        pxlf.sum(t.label)
    with pytest.raises(SchemaError, match=r"mean\(\) takes numbers"):
        pxlf.mean(t.ts)
    with pytest.raises(SchemaError, match=r"max\(\) takes numbers, strings"):
        pxlf.max(t.j)
    with pytest.raises(SchemaError, match=r"count\(\)"):
        pxlf.count()
    with pytest.raises(SchemaError, match=r"is an aggregate .* cannot define a computed column"):
        t.add_computed_column(c=pxlf.count(t.n))
    with pytest.raises(SchemaError, match=r"update\(\): max\(n\) calls an aggregate"):
        t.update({"n": pxlf.max(t.n)})
    with pytest.raises(SchemaError, match=r"delete\(where=...\): .* calls an aggregate"):
        t.delete(where=pxlf.count(t.n) > 1)
    assert t.count() == 10
    with pytest.raises(SchemaError, match="option at_least= is fixed"):
        longest(t.label, at_least=t.n)
    with pytest.raises(SchemaError, match="already"):
        t.group_by(t.label).group_by(t.n)
    with pytest.raises(SchemaError, match="takes expressions"):
        t.group_by("label")
    with pytest.raises(SchemaError, match="at least one"):
        t.group_by()


def test_uda_definitions_are_checked():
    with pytest.raises(SchemaError, match="update"):
        pxl.uda(int)

    class NoValueHint(pxl.Aggregator):
        def update(self, v: int) -> None:
            pass

        def value(self):  # type: ignore[no-untyped-def]
            return 1

    with pytest.raises(SchemaError, match="return type hint"):
        pxl.uda(NoValueHint)

    class NoArgs(pxl.Aggregator):
        def update(self) -> None:
            pass

        def value(self) -> int:
            return 1

    with pytest.raises(SchemaError, match="needs a parameter"):
        pxl.uda(NoArgs)

    class Clash(pxl.Aggregator):
        def __init__(self, v: int = 0) -> None:
            pass

        def update(self, v: int) -> None:
            pass

        def value(self) -> int:
            return 1

    with pytest.raises(SchemaError, match="cannot share parameter names"):
        pxl.uda(Clash)
    with pytest.raises(SchemaError, match="requires_order_by"):
        pxl.uda(requires_order_by=True)
    windowed = pxl.uda(allows_window=True)(typing.cast(type, longest.cls))
    assert windowed.method_name == "longest"


def test_a_failing_user_aggregate_is_a_compute_error(t):
    @pxl.uda
    class broken(pxl.Aggregator):
        def __init__(self) -> None:
            pass

        def update(self, v: int) -> None:
            raise RuntimeError("boom")

        def value(self) -> int:
            return 0

    with pytest.raises(ComputeError, match="boom"):
        t.select(broken(t.n)).collect()
