"""Directories, tables, columns and names: the catalog's behaviour and its bad-input errors."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError


def test_dirs_and_tables(db):
    db.create_dir("demo")
    db.create_dir("demo", if_exists="ignore")
    db.create_dir("demo.sub")
    t = db.create_table("demo.media", {"image": pxl.Image, "label": pxl.String})
    db.create_table("demo.sub.other", {"n": pxl.Required[pxl.Int]})
    assert db.list_tables() == ["demo.media", "demo.sub.other"]
    assert db.list_tables("demo.sub") == ["demo.sub.other"]
    assert db.list_dirs() == ["demo", "demo.sub"]
    assert db.get_table("demo.media").columns() == ["image", "label"]
    assert t._name == "media" and t._path == "demo.media"
    with pytest.raises(SchemaError, match="not empty"):
        db.drop_dir("demo")
    db.drop_table("demo.media")
    assert db.list_tables() == ["demo.sub.other"]
    db.drop_dir("demo", force=True)
    assert db.list_tables() == [] and db.list_dirs() == []


def test_if_exists(db):
    t = db.create_table("t", {"a": pxl.Int})
    t.insert(a=1)
    with pytest.raises(AlreadyExistsError, match="if_exists"):
        db.create_table("t", {"a": pxl.Int})
    assert db.create_table("t", {"b": pxl.Int}, if_exists="ignore").columns() == ["a"]
    t2 = db.create_table("t", {"b": pxl.Int}, if_exists="replace")
    assert t2.columns() == ["b"] and t2.count() == 0
    with pytest.raises(SchemaError, match="if_exists"):
        db.create_table("t", {"b": pxl.Int}, if_exists="overwrite")
    db.create_dir("d")
    with pytest.raises(AlreadyExistsError, match="directory"):
        db.create_table("d", {"a": pxl.Int})


def test_missing_things(db):
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        db.get_table("nope")
    with pytest.raises(NotFoundError, match="directory 'nodir'"):
        db.create_table("nodir.t", {"a": pxl.Int})
    with pytest.raises(NotFoundError):
        db.drop_table("nope")
    db.drop_table("nope", if_not_exists="ignore")
    with pytest.raises(NotFoundError):
        db.drop_dir("nodir")
    t = db.create_table("t", {"a": pxl.Int})
    with pytest.raises(AttributeError, match="no column 'b'"):
        t.b  # noqa: B018
    with pytest.raises(NotFoundError, match="no column 'b'"):
        t["b"]
    with pytest.raises(NotFoundError, match="no column"):
        t.drop_column("b")
    with pytest.raises(NotFoundError):
        t.insert(b=1)


@pytest.mark.parametrize("bad", ["a; DROP TABLE x", "", "1abc", "a-b", "a b", "ａ", "naïve",  # noqa: RUF001 (hostile unicode on purpose)
                                 "a\u200bb", "rowid", "x.y"])
def test_bad_column_names(db, bad):
    with pytest.raises(SchemaError, match="name"):
        db.create_table("t", {bad: pxl.Int})
    assert db.list_tables() == []


@pytest.mark.parametrize("bad", ["a; DROP TABLE x", "", "a..b", ".a", "a.", "t'--", "ｔ"])  # noqa: RUF001 (a fullwidth t on purpose)
def test_bad_table_paths(db, bad):
    with pytest.raises(SchemaError, match="path"):
        db.create_table(bad, {"a": pxl.Int})
    with pytest.raises(SchemaError, match="path"):
        db.create_dir(bad)


def test_injection_names_never_reach_sql(db):
    t = db.create_table("t", {"a": pxl.String})
    t.insert(a="x'); DROP TABLE px_tables; --")
    assert t.select(t.a).collect()["a"] == ["x'); DROP TABLE px_tables; --"]
    assert t.where(t.a == "'; DELETE FROM t_1; --").count() == 0
    assert db.list_tables() == ["t"]


def test_add_drop_rename_column(db):
    t = db.create_table("t", {"a": pxl.Int})
    t.insert([{"a": 1}, {"a": 2}])
    t.add_column(b=pxl.String)
    assert t.select(t.a, t.b).collect().to_dicts() == [{"a": 1, "b": None}, {"a": 2, "b": None}]
    with pytest.raises(AlreadyExistsError):
        t.add_column(b=pxl.Int)
    with pytest.raises(SchemaError, match="Required"):
        t.add_column(c=pxl.Required[pxl.Int])
    with pytest.raises(SchemaError, match="not a column type"):
        t.add_column(c=complex)
    t.rename_column("b", "label")
    assert t.columns() == ["a", "label"]
    t.update({"label": "x"})
    t.drop_column("a")
    assert t.collect().to_dicts() == [{"label": "x"}, {"label": "x"}]
    with pytest.raises(AlreadyExistsError):
        t.rename_column("label", "label")


def test_describe_and_repr(db, capsys):
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Required[pxl.Int], "j": pxl.Json})
    assert t.describe() is None  # printed once, not also echoed by a REPL
    text = capsys.readouterr().out.strip()
    assert "Required[Int]" in text and "image" in text and "Image" in text
    assert repr(t) == text
    assert text.startswith("Table 't' (0 rows)\n")
    assert "(default: the media folder)\n" in text
    assert " inserted paths and URLs stay where they are\n" in text
    t.add_computed_column(r=t.image.rotate(90))
    assert "(default: the media folder)" in repr(t)
    db.config["output_media_dest"] = str(db.path.parent / "out")
    assert "/out/ (output_media_dest from connect(config=))" in repr(t), repr(t)
    db.drop_table("t")
    assert "dropped" in repr(t) and "dropped" in t._repr_html_()
    with pytest.raises(NotFoundError):
        t.count()


def test_all_types_declared(db):
    schema = {"i": pxl.Int, "f": pxl.Float, "s": pxl.String, "b": pxl.Bool, "ts": pxl.Timestamp,
              "j": pxl.Json, "im": pxl.Image, "v": pxl.Video, "au": pxl.Audio, "d": pxl.Document}
    t = db.create_table("t", schema)
    rows = t._describe_rows()
    assert [r.type for r in rows] == ["Int", "Float", "String", "Bool", "Timestamp", "Json",
                                      "Image", "Video", "Audio", "Document"]


def test_module_level_default_database(pxlite_home):
    pxl.create_dir("demo", if_exists="ignore")
    t = pxl.create_table("demo.t", {"a": pxl.Int})
    t.insert(a=1)
    assert pxl.list_tables() == ["demo.t"]
    assert pxl.get_table("demo.t").count() == 1
    assert (pxlite_home / "pxlite.db").is_file()
    pxl.drop_table("demo.t")
    pxl.drop_dir("demo")
    assert pxl.list_dirs() == []


def test_reopen_keeps_schema(tmp_path):
    p = tmp_path / "x.pxl"
    with pxl.connect(p) as db:
        db.create_table("t", {"a": pxl.Int, "im": pxl.Image}).insert(a=5)
    with pxl.connect(p) as db:
        t = db.get_table("t")
        assert t.collect().to_dicts() == [{"a": 5, "im": None}]
