"""Video functions and iterators (PyAV, the ``pxlite[video]`` extra), with Pixeltable's names.

Functions, usable as methods of Video expressions and in computed columns:
``get_metadata``, ``get_duration``, ``extract_frame(timestamp=)``, ``extract_audio``. Each gets
the video as a local file (remote videos come through the bounded download cache).

Iterators (for ``create_view(..., iterator=...)``): :func:`frame_iterator` and
:func:`video_splitter`; see :mod:`pxlite.iterators.video` for what they output.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage

from ..errors import SchemaError
from ..iterators.base import ComponentIterator
from ..iterators.video import FrameIterator, VideoSplitter, open_video, stream_duration
from ..media import temp_output_path
from ..types import Audio, Video
from .iterator_call import IteratorCall, make_call
from .media_common import load, media_function

if TYPE_CHECKING:
    from ..exprs import Expr

__all__ = ["extract_audio", "extract_frame", "frame_iterator", "get_duration", "get_metadata",
           "video_splitter"]

_REQUIRES = (("av", "video"),)

#: extract_audio's formats: (container, default codec, file extension), as Pixeltable's.
AUDIO_FORMATS = {"wav": ("wav", "pcm_s16le", ".wav"), "mp3": ("mp3", "libmp3lame", ".mp3"),
                 "flac": ("flac", "flac", ".flac"), "mp4": ("ipod", "aac", ".m4a")}


def frame_iterator(video: Expr | str, *, fps: float | None = None,
                   num_frames: int | None = None, keyframes_only: bool = False
                   ) -> IteratorCall | ComponentIterator:
    """A video's frames, one row each: ``frame``, ``frame_idx``, ``pos_msec``, ``pos_frame``,
    ``frame_attrs`` (see :class:`pxlite.iterators.video.FrameIterator`). At most one of
    ``fps`` (frames per second to pick), ``num_frames`` (evenly spaced) and
    ``keyframes_only``; none picks every frame. On an expression (``t.video``) this is the
    iterator call a view takes; on a local path, the running iterator."""
    return make_call(FrameIterator, video, {"fps": fps, "num_frames": num_frames,
                                            "keyframes_only": keyframes_only})


def video_splitter(video: Expr | str, *, duration: float | None = None,
                   overlap: float | None = None, min_segment_duration: float | None = None,
                   segment_times: list[float] | None = None, mode: str = "accurate",
                   video_encoder: str | None = None,
                   video_encoder_args: dict[str, Any] | None = None
                   ) -> IteratorCall | ComponentIterator:
    """A video's segments, one row each: ``segment_start``, ``segment_start_pts``,
    ``segment_end``, ``segment_end_pts``, ``video_segment`` (see
    :class:`pxlite.iterators.video.VideoSplitter`): every ``duration`` seconds or at
    ``segment_times``; ``mode='accurate'`` re-encodes, ``'fast'`` copies packets (and alone
    takes ``overlap``)."""
    return make_call(VideoSplitter, video, {
        "duration": duration, "overlap": overlap, "min_segment_duration": min_segment_duration,
        "segment_times": segment_times, "mode": mode, "video_encoder": video_encoder,
        "video_encoder_args": video_encoder_args})


def container_metadata(path: str, what: str) -> dict[str, Any]:
    """Pixeltable's ``ContainerMetadata`` of a media file: ``bit_exact``, ``bit_rate``,
    ``size``, ``metadata`` and per stream its type, duration, time base, frames, codec and
    (video) size and rates or (audio) channels."""
    av = load("av", "video", what)
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise SchemaError(f"{what}: cannot read {path!r} as a media file ({e})") from e
    with container:
        return {"bit_exact": bool(getattr(container, "bit_exact", False)),
                "bit_rate": container.bit_rate, "size": container.size,
                "metadata": dict(container.metadata),
                "streams": [_stream_metadata(s) for s in container.streams]}


def _stream_metadata(s: Any) -> dict[str, Any]:
    if s.type not in ("audio", "video"):
        return {"type": s.type}
    cc = s.codec_context
    tb = s.time_base
    out: dict[str, Any] = {
        "type": s.type, "duration": s.duration,
        "time_base": float(tb) if tb is not None else None,
        "duration_seconds": float(s.duration * tb) if s.duration is not None and tb else None,
        "frames": s.frames, "metadata": dict(s.metadata),
        "codec_context": {"name": cc.name, "profile": cc.profile,
                          "codec_tag": cc.codec_tag.encode("unicode-escape").decode()}}
    if s.type == "audio":
        out["codec_context"]["channels"] = int(cc.channels) if cc.channels is not None else None
    else:
        out["codec_context"]["pix_fmt"] = getattr(cc, "pix_fmt", None)
        out["width"], out["height"] = s.width, s.height
        for k in ("average_rate", "base_rate", "guessed_rate"):
            r = getattr(s, k)
            out[k] = float(r) if r is not None else None
    return out


@media_function("video", Video, _REQUIRES)
def get_metadata(video: str) -> dict:
    """A video's container and stream metadata (Pixeltable's ``ContainerMetadata``: size,
    bit rate, tags, and per stream codec, duration, frames, size and frame rates)."""
    return container_metadata(video, "get_metadata()")


@media_function("video", Video, _REQUIRES)
def get_duration(video: str) -> float | None:
    """A video's duration in seconds (its video stream's, else the container's when it has no
    audio stream), or None when the file does not say."""
    load("av", "video", "get_duration()")
    with open_video(video, "get_duration()") as c:
        return stream_duration(c, c.streams.video[0])


@media_function("video", Video, _REQUIRES)
def extract_frame(video: str, *, timestamp: float) -> PILImage.Image | None:
    """The frame shown at ``timestamp`` seconds (the first frame at or after it), or None when
    the timestamp lies past the video's end. Seeks to the key frame before it and decodes
    from there, so a frame late in a long video costs a GOP's decoding, not the video's."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or timestamp < 0:
        raise SchemaError(f"extract_frame(): timestamp must be a number of seconds >= 0, "
                          f"got {timestamp!r}")
    load("av", "video", "extract_frame()")
    with open_video(video, "extract_frame()") as c:
        s = c.streams.video[0]
        tb, start = s.time_base, s.start_time or 0
        if s.duration is not None and timestamp > float(s.duration * tb):
            return None
        c.seek(start + int(timestamp / tb), backward=True, stream=s)
        for frame in c.decode(s):
            if frame.pts is not None and float((frame.pts - start) * tb) >= timestamp - 1e-9:
                return frame.to_image()
    return None


@media_function("video", Video, _REQUIRES, return_type=Audio)
def extract_audio(video: str, stream_idx: int = 0, format: str = "wav",
                  codec: str | None = None) -> str | None:
    """The ``stream_idx``-th audio stream of a video as an audio file of ``format`` ('wav',
    'mp3', 'flac' or 'mp4'), re-encoded with ``codec`` (default: the format's usual one); None
    when the video has no such stream. The file is temporary: a computed column stores it."""
    if format not in AUDIO_FORMATS:
        raise SchemaError(f"extract_audio(): format must be one of {', '.join(AUDIO_FORMATS)}, "
                          f"got {format!r}")
    if isinstance(stream_idx, bool) or not isinstance(stream_idx, int) or stream_idx < 0:
        raise SchemaError(f"extract_audio(): stream_idx must be an integer >= 0, "
                          f"got {stream_idx!r}")
    av = load("av", "video", "extract_audio()")
    fmt, default_codec, suffix = AUDIO_FORMATS[format]
    codec = codec or default_codec
    if codec not in av.codecs_available:
        raise SchemaError(f"extract_audio(): the codec {codec!r} is not available in this "
                          "PyAV build; pass codec= or another format")
    with open_video(video, "extract_audio()") as c:
        if len(c.streams.audio) <= stream_idx:
            return None
        src = c.streams.audio[stream_idx]
        path = temp_output_path(suffix)
        try:
            with av.open(path, "w", format=fmt) as out:
                ost = out.add_stream(codec, rate=src.codec_context.sample_rate)
                for packet in c.demux(src):
                    for frame in packet.decode():
                        frame.pts = None  # the encoder re-times from the sample count
                        for p in ost.encode(frame):
                            out.mux(p)
                for p in ost.encode(None):
                    out.mux(p)
        except BaseException:
            os.unlink(path)
            raise
    return path
