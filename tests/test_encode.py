"""Encoding computed images: the same bytes whichever way Pillow encodes (into an in-memory
file, which lets threads encode at once, or into a Python buffer), in every format and mode."""

from __future__ import annotations

import errno
import io
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from pxlite import media


def _noise(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rnd = random.Random(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, bytes(rnd.getrandbits(8)
                                             for _ in range(size[0] * size[1] * channels)))


@pytest.mark.parametrize(("mode", "fmt"), [("RGB", None), ("L", "jpeg"), ("RGBA", None),
                                           ("RGB", "png"), ("P", "png"), ("RGB", "webp"),
                                           ("F", "tiff"), ("I;16", "jpeg")])
def test_the_same_bytes_with_or_without_an_in_memory_file(monkeypatch, mode, fmt):
    img = _noise((64, 48), "RGB" if mode in ("P", "F", "I;16") else mode, 1)
    if mode == "P":
        img = img.convert("P")
    elif mode in ("F", "I;16"):
        img = img.convert("L").convert(mode)
    fast = media.encode_image(img, fmt)
    monkeypatch.setattr(media, "ENCODE_TO_MEMFD", False)
    assert media.encode_image(img, fmt) == fast
    data, ext = fast
    back = Image.open(io.BytesIO(data))
    assert back.size == (64, 48) and back.format.lower() == {"jpg": "jpeg", "tif": "tiff"}.get(
        ext, ext)


def test_a_large_image_is_read_back_whole():
    img = _noise((1500, 1000), "RGB", 2)  # a PNG of ~4.5 MB
    data, ext = media.encode_image(img, "png")
    assert ext == "png" and len(data) > 4_000_000
    assert Image.open(io.BytesIO(data)).tobytes() == img.tobytes()


def test_threads_encoding_at_once_each_get_their_own_image():
    imgs = [_noise((120, 90), "RGB", s) for s in range(24)]
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda im: media.encode_image(im, "png")[0], imgs))
    for im, data in zip(imgs, out, strict=True):
        assert Image.open(io.BytesIO(data)).tobytes() == im.tobytes()


@pytest.mark.parametrize(("err", "again"), [(errno.ENOSYS, False), (errno.EMFILE, True)])
def test_without_in_memory_files_it_encodes_into_a_buffer(monkeypatch, err, again):
    """A system refusing memfd (a sandbox without the call: never tried again) or out of
    descriptors (tried again next time) still encodes, through a Python buffer."""
    import os

    img = _noise((32, 32), "RGB", 3)
    want = media.encode_image(img)
    calls = []

    def refuse(*a):
        calls.append(a)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "memfd_create", refuse)
    monkeypatch.setattr(media, "ENCODE_TO_MEMFD", True)
    assert media.encode_image(img) == want
    assert media.encode_image(img) == want
    assert len(calls) == (2 if again else 1) and media.ENCODE_TO_MEMFD is again
