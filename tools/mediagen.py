"""Test and benchmark media made on the spot (no downloads): videos whose frames carry their own
index, WAV files of known tones, PDFs with known text per page.

* :func:`write_video`: frame ``k`` shows ``k`` in binary as :data:`BITS` black/white stripes over
  its top half (:func:`frame_number` reads it back from a decoded frame), over a moving
  gradient; optional sine-tone audio. PyAV encodes it (H.264, or MPEG-4 part 2).
* :func:`write_wav`: a mono 16-bit sine tone with the stdlib ``wave`` module.
* :func:`write_pdf`: a PDF written by hand (one Helvetica text line per line given, one page per
  list), which pypdfium2 reads back.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path
from typing import Any

#: Stripes that encode a frame's index (up to 2**BITS - 1).
BITS = 12


def _frame_array(k: int, width: int, height: int, shift: int = 0) -> Any:
    import numpy as np

    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)[:, None]
    img = np.empty((height, width, 3), dtype=np.uint8)
    m = k + shift
    img[..., 0] = ((x + 3 * m) % 256)[None, :]
    img[..., 1] = ((y + 2 * m) % 256)
    img[..., 2] = ((x // 2 + y // 2 + m) % 256)
    stripe = width // BITS
    for b in range(BITS):
        on = (k >> (BITS - 1 - b)) & 1
        img[: height // 2, b * stripe:(b + 1) * stripe] = 255 if on else 0
    return img


def frame_number(image: Any) -> int:
    """The index a frame made by :func:`write_video` carries (read from a PIL image)."""
    rgb = image.convert("L")
    w, h = rgb.size
    stripe = w // BITS
    k = 0
    for b in range(BITS):
        v = rgb.getpixel((b * stripe + stripe // 2, h // 4))
        k = (k << 1) | (1 if v >= 128 else 0)
    return k


def write_video(path: str | Path, n_frames: int, *, fps: int = 10,
                size: tuple[int, int] = (160, 96), gop: int | None = None, audio: bool = False,
                codec: str | None = None, start: int = 0) -> Path:
    """Encode ``n_frames`` frames at ``fps`` (frame ``k`` at ``k / fps`` s); ``gop`` frames
    between key frames (default: one a second); with ``audio``, a 440 Hz AAC tone as long as the
    video; ``start`` shifts the gradients (so videos made with different ones differ)."""
    import av
    import numpy as np

    path = Path(path)
    w, h = size
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.gop_size = gop or fps
        if codec == "libx264":
            vs.options = {"preset": "veryfast", "crf": "18", "bf": "2",
                          "x264-params": f"keyint={gop or fps}:min-keyint={gop or fps}:scenecut=0"}
        as_ = None
        if audio:
            as_ = out.add_stream("aac", rate=44100)
            as_.layout = "mono"
        for k in range(n_frames):
            frame = av.VideoFrame.from_ndarray(_frame_array(k, w, h, start), format="rgb24")
            frame.pts = k
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if as_ is not None:
            rate, total = 44100, int(44100 * n_frames / fps)
            chunk = 1024
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                t = (np.arange(start, start + n) / rate).astype(np.float32)
                data = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(data, format="flt", layout="mono")
                af.sample_rate, af.pts = rate, start
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode(None):
                out.mux(p)
    return path


def write_wav(path: str | Path, seconds: float, *, rate: int = 8000, freq: float = 440.0) -> Path:
    """A mono 16-bit PCM sine tone of ``seconds`` seconds (stdlib ``wave``)."""
    path = Path(path)
    n = round(seconds * rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
            for i in range(n)))
    return path


def write_pdf(path: str | Path, pages: list[list[str]]) -> Path:
    """A PDF with one page per entry of ``pages``, each line of text drawn in Helvetica."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objs: list[bytes] = []
    n = len(pages)
    # 1 catalog, 2 pages, 3 font, then per page: page object, content stream
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        body = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(
            f"({esc(line)}) Tj T*" for line in lines) + " ET"
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                    f"<< /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode())
        data = body.encode("latin-1")
        objs.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for k, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path = Path(path)
    path.write_bytes(bytes(out))
    return path
