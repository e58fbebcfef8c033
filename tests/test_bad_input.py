"""Every bad input is a pxlite error: extreme arguments, a full disk, and database files that
pxlite did not write (damaged, or crafted by someone else) never surface as a raw exception."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import ConfigError, DatabaseError, PxliteError, SchemaError

ROOT = Path(__file__).resolve().parents[1]


def _raw(db: pxl.Connection, table: str, sql_of: str, value: object, rowid: int = 1) -> None:
    """Write a value straight into a cell, as a crafted file would hold it."""
    meta = catalog.load_table(db.db, table)
    col = meta.column(sql_of)
    with db.db.transaction():
        db.db.execute(f"UPDATE {meta.sql} SET {col.sql} = ? WHERE _rowid = ?", (value, rowid))


def test_a_full_disk_is_a_database_error_and_nothing_is_committed(tmp_path):
    db = pxl.connect(tmp_path / "full.pxl")
    t = db.create_table("t", {"s": pxl.String})
    t.insert(s="kept")
    # SQLite reports SQLITE_FULL when the file may grow no further: a real full-disk error
    db.db.sqlite.pragma("max_page_count", db.db.sqlite.pragma("page_count") + 2)
    with pytest.raises(DatabaseError, match="full"):
        for _ in range(50):
            t.insert([{"s": "x" * 4000} for _ in range(20)])
    db.db.sqlite.pragma("max_page_count", 1 << 30)
    assert t.where(t.s == "kept").count() == 1


def test_nul_in_paths_and_destinations(tmp_path):
    with pytest.raises(DatabaseError, match="NUL"):
        pxl.connect(str(tmp_path / "a\x00b.pxl"))
    db = pxl.connect(tmp_path / "n.pxl")
    t = db.create_table("t", {"n": pxl.Int, "image": pxl.Image})
    for dest in ("file:///data/x%00/", str(tmp_path / "a\x00b")):
        with pytest.raises(ConfigError, match="NUL"):
            t.add_computed_column(r=t.image.rotate(90), destination=dest)


def test_extreme_query_arguments(tmp_path):
    db = pxl.connect(tmp_path / "q.pxl")
    t = db.create_table("t", {"n": pxl.Int, "s": pxl.String})
    t.insert([{"n": i, "s": str(i)} for i in range(200)])
    with pytest.raises(SchemaError, match="2\\*\\*63"):
        t.limit(2**70)
    assert len(t.limit(2**63 - 1).collect()) == 200
    # more values than SQLite takes parameters: bound as one JSON array
    assert t.where(t.n.isin(list(range(0, 100_000, 2)))).count() == 100
    assert t.where(t.s.isin([str(i) for i in range(100_000)])).count() == 200
    t.delete(where=t.n.isin(list(range(100, 100_000))))
    assert t.count() == 100


def test_names_are_at_most_63_characters(tmp_path):
    db = pxl.connect(tmp_path / "l.pxl")
    db.create_table("t", {"c" * 63: pxl.Int})
    for name in ("c" * 64, "c" * 1_000_000):
        with pytest.raises(SchemaError, match="at most 63") as e:
            db.create_table("u", {name: pxl.Int})
        assert len(str(e.value)) < 300  # a megabyte name is not echoed back
        with pytest.raises(SchemaError, match="at most 63"):
            db.create_table(name, {"x": pxl.Int})


def test_more_columns_than_sqlite_allows_is_refused_with_the_limit(tmp_path):
    db = pxl.connect(tmp_path / "c.pxl")
    t = db.create_table("t", {f"c{i}": pxl.Int for i in range(600)})
    limit = (db.db.max_columns() - 3) // 3  # 3 SQL columns each; the undo log has 2 more
    with pytest.raises(SchemaError, match=f"most a table can have here \\({limit}"):
        t.add_column(**{f"d{i}": pxl.Int for i in range(limit)})
    assert len(t.columns()) == 600  # all or nothing


def test_a_file_with_pxlites_id_but_no_catalog(tmp_path):
    p = tmp_path / "fake.pxl"
    con = apsw.Connection(str(p))
    con.pragma("application_id", 0x50584C54)
    con.execute("CREATE TABLE other(a)")
    con.close()
    with pytest.raises(DatabaseError, match="no pxlite catalog"):
        pxl.connect(p)


@pytest.mark.parametrize("column,value,what", [
    ("n", "abc", "not an integer"),
    ("f", "1.5x", "is not a number"),
    ("ts", "not a time", "cannot be read as a datetime"),
    ("j", "{not json", "cannot be read as a Json"),
    ("j", "[" * 100_000 + "]" * 100_000, "cannot be read as a Json"),
    ("s", b"\x00\xff", "is not a string"),
])
def test_crafted_cells_are_schema_errors_naming_column_and_row(tmp_path, column, value, what):
    db = pxl.connect(tmp_path / "x.pxl")
    t = db.create_table("t", {"n": pxl.Int, "f": pxl.Float, "ts": pxl.Timestamp, "j": pxl.Json,
                              "s": pxl.String})
    t.insert([{"n": 1}, {"n": 2}])
    _raw(db, "t", column, value, rowid=2)
    with pytest.raises(SchemaError) as e:
        t.select(t[column]).collect().to_dicts()
    assert f"column {column!r}, row 2" in str(e.value) and what in str(e.value), str(e.value)
    assert t.where(t.n == 1).select(t.n).collect()[0]["n"] == 1  # the rest still reads


def test_a_crafted_column_definition_is_a_clear_error(tmp_path):
    p = tmp_path / "d.pxl"
    db = pxl.connect(p)
    t = db.create_table("t", {"n": pxl.Int})
    t.add_computed_column(m=t.n + 1)
    for bad in ("{not json", "[" * 50_000, json.dumps({"col": 99}), json.dumps([1, 2])):
        with db.db.transaction():
            db.db.execute("UPDATE px_columns SET expr = ? WHERE name = 'm'", (bad,))
        t = db.get_table("t")
        assert "cannot be read" in repr(t)
        with pytest.raises(PxliteError, match="definition of computed column 'm'"):
            t.insert(n=5)
        assert t.select(t.n).collect()["n"] == []  # nothing inserted; the table still reads


def test_pxlite_show_of_a_crafted_database_is_one_line(tmp_path):
    p = tmp_path / "s.pxl"
    db = pxl.connect(p)
    t = db.create_table("t", {"n": pxl.Int, "ts": pxl.Timestamp})
    t.insert(n=1)
    _raw(db, "t", "ts", "garbage")
    db.close()
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "show", "t", "--db", str(p)],
                         capture_output=True, text=True,
                         env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")}, cwd=ROOT)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("pxlite: error:") and "column 'ts', row 1" in out.stderr


_CELLS = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                   st.floats(allow_nan=False), st.text(max_size=30), st.binary(max_size=12),
                   st.sampled_from(["2024-01-01T00:00:00", "[1, 2]", '{"a": 1}', "nan", "1e999",
                                    "file:///nowhere/x.jpg", "media:../../etc/passwd", ""]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({c: _CELLS for c in ("n", "f", "b", "ts", "j", "s", "im")}))
def test_any_stored_value_reads_back_or_is_a_pxlite_error(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("crafted") / "h.pxl"
    db = pxl.connect(path)
    t = db.create_table("t", {"n": pxl.Int, "f": pxl.Float, "b": pxl.Bool, "ts": pxl.Timestamp,
                              "j": pxl.Json, "s": pxl.String, "im": pxl.Image})
    t.insert(n=0)
    for column, value in values.items():
        _raw(db, "t", column, value)
    import datetime

    from PIL import Image

    expect = {"n": int, "f": float, "b": bool, "ts": datetime.datetime, "s": str,
              "im": Image.Image, "j": (dict, list, str, int, float, bool)}
    for column in values:
        try:
            v = t.select(t[column]).collect().to_dicts()[0][column]
            if column == "im" and v is not None:
                v.load()
        except PxliteError:
            continue
        assert v is None or isinstance(v, expect[column]), (column, v)  # never a wrong type
    db.close()
