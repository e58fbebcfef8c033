"""Tabular imports (SPEC 12): CSV (pyarrow and the csv module), Parquet, JSON records and
lines, pandas, lists of dicts; create_table(source=...) with inferred types and
schema_overrides; errors name the file, the row and the column; a failed import leaves
nothing behind."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import pxlite as pxl
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError
from pxlite.io import readers, sources

CSV = ("id,Full Name,score,ok,when,2nd,count\n"
       "1,Ann,1.5,true,2024-01-02T03:04:05,x,7\n"
       "2,Bob,,false,2024-02-03T04:05:06,,8\n"
       "3,\"Cy, Jr.\",2.25,true,,z,9\n")


@pytest.fixture(params=["pyarrow", "csv module"])
def csv_reader(request, monkeypatch):
    """Every CSV test runs with pyarrow and with the csv module (pyarrow not installed)."""
    if request.param == "csv module":
        monkeypatch.setattr(sources, "pyarrow_installed", lambda: False)
    return request.param


def test_csv_types_and_names(db, tmp_path, csv_reader):
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    t = db.create_table("people", source=path)
    types = {c: str(t[c].col.type) for c in t.columns()}
    assert types == {"id": "Int", "Full_Name": "String", "score": "Float", "ok": "Bool",
                     "when": "Timestamp", "c_2nd": "String", "count_": "Int"}
    rows = t.order_by(t.id).collect()
    assert rows[0] == {"id": 1, "Full_Name": "Ann", "score": 1.5, "ok": True,
                       "when": dt.datetime(2024, 1, 2, 3, 4, 5), "c_2nd": "x", "count_": 7}
    assert rows[1]["score"] is None and rows[1]["c_2nd"] is None  # empty fields are None
    assert rows[2]["Full_Name"] == "Cy, Jr." and rows[2]["when"] is None
    assert t.where(t.when > dt.datetime(2024, 1, 15)).count() == 1  # stored as insert stores


def test_csv_widening_beyond_the_first_block(db, tmp_path, csv_reader, monkeypatch):
    """A column is Int only if every value is: a float or a word far down the file widens it."""
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(readers, "BATCH_ROWS", 100)
    lines = ["a,b,c"] + [f"{i},{i},{i}" for i in range(3000)] + ["1.5,word,9"]
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    t = pxl.io.import_csv("w", tmp_path / "w.csv", db=db)
    assert [str(t[c].col.type) for c in ("a", "b", "c")] == ["Float", "String", "Int"]
    assert t.count() == 3001
    assert t.where(t.b == "word").collect()[0]["a"] == 1.5


def test_csv_options_and_refusals(db, tmp_path, csv_reader):
    (tmp_path / "semi.csv").write_text("a;b\n1;x\n")
    t = pxl.io.import_csv("semi", tmp_path / "semi.csv", delimiter=";", db=db)
    assert t.collect()[0] == {"a": 1, "b": "x"}
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SchemaError, match="empty"):
        pxl.io.import_csv("e", tmp_path / "empty.csv", db=db)
    with pytest.raises(NotFoundError, match="no file or folder"):
        pxl.io.import_csv("e", tmp_path / "missing.csv", db=db)
    with pytest.raises(SchemaError, match="unknown option"):
        pxl.io.import_csv("e", tmp_path / "semi.csv", quotechar="'", db=db)
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(SchemaError, match="more than once"):
        pxl.io.import_csv("e", tmp_path / "dup.csv", db=db)
    with pytest.raises(NotFoundError, match="schema_overrides names 'zz'"):
        pxl.io.import_csv("e", tmp_path / "semi.csv", schema_overrides={"zz": pxl.Int},
                          delimiter=";", db=db)
    assert db.list_tables() == ["semi"]


def test_type_errors_name_file_row_and_column(db, tmp_path, csv_reader):
    path = tmp_path / "bad.csv"
    path.write_text("id,n\n1,5\n2,6\n3,seven\n")
    with pytest.raises(SchemaError, match=r"bad\.csv, .*(row 3|after row).*"):
        pxl.io.import_csv("bad", path, schema_overrides={"n": pxl.Int}, db=db)
    assert db.list_tables() == []  # the failed import left no table
    t = db.create_table("t", {"id": pxl.Int, "n": pxl.Int})
    with pytest.raises(SchemaError, match=r"bad\.csv"):
        pxl.io.import_csv(t, path)
    assert t.count() == 0  # nor rows


def test_paths_become_a_media_column(db, tmp_path, jpegs, csv_reader):
    path = tmp_path / "imgs.csv"
    path.write_text("label,img\n" + "".join(f"p{i},{p}\n" for i, p in enumerate(jpegs[:3])))
    t = pxl.io.import_csv("imgs", path, schema_overrides={"img": pxl.Image}, db=db)
    assert str(t.img.col.type) == "Image"
    assert t.select(w=t.img.width).collect()["w"] == [64, 64, 64]
    assert t.select(t.img.fileurl).collect()["img_fileurl"][0] == jpegs[0].as_uri()
    # a path that is no image: the row names the file, line and column
    path.write_text(f"label,img\np0,{jpegs[0]}\nbad,{path}\n")
    with pytest.raises(SchemaError, match=r"imgs\.csv, row 2 \(line 3\), column 'img'"):
        pxl.io.import_csv("imgs2", path, schema_overrides={"img": pxl.Image}, db=db)
    assert "imgs2" not in db.list_tables()
    t2 = pxl.io.import_csv("imgs2", path, schema_overrides={"img": pxl.Image},
                           on_error="ignore", db=db)
    assert t2.where(t2.img.errortype != None).count() == 1  # noqa: E711


def test_required_key_missing_names_row(db, tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("id,v\n1,a\n,b\n")
    with pytest.raises(SchemaError, match=r"k\.csv, row 2 \(line 3\): column 'id' is empty"):
        pxl.io.import_csv("k", path, primary_key="id", db=db)
    assert db.list_tables() == []


def test_if_exists(db, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n2\n")
    t = pxl.io.import_csv("a", path, db=db)
    with pytest.raises(AlreadyExistsError):
        pxl.io.import_csv("a", path, db=db)
    assert pxl.io.import_csv("a", path, if_exists="ignore", db=db).count() == 2
    path.write_text("y\n5\n")
    t = pxl.io.import_csv("a", path, if_exists="replace", db=db)
    assert t.columns() == ["y"] and t.count() == 1
    with pytest.raises(SchemaError, match="a schema or a source, not both"):
        db.create_table("b", {"x": pxl.Int}, source=path)
    with pytest.raises(SchemaError, match="go with source="):
        db.create_table("b", {"x": pxl.Int}, schema_overrides={"x": pxl.Int})


def test_json_records_and_lines(db, tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "JSON_CHUNK_CHARS", 7)  # records cut across reads
    recs = [{"id": 1, "meta": {"a": [1, 2]}, "tags": ["x"], "at": "2024-01-02T03:04:05+00:00",
             "v": 1, "s": "plain"},
            {"id": 2, "meta": None, "tags": [], "at": "2024-01-03T00:00:00+00:00", "v": 2.5,
             "s": "2024-01-01", "extra": True},
            {"id": 3, "s": "text", "meta": {"b": "ü"}}]
    (tmp_path / "r.json").write_text(json.dumps(recs, indent=2, ensure_ascii=False))
    t = pxl.io.import_json("r", tmp_path / "r.json", db=db)
    assert {c: str(t[c].col.type) for c in t.columns()} == {
        "id": "Int", "meta": "Json", "tags": "Json", "at": "Timestamp", "v": "Float",
        "s": "String", "extra": "Bool"}
    rows = t.order_by(t.id).collect()
    assert rows[0]["meta"] == {"a": [1, 2]} and rows[2]["meta"] == {"b": "ü"}
    assert rows[0]["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert rows[1]["extra"] is True and rows[0]["extra"] is None
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
    t2 = pxl.io.import_json("r2", tmp_path / "r.jsonl", db=db)
    assert t2.order_by(t2.id).collect().to_dicts() == rows.to_dicts()
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(SchemaError, match=r"bad\.jsonl, line 2: not JSON"):
        pxl.io.import_json("bad", tmp_path / "bad.jsonl", db=db)
    (tmp_path / "bad.json").write_text('[{"a": 1},\n {"a": 2} {"a": 3}]')
    with pytest.raises(SchemaError, match=r"bad\.json, after record 2: expected ',' or ']'"):
        pxl.io.import_json("bad", tmp_path / "bad.json", db=db)
    (tmp_path / "scalars.json").write_text("[1, 2]")
    with pytest.raises(SchemaError, match=r"record 1: expected an object"):
        pxl.io.import_json("bad", tmp_path / "scalars.json", db=db)
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(SchemaError, match="holds no records"):
        pxl.io.import_json("bad", tmp_path / "empty.json", db=db)
    assert sorted(db.list_tables()) == ["r", "r2"]


def test_parquet(db, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": pa.array([1, 2, 3], pa.int32()),
                      "f": [0.5, None, 2.0], "b": [True, False, None],
                      "ts": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 3,
                                     pa.timestamp("ms", tz="UTC")),
                      "d": pa.array([dt.date(2024, 5, 6)] * 3, pa.date32()),
                      "l": [[1, 2], [], None], "st": [{"k": 1}, {"k": 2}, None],
                      "cat": pa.array(["a", "b", "a"]).dictionary_encode()})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    t = pxl.io.import_parquet("pq", parquet_path=tmp_path / "t.parquet", db=db)
    assert {c: str(t[c].col.type) for c in t.columns()} == {
        "id": "Int", "f": "Float", "b": "Bool", "ts": "Timestamp", "d": "Timestamp",
        "l": "Json", "st": "Json", "cat": "String"}
    rows = t.order_by(t.id).collect()
    assert rows[0] == {"id": 1, "f": 0.5, "b": True,
                       "ts": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                       "d": dt.datetime(2024, 5, 6), "l": [1, 2], "st": {"k": 1}, "cat": "a"}
    assert rows[2]["st"] is None and rows[1]["f"] is None
    # a folder of parts
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "a.parquet")
    pq.write_table(table.slice(2), tmp_path / "parts" / "b.parquet")
    assert pxl.io.import_parquet("parts", parquet_path=tmp_path / "parts", db=db).count() == 3
    pq.write_table(pa.table({"x": [float("nan")]}), tmp_path / "nan.parquet")
    with pytest.raises(SchemaError, match=r"nan\.parquet, row 1, column 'x': NaN"):
        pxl.io.import_parquet("nan", parquet_path=tmp_path / "nan.parquet", db=db)
    (tmp_path / "none").mkdir()
    with pytest.raises(NotFoundError, match=r"holds no \.parquet files"):
        pxl.io.import_parquet("x", parquet_path=tmp_path / "none", db=db)


def test_pandas_and_rows(db):
    import pandas as pd

    df = pd.DataFrame({"id": [1, 2], "x": [0.5, float("nan")], "ok": [True, False],
                       "at": pd.to_datetime(["2024-01-01", None]), "obj": [{"a": 1}, None],
                       "s": ["a", None]})
    t = pxl.io.import_pandas("df", df, primary_key="id", db=db)
    assert {c: str(t[c].col.type) for c in t.columns()} == {
        "id": "Required[Int]", "x": "Float", "ok": "Bool", "at": "Timestamp", "obj": "Json",
        "s": "String"}
    rows = t.order_by(t.id).collect()
    assert rows[0] == {"id": 1, "x": 0.5, "ok": True, "at": dt.datetime(2024, 1, 1),
                       "obj": {"a": 1}, "s": "a"}
    assert rows[1]["x"] is None and rows[1]["at"] is None and rows[1]["s"] is None
    r = db.create_table("rows", source=[{"a": 1, "b": "x"}, {"a": 2, "c": [1]}])
    assert r.order_by(r.a).collect().to_dicts() == [{"a": 1, "b": "x", "c": None},
                                                    {"a": 2, "b": None, "c": [1]}]
    with pytest.raises(SchemaError, match="holds object values"):
        db.create_table("bad", source=[{"a": object()}])
    with pytest.raises(SchemaError, match="source must be a file path"):
        db.create_table("bad", source=42)
    with pytest.raises(SchemaError, match="source_format must be one of"):
        db.create_table("bad", source=[{"a": 1}], source_format="xml")


def test_default_database_and_existing_table_refusals(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("x,y\n1,2\n")
    t = pxl.create_table("a", source=path, primary_key=["x"])  # the default database
    assert pxl.get_table("a").count() == 1 and t.columns() == ["x", "y"]
    other = pxl.create_table("b", {"x": pxl.Int})
    with pytest.raises(SchemaError, match=r"\['y'\] are not input columns"):
        pxl.io.import_csv(other, path)
    with pytest.raises(SchemaError, match="leave primary_key= out"):
        pxl.io.import_csv(t, path, primary_key="x")
    with pytest.raises(SchemaError, match="expected a table path or a Table"):
        pxl.io.import_csv(42, path)  # type: ignore[arg-type]


def test_parquet_needs_pyarrow(db, tmp_path, monkeypatch):
    """Without pyarrow (an optional extra), Parquet is refused naming the extra; CSV still
    imports through the csv module."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(pxl.ConfigError, match=r"pip install 'pxlite\[parquet\]'"):
        pxl.io.import_parquet("x", parquet_path=tmp_path / "x.parquet", db=db)
    t = db.create_table("e", {"a": pxl.Int})
    with pytest.raises(pxl.ConfigError, match="export_parquet needs pyarrow"):
        pxl.io.export_parquet(t, tmp_path / "e.parquet")
    (tmp_path / "x.csv").write_text("a\n1\n")
    assert pxl.io.import_csv("c", tmp_path / "x.csv", db=db).count() == 1


@pytest.mark.parametrize("media", [False, True])
def test_progress_bar_counts_rows(db, tmp_path, monkeypatch, jpegs, media):
    """Both ways in (pyarrow's stored values straight to SQLite; rows through insert()) count
    the rows on the project's progress bar."""
    from pxlite.io import tables

    counted: list = []

    class Bar:
        def update(self, n):
            counted.append(n)

        def close(self):
            counted.append("closed")

    monkeypatch.setattr(tables, "progress_bar", lambda count, desc, settings, unit: (
        counted.append((count(), desc, unit)), Bar())[1])
    monkeypatch.setattr(readers, "BATCH_ROWS", 2)
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 64)
    path = tmp_path / "p.csv"
    path.write_text("n,img\n" + "".join(f"{i},{jpegs[i % 2]}\n" for i in range(5)))
    overrides = {"img": pxl.Image} if media else None
    t = pxl.io.import_csv("p", path, schema_overrides=overrides, db=db)
    assert t.count() == 5
    assert counted[0] == (None, "p: import", "row") and counted[-1] == "closed"
    assert sum(n for n in counted[1:-1]) == 5 and len(counted) > 3


def test_an_import_is_one_insert_version_with_no_row_triggers(db, tmp_path, jpegs, monkeypatch,
                                                              csv_reader):
    """Importing only adds rows: it is recorded as one 'insert' version (reverted like one),
    and arms none of the undo log's row triggers, which would cost SQLite a trigger run per
    imported row (a 1,000,000-row CSV took twice as long)."""
    from pxlite import versions

    monkeypatch.setenv("PXLITE_VERSION_RETENTION_DAYS", "30")  # (tests keep none by default)
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    t = db.create_table("people", source=path)
    (tmp_path / "pics").mkdir()
    for p in jpegs[:3]:
        (tmp_path / "pics" / p.name).write_bytes(p.read_bytes())
    armed: list[int] = []
    real_arm = versions._arm
    monkeypatch.setattr(versions, "_arm", lambda *a: armed.append(a[2]) or real_arm(*a))
    pxl.io.import_csv(t, path)
    files = pxl.io.import_files("pics", tmp_path / "pics", db=db)
    assert armed == [] and files.num_rows == 3
    latest = t.get_versions(1)[0]
    assert (latest["kind"], latest["inserts"], latest["updates"]) == ("insert", 3, 0)
    assert db.get_table("pics").get_versions(1)[0]["kind"] == "insert"
    assert t.count() == 6
    t.revert()
    assert t.count() == 3
