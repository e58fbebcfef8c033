"""Inserting rows: values and their validation, media inputs, on_error, UpdateStatus."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ComputeError, NotFoundError, SchemaError


def test_status_text(db):
    t = db.create_table("t", {"a": pxl.Int})
    s = t.insert([{"a": i} for i in range(5)])
    assert re.fullmatch(r"Inserted 5 rows with 0 errors in \d+\.\d\d s "
                        r"\([\d,]+\.\d\d rows/s\)", str(s))
    assert (s.num_rows, s.num_errors) == (5, 0)
    assert str(t.insert(a=1)).startswith("Inserted 1 row with 0 errors")


@pytest.mark.parametrize("ctype,bad", [
    (pxl.Int, "1"), (pxl.Int, 1.5), (pxl.Int, True), (pxl.Int, 2**70), (pxl.Float, "x"),
    (pxl.Float, float("nan")), (pxl.String, 5), (pxl.String, "a\ud800"), (pxl.Bool, 1),
    (pxl.Timestamp, "yesterday"), (pxl.Json, {1, 2}), (pxl.Json, float("inf")),
    (pxl.Image, 42),
])
def test_wrong_value_types_abort(db, ctype, bad):
    t = db.create_table("t", {"a": ctype, "k": pxl.Int})
    t.insert(k=0)
    with pytest.raises(ComputeError) as ei:
        t.insert([{"k": 1}, {"a": bad, "k": 2}])
    assert ei.value.row == 1 and ei.value.column == "a"
    assert "row 1, column 'a'" in str(ei.value)
    assert t.count() == 1  # nothing of the failed call was written; earlier rows kept


def test_wrong_value_ignore_keeps_error(db):
    t = db.create_table("t", {"a": pxl.Int, "k": pxl.Int})
    s = t.insert([{"a": "x", "k": 1}, {"a": 3, "k": 2}], on_error="ignore")
    assert s.num_errors == 1 and s.num_rows == 2
    rows = t.select(t.k, t.a, t.a.errortype, t.a.errormsg).order_by(t.k).collect().to_dicts()
    assert rows[0]["a"] is None and rows[0]["a_errortype"] == "SchemaError"
    assert "expected an integer" in rows[0]["a_errormsg"]
    assert rows[1] == {"k": 2, "a": 3, "a_errortype": None, "a_errormsg": None}
    assert t.where(t.a.errortype != None).count() == 1  # noqa: E711


def test_required_and_unknown_columns(db):
    t = db.create_table("t", {"a": pxl.Required[pxl.Int], "b": pxl.String})
    with pytest.raises(SchemaError, match=r"'a' .*Required"):
        t.insert(b="x")
    with pytest.raises(ComputeError, match="Required"):
        t.insert([{"a": "bad"}], on_error="ignore")
    with pytest.raises(NotFoundError, match=r"no column.*'c'"):
        t.insert(a=1, c=2)
    with pytest.raises(SchemaError, match="dict"):
        t.insert([1, 2])
    with pytest.raises(SchemaError, match="on_error"):
        t.insert(a=1, on_error="skip")
    with pytest.raises(SchemaError, match="needs rows"):
        t.insert()
    assert t.count() == 0


def test_timestamps_and_json(db):
    t = db.create_table("t", {"ts": pxl.Timestamp, "j": pxl.Json})
    aware = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    t.insert([{"ts": aware, "j": {"a": [1, 2, None], "b": "é"}},
              {"ts": dt.datetime(2020, 1, 1), "j": [1]}])
    got = t.order_by(t.ts).collect()
    assert got["ts"] == [dt.datetime(2020, 1, 1), aware]
    assert got["j"] == [[1], {"a": [1, 2, None], "b": "é"}]
    assert t.where(t.ts > dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)).count() == 1


def test_local_path_is_a_reference(db, jpegs, tmp_path, monkeypatch):
    t = db.create_table("t", {"image": pxl.Image})
    monkeypatch.chdir(jpegs[0].parent)
    t.insert([{"image": jpegs[0].name}, {"image": f"file://{jpegs[1]}"}, {"image": jpegs[2]}])
    urls = t.select(t.image.fileurl).collect()["image_fileurl"]
    assert urls == [f"file://{p}" for p in jpegs[:3]]
    assert t.select(t.image.localpath).collect()["image_localpath"] == [str(p) for p in jpegs[:3]]
    img = t.collect()[0]["image"]
    assert isinstance(img, Image.Image) and img.size == (64, 48)
    media = tmp_path / "test.pxl.media"
    assert not media.exists() or not any(media.rglob("*.jpg"))


def test_bad_image_files(db, tmp_path):
    t = db.create_table("t", {"image": pxl.Image})
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "page.jpg").write_text("<html><body>not found</body></html>")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    for bad, msg in [("missing.jpg", "does not exist"), ("x.txt", "not a valid image"),
                     ("page.jpg", "HTML"), ("empty.png", "empty"), ("folder", "folder")]:
        with pytest.raises(ComputeError, match=msg):
            t.insert(image=str(tmp_path / bad))
    assert t.count() == 0
    s = t.insert([{"image": str(tmp_path / "x.txt")}], on_error="ignore")
    assert s.num_errors == 1
    assert t.select(t.image.errortype).collect()["image_errortype"] == ["SchemaError"]


def test_urls_stored_as_given(db):
    t = db.create_table("t", {"image": pxl.Image})
    urls = ["https://example.com/b.png", "s3://bucket/c.webp", "gs://bkt/d.jpg"]
    t.insert([{"image": u} for u in urls])  # nothing is fetched now
    assert t.select(t.image.fileurl).collect()["image_fileurl"] == urls
    with pytest.raises(ComputeError, match="ftp"):
        t.insert(image="ftp://host/x.jpg")


def test_pil_and_bytes_written_to_media_folder(db, tmp_path, pngs):
    t = db.create_table("t", {"image": pxl.Image})
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    buf = io.BytesIO()
    Image.new("RGB", (5, 5), "blue").save(buf, format="PNG")
    t.insert([{"image": Image.new("RGB", (8, 8))}, {"image": rgba}, {"image": buf.getvalue()}])
    urls = t.select(t.image.fileurl).collect()["image_fileurl"]
    media = tmp_path / "test.pxl.media"
    paths = [Path(u[len("file://"):]) for u in urls]
    assert all(p.is_file() and media in p.parents for p in paths)
    assert [p.suffix for p in paths] == [".jpg", ".png", ".png"]
    imgs = t.collect()["image"]
    assert imgs[1].mode == "RGBA" and imgs[2].size == (5, 5)
    with pytest.raises(ComputeError, match="not a valid image"):
        t.insert(image=b"not an image")


def test_abort_removes_files_it_wrote(db, tmp_path):
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    t.insert(image=Image.new("RGB", (4, 4), "red"), n=1)
    media = tmp_path / "test.pxl.media"
    before = sorted(media.rglob("*.*"))
    with pytest.raises(ComputeError):
        t.insert([{"image": Image.new("RGB", (4, 4), "green"), "n": 2},
                  {"image": Image.new("RGB", (4, 4), "red"), "n": 3},  # same content as row 1
                  {"image": None, "n": "bad"}])
    assert sorted(media.rglob("*.*")) == before  # new file gone, the shared one kept
    assert t.count() == 1 and t.collect()[0]["image"].size == (4, 4)


def test_other_media_types(db, tmp_path):
    t = db.create_table("t", {"doc": pxl.Document, "audio": pxl.Audio, "video": pxl.Video})
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4\n...")
    (tmp_path / "n.md").write_text("# notes\n")
    (tmp_path / "s.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    (tmp_path / "v.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 20)
    t.insert([{"doc": tmp_path / "a.pdf", "audio": tmp_path / "s.wav", "video": tmp_path / "v.mp4"},
              {"doc": tmp_path / "n.md"}])
    assert t.select(t.doc).collect()["doc"] == [str(tmp_path / "a.pdf"), str(tmp_path / "n.md")]
    with pytest.raises(ComputeError, match="not a valid audio"):
        t.insert(audio=tmp_path / "a.pdf")


def test_large_insert_is_one_call(db):
    t = db.create_table("t", {"i": pxl.Int, "s": pxl.String, "f": pxl.Float})
    s = t.insert([{"i": i, "s": f"row {i}", "f": i / 3} for i in range(20_000)])
    assert s.num_rows == 20_000 and t.count() == 20_000
    assert t.where(t.i == 19_999).collect()[0] == {"i": 19_999, "s": "row 19999", "f": 19_999 / 3}
