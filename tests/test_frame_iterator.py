"""frame_iterator and video_splitter on generated videos: which frames (Pixeltable's picking
rule), their columns and pixels, segments, bad arguments, the iterator-call value (JSON, a new
process), a missing extra, and a remote video read through the S3 emulator and the cache."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import av
import pytest

import pxlite as pxl
from pxlite.errors import ConfigError, NotFoundError, SchemaError
from pxlite.functions.iterator_call import IteratorCall
from pxlite.functions.video import frame_iterator, video_splitter
from pxlite.iterators.base import lookup_iterator
from tools.mediagen import frame_number, write_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        # 35 frames at 10 fps (3.5 s), a key frame every 10 frames, with an AAC track
        "v": write_video(d / "v.mp4", 35, fps=10, gop=10, audio=True),
        # 24 frames at 8 fps, key frame every 4, no audio
        "short": write_video(d / "short.mp4", 24, fps=8, gop=4),
    }


def _picked(path: Path, **args) -> list[int]:
    with frame_iterator(str(path), **args) as it:
        return [r["pos_frame"] for r in it]


def test_every_frame_with_pixeltables_columns(videos):
    with frame_iterator(str(videos["v"])) as it:
        rows = list(it)
    assert len(rows) == 35
    for k, r in enumerate(rows):
        assert set(r) == {"frame", "frame_idx", "pos_msec", "pos_frame", "frame_attrs"}
        assert r["frame_idx"] == r["pos_frame"] == k
        assert r["pos_msec"] == pytest.approx(100.0 * k)
        assert frame_number(r["frame"]) == k  # the pixels are frame k's
        assert r["frame"].size == (160, 96) and r["frame"].mode == "RGB"
        attrs = r["frame_attrs"]
        assert attrs["index"] == k and attrs["time"] == pytest.approx(k / 10)
        assert attrs["key_frame"] == (k % 10 == 0)
        assert set(attrs) == {"index", "pts", "dts", "time", "is_corrupt", "key_frame",
                              "pict_type", "interlaced_frame"}
        json.dumps(attrs)  # a Json column value


@pytest.mark.parametrize(("args", "expected"), [
    # targets 0, 1, 2, 3 s: the frames at exactly those times
    ({"fps": 1}, [0, 10, 20, 30]),
    # targets every 1/3 s: the closest frame each time (0.333 -> 0.3, 0.667 -> 0.7...)
    ({"fps": 3}, [0, 3, 7, 10, 13, 17, 20, 23, 27, 30, 33]),
    ({"fps": 0.5}, [0, 20]),
    # 4 intervals of 0.875 s: midpoints 0.4375, 1.3125, 2.1875, 3.0625
    ({"num_frames": 4}, [4, 13, 22, 31]),
    ({"num_frames": 1}, [17]),
    ({"keyframes_only": True}, [0, 10, 20, 30]),
    # faster than the video, or more frames than it has: every frame
    ({"fps": 100}, list(range(35))),
    ({"num_frames": 100}, list(range(35))),
])
def test_frames_are_picked_by_pixeltables_rule(videos, args, expected):
    assert _picked(videos["v"], **args) == expected


def test_picked_frames_carry_their_own_index_and_time(videos):
    with frame_iterator(str(videos["short"]), fps=2) as it:
        rows = list(it)
    assert [r["pos_frame"] for r in rows] == [0, 4, 8, 12, 16, 20]
    assert [r["frame_idx"] for r in rows] == list(range(6))
    assert [frame_number(r["frame"]) for r in rows] == [0, 4, 8, 12, 16, 20]
    assert [round(r["pos_msec"]) for r in rows] == [0, 500, 1000, 1500, 2000, 2500]


def test_frames_are_not_held_after_they_are_handed_on(videos):
    """Bounded memory: the iterator keeps no reference to a frame it yielded."""
    refs = []
    with frame_iterator(str(videos["v"])) as it:
        for r in it:
            refs.append(weakref.ref(r["frame"]))
            del r
        gc.collect()
        assert sum(ref() is not None for ref in refs) <= 1


def test_close_releases_the_decoder_and_stops(videos):
    it = frame_iterator(str(videos["v"]))
    first = next(it)
    assert first["pos_frame"] == 0
    container = it._container
    it.close()
    with pytest.raises(StopIteration):
        next(it)
    it.close()  # twice is fine
    with pytest.raises(Exception):  # noqa: B017  (PyAV: the container is closed)
        next(container.decode(video=0))


@pytest.mark.parametrize(("args", "message"), [
    ({"fps": 0}, "fps must be a number > 0"),
    ({"fps": -1.5}, "fps must be a number > 0"),
    ({"fps": True}, "fps must be a number"),
    ({"fps": "1"}, "fps must be a number"),
    ({"num_frames": 0}, "num_frames must be an integer > 0"),
    ({"num_frames": 2.5}, "num_frames must be an integer"),
    ({"keyframes_only": 1}, "keyframes_only must be True or False"),
    ({"fps": 1, "num_frames": 3}, "at most one of fps, num_frames and keyframes_only"),
    ({"fps": 1, "keyframes_only": True}, "at most one of"),
])
def test_bad_arguments_are_refused_when_the_call_is_built(db, args, message):
    t = db.create_table("v", {"video": pxl.Video})
    with pytest.raises(SchemaError, match=message):
        frame_iterator(t.video, **args)
    with pytest.raises(SchemaError, match=message):
        frame_iterator("/does/not/matter.mp4", **args)


def test_the_input_must_be_a_video(db, tmp_path):
    t = db.create_table("v", {"video": pxl.Video, "image": pxl.Image, "n": pxl.Int})
    with pytest.raises(SchemaError, match=r"input must be a Video expression.*type Image"):
        frame_iterator(t.image)
    with pytest.raises(SchemaError, match="fps must be a constant"):
        frame_iterator(t.video, fps=t.n)
    with pytest.raises(SchemaError, match="the input is None"):
        frame_iterator(None)
    bad = tmp_path / "not.mp4"
    bad.write_bytes(b"this is no video at all" * 10)
    with pytest.raises(SchemaError, match=r"cannot read .* as a video"):
        list(frame_iterator(str(bad)))
    with pytest.raises(SchemaError, match="is not a file"):
        list(frame_iterator(str(tmp_path / "missing.mp4")))
    with pytest.raises(SchemaError, match="expected a local file path"):
        list(frame_iterator(42))


def test_an_audio_file_has_no_video_stream(tmp_path):
    from tools.mediagen import write_wav

    wav = write_wav(tmp_path / "a.wav", 0.5)
    with pytest.raises(SchemaError, match="has no video stream"):
        list(frame_iterator(str(wav)))


def test_num_frames_needs_a_declared_duration(tmp_path):
    """A raw H.264 stream declares no duration: num_frames says so, fps still works."""
    src = write_video(tmp_path / "s.mp4", 12, fps=6)
    raw = tmp_path / "s.h264"
    with av.open(str(src)) as c, av.open(str(raw), "w", format="h264") as out:
        ost = out.add_stream_from_template(c.streams.video[0])
        for p in c.demux(c.streams.video[0]):
            if p.dts is not None:
                p.stream = ost
                out.mux(p)
    with pytest.raises(SchemaError, match="num_frames needs the video's duration"):
        list(frame_iterator(str(raw), num_frames=3))
    assert len(list(frame_iterator(str(raw)))) == 12


def test_the_iterator_call_is_a_typed_json_value(db, videos):
    t = db.create_table("v", {"video": pxl.Video, "title": pxl.String})
    call = frame_iterator(t.video, fps=1)
    assert isinstance(call, IteratorCall)
    assert call.name == "pxlite.functions.video.frame_iterator"
    assert call.args == {"fps": 1.0, "num_frames": None, "keyframes_only": False}
    assert [(k, repr(v)) for k, v in call.columns().items()] == [
        ("pos", "Required[Int]"), ("frame", "Image"), ("frame_idx", "Required[Int]"),
        ("pos_msec", "Required[Float]"), ("pos_frame", "Required[Int]"), ("frame_attrs", "Json")]
    assert call.unstored == ("frame",)
    data = json.loads(json.dumps(call.to_json()))
    assert data["iterator"] == call.name and data["input"] == t.video.to_json()
    again = IteratorCall.from_json(data, t._meta())
    assert again == call and repr(again) == repr(call)
    t.insert([{"video": str(videos["v"])}])
    path = t.select(t.video).collect()[0]["video"]  # a Video value is a local path
    with again.open(path) as it:
        assert [r["pos_frame"] for r in it] == [0, 10, 20, 30]
    with again.open(None) as it:  # a row without a video has no frames
        assert list(it) == []


def test_a_stored_call_is_found_again_in_a_new_process(tmp_path, videos):
    db = pxl.connect(tmp_path / "p.pxl")
    t = db.create_table("v", {"video": pxl.Video})
    t.insert([{"video": str(videos["v"])}])
    stored = json.dumps(frame_iterator(t.video, num_frames=4).to_json())
    db.close()
    code = (
        "import json, sys, pxlite as pxl\n"
        "from pxlite.functions.iterator_call import IteratorCall\n"
        "db = pxl.connect(sys.argv[1]); t = db.get_table('v')\n"
        "call = IteratorCall.from_json(json.loads(sys.argv[2]), t._meta())\n"
        "with call.open(t.select(t.video).collect()[0]['video']) as it:\n"
        "    print([r['pos_frame'] for r in it])\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.pxl"), stored],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[4, 13, 22, 31]"


def test_damaged_or_unknown_stored_calls_are_clear_errors(db):
    t = db.create_table("v", {"video": pxl.Video})
    good = frame_iterator(t.video).to_json()
    with pytest.raises(NotFoundError, match=r"iterator 'pxlite.functions.video.nope'"):
        IteratorCall.from_json({**good, "iterator": "pxlite.functions.video.nope"}, t._meta())
    with pytest.raises(NotFoundError, match=r"iterator 'evil.module.it' cannot be found"):
        lookup_iterator("evil.module.it")  # never imported because a file names it
    with pytest.raises(SchemaError, match="unreadable iterator call"):
        IteratorCall.from_json({"iterator": good["iterator"], "args": [1]}, t._meta())
    with pytest.raises(SchemaError, match="unreadable iterator call"):
        IteratorCall.from_json({**good, "args": 5}, t._meta())
    with pytest.raises(SchemaError, match="fps must be a number > 0"):
        IteratorCall.from_json({**good, "args": {"dict": {"fps": -1}}}, t._meta())


def test_without_pyav_the_error_names_the_extra(db, monkeypatch):
    t = db.create_table("v", {"video": pxl.Video})
    monkeypatch.setitem(sys.modules, "av", None)  # how Python marks a module unimportable
    for build in (lambda: frame_iterator(t.video), lambda: video_splitter(t.video, duration=1),
                  lambda: frame_iterator("x.mp4"), lambda: t.video.get_metadata()):
        with pytest.raises(ConfigError, match=r"needs the 'av' package.*pxlite\[video\]"):
            build()


# ---- video_splitter ----------------------------------------------------------------------------

def _segment(path: str) -> tuple[list[int], int]:
    """The frame numbers of a segment file, and how many audio streams it has."""
    with av.open(path) as c:
        return [frame_number(f.to_image()) for f in c.decode(video=0)], len(c.streams.audio)


@pytest.mark.parametrize(("args", "bounds", "frames"), [
    ({"duration": 1.0}, [(0, 1), (1, 2), (2, 3), (3, 3.5)],
     [range(0, 10), range(10, 20), range(20, 30), range(30, 35)]),
    ({"duration": 1.2, "min_segment_duration": 1.15}, [(0, 1.2), (1.2, 2.4)],
     [range(0, 12), range(12, 24)]),
    ({"segment_times": [0.5, 2.0]}, [(0, 0.5), (0.5, 2), (2, 3.5)],
     [range(0, 5), range(5, 20), range(20, 35)]),
])
def test_accurate_segments_cut_exactly(videos, args, bounds, frames):
    with video_splitter(str(videos["v"]), **args) as it:
        rows = list(it)
        assert [(r["segment_start"], r["segment_end"]) for r in rows] == [
            pytest.approx(b) for b in bounds]
        for r, want in zip(rows, frames, strict=True):
            got, n_audio = _segment(r["video_segment"])
            assert got == list(want) and n_audio == 1
            assert r["segment_start_pts"] < r["segment_end_pts"]
        files = [r["video_segment"] for r in rows]
    assert not any(Path(f).exists() for f in files)  # temporary: gone with close()


def test_fast_segments_copy_packets_at_key_frames(videos):
    with video_splitter(str(videos["v"]), duration=1.5, overlap=0.5, mode="fast") as it:
        rows = list(it)
        # cuts at the first key frame at or after each end (every 1 s here); the next segment
        # starts 0.5 s before the previous end, at the key frame at or before that
        assert [(r["segment_start"], r["segment_end"]) for r in rows] == [
            (0.0, 2.0), (1.0, 3.0), (2.0, 3.5)]
        assert [_segment(r["video_segment"])[0][::5] for r in rows] == [
            [0, 5, 10, 15], [10, 15, 20, 25], [20, 25, 30]]
        assert all(_segment(r["video_segment"])[1] == 1 for r in rows)  # audio copied too
    with video_splitter(str(videos["v"]), segment_times=[1.0, 2.5], mode="fast") as it:
        assert [(r["segment_start"], r["segment_end"]) for r in it] == [
            (0.0, 1.0), (1.0, 3.0), (3.0, 3.5)]


def test_an_empty_segment_list_is_the_whole_video(videos):
    with video_splitter(str(videos["v"]), segment_times=[]) as it:
        (row,) = list(it)
    assert row["video_segment"] == str(videos["v"])
    assert (row["segment_start"], row["segment_end"]) == pytest.approx((0.0, 3.5))


@pytest.mark.parametrize(("args", "message"), [
    ({}, "exactly one of duration and segment_times"),
    ({"duration": 1, "segment_times": [1]}, "exactly one of duration and segment_times"),
    ({"duration": 0}, "duration must be a number > 0"),
    ({"duration": 1, "min_segment_duration": 2}, "at least min_segment_duration"),
    ({"duration": 1, "overlap": 1, "mode": "fast"}, "overlap must be less than duration"),
    ({"duration": 1, "overlap": 0.5}, "overlap needs mode='fast'"),
    ({"segment_times": [1], "overlap": 0.5, "mode": "fast"}, "overlap cannot be combined"),
    ({"segment_times": [2, 1]}, "segment_times must increase"),
    ({"segment_times": "1,2"}, "segment_times must be a list"),
    ({"duration": 1, "mode": "exact"}, "mode must be 'accurate' or 'fast'"),
    ({"duration": 1, "mode": "fast", "video_encoder": "libx264"}, "need mode='accurate'"),
    ({"duration": 1, "video_encoder_args": ["crf"]}, "video_encoder_args must be a dict"),
])
def test_video_splitter_refuses_bad_arguments(db, args, message):
    t = db.create_table("v", {"video": pxl.Video})
    with pytest.raises(SchemaError, match=message):
        video_splitter(t.video, **args)


def test_an_unknown_encoder_is_a_clear_error(videos):
    with pytest.raises(SchemaError, match="encoder 'no-such-codec' is not available"):
        list(video_splitter(str(videos["v"]), duration=1, video_encoder="no-such-codec"))


# ---- a remote video, through the cache -------------------------------------------------------

def test_frames_of_a_video_in_s3_come_through_the_cache(moto_server, tmp_path, videos):
    import boto3
    from fixtures_storage import MOTO_KEY_ID, MOTO_SECRET, create_s3_bucket, s3_config

    create_s3_bucket(moto_server.endpoint, "vids", "eu-west-1")
    boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="eu-west-1",
                 aws_access_key_id=MOTO_KEY_ID, aws_secret_access_key=MOTO_SECRET
                 ).upload_file(str(videos["v"]), "vids", "in/v.mp4")
    db = pxl.connect(tmp_path / "r.pxl", config={"s3": s3_config("s3", moto_server.endpoint)})
    t = db.create_table("v", {"video": pxl.Video})
    t.insert([{"video": "s3://vids/in/v.mp4"}])
    call = frame_iterator(t.video, fps=2)
    (row,) = t.select(t.video, url=t.video.fileurl).collect()
    assert row["url"] == "s3://vids/in/v.mp4"
    local = Path(row["video"])
    assert local.is_file() and "file_cache" in str(local)  # the bounded download cache
    with call.open(row["video"]) as it:
        frames = list(it)
    assert [r["pos_frame"] for r in frames] == [0, 5, 10, 15, 20, 25, 30]
    assert [frame_number(r["frame"]) for r in frames] == [0, 5, 10, 15, 20, 25, 30]
    assert pxl.cache_info().count == 1
