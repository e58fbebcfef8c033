"""Video, audio and document functions (Pixeltable's names) in queries and computed columns,
on generated media: values, stored outputs, None cases, bad arguments, a reopened database in
a new process, missing extras."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite.errors import ComputeError, ConfigError, SchemaError
from pxlite.functions import audio as afn
from pxlite.functions import document as dfn
from pxlite.functions import video as vfn
from tools.mediagen import frame_number, write_pdf, write_video, write_wav

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    (d / "d.html").write_text("<html><head><title>T</title></head><body><h1>Head</h1>"
                              "<p>Body &lt;text&gt;.</p><script>no()</script></body></html>")
    (d / "d.md").write_text("# Head\n\nSome *emph* text.\n")
    (d / "d.txt").write_text("Plain text.\n\nSecond paragraph.\n")
    return {
        "v": write_video(d / "v.mp4", 35, fps=10, gop=10, audio=True),
        "mute": write_video(d / "mute.mp4", 12, fps=6),
        "wav": write_wav(d / "a.wav", 2.0, rate=16000),
        "pdf": write_pdf(d / "d.pdf", [["Hello PDF."], ["Page two."]]),
        "html": d / "d.html", "md": d / "d.md", "txt": d / "d.txt",
    }


@pytest.fixture
def videos(db, media):
    t = db.create_table("v", {"video": pxl.Video, "label": pxl.String})
    t.insert([{"video": str(media["v"]), "label": "v"}, {"video": str(media["mute"]),
                                                        "label": "mute"}])
    return t


def test_video_metadata_and_duration(videos, media):
    rows = videos.select(videos.label, m=videos.video.get_metadata(),
                         d=vfn.get_duration(videos.video)).order_by(videos.label).collect()
    mute, v = rows[0], rows[1]
    assert v["d"] == pytest.approx(3.5) and mute["d"] == pytest.approx(2.0)
    vs = v["m"]["streams"][0]
    assert (vs["type"], vs["width"], vs["height"], vs["average_rate"]) == ("video", 160, 96, 10.0)
    assert vs["codec_context"]["pix_fmt"] == "yuv420p"
    assert vs["duration_seconds"] == pytest.approx(3.5)
    assert [s["type"] for s in v["m"]["streams"]] == ["video", "audio"]
    assert v["m"]["streams"][1]["codec_context"]["channels"] == 1
    assert v["m"]["size"] == media["v"].stat().st_size
    assert [s["type"] for s in mute["m"]["streams"]] == ["video"]


def test_extract_frame_takes_the_frame_at_a_time(videos):
    videos.add_computed_column(f1=videos.video.extract_frame(timestamp=1.0))
    videos.add_computed_column(f2=videos.video.extract_frame(timestamp=1.05))
    videos.add_computed_column(late=videos.video.extract_frame(timestamp=99.0))
    row = videos.where(videos.label == "v").select(videos.f1, videos.f2, videos.late).collect()[0]
    assert frame_number(row["f1"]) == 10  # exactly at 1.0 s
    assert frame_number(row["f2"]) == 11  # the first frame at or after 1.05 s
    assert row["late"] is None  # past the end
    with pytest.raises(ComputeError, match="timestamp must be a number of seconds >= 0"):
        videos.add_computed_column(bad=videos.video.extract_frame(timestamp=-1.0))


def test_extract_audio_is_stored_as_an_audio_file(videos, db):
    videos.add_computed_column(sound=videos.video.extract_audio(format="wav"))
    rows = videos.select(videos.label, videos.sound, url=videos.sound.fileurl).order_by(
        videos.label).collect()
    assert rows[0]["sound"] is None  # the mute video has no audio stream
    path = rows[1]["sound"]
    assert rows[1]["url"].startswith("file://") and path.endswith(".wav")
    assert "test.pxl.media" in path  # stored in the database's media folder
    with wave.open(path) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(3.5, abs=0.1)
    # the temporary file the function made is gone once stored
    assert not list(Path(vfn.temp_output_path(".x")).parent.glob("*.wav"))
    # and the audio column works with the audio functions
    meta = videos.select(m=videos.sound.get_metadata()).where(videos.label == "v").collect()
    assert meta[0]["m"]["streams"][0]["codec_context"]["name"] == "pcm_s16le"
    with pytest.raises(ComputeError, match="format must be one of wav, mp3, flac, mp4"):
        videos.add_computed_column(x=videos.video.extract_audio(format="ogg"))
    with pytest.raises(ComputeError, match="stream_idx must be an integer >= 0"):
        videos.add_computed_column(y=videos.video.extract_audio(stream_idx=-1))


def test_audio_metadata(db, media):
    t = db.create_table("a", {"audio": pxl.Audio})
    t.insert([{"audio": str(media["wav"])}])
    (row,) = t.select(m=afn.get_metadata(t.audio)).collect()
    (s,) = row["m"]["streams"]
    assert s["type"] == "audio" and s["duration_seconds"] == pytest.approx(2.0)
    assert (s["codec_context"]["name"], s["codec_context"]["channels"]) == ("pcm_s16le", 1)


def test_document_text_for_each_format(db, media):
    t = db.create_table("d", {"doc": pxl.Document, "kind": pxl.String})
    t.insert([{"doc": str(media[k]), "kind": k} for k in ("pdf", "html", "md", "txt")])
    t.add_computed_column(text=t.doc.extract_text())
    got = {r["kind"]: r["text"] for r in t.select(t.kind, t.text).collect()}
    assert got == {"pdf": "Hello PDF.\nPage two.", "html": "Head\nBody <text>.",
                   "md": "Head\nSome emph text.", "txt": "Plain text.\nSecond paragraph."}
    assert dfn.extract_text(str(media["md"])) == "Head\nSome emph text."  # a plain call runs


def test_functions_refuse_other_types_and_unstorable_arguments(db):
    t = db.create_table("x", {"image": pxl.Image, "video": pxl.Video})
    with pytest.raises(SchemaError, match="get_duration\\(\\): expects a Video expression"):
        vfn.get_duration(t.image)
    with pytest.raises(AttributeError, match="no attribute or method 'get_duration'"):
        _ = t.image.get_duration
    with pytest.raises(SchemaError, match="cannot be stored in a column definition"):
        t.video.extract_frame(timestamp=[1.0])


def test_a_computed_column_works_after_reopening_in_a_new_process(tmp_path, media):
    db = pxl.connect(tmp_path / "r.pxl")
    t = db.create_table("v", {"video": pxl.Video})
    t.add_computed_column(d=t.video.get_duration())
    t.insert([{"video": str(media["v"])}])
    db.close()
    code = ("import sys, pxlite as pxl\n"
            "t = pxl.connect(sys.argv[1]).get_table('v')\n"
            "t.insert([{'video': sys.argv[2]}])\n"
            "print(sorted(r['d'] for r in t.select(t.d).collect()))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.pxl"),
                          str(media["mute"])], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "[2.0, 3.5]"


def test_missing_document_packages_are_named(db, monkeypatch):
    t = db.create_table("d", {"doc": pxl.Document})
    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    with pytest.raises(ConfigError, match=r"'pypdfium2' package.*pxlite\[documents\]"):
        t.doc.extract_text()
