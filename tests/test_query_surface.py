"""The rest of the query surface: distinct, limit(n, offset=), tail, NULL order, the streaming
cursor, explain and the plan twins, Pixeltable's column names (t.name), handles on replaced
tables, and ResultSet indexing."""

from __future__ import annotations

import datetime
import itertools
import threading

import pytest

import pxlite as pxl
import pxlite.functions as pxlf
from pxlite.errors import NotFoundError, SchemaError

CALLS = {"n": 0}
_LOCK = threading.Lock()


@pxl.udf
def counted(x: int) -> int:
    with _LOCK:
        CALLS["n"] += 1
    return x


@pxl.udf
def is_even(x: int) -> bool:
    return x % 2 == 0


@pxl.udf
def required_params_fn(a: float, b: float) -> float:
    return a + b


@pxl.udf
def mixed_params_fn(a: float, b: float | None) -> float:
    return a if b is None else a + b


@pxl.udf
def optional_params_fn(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else a + b


@pytest.fixture
def t(db):
    t = db.create_table("t", {"c1": pxl.String, "c2": pxl.Int, "c3": pxl.Float})
    t.insert([{"c1": f"s{i % 7}", "c2": i, "c3": i / 2} for i in range(100)])
    return t


def test_null_args_ordering(db):
    """Pixeltable's test_null_args: None sorts last ascending."""
    t = db.create_table("nulls", {"c1": pxl.Float, "c2": pxl.Float})
    t.add_computed_column(c3=required_params_fn(t.c1, t.c2))
    t.add_computed_column(c4=mixed_params_fn(t.c1, t.c2))
    t.add_computed_column(c5=optional_params_fn(t.c1, t.c2))
    t.insert([{"c1": 1.0, "c2": 1.0}, {"c1": 1.0, "c2": None}, {"c1": None, "c2": 1.0},
              {"c1": None, "c2": None}])
    result = t.order_by(t.c1, t.c2).collect()
    assert result["c3"] == [2.0, None, None, None]
    assert result["c4"] == [2.0, 1.0, None, None]
    assert result["c5"] == [2.0, 1.0, 1.0, None]
    desc = t.order_by(t.c1, t.c2, asc=False).collect()
    assert desc["c5"] == [None, 1.0, 1.0, 2.0]  # None first descending
    # the same order when Python sorts (a key SQLite cannot compute)
    py = t.order_by(optional_params_fn(t.c1, t.c2)).collect()["c5"]
    assert py == [1.0, 1.0, 2.0, None]
    assert t.order_by(optional_params_fn(t.c1, t.c2), asc=False).collect()["c5"] == \
        [None, 2.0, 1.0, 1.0]


def test_distinct(db):
    t = db.create_table("d", {"c1": pxl.String, "c2": pxl.Int, "c3": pxl.Float,
                              "c4": pxl.Timestamp, "c5": pxl.Json})
    assert len(t.distinct().collect()) == 0
    day = datetime.datetime
    rows = [{"c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5} for c1, c2, c3, c4, c5 in [
        ("SF", 100, 3.14, day(2024, 7, 2), {"k1": "v1"}),
        ("SF", 100, 3.14, day(2024, 7, 2), {"k1": "v1"}),
        ("SF", 101, 3.14, day(2024, 7, 21), {"k2": "v2"}),
        ("SF", 101, 3.15, day(2024, 8, 1), {"k3": "v3"}),
        ("LA", 101, 3.16, day(2024, 7, 20), {"k1": "v1"}),
        ("LA", 104, 3.13, day(2024, 7, 22), {"k2": "v2"}),
        ("LA", 104, 3.13, day(2024, 7, 22), {"k1": "v1"}),
    ]]
    t.insert(rows)
    assert len(t.select().distinct().collect()) == 6
    assert len(t.select(t.c1).distinct().collect()) == 2
    assert len(t.select(t.c2).distinct().collect()) == 3
    assert len(t.select(t.c3).distinct().collect()) == 4
    assert len(t.select(t.c4).distinct().collect()) == 5
    assert len(t.select(t.c5).distinct().collect()) == 3  # Json groups by its text
    assert len(t.select(t.c1, t.c3).distinct().collect()) == 4
    assert len(t.select(t.c2, t.c3).distinct().collect()) == 5
    assert len(t.select(t.c2 % 10).distinct().collect()) == 3  # a key in Python
    assert len(t.select(t.c1 + ".pxt", t.c2 - 100).distinct().collect()) == 4
    assert len(t.select(t.c1).where(t.c2 == 101).distinct().collect()) == 2
    assert t.select(t.c1).distinct().order_by(t.c1).limit(1).collect()[0]["c1"] == "LA"
    assert t.select(t.c1).distinct().order_by(t.c1, asc=False).limit(1).collect()[0]["c1"] == "SF"
    assert len(t.select().distinct().limit(2).collect()) == 2
    assert len(t.select(t.c4).distinct().show()) == 5
    assert t.select(t.c1).distinct().count() == 2
    with pytest.raises(SchemaError, match="distinct"):
        t.group_by(t.c1).distinct()
    with pytest.raises(SchemaError, match="group_by"):
        t.distinct().group_by(t.c1)
    with pytest.raises(SchemaError, match="tail"):
        t.distinct().tail()


def test_limit_and_offset(t):
    assert t.select(t.c2).order_by(t.c2).limit(5, offset=5).collect()["c2"] == [5, 6, 7, 8, 9]
    assert t.select(t.c2).order_by(t.c2).limit(5, offset=0).collect()["c2"] == [0, 1, 2, 3, 4]
    assert t.select(t.c2).limit(10, offset=200).collect()["c2"] == []
    assert t.select(t.c2).order_by(t.c2).limit(10, offset=95).collect()["c2"] == [95, 96, 97,
                                                                                  98, 99]
    assert t.where(t.c2 >= 10).select(t.c2).order_by(t.c2).limit(5, offset=5).collect()["c2"] == \
        [15, 16, 17, 18, 19]
    assert t.limit(3, offset=None).select(t.c2).collect()["c2"] == [0, 1, 2]
    assert t.limit(3, offset=4).count() == 3 and t.limit(1000, offset=98).count() == 2
    # Python-side filter: limit and offset apply after it
    q = t.where(is_even(t.c2)).select(t.c2).order_by(t.c2)
    assert q.limit(5, offset=5).collect()["c2"] == [10, 12, 14, 16, 18]
    assert q.limit(10, offset=45).collect()["c2"] == [90, 92, 94, 96, 98]
    assert q.limit(5, offset=60).collect()["c2"] == []
    assert q.limit(5, offset=47).count() == 3
    # limit 0 keeps the shape
    empty = t.select(t.c1, t.c2).order_by(t.c2).limit(0, offset=5).collect()
    assert len(empty) == 0 and empty.names == ["c1", "c2"]
    for bad in (-1, 5.3, "5", None, True):
        with pytest.raises(SchemaError, match="whole number"):
            t.limit(bad)  # type: ignore[arg-type]
        if bad is not None:
            with pytest.raises(SchemaError, match="offset"):
                t.limit(5, offset=bad)  # type: ignore[arg-type]


def test_tail(t):
    rs = t.tail(3)
    assert rs["c2"] == [97, 98, 99] and t.tail()["c2"] == list(range(90, 100))
    assert t.where(t.c1 == "s0").tail(2)["c2"] == [91, 98]
    assert t.where(is_even(t.c2)).tail(2)["c2"] == [96, 98]  # a where in Python
    assert t.select(t.c1).tail(1).to_dicts() == [{"c1": "s1"}]
    assert t.head(2)["c2"] == [0, 1]
    for q, what in ((t.order_by(t.c2), "order_by"), (t.group_by(t.c1), "group_by")):
        with pytest.raises(SchemaError, match=f"tail\\(\\) cannot be used with {what}"):
            q.tail(2)
    with pytest.raises(SchemaError, match="whole number"):
        t.tail(-2)


def test_cursor_lifecycle(t):
    query = t.select(t.c1, t.c2, t.c3).order_by(t.c2)
    cur = query.cursor()
    assert "pending" in repr(cur) and list(cur.schema) == ["c1", "c2", "c3"]
    assert cur.schema["c2"] == pxl.Int
    cur.open()
    assert "open" in repr(cur)
    with pytest.raises(SchemaError, match="already open"):
        cur.open()
    cur.close()
    assert "closed" in repr(cur)
    cur.close()  # again: nothing happens
    with pytest.raises(SchemaError, match="closed and cannot be reopened"):
        cur.open()
    with pytest.raises(SchemaError, match="closed and cannot be iterated"):
        list(cur)
    with query.cursor() as cur:
        first = list(itertools.islice(cur, 10))
    assert cur._closed and [r["c2"] for r in first] == list(range(10))
    cur = query.cursor()
    rows = list(cur)
    assert cur._closed and len(rows) == 100
    assert len(list(t.cursor())) == 100


def test_cursor_rows(t):
    query = t.select(t.c1, t.c2, t.c3).where(t.c2 < 20).order_by(t.c2)
    collected = query.collect()
    with query.cursor() as cur:
        for i, row in enumerate(cur):
            assert row["c1"] == collected[i]["c1"] and row["c3"] == collected[i]["c3"]
            assert list(row.keys()) == ["c1", "c2", "c3"] and len(list(row.values())) == 3
            assert next(iter(row.items())) == ("c1", row["c1"])
            assert "c1" in row and "nonexistent" not in row and len(row) == 3
            assert dict(row) == collected[i] and row.get("nope", 7) == 7
            with pytest.raises(NotFoundError, match="no column 'nonexistent'"):
                row["nonexistent"]
    assert "Row({'c1':" in repr(row)


def test_the_cursor_streams(t):
    """Taking one row computes a batch or so of a Python output, not the whole table."""
    t.insert([{"c1": "x", "c2": i, "c3": 0.0} for i in range(5000)])
    CALLS["n"] = 0
    with t.select(v=counted(t.c2)).cursor() as cur:
        next(iter(cur))
    assert 0 < CALLS["n"] <= 2 * 256
    CALLS["n"] = 0
    assert len(t.select(v=counted(t.c2)).collect()) == 5100 and CALLS["n"] == 5100


def test_cursor_media_cells_open_when_read(db, jpegs):
    t = db.create_table("im", {"image": pxl.Image})
    t.insert([{"image": p} for p in jpegs[:2]])
    rows = list(t.select(t.image, t.image.fileurl).cursor())
    assert rows[0]["image"].size == (64, 48) and rows[1]["image_fileurl"].startswith("file://")


def test_pixeltable_column_names_are_columns(db):
    schema = {"id": pxl.Int, "name": pxl.String, "version": pxl.Int, "comment": pxl.String,
              "path": pxl.String}
    t = db.create_table("dir_less", schema)
    t.insert([{"id": i, "name": f"n{i}", "version": 1, "comment": "é", "path": f"/p/{i}"}
              for i in range(4)])
    for col in schema:
        assert repr(getattr(t, col)) == col and repr(t[col]) == col
    assert t.where(t.name == "n2").select(t.id, t.path).collect().to_dicts() == \
        [{"id": 2, "path": "/p/2"}]
    t.delete(where=t.name != "n1")  # the issue-8 trap: t.name is the column, not a string
    assert t.select(t.name).collect()["name"] == ["n1"]
    # the table's own name and path
    assert t._name == "dir_less" and t._path == "dir_less"
    md = t.get_metadata()
    assert md["name"] == "dir_less" and md["path"] == "dir_less" and md["kind"] == "table"
    assert md["columns"]["name"]["type_"] == "String" and md["indexes"] == {}
    db.create_dir("d")
    u = db.create_table("d.photos", {"x": pxl.Int})
    assert u._name == "photos" and u.get_metadata()["path"] == "d.photos"
    # a table without such a column: t.name is a missing column, not a string
    assert not hasattr(u, "name")
    with pytest.raises(AttributeError, match="no column 'name'"):
        u.name  # noqa: B018
    # a condition that is not an expression is refused, whatever it came from
    with pytest.raises(SchemaError, match="takes a condition"):
        u.where(True)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="takes a condition"):
        u.delete(where=u._name != "x")  # type: ignore[arg-type]
    # names of methods a user calls stay refused
    for bad in ("insert", "select", "where", "cursor", "tail", "add_btree_index"):
        with pytest.raises(SchemaError, match=f"t.{bad}"):
            u.add_column(**{bad: pxl.Int})


def test_a_replaced_tables_handle_is_another_table(db):
    old = db.create_table("r", {"x": pxl.Int})
    old.insert(x=1)
    same = db.get_table("r")
    assert same == old and hash(same) == hash(old)
    new = db.create_table("r", {"y": pxl.String}, if_exists="replace")
    assert new != old and db.get_table("r") == new and hash(new) != hash(old)
    for use in (old.count, old.collect, lambda: old.insert(x=2), lambda: old.x):
        with pytest.raises(NotFoundError, match="dropped, and another table of that name"):
            use()
    with pytest.raises(NotFoundError, match="dropped"):
        db.drop_table(old)
    assert db.list_tables() == ["r"] and new.count() == 0
    assert "(dropped)" in repr(old)


def test_resultset_indexing_errors(t):
    rs = t.select(t.c1, t.c2).limit(3).collect()
    assert rs[0, "c2"] == 0 and rs[1, 1] == 1 and rs[2, 0] == "s2"
    with pytest.raises(SchemaError, match=r"rs\[row number, column name or number\]"):
        rs["c2", 0]  # type: ignore[index]
    with pytest.raises(SchemaError, match="rs\\[row number"):
        rs[0, 0, 0]  # type: ignore[index]
    with pytest.raises(SchemaError, match="a ResultSet takes"):
        rs[1.5]  # type: ignore[index]
    with pytest.raises(NotFoundError, match="no column 'zz'"):
        rs[0, "zz"]


def test_explain_and_the_plan_twins(t, capsys):
    q = t.where((t.c2 > 3) & is_even(t.c2)).select(t.c1, v=counted(t.c2)).order_by(t.c3)
    p = q.plan()
    assert q.collect_sql() == (p.sql, p.params) and p.params[0] == 3
    assert q.count_sql() is None  # is_even() needs Python: count() streams the rows
    sql_only = t.where(t.c2 > 3).limit(5)
    assert sql_only.count_sql()[0].startswith("SELECT count(*) FROM (SELECT")
    assert sql_only.count() == 5
    assert "WHERE (t_1.c2 > ?)" in p.sql and "ORDER BY t_1.c3 ASC NULLS LAST" in p.sql
    text = q._explain()
    assert text.startswith("Query on 't'") and "SQL: SELECT" in text and "SCAN t_1" in text
    assert "In Python:" in text and "is_even" in text and "counted" in text
    t.select(t.c1, t.c2 + 1).where(t.c1 == "s1").explain()
    assert "In Python: nothing" in capsys.readouterr().out
    # the statement the plan names is the one collect() runs
    seen: list[str] = []

    def trace(cursor, sql, bindings):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return True

    conn = t._conn.db.sqlite
    conn.exec_trace = trace
    try:
        q.collect()
    finally:
        conn.exec_trace = None
    assert p.sql in seen
    assert [s for s in seen if "FROM t_" in s] == [p.sql]


def test_query_repr_and_schema(t, db):
    other = db.create_table("o", {"c2": pxl.Int})
    q = t.join(other, on=t.c2).where(t.c2 > 1).group_by(t.c1).select(t.c1, n=pxlf.count(t.c2)) \
        .order_by(t.c1).limit(3, offset=1)
    text = repr(q)
    for part in ("table 't'", "inner join 'o' on c2 == c2", "where c2 > 1", "group by c1",
                 "select c1=c1, n=count(c2)", "order by c1", "limit 3", "offset 1"):
        assert part in text, part
    assert q.schema == {"c1": pxl.String, "n": pxl.Int}
    assert "sample(n=3, n_per_stratum=None" in repr(t.sample(n=3, seed=1))


def test_select_and_where_are_checked(t):
    rs = t.select(t.c2, t.c2, two=2, lst=[1, 2]).limit(1).collect()
    assert rs.names == ["c2", "c2_1", "two", "lst"] and rs[0] == {"c2": 0, "c2_1": 0, "two": 2,
                                                                  "lst": [1, 2]}
    with pytest.raises(SchemaError, match="invalid output name"):
        t.select(**{"c2-1": t.c2})
    with pytest.raises(SchemaError, match="takes a condition"):
        t.where(15)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="needs a condition"):
        t.where(t.c1)
    with pytest.raises(SchemaError, match="takes expressions"):
        t.order_by(datetime.datetime.now())  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="True or False"):
        t.order_by(t.c1, asc="no")  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="select\\(\\) item 0: cannot use a"):
        t.select(datetime.datetime.now)
    q = t.select(t.c2)
    t.drop_column("c3")
    assert len(q.collect()) == 100
    r = t.select(t.c1)
    t.drop_column("c1")
    with pytest.raises(NotFoundError, match="'c1' no longer exists"):
        r.collect()


def test_cursors_share_a_connection_with_other_threads(t):
    """Rows stream in batches read under the connection's lock: cursors in some threads, while
    others run long statements (a group_by's first step sorts every row) and write on the same
    connection (apsw refuses a connection busy in another thread)."""
    n = 60_000
    t.insert([{"c1": "x", "c2": 1000 + i, "c3": float(i % 5000)} for i in range(n)])
    seen: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def read() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(2):
                with t.select(t.c2).cursor() as cur:
                    seen.append(sum(1 for _ in cur))
        except BaseException as e:  # reported below
            errors.append(e)

    def heavy() -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(4):
                grouped = t.group_by(t.c3).select(t.c3, n=pxlf.count(t.c2)).collect()
                assert len(grouped) >= 5000
                t.insert(c1="w", c2=-1 - i, c3=-1.0)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(3)] + [
        threading.Thread(target=heavy) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors[:3]
    assert len(seen) == 6 and all(100 + n <= k <= 100 + n + 8 for k in seen)
    assert t.count() == 100 + n + 8


def test_writing_while_a_cursor_is_open(t):
    with t.select(t.c2).cursor() as cur:
        it = iter(cur)
        assert next(it)["c2"] == 0
        t.insert(c1="x", c2=500, c3=1.0)  # no deadlock, no error; committed at once
        t.update({"c3": 9.0}, where=t.c2 == 1)
        rest = [r["c2"] for r in it]
    assert rest[:3] == [1, 2, 3] and t.count() == 101
    assert t.where(t.c2 == 1).select(t.c3).collect()["c3"] == [9.0]


@pxl.udf
def inverse(x: int) -> float:
    return 1 / x


def test_failed_cells_bring_their_errors(db):
    t = db.create_table("e", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(4)])
    t.add_computed_column(inv=inverse(t.n), on_error="ignore")  # row n=0 fails
    rs = t.select(t.n, t.inv).collect()
    assert rs["inv"][0] is None and "ZeroDivisionError" in repr(rs)
    assert rs._errors == {(0, 1): ("ZeroDivisionError", "division by zero")}
    assert t.tail(4)._errors == {(0, 1): ("ZeroDivisionError", "division by zero")}
    assert t.where(t.n < 2).select(t.inv, twice=counted(t.n)).collect()._errors == {
        (0, 0): ("ZeroDivisionError", "division by zero")}  # through the Python path too
    rows = list(t.select(t.inv, t.n).cursor())
    assert rows[0].errors == {"inv": {"errortype": "ZeroDivisionError",
                                      "errormsg": "division by zero"}}
    assert rows[1].errors == {}


def test_an_expressions_own_decoder_never_sees_none():
    """An expression may decode its SQL value itself (``decoder()``, for values that are not
    None): a query keeps None as None around it."""
    from pxlite.exprs import Literal
    from pxlite.uda import value_decoder

    class Flag(Literal):
        def decoder(self):  # type: ignore[no-untyped-def]
            return bool

    d = value_decoder(Flag(True))
    assert d is not None and d(None) is None and d(0) is False and d(1) is True


def test_row_decoder_compiles_one_function_per_query():
    """A row's output values: a plain slice when nothing is decoded, else one compiled
    function; None is never handed to a decoder; a crafted cell names its row."""
    from pxlite import queryplan
    from pxlite.errors import SchemaError
    from pxlite.queryrun import row_decoder

    assert row_decoder([(1, None), (2, None)])((7, "a", "b", "c")) == ("a", "b")
    seen = []

    def flag(v):
        seen.append(v)
        return bool(v)

    dec = row_decoder([(3, None), (1, flag), (2, None)])
    assert dec((7, 1, "x", "y")) == ("y", True, "x")
    assert dec((8, None, "x", None)) == (None, None, "x") and seen == [1]

    def bad(v):
        raise queryplan.BadCell("c", "not JSON")

    with pytest.raises(SchemaError, match="column 'c', row 9: not JSON"):
        row_decoder([(1, bad)])((9, "{"))
    assert row_decoder([])((1, 2)) == ()
