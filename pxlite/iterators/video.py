"""Video iterators (PyAV, the ``pxlite[video]`` extra): :class:`FrameIterator` (a video's
frames, picked by rate, count or keyframes) and :class:`VideoSplitter` (a video cut into
segment files).

Both read the video once, front to back: frames are decoded in order and each picked frame is
handed on as it comes, so memory holds one frame (plus the decoder's own small window) however
long the video. Pixeltable re-opens and re-decodes a video per read of its unstored frames; the
picking rule here is Pixeltable's, so the same arguments give the same frames.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from ..errors import SchemaError
from ..types import Float, Image, Int, Json, Required, Video
from .base import ComponentIterator, check_keys, check_number, register_iterator

if TYPE_CHECKING:
    from ..types import ColumnType

_REQUIRES = (("av", "video"),)


def open_video(path: str, what: str) -> Any:
    """``av.open`` of a local file with a clear error for anything that is not a video."""
    import av

    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as e:
        raise SchemaError(f"{what}: cannot read {path!r} as a video ({e})") from e
    if not container.streams.video:
        container.close()
        raise SchemaError(f"{what}: {path!r} has no video stream")
    return container


def stream_duration(container: Any, stream: Any) -> float | None:
    """A stream's duration in seconds: the stream header's, else the container's when no
    other (audio) stream may be the longer one; None when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / 1_000_000
    return None


@register_iterator
class FrameIterator(ComponentIterator):
    """``frame_iterator(video, *, fps=None, num_frames=None, keyframes_only=False)``: one row
    per picked frame of a video.

    Outputs (Pixeltable's): ``frame`` (Image, RGB), ``frame_idx`` (position among the picked
    frames, 0-based), ``pos_msec`` (the frame's time from the video's start, ms), ``pos_frame``
    (the frame's index among all the video's frames) and ``frame_attrs`` (Json: ``index``,
    ``pts``, ``dts``, ``time``, ``is_corrupt``, ``key_frame``, ``pict_type``,
    ``interlaced_frame``, as PyAV reports them).

    Picking (at most one of the three): ``fps`` aims at times 0, 1/fps, 2/fps... from the
    video's start and takes, for each, the frame closest to it (all frames when ``fps`` is at
    least the video's rate); ``num_frames`` splits the duration into that many equal intervals
    and takes the frame closest to each midpoint (all frames when the video has fewer);
    ``keyframes_only`` takes the key frames; none of them takes every frame.
    """

    name = "pxlite.functions.video.frame_iterator"
    input_type = Video
    requires = _REQUIRES
    unstored = ("frame",)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        fn = "frame_iterator"
        check_keys(fn, args, ("fps", "num_frames", "keyframes_only"))
        fps = check_number(fn, "fps", args.get("fps"))
        num = check_number(fn, "num_frames", args.get("num_frames"), integer=True)
        key = args.get("keyframes_only", False)
        if not isinstance(key, bool):
            raise SchemaError(f"{fn}(): keyframes_only must be True or False, got {key!r}")
        if (fps is not None) + (num is not None) + key > 1:
            raise SchemaError(f"{fn}(): give at most one of fps, num_frames and keyframes_only")
        return {"fps": fps, "num_frames": num, "keyframes_only": key}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        return {"frame": Image, "frame_idx": Required[Int], "pos_msec": Required[Float],
                "pos_frame": Required[Int], "frame_attrs": Json}

    def _rows(self) -> Iterator[dict[str, Any]]:
        path = self.input_path()
        self._container = container = open_video(path, "frame_iterator()")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: decoding is most of the work
        tb = stream.time_base
        start = float((stream.start_time or 0) * tb)
        step, target = self._targets(container, stream, start, path)
        keyframes_only = self.args["keyframes_only"]
        frames = container.decode(stream)
        cur = next(frames, None)
        idx = pos = 0
        while cur is not None:
            nxt = next(frames, None)
            if keyframes_only and not cur.key_frame:
                cur, idx = nxt, idx + 1
                continue
            t = _time(cur, tb)
            if step is not None:
                # Pixeltable's rule: take cur unless the next frame is closer to the target
                # time; past the last frame, stop once the target lies beyond it.
                if nxt is None:
                    if t < target:
                        return
                elif _time(nxt, tb) - target < target - t:
                    cur, idx = nxt, idx + 1
                    continue
            yield {"frame": cur.to_image(), "frame_idx": pos, "pos_msec": (t - start) * 1000.0,
                   "pos_frame": idx, "frame_attrs": _attrs(cur, idx, t)}
            cur, idx, pos = nxt, idx + 1, pos + 1
            if step is not None:
                target += step

    def _targets(self, container: Any, stream: Any, start: float, path: str
                 ) -> tuple[float | None, float]:
        """The step between target times and the first target (None: every frame)."""
        if self.args["num_frames"] is not None:
            duration = stream_duration(container, stream)
            if duration is None:
                raise SchemaError(f"frame_iterator(): num_frames needs the video's duration, "
                                  f"which {path!r} does not declare; use fps instead")
            step = duration / self.args["num_frames"]
            return step, start + step / 2
        if self.args["fps"] is not None:
            return 1.0 / self.args["fps"], start
        return None, 0.0

    def _release(self) -> None:
        c = getattr(self, "_container", None)
        if c is not None:
            c.close()


def _time(frame: Any, tb: Any) -> float:
    if frame.pts is None:  # a stream without timestamps: the decoder's best guess
        return float(frame.time or 0.0)
    return float(frame.pts * tb)


def _attrs(frame: Any, idx: int, t: float) -> dict[str, Any]:
    return {"index": idx, "pts": frame.pts, "dts": frame.dts, "time": t,
            "is_corrupt": bool(frame.is_corrupt), "key_frame": bool(frame.key_frame),
            "pict_type": int(frame.pict_type), "interlaced_frame": bool(frame.interlaced_frame)}


#: Encoders tried, in order, when video_splitter re-encodes and none is named.
_ENCODERS = ("libx264", "libopenh264", "mpeg4")


@register_iterator
class VideoSplitter(ComponentIterator):
    """``video_splitter(video, *, duration=None, overlap=None, min_segment_duration=None,
    segment_times=None, mode='accurate', video_encoder=None, video_encoder_args=None)``: one
    row per segment of a video, each segment a video file of its own.

    Outputs (Pixeltable's): ``segment_start`` / ``segment_end`` (seconds from the video's
    start), ``segment_start_pts`` / ``segment_end_pts`` (the same in the video stream's time
    base) and ``video_segment`` (Video). Segments are cut every ``duration`` seconds, or at the
    times in ``segment_times`` (``[]``: one segment, the whole video). A last segment shorter
    than ``min_segment_duration`` is dropped.

    ``mode='accurate'`` decodes the video once and re-encodes each segment (H.264 by default,
    or ``video_encoder`` with ``video_encoder_args`` as encoder options), so cuts fall exactly
    on the requested times; the first audio stream is re-encoded alongside (AAC).
    ``mode='fast'`` copies the packets of every stream without re-encoding, so a segment starts
    at a key frame at or before its start and ends at the first key frame at or after its end;
    only this mode takes ``overlap`` (the next segment starts ``overlap`` seconds before the
    previous one's end).
    """

    name = "pxlite.functions.video.video_splitter"
    input_type = Video
    requires = _REQUIRES

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        fn = "video_splitter"
        check_keys(fn, args, ("duration", "overlap", "min_segment_duration", "segment_times",
                              "mode", "video_encoder", "video_encoder_args"))
        duration = check_number(fn, "duration", args.get("duration"))
        overlap = check_number(fn, "overlap", args.get("overlap"), strict=False)
        min_dur = check_number(fn, "min_segment_duration", args.get("min_segment_duration"),
                               strict=False)
        times = args.get("segment_times")
        mode = args.get("mode", "accurate")
        encoder = args.get("video_encoder")
        enc_args = args.get("video_encoder_args")
        if mode not in ("accurate", "fast"):
            raise SchemaError(f"{fn}(): mode must be 'accurate' or 'fast', got {mode!r}")
        if (duration is None) == (times is None):
            raise SchemaError(f"{fn}(): give exactly one of duration and segment_times")
        if times is not None:
            times = _check_times(fn, times)
            if overlap is not None:
                raise SchemaError(f"{fn}(): overlap cannot be combined with segment_times")
        if duration is not None:
            if min_dur is not None and duration < min_dur:
                raise SchemaError(f"{fn}(): duration must be at least min_segment_duration: "
                                  f"{duration} < {min_dur}")
            if overlap is not None and overlap >= duration:
                raise SchemaError(f"{fn}(): overlap must be less than duration: "
                                  f"{overlap} >= {duration}")
        if mode == "accurate" and overlap is not None:
            raise SchemaError(f"{fn}(): overlap needs mode='fast' (accurate segments follow "
                              "one another)")
        if mode == "fast" and (encoder is not None or enc_args is not None):
            raise SchemaError(f"{fn}(): video_encoder and video_encoder_args need "
                              "mode='accurate' (fast mode copies packets, it does not encode)")
        if encoder is not None and not isinstance(encoder, str):
            raise SchemaError(f"{fn}(): video_encoder must be an encoder name such as "
                              f"'libx264', got {encoder!r}")
        if enc_args is not None and not (isinstance(enc_args, dict) and all(
                isinstance(k, str) for k in enc_args)):
            raise SchemaError(f"{fn}(): video_encoder_args must be a dict of encoder options, "
                              f"got {enc_args!r}")
        return {"duration": duration, "overlap": overlap, "min_segment_duration": min_dur,
                "segment_times": times, "mode": mode, "video_encoder": encoder,
                "video_encoder_args": enc_args}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        return {"segment_start": Float, "segment_start_pts": Int, "segment_end": Float,
                "segment_end_pts": Int, "video_segment": Video}

    def _rows(self) -> Iterator[dict[str, Any]]:
        path = self.input_path()
        self._container = container = open_video(path, "video_splitter()")
        if self.args["segment_times"] == []:
            yield self._whole(container, path)
        elif self.args["mode"] == "fast":
            yield from self._fast(container, path)
        else:
            yield from self._accurate(container, path)

    def _release(self) -> None:
        c = getattr(self, "_container", None)
        if c is not None:
            c.close()

    def _whole(self, container: Any, path: str) -> dict[str, Any]:
        s = container.streams.video[0]
        start_pts = s.start_time or 0
        dur = stream_duration(container, s)
        end_pts = None if s.duration is None else start_pts + s.duration
        return {"segment_start": float(start_pts * s.time_base), "segment_start_pts": start_pts,
                "segment_end": None if dur is None else float(start_pts * s.time_base) + dur,
                "segment_end_pts": end_pts, "video_segment": path}

    # ---- accurate: decode once, re-encode each segment ----------------------------------
    def _boundary(self, k: int) -> float | None:
        """The end (seconds from the start) of segment k, None for an open last segment."""
        times = self.args["segment_times"]
        if times is not None:
            return times[k] if k < len(times) else None
        return float(self.args["duration"]) * (k + 1)

    def _accurate(self, container: Any, path: str) -> Iterator[dict[str, Any]]:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        origin = vs.start_time or 0
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [vs] if audio is None else [vs, audio]
        seg: _SegmentWriter | None = None
        k = 0
        last_end_pts = origin
        early: list[Any] = []  # audio frames past the current segment's end (a few at most)
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream is audio:
                    end = self._boundary(k)
                    if frame.pts is not None and end is not None and float(
                            frame.pts * frame.time_base) - float(origin * tb) >= end:
                        early.append(frame)
                    elif seg is not None:
                        seg.audio(frame)
                    continue
                if frame.pts is None:
                    continue
                rel = float((frame.pts - origin) * tb)
                end = self._boundary(k)
                while end is not None and rel >= end - 1e-9:
                    if seg is not None:
                        yield self._finish(seg, frame.pts, origin, tb)
                        seg = None
                    k += 1
                    end = self._boundary(k)
                if seg is None:
                    seg = _SegmentWriter(self.temp_path(".mp4"), vs, audio, frame.pts,
                                         self._encoder(), self.args["video_encoder_args"])
                    for a in early:
                        seg.audio(a)
                    early.clear()
                last_end_pts = frame.pts + max(1, frame.duration or _frame_pts(vs))
                seg.video(frame)
        if seg is not None:
            out = self._finish(seg, last_end_pts, origin, tb)
            min_dur = self.args["min_segment_duration"]
            if min_dur is None or out["segment_end"] - out["segment_start"] >= min_dur:
                yield out

    def _finish(self, seg: _SegmentWriter, end_pts: int, origin: int, tb: Any
                ) -> dict[str, Any]:
        seg.close()
        s, e = seg.start_pts - origin, end_pts - origin
        return {"segment_start": float(s * tb), "segment_start_pts": s,
                "segment_end": float(e * tb), "segment_end_pts": e, "video_segment": seg.path}

    def _encoder(self) -> str:
        import av

        name = self.args["video_encoder"]
        if name is not None:
            if name not in av.codecs_available:
                raise SchemaError(f"video_splitter(): the encoder {name!r} is not available "
                                  "in this PyAV build")
            return str(name)
        return next(e for e in _ENCODERS if e in av.codecs_available)

    # ---- fast: copy packets, cut at key frames ------------------------------------------
    def _fast(self, container: Any, path: str) -> Iterator[dict[str, Any]]:
        vs = container.streams.video[0]
        origin = vs.start_time or 0
        overlap = self.args["overlap"] or 0.0
        min_dur = self.args["min_segment_duration"] or 0.0
        start, k = 0.0, 0
        prev_start_pts: int | None = None
        times = self.args["segment_times"]
        while True:
            # a segment aims at duration seconds from where it starts (its start already
            # moved back by the overlap), or at the next of segment_times
            end = self._boundary(k) if times is not None else start + self.args["duration"]
            out = self._copy_segment(container, vs, origin, start, end)
            if out is None:
                return
            length = out["segment_end"] - out["segment_start"]
            if prev_start_pts is not None and out["segment_start_pts"] <= prev_start_pts:
                return  # the overlap went back to the same key frame: nothing new follows
            prev_start_pts = out["segment_start_pts"]
            last = out.pop("_last")
            if length < min_dur or length - overlap <= 0:
                return
            yield out
            if last:
                return
            start = out["segment_end"] - overlap
            k += 1

    def _copy_segment(self, container: Any, vs: Any, origin: int, start: float,
                      end: float | None) -> dict[str, Any] | None:
        """Copy the packets of every stream from the key frame at or before ``start`` to the
        first key frame at or after ``end`` into a new file; None when nothing is left."""
        import av

        tb = vs.time_base
        container.seek(origin + math.floor(start / tb), backward=True, stream=vs)
        path = self.temp_path(".mp4")
        first_pts: int | None = None
        end_pts: int | None = None
        last = True
        with av.open(path, "w") as out:
            outs = {s.index: out.add_stream_from_template(s) for s in container.streams
                    if s.type in ("video", "audio")}
            shift: dict[int, int] = {}
            for packet in container.demux(list(container.streams)):
                if packet.dts is None or packet.stream.index not in outs:
                    continue
                is_video = packet.stream is vs
                if is_video and first_pts is None and not packet.is_keyframe:
                    continue
                if is_video and packet.is_keyframe and first_pts is not None and end is not None \
                        and float((packet.pts - origin) * tb) >= end - 1e-9:
                    last = False
                    break
                if is_video and first_pts is None:
                    first_pts = packet.pts
                if first_pts is None:
                    continue  # audio before the first key frame
                st = packet.stream
                base = shift.setdefault(st.index, packet.dts)
                if is_video:
                    end_pts = max(end_pts or 0, packet.pts + (packet.duration or 0))
                packet.pts = None if packet.pts is None else packet.pts - base
                packet.dts -= base
                packet.stream = outs[st.index]
                out.mux(packet)
        if first_pts is None or end_pts is None:
            return None
        s, e = first_pts - origin, end_pts - origin
        return {"segment_start": float(s * tb), "segment_start_pts": s,
                "segment_end": float(e * tb), "segment_end_pts": e, "video_segment": path,
                "_last": last}


def _frame_pts(stream: Any) -> int:
    """One frame's length in the stream's time base (from its average rate)."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return 1
    return max(1, round(1 / (rate * stream.time_base)))


def _check_times(fn: str, times: Any) -> list[float]:
    if not isinstance(times, (list, tuple)):
        raise SchemaError(f"{fn}(): segment_times must be a list of times in seconds, "
                          f"got {times!r}")
    out = [check_number(fn, "segment_times entries", t, none=False) for t in times]
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise SchemaError(f"{fn}(): segment_times must increase, got {list(times)!r}")
    return out


class _SegmentWriter:
    """One re-encoded segment file: video frames (and the first audio stream's) re-timed from
    the segment's first frame."""

    def __init__(self, path: str, vs: Any, audio: Any, start_pts: int, encoder: str,
                 options: dict[str, Any] | None) -> None:
        import av

        self.path, self.start_pts, self.tb = path, start_pts, vs.time_base
        self.out: Any = cast(Any, av.open(path, "w"))  # PyAV's stubs know less than it does
        rate = vs.average_rate or vs.guessed_rate or 25
        self.v: Any = self.out.add_stream(encoder, rate=rate, options={
            str(k): str(v) for k, v in (options or {}).items()})
        self.v.width, self.v.height = vs.codec_context.width, vs.codec_context.height
        self.v.pix_fmt = "yuv420p"
        self.v.time_base = vs.time_base
        self.a: Any = None
        if audio is not None:
            self.a = self.out.add_stream("aac", rate=audio.codec_context.sample_rate)
            self.a_start: float | None = None
        self.start_time = float(start_pts * vs.time_base)

    def video(self, frame: Any) -> None:
        frame = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
        frame.pts -= self.start_pts
        frame.time_base = self.tb
        frame.pict_type = 0  # let the encoder choose; a decoded I-frame flag would force one
        for p in self.v.encode(frame):
            self.out.mux(p)

    def audio(self, frame: Any) -> None:
        if self.a is None or frame.pts is None:
            return
        t = float(frame.pts * frame.time_base) - self.start_time
        if t < -1e-6:
            return  # before the segment's first video frame
        frame.pts = round(t * frame.sample_rate)
        frame.time_base = _fraction(1, frame.sample_rate)
        for p in self.a.encode(frame):
            self.out.mux(p)

    def close(self) -> None:
        for s in (self.v, self.a):
            if s is not None:
                for p in s.encode(None):
                    self.out.mux(p)
        self.out.close()


def _fraction(a: int, b: int) -> Any:
    from fractions import Fraction

    return Fraction(a, b)


__all__ = ["FrameIterator", "VideoSplitter", "open_video", "stream_duration"]
