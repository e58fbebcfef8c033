"""Iterator views (one base row in, many view rows out) with every iterator, on generated media:
frames decoded once and stored once (or kept unstored), their destinations (a folder, a
setting, S3 with the video read through the cache), segments, chunks, tiles, sentences, and
each base row's outputs following its insert, update and delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ComputeError, NotFoundError, SchemaError
from pxlite.functions import video as video_functions
from pxlite.functions.audio import audio_splitter
from pxlite.functions.document import document_splitter
from pxlite.functions.image import tile_iterator
from pxlite.functions.string import string_splitter
from pxlite.functions.video import frame_iterator, get_duration, video_splitter
from pxlite.iterators import video as video_iterators
from tools.mediagen import frame_number, write_pdf, write_video, write_wav


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    Image.new("RGB", (100, 60), "teal").save(d / "i.png")
    (d / "notes.md").write_text("# Intro\n\nFirst point. Second point.\n\n## Later\n\nLast one.\n")
    return {
        "a": write_video(d / "a.mp4", 30, fps=10, gop=10),              # 3 s
        "b": write_video(d / "b.mp4", 45, fps=10, gop=10, audio=True, start=7),  # 4.5 s
        "wav": write_wav(d / "tone.wav", 2.5),
        "pdf": write_pdf(d / "doc.pdf", [["Hello world. Second sentence."], ["Page two."]]),
        "md": d / "notes.md",
        "png": d / "i.png",
    }


@pytest.fixture
def opened(monkeypatch):
    """Counts the videos the frame iterator opens (each open decodes a video from its start)."""
    counts: dict[str, int] = {}
    real = video_iterators.open_video

    def counting(path: str, what: str):
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return real(path, what)

    monkeypatch.setattr(video_iterators, "open_video", counting)
    monkeypatch.setattr(video_functions, "open_video", counting)  # extract_frame's
    return counts


def _frames(db, media, **opts):
    t = db.create_table("videos", {"video": pxl.Video, "angle": pxl.Int})
    t.insert([{"video": str(media["a"]), "angle": 0}, {"video": str(media["b"]), "angle": 1}])
    return t, db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2), **opts)


def test_a_frame_view_decodes_each_video_once_and_stores_each_frame_once(db, media, opened):
    _, f = _frames(db, media)
    assert opened == {"a.mp4": 1, "b.mp4": 1}
    assert f.columns() == ["pos", "frame", "frame_idx", "pos_msec", "pos_frame", "frame_attrs",
                           "video", "angle"]
    rows = f.select(f.pos, f.frame_idx, f.pos_msec, f.pos_frame, f.angle).collect()
    assert rows["pos_frame"] == [0, 5, 10, 15, 20, 25, 0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert rows["pos"] == rows["frame_idx"] == list(range(6)) + list(range(9))
    assert rows["pos_msec"][:3] == [0.0, 500.0, 1000.0] and rows["angle"][-1] == 1
    uid = f.get_metadata()["id"]
    stored = sorted((Path(str(db.path) + ".media") / uid).rglob("*.jpg"))
    assert len(stored) == 15  # one JPEG per frame, in the view's own key space
    # reading frames back, a width column and a thumbnail: no second decode
    assert [frame_number(r["frame"]) for r in f.select(f.frame).collect()] == rows["pos_frame"]
    f.add_computed_column(width=f.frame.width)
    f.add_computed_column(thumb=f.frame.thumbnail((32, 32)))
    assert set(f.select(f.width).collect()["width"]) == {160}
    assert opened == {"a.mp4": 1, "b.mp4": 1}
    assert "frame_iterator(video, fps=2.0" in repr(f) and db.check().ok


def test_frames_follow_the_base_rows(db, media, opened):
    t, f = _frames(db, media)
    f.add_computed_column(turned=f.frame.rotate(t.angle * 90))
    t.insert([{"video": str(media["a"]), "angle": 2}])
    assert opened["a.mp4"] == 2  # the new row's video, once
    assert f.where(f.angle == 2).count() == 6
    t.update({"angle": 3}, where=t.angle == 2)  # not the video: no decode, cells recomputed
    assert opened["a.mp4"] == 2 and f.where(f.angle == 3).count() == 6
    t.update({"video": str(media["b"])}, where=t.angle == 3)  # another video: made again
    assert opened["b.mp4"] == 2
    assert f.where(f.angle == 3).select(f.pos_frame).collect()["pos_frame"][-1] == 40
    t.delete(where=t.angle == 0)
    assert f.count() == 9 + 9 and f.where(f.angle == 0).count() == 0
    t.update({"video": None}, where=t.angle == 1)
    assert f.count() == 9
    assert db.check().ok
    t.delete()
    assert f.count() == 0 and db.check().ok
    media_dir = Path(str(db.path) + ".media")
    assert not [p for p in media_dir.rglob("*") if p.is_file()]  # every file pxlite wrote: gone


def test_unstored_frames_are_decoded_when_read(db, media, opened):
    _, f = _frames(db, media, store_media=False)
    assert opened == {"a.mp4": 1, "b.mp4": 1}
    media_dir = Path(str(db.path) + ".media")
    assert not [p for p in media_dir.rglob("*") if p.is_file()]  # nothing written
    frames = f.select(f.pos_frame, f.frame).collect()
    assert [frame_number(img) for img in frames["frame"]] == frames["pos_frame"]
    assert sum(opened.values()) > 2  # read: decoded again (Pixeltable's way)
    assert "computed when read" in repr(f)
    with pytest.raises(SchemaError, match="iterator"):
        f.drop_column("frame")


def test_frames_go_where_destination_and_settings_say(db, media, tmp_path):
    t = db.create_table("videos", {"video": pxl.Video})
    t.insert([{"video": str(media["a"])}])
    dest = tmp_path / "frames_here"
    f = db.create_view("f1", t, iterator=frame_iterator(t.video, fps=1), destination=str(dest))
    assert len(list(dest.rglob("*.jpg"))) == 3
    assert "frames_here/ (set by destination=)" in repr(f)
    out = tmp_path / "out_setting"
    pxl.configure(output_media_dest=str(out))
    try:
        g = db.create_view("f2", t, iterator=frame_iterator(t.video, fps=1))
        assert len(list(out.rglob("*.jpg"))) == 3 and "output_media_dest" in repr(g)
    finally:
        pxl.configure(output_media_dest=None)
    assert db.check().ok
    with pytest.raises(SchemaError, match="unstored frames are not written"):
        db.create_view("f3", t, iterator=frame_iterator(t.video, fps=1), store_media=False,
                       destination=str(dest))


def test_a_video_in_s3_with_frames_stored_in_s3(moto_server, tmp_path, media):
    import boto3
    from fixtures_storage import MOTO_KEY_ID, MOTO_SECRET, create_s3_bucket, s3_config

    create_s3_bucket(moto_server.endpoint, "vidviews", "eu-west-1")
    s3 = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="eu-west-1",
                      aws_access_key_id=MOTO_KEY_ID, aws_secret_access_key=MOTO_SECRET)
    s3.upload_file(str(media["a"]), "vidviews", "in/a.mp4")
    db = pxl.connect(tmp_path / "s3.pxl", config={"s3": s3_config("s3", moto_server.endpoint)})
    t = db.create_table("v", {"video": pxl.Video})
    t.insert([{"video": "s3://vidviews/in/a.mp4"}])
    f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2),
                       destination="s3://vidviews/frames/")
    assert pxl.cache_info().count >= 1  # the video came through the bounded cache
    urls = f.select(f.frame.fileurl).collect()["frame_fileurl"]
    assert len(urls) == 6 and all(u.startswith("s3://vidviews/frames/") for u in urls)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="vidviews", Prefix="frames/")["Contents"]}
    assert len(keys) == 6
    assert [frame_number(i) for i in f.select(f.frame).collect()["frame"]] == [0, 5, 10, 15,
                                                                                20, 25]
    t.delete()
    assert "Contents" not in s3.list_objects_v2(Bucket="vidviews", Prefix="frames/")
    assert db.check().ok
    db.close()


def test_video_segments_are_video_files_of_the_view(db, media):
    t = db.create_table("videos", {"video": pxl.Video})
    t.insert([{"video": str(media["b"])}])
    s = db.create_view("segments", t, iterator=video_splitter(t.video, duration=2.0))
    assert s.columns()[:6] == ["pos", "segment_start", "segment_start_pts", "segment_end",
                               "segment_end_pts", "video_segment"]
    rows = s.select(s.segment_start, s.segment_end, s.video_segment).collect()
    assert rows["segment_start"] == [0.0, 2.0, 4.0]
    durations = [get_duration.fn(p) for p in rows["video_segment"]]
    assert durations[0] == pytest.approx(2.0, abs=0.15)
    s.add_computed_column(length=s.video_segment.get_duration())
    t.delete()
    assert s.count() == 0 and db.check().ok


def test_audio_segments(db, media):
    t = db.create_table("sounds", {"audio": pxl.Audio})
    t.insert([{"audio": str(media["wav"])}])
    a = db.create_view("pieces", t, iterator=audio_splitter(t.audio, duration=1.0))
    rows = a.select(a.segment_start, a.segment_end, a.audio_segment.localpath).collect()
    assert len(rows) == 3 and rows["segment_start"][0] == 0.0
    assert rows["segment_end"][-1] == pytest.approx(2.5, abs=0.05)
    assert all(Path(p).is_file() for p in rows["audio_segment_localpath"])
    assert db.check().ok


def test_document_chunks(db, media):
    t = db.create_table("docs", {"doc": pxl.Document, "text": pxl.String})
    t.insert([{"doc": str(media["md"]), "text": "md"}, {"doc": str(media["pdf"]), "text": "pdf"}])
    c = db.create_view("chunks", t, iterator=document_splitter(
        t.doc, separators="sentence", metadata="heading"))
    # the iterator's 'text' hides the base's: the view's own comes first
    assert c.columns()[:3] == ["pos", "text", "heading"] and "doc" in c.columns()
    with document_splitter(str(media["md"]), separators="sentence", metadata="heading") as it:
        direct = list(it)  # the iterator run on the file itself
    md = c.where(c.doc.fileurl.contains("notes")).select(c.text, c.heading).collect()
    assert md["text"] == [r["text"] for r in direct] and "Last one." in md["text"]
    assert md["heading"] == [r["heading"] for r in direct]
    assert md["heading"][-1] == {"h1": "Intro", "h2": "Later"}
    pdf = c.where(c.doc.fileurl.contains("doc.pdf")).select(c.text).collect()["text"]
    assert "Page two." in pdf
    t.update({"doc": str(media["md"])}, where=t.text == "pdf")  # the base's hidden 'text'
    assert c.count() == 2 * len(direct)


def test_tiles_and_sentences(db, media):
    t = db.create_table("stuff", {"image": pxl.Image, "text": pxl.String})
    t.insert([{"image": str(media["png"]), "text": "One. Two! Three?"}])
    tiles = db.create_view("tiles", t, iterator=tile_iterator(t.image, (40, 40)))
    rows = tiles.select(tiles.tile_coord, tiles.tile_box, w=tiles.tile.width).collect()
    assert rows["tile_coord"][:2] == [[0, 0], [1, 0]] and set(rows["w"]) == {40}
    assert len(rows) == 6
    sents = db.create_view("sentences", t, iterator=string_splitter(t.text))
    assert sents.select(sents.text).collect()["text"] == ["One.", "Two!", "Three?"]
    t.update({"text": "Just one."})
    assert sents.select(sents.text).collect()["text"] == ["Just one."]
    assert tiles.count() == 6  # the image did not change
    with pytest.raises(SchemaError, match="always stored"):
        db.create_view("t2", t, iterator=tile_iterator(t.image, (40, 40)), store_media=False)


def test_views_of_frames(db, media):
    t, f = _frames(db, media)
    late = db.create_view("late", f.where(f.pos_msec >= 2000))
    tiles = db.create_view("late_tiles", late, iterator=tile_iterator(late.frame, (80, 48)))
    assert late.count() == 2 + 5 and tiles.count() == 4 * 7
    assert tiles.select(tiles.pos_frame).collect()["pos_frame"][:5] == [20, 20, 20, 20, 25]
    t.delete(where=t.angle == 1)
    assert late.count() == 2 and tiles.count() == 8
    assert db.check().ok


def test_a_broken_video_is_a_clear_error_and_nothing_is_written(db, media, tmp_path):
    t, f = _frames(db, media)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(ComputeError, match=r"view 'frames': frame_iterator.* failed for row "
                                           r"3 of 'videos'"):
        t.insert([{"video": str(bad), "angle": 9}])
    assert t.count() == 2 and f.count() == 15


def test_a_build_that_fails_stays_resumable(db, media, tmp_path):
    t = db.create_table("videos", {"video": pxl.Video})
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    t.insert([{"video": str(media["a"])}, {"video": str(bad)}, {"video": str(media["b"])}])
    with pytest.raises(ComputeError, match="fix or delete that row of 'videos'"):
        db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
    f = db.get_table("frames")
    with pytest.raises(NotFoundError, match="run the same create_view again to finish it"):
        f.count()
    assert "being built" in repr(f)
    t.delete(where=t.video.fileurl.contains("bad"))
    f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
    assert f.count() == 6 + 9 and db.check().ok


def test_bad_iterator_arguments(db, media):
    t = db.create_table("videos", {"video": pxl.Video, "n": pxl.Int})
    u = db.create_table("u", {"video": pxl.Video})
    with pytest.raises(SchemaError, match="takes an iterator applied to a column"):
        db.create_view("v", t, iterator=frame_iterator(str(media["a"]), fps=1))
    with pytest.raises(SchemaError, match="belongs to table 'u', not to the view's base"):
        db.create_view("v", t, iterator=frame_iterator(u.video, fps=1))
    with pytest.raises(SchemaError, match="made by the view's iterator"):
        db.create_view("v", t, iterator=frame_iterator(t.video, fps=1),
                       additional_columns={"frame": pxl.Image})
    with pytest.raises(SchemaError, match="must be a Video"):
        db.create_view("v", t, iterator=frame_iterator(t.n, fps=1))
    assert db.list_tables() == ["u", "videos"]


def test_a_revert_of_the_base_makes_the_frames_again(db, media, opened):
    t = db.create_table("videos", {"video": pxl.Video, "angle": pxl.Int},
                        version_retention_days=30)
    t.insert([{"video": str(media["a"]), "angle": 0}, {"video": str(media["b"]), "angle": 1}])
    f = db.create_view("frames", t, iterator=frame_iterator(t.video, fps=2))
    before = f.select(f.angle, f.pos_frame, f.frame.fileurl).collect().to_dicts()
    t.delete(where=t.angle == 1)
    t.update({"video": str(media["a"])}, where=t.angle == 0)  # the same video: no change
    assert f.count() == 6
    t.revert()
    t.revert()
    assert f.select(f.angle, f.pos_frame, f.frame.fileurl).collect().to_dicts() == before
    assert opened["b.mp4"] == 2  # decoded again for the row the revert brought back
    assert db.check().ok


@pxl.udf
def mean_colour(img: Image.Image) -> pxl.Array[(3,), pxl.Float]:
    import numpy as np

    return np.asarray(img.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) / 255


def test_an_embedding_index_over_frames_follows_the_videos(db, media):
    t, f = _frames(db, media)
    f.add_embedding_index(f.frame, image_embed=mean_colour)
    with frame_iterator(str(media["b"]), fps=2) as it:
        probe = [r["frame"] for r in it][-1]
    sim = f.frame.similarity(image=probe)
    best = f.order_by(sim, asc=False).limit(1).select(f.angle, f.pos_frame).collect()
    assert best.to_dicts() == [{"angle": 1, "pos_frame": 40}]
    t.delete(where=t.angle == 1)  # its frames leave the index with the rows
    assert f.order_by(sim, asc=False).limit(1).select(f.angle).collect()["angle"] == [0]
    t.insert([{"video": str(media["b"]), "angle": 5}])  # new frames, their vectors too
    assert f.order_by(sim, asc=False).limit(1).select(f.angle).collect()["angle"] == [5]
    assert db.check().ok
