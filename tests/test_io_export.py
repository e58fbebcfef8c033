"""Exports (SPEC 12): export_parquet / export_csv / export_json of a table or a query, streamed
in batches, media as URLs or inline bytes; each round-tripped (export, import, compare cell
for cell)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import pxlite as pxl
from pxlite import storage
from pxlite.errors import SchemaError
from pxlite.io import export


@pytest.fixture
def full(db, jpegs):
    """A table with every scalar type, Json, an inserted image, a computed image and NULLs."""
    t = db.create_table("full", {"id": pxl.Int, "label": pxl.String, "x": pxl.Float,
                                 "ok": pxl.Bool, "at": pxl.Timestamp, "meta": pxl.Json,
                                 "image": pxl.Image})
    t.insert([
        {"id": 1, "label": "one, \"quoted\"\nline", "x": 0.1, "ok": True,
         "at": dt.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=dt.UTC),
         "meta": {"a": [1, 2], "b": "ü"}, "image": jpegs[0]},
        {"id": 2, "label": "two", "x": -2.5e300, "ok": False,
         "at": dt.datetime(2023, 5, 6, tzinfo=dt.UTC), "meta": [1, "x"], "image": jpegs[1]},
        {"id": 3, "label": None, "x": None, "ok": None, "at": None, "meta": None, "image": None},
    ])
    t.add_computed_column(rot=t.image.rotate(90))
    return t


def _cells(t: pxl.Table, cols: list[str]) -> list[dict]:
    out = []
    for r in t.select(*[t[c].fileurl if t[c].col.type.is_media else t[c] for c in cols]
                      ).order_by(t.id).collect():
        out.append({k.removesuffix("_fileurl"): v for k, v in r.items()})
    return out


COLS = ["id", "label", "x", "ok", "at", "meta", "image", "rot"]


def test_parquet_round_trip_keeps_types(db, full, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "EXPORT_ROWS", 2)  # several batches, several row groups
    pxl.io.export_parquet(full, tmp_path / "t.parquet")
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 2
    back = pxl.io.import_parquet("back", parquet_path=tmp_path / "t.parquet", db=db)
    assert {c: str(back[c].col.type) for c in back.columns()} == {
        "id": "Int", "label": "String", "x": "Float", "ok": "Bool", "at": "Timestamp",
        "meta": "Json", "image": "Image", "rot": "Image"}
    assert _cells(back, COLS) == _cells(full, COLS)
    assert back.select(w=back.rot.width).order_by(back.id).collect()["w"][:2] == [64, 64]


def test_csv_round_trip(db, full, tmp_path):
    pxl.io.export_csv(full, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLS)
    assert ",true," in text and "file://" in text
    back = pxl.io.import_csv("back", tmp_path / "t.csv", db=db,
                             schema_overrides={"meta": pxl.Json, "image": pxl.Image,
                                               "rot": pxl.Image})
    assert [str(back[c].col.type) for c in COLS] == [
        "Int", "String", "Float", "Bool", "Timestamp", "Json", "Image", "Image"]
    assert _cells(back, COLS) == _cells(full, COLS)


def test_json_round_trip(db, full, tmp_path):
    pxl.io.export_json(full, tmp_path / "t.jsonl")
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["meta"] == {"a": [1, 2], "b": "ü"}
    back = pxl.io.import_json("back", tmp_path / "t.jsonl", db=db,
                              schema_overrides={"image": pxl.Image, "rot": pxl.Image})
    assert _cells(back, COLS) == _cells(full, COLS)


def test_query_export(db, full, tmp_path):
    q = full.where(full.id < 3).select(full.id, full.image, full.at, full.meta, full.ok,
                                       w=full.image.width)
    pxl.io.export_json(q, tmp_path / "q.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["w"] for r in rows] == [64, 64]
    assert rows[0]["at"] == "2024-01-02T03:04:05.000600+00:00" and rows[0]["ok"] is True
    assert rows[1]["meta"] == [1, "x"]
    assert rows[0]["image"] == full.select(full.image.fileurl).order_by(full.id).collect()[
        0]["image_fileurl"]
    pxl.io.export_csv(q, tmp_path / "q.csv")
    assert (tmp_path / "q.csv").read_text().splitlines()[0] == "id,image,at,meta,ok,w"
    pxl.io.export_parquet(q, tmp_path / "q.parquet")
    back = pxl.io.import_parquet("q", parquet_path=tmp_path / "q.parquet", db=db)
    assert back.count() == 2 and str(back.image.col.type) == "Image"


def test_inline_images(db, full, tmp_path):
    pxl.io.export_parquet(full, tmp_path / "inline.parquet", inline_images=True)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "inline.parquet")
    assert str(table.schema.field("image").type) == "binary"
    image_path = storage.file_path(full.select(full.image.fileurl).order_by(full.id).collect()[
        0]["image_fileurl"])
    assert table.column("image")[0].as_py() == image_path.read_bytes()
    # imported back, inline bytes become files of the new table (same pixels)
    back = pxl.io.import_parquet("back", parquet_path=tmp_path / "inline.parquet", db=db)
    assert back.select(w=back.image.width).order_by(back.id).collect()["w"] == [64, 64, None]


@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_cloud_media_round_trip(storage_target, tmp_path, jpegs):
    target = storage_target
    with pxl.connect(tmp_path / "c.pxl", config=target.config) as db:
        t = db.create_table("t", {"id": pxl.Int, "image": pxl.Image})
        t.insert([{"id": i, "image": p} for i, p in enumerate(jpegs[:2])])
        t.add_computed_column(thumb=t.image.thumbnail((16, 16)), destination=target.prefix)
        pxl.io.export_parquet(t, tmp_path / "c.parquet")
        back = pxl.io.import_parquet("back", parquet_path=tmp_path / "c.parquet", db=db)
        cols = ["id", "image", "thumb"]
        assert _cells(back, cols) == _cells(t, cols)
        exported = pq_column(tmp_path / "c.parquet", "thumb")
        assert all(u.startswith(target.prefix) for u in exported)  # as pxlite names them
        assert back.select(w=back.thumb.width).collect()["w"] == [16, 16]


def pq_column(path, name):
    import pyarrow.parquet as pq

    return pq.read_table(path).column(name).to_pylist()


def test_export_refusals_and_atomic_files(db, full, tmp_path, monkeypatch):
    with pytest.raises(SchemaError, match="is a folder"):
        pxl.io.export_csv(full, tmp_path)
    with pytest.raises(SchemaError, match="does not exist"):
        pxl.io.export_csv(full, tmp_path / "missing" / "x.csv")
    with pytest.raises(SchemaError, match="takes a Table or a Query"):
        pxl.io.export_json([1, 2], tmp_path / "x.jsonl")
    target = tmp_path / "keep.csv"
    target.write_text("old")

    def failing(self):
        yield [[1] * len(self.names)]
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(export._Rows, "batches", failing)
    with pytest.raises(RuntimeError):
        pxl.io.export_csv(full, target)
    assert target.read_text() == "old"  # a failed export leaves the old file as it was
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_empty_table_exports(db, tmp_path):
    t = db.create_table("e", {"a": pxl.Int, "b": pxl.String})
    pxl.io.export_csv(t, tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text().strip() == "a,b"
    pxl.io.export_parquet(t, tmp_path / "e.parquet")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "e.parquet").column_names == ["a", "b"]
    pxl.io.export_json(t, tmp_path / "e.jsonl")
    assert (tmp_path / "e.jsonl").read_text() == ""
