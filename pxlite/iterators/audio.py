"""Audio iterator (PyAV, the ``pxlite[video]`` extra): :class:`AudioSplitter` cuts an audio
file into segment files by copying its packets (no re-encoding), reading the file once, front
to back; memory holds one segment's packets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import SchemaError
from ..types import Audio, Float, Required
from .base import ComponentIterator, check_keys, check_number, register_iterator

if TYPE_CHECKING:
    from ..types import ColumnType

#: Output container (format, file suffix) for an input container format, as PyAV names it.
_FORMATS = {"wav": ("wav", ".wav"), "mp3": ("mp3", ".mp3"), "flac": ("flac", ".flac"),
            "ogg": ("ogg", ".ogg"), "matroska,webm": ("matroska", ".mka"),
            "mov,mp4,m4a,3gp,3g2,mj2": ("ipod", ".m4a"), "aiff": ("aiff", ".aiff")}


class _Packet(NamedTuple):
    """A demuxed packet and its original timestamps (muxing rewrites them in place, and an
    overlap puts one packet in two segments)."""

    packet: Any
    pts: int
    dts: int | None
    duration: int


@register_iterator
class AudioSplitter(ComponentIterator):
    """``audio_splitter(audio, *, duration=None, max_size=None, overlap=0.0,
    min_segment_duration=0.0)``: one row per segment of an audio file.

    Outputs (Pixeltable's): ``segment_start`` and ``segment_end`` (seconds, rounded to 0.1 ms)
    and ``audio_segment`` (Audio: a file of the input's format). Exactly one of ``duration``
    (seconds; a segment may run over by up to one packet, and cuts stay on the grid of
    multiples of ``duration`` so rounding never accumulates) and ``max_size`` (bytes: every
    segment file is at most that big) sizes the segments; ``overlap`` seconds of each segment's
    end start the next one again; a last segment shorter than ``min_segment_duration`` is
    dropped.
    """

    name = "pxlite.functions.audio.audio_splitter"
    input_type = Audio
    requires = (("av", "video"),)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        fn = "audio_splitter"
        check_keys(fn, args, ("duration", "max_size", "overlap", "min_segment_duration"))
        duration = check_number(fn, "duration", args.get("duration"))
        max_size = check_number(fn, "max_size", args.get("max_size"), integer=True)
        overlap = check_number(fn, "overlap", args.get("overlap", 0.0), strict=False, none=False)
        min_dur = check_number(fn, "min_segment_duration", args.get("min_segment_duration", 0.0),
                               strict=False, none=False)
        if (duration is None) == (max_size is None):
            raise SchemaError(f"{fn}(): give exactly one of duration (seconds) and max_size "
                              "(bytes)")
        if duration is not None:
            if duration < min_dur:
                raise SchemaError(f"{fn}(): duration must be at least min_segment_duration: "
                                  f"{duration} < {min_dur}")
            if overlap >= duration:
                raise SchemaError(f"{fn}(): overlap must be less than duration: "
                                  f"{overlap} >= {duration}")
        return {"duration": duration, "max_size": max_size, "overlap": overlap,
                "min_segment_duration": min_dur}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        return {"segment_start": Required[Float], "segment_end": Required[Float],
                "audio_segment": Audio}

    def _release(self) -> None:
        c = getattr(self, "_container", None)
        if c is not None:
            c.close()

    def _rows(self) -> Iterator[dict[str, Any]]:
        import av

        path = self.input_path()
        try:
            container: Any = av.open(path)
            self._container = container
        except (av.FFmpegError, OSError) as e:
            raise SchemaError(f"audio_splitter(): cannot read {path!r} as audio ({e})") from e
        if not container.streams.audio:
            raise SchemaError(f"audio_splitter(): {path!r} has no audio stream")
        self._in = stream = container.streams.audio[0]
        self._format = _FORMATS.get(container.format.name,
                                    ("matroska", ".mka"))  # holds any codec
        tb = stream.time_base
        size_mode = self.args["max_size"] is not None
        overlap_pts = round(self.args["overlap"] / tb)
        min_pts = round(self.args["min_segment_duration"] / tb)
        duration_pts = 0 if size_mode else round(self.args["duration"] / tb)
        packets = (p for p in container.demux(stream) if p.size > 0 and p.pts is not None)
        target = emitted = 0  # grid anchoring (duration mode): totals so far
        pending: list[_Packet] = []
        eof = False
        prev_start: int | None = None
        reserve = 0  # size mode: container overhead seen so far
        while True:
            segment, pending = pending, []
            nbytes = sum(p.packet.size for p in segment)
            lookahead: _Packet | None = None
            while not eof:
                packet = next(packets, None)
                if packet is None:
                    eof = True
                    break
                start = segment[0].pts if segment else packet.pts
                if size_mode:
                    full = bool(segment) and nbytes + packet.size > self.args["max_size"] - reserve
                else:
                    full = bool(segment) and emitted + packet.pts - start >= target + duration_pts
                info = _Packet(packet, packet.pts, packet.dts, packet.duration or 0)
                if full:
                    lookahead = info
                    break
                segment.append(info)
                nbytes += packet.size
            if not segment:
                return
            if size_mode:
                file, kept, trimmed = self._fit(segment)
                reserve = max(reserve, Path(file).stat().st_size - sum(
                    p.packet.size for p in kept))
            else:
                file, kept, trimmed = self._remux(segment), segment, []
            s, end = kept[0].pts, kept[-1].pts + kept[-1].duration
            if prev_start is not None and s <= prev_start:
                raise SchemaError("audio_splitter(): overlap is too large for max_size: "
                                  "segments cannot advance")
            prev_start = s
            more = not eof or lookahead is not None or bool(trimmed)
            if not more and end - s < min_pts:
                return
            if more:
                tail = [p for p in kept if p.pts + p.duration > end - overlap_pts]
                pending = tail + trimmed + ([lookahead] if lookahead is not None else [])
            target += duration_pts
            emitted += end - s
            yield {"segment_start": round(float(s * tb), 4),
                   "segment_end": round(float(end * tb), 4), "audio_segment": file}
            if not more:
                return

    def _fit(self, segment: list[_Packet]) -> tuple[str, list[_Packet], list[_Packet]]:
        """Remux, dropping packets from the end until the file is at most max_size bytes."""
        kept, trimmed = list(segment), list[_Packet]()
        while True:
            file = self._remux(kept)
            if Path(file).stat().st_size <= self.args["max_size"]:
                return file, kept, trimmed
            Path(file).unlink()
            if len(kept) == 1:
                raise SchemaError(f"audio_splitter(): max_size={self.args['max_size']} bytes "
                                  "cannot hold even one packet of this file (with its header)")
            trimmed.insert(0, kept.pop())

    def _remux(self, packets: list[_Packet]) -> str:
        import av

        fmt, suffix = self._format
        path = self.temp_path(suffix)
        base = packets[0].pts
        with av.open(path, "w", format=fmt) as out:
            ost = out.add_stream_from_template(self._in)
            for info in packets:
                p = info.packet
                p.stream = ost
                p.pts = info.pts - base
                p.dts = None if info.dts is None else info.dts - base
                p.duration = info.duration
                out.mux(p)
        return path


__all__ = ["AudioSplitter"]
