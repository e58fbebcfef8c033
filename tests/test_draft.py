"""Reduced JPEG decodes ("draft") for thumbnail and strong resizes.

The measure: on photo-like JPEGs (smooth gradients, shapes with sharp edges, mild noise; quality
90), an output computed from a reduced decode has exactly the full decode's size and a PSNR of at
least 35 dB against the full decode's output (the same wrapper run on the full image). Every
case where no reduction applies (PNG, small images, mild resizes, NEAREST, chains) is
byte-identical to the full decode, and an expression that needs full pixels in the same row (a
rotate beside a thumbnail) never sees the reduced image.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

import pxlite as pxl
from pxlite import config, media
from pxlite.functions import image as fimage

#: The tolerance this feature promises (README, functions/image.py docstring).
MIN_PSNR_DB = 35.0


# ---- inputs -------------------------------------------------------------------------------------

def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth colour gradients, a few filled shapes (sharp edges, the
    hard case for a resample) and mild per-pixel noise (Gaussian, sigma 6)."""
    rnd = random.Random(seed)
    w, h = size
    r = Image.linear_gradient("L").resize((w, h))
    g = Image.radial_gradient("L").resize((w, h))
    b = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    img = Image.merge("RGB", (r, g, b))
    d = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randrange(w // 3 + 2), y0 + rnd.randrange(h // 3 + 2)
        fill = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        (d.ellipse if rnd.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)
    d.line((0, h // 3, w, 2 * h // 3), fill=(250, 250, 250), width=max(2, w // 200))
    noise = Image.effect_noise((w, h), 6).convert("RGB")
    return ImageChops.add(img, noise, scale=1.0, offset=-128)


def save_jpeg(img: Image.Image, path: Path, orientation: int = 1) -> Path:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(path, format="JPEG", quality=90, exif=exif.tobytes())
    return path


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio of ``b`` against ``a`` over all bands (8-bit), in dB."""
    assert a.mode == b.mode and a.size == b.size, (a.mode, a.size, b.mode, b.size)
    diff = ImageStat.Stat(ImageChops.difference(a, b))
    mse = sum(diff.sum2) / (a.width * a.height * len(a.getbands()))
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


SIZES = [(1600, 1200), (1605, 1203), (1201, 1599), (2001, 997)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inputs, by name: photo sizes (odd ones included), every EXIF orientation of an odd
    size, a grayscale and a CMYK JPEG, a PNG, and two small JPEGs."""
    d = tmp_path_factory.mktemp("draft")
    out: dict[str, Path] = {}
    for i, size in enumerate(SIZES):
        out[f"rgb{size[0]}x{size[1]}"] = save_jpeg(photo(size, i), d / f"rgb{i}.jpg")
    odd = photo((1605, 1203), 7)
    for o in range(2, 9):
        out[f"orient{o}"] = save_jpeg(odd, d / f"orient{o}.jpg", o)
    out["gray"] = save_jpeg(photo((1203, 901), 8).convert("L"), d / "gray.jpg")
    out["cmyk"] = save_jpeg(photo((1001, 777), 9).convert("CMYK"), d / "cmyk.jpg")
    photo((1200, 900), 10).save(d / "photo.png", format="PNG", compress_level=1)
    out["png"] = d / "photo.png"
    out["small"] = save_jpeg(photo((200, 150), 11), d / "small.jpg")      # draft scale 1
    out["tiny"] = save_jpeg(photo((100, 80), 12), d / "tiny.jpg")         # fits already
    return out


JPEG_PHOTOS = [f"rgb{w}x{h}" for w, h in SIZES] + [f"orient{o}" for o in range(2, 9)] + [
    "gray", "cmyk"]


# ---- the functions, on images opened as pxlite opens them ---------------------------------------

def _open(path: Path, fn: Any = None, args: tuple[Any, ...] = (), kwargs: Any = None
          ) -> Image.Image:
    """The image the wrapper ``fn`` gets: reduced when ``fn`` is given and asks for it."""
    settings = config.resolve()
    if fn is None:
        return media.open_image(path, settings)
    want = fn.fn.pxlite_decode_request

    def request(full: tuple[int, int]) -> Any:
        return want(full, *args, **(kwargs or {}))
    return media.open_image(path, settings, reduce=request)


def _both(path: Path, fn: Any, *args: Any, **kwargs: Any
          ) -> tuple[Image.Image, Image.Image, bool]:
    """(full decode's output, reduced path's output, whether the decode was reduced)."""
    full = fn.fn(_open(path), *args, **kwargs)
    img = _open(path, fn, args, kwargs)
    reduced = media.reduction_of(img) is not None
    return full, fn.fn(img, *args, **kwargs), reduced


CALLS = [
    ("thumbnail 128", fimage.thumbnail, ((128, 128),), {}),
    ("thumbnail 300x100", fimage.thumbnail, ((300, 100),), {}),
    ("thumbnail lanczos", fimage.thumbnail, ((160, 160),), {"resample": 1}),
    ("resize quarter", fimage.resize, ((400, 300),), {}),
    ("resize to square", fimage.resize, ((64, 64),), {"resample": 2}),
    ("resize with box", fimage.resize, ((100, 120),), {"box": (40, 30, 640, 690)}),
]


@pytest.mark.parametrize("name", JPEG_PHOTOS)
@pytest.mark.parametrize("label,fn,args,kwargs", CALLS, ids=[c[0] for c in CALLS])
def test_reduced_output_has_the_full_size_and_stays_close(photos, name, label, fn, args, kwargs):
    """Reduced: same size and mode, PSNR >= 35 dB. Not reduced (libjpeg scales by powers of
    two only, so e.g. 1201 -> 400 with a 2x margin is not halved): the very same pixels."""
    full, red, reduced = _both(photos[name], fn, *args, **kwargs)
    assert red.size == full.size and red.mode == full.mode
    if reduced:
        assert psnr(full, red) >= MIN_PSNR_DB, (label, name, psnr(full, red))
    else:
        assert red.tobytes() == full.tobytes()
        w, h = _open(photos[name]).size  # upright
        want = fn.fn.pxlite_decode_request((w, h), *args, **kwargs)
        assert want is None or min(w // want[0], h // want[1]) < 2  # libjpeg's scale is 1


@pytest.mark.parametrize("name", JPEG_PHOTOS)
def test_every_jpeg_photo_gets_a_reduced_thumbnail(photos, name):
    assert _both(photos[name], fimage.thumbnail, (128, 128))[2]


def test_every_orientation_is_as_close_as_the_upright_image(photos):
    """A quarter turn swaps the request's sides and moves libjpeg's partial last block to
    another edge: get either wrong and the result shifts by a fraction of a pixel, which costs
    ~4 dB here (an odd size, where the partial block is large)."""
    upright = photo((1605, 1203), 7)
    d = photos["orient2"].parent
    base = psnr(*_both(save_jpeg(upright, d / "orient1.jpg"), fimage.thumbnail, (128, 128))[:2])
    for o in range(2, 9):
        full, red, _ = _both(photos[f"orient{o}"], fimage.thumbnail, (128, 128))
        assert full.size == ((96, 128) if o >= 5 else (128, 96))
        assert psnr(full, red) >= base - 1.0, (o, psnr(full, red), base)


def test_reduced_image_is_much_smaller_and_charged_as_such(photos):
    img = _open(photos["rgb1600x1200"], fimage.thumbnail, ((128, 128),))
    red = media.reduction_of(img)
    assert red is not None and red.full_size == (1600, 1200)
    assert img.size == (400, 300)  # 1/4: still >= 2x the 128x96 target on each side
    assert red.map_box() == (0, 0, 400, 300)


def test_decoded_stays_at_least_twice_the_target(photos):
    for w, h in SIZES:
        img = _open(photos[f"rgb{w}x{h}"], fimage.resize, ((w // 3, h // 5),))
        if media.reduction_of(img) is not None:
            assert img.width >= 2 * (w // 3) and img.height >= 2 * (h // 5)
        img = _open(photos[f"rgb{w}x{h}"], fimage.thumbnail, ((128, 128),))
        out = fimage.thumbnail.fn(img, (128, 128))
        assert img.width >= 2 * out.width and img.height >= 2 * out.height


@pytest.mark.parametrize("name,fn,args,kwargs", [
    ("png", fimage.thumbnail, ((128, 128),), {}),                     # not a JPEG
    ("small", fimage.thumbnail, ((128, 128),), {}),                   # libjpeg scale would be 1
    ("tiny", fimage.thumbnail, ((128, 128),), {}),                    # fits: thumbnail is a copy
    ("rgb1600x1200", fimage.resize, ((900, 700),), {}),               # more than half a side
    ("rgb1600x1200", fimage.resize, ((200, 700),), {}),               # one side only halved
    ("rgb1600x1200", fimage.resize, ((200, 150),), {"resample": 0}),  # NEAREST picks pixels
    ("rgb1600x1200", fimage.thumbnail, ((128, 128),), {"resample": 0}),
    ("rgb1600x1200", fimage.thumbnail, ((128, 128),), {"reducing_gap": None}),  # fair resample
    ("rgb1600x1200", fimage.resize, ((100, 100),), {"box": (0, 0, 180, 900)}),  # narrow box
])
def test_no_reduction_is_identical_to_before(photos, name, fn, args, kwargs):
    full, red, reduced = _both(photos[name], fn, *args, **kwargs)
    assert not reduced
    assert red.tobytes() == full.tobytes() and red.size == full.size


@pytest.mark.parametrize("args,kwargs", [
    (((128, 0),), {}), (((-5, 10),), {}), (("big",), {}), (((128, 128),), {"resample": 99}),
    (((128, 128),), {"reducing_gap": "x"}),
])
def test_odd_thumbnail_arguments_get_the_full_path(args, kwargs):
    assert fimage.thumbnail.fn.pxlite_decode_request((1600, 1200), *args, **kwargs) is None


@pytest.mark.parametrize("args,kwargs", [
    (((100.5, 80),), {}), (((100, 80),), {"box": (0, 0, 1700, 1200)}),
    (((100, 80),), {"box": (-1, 0, 800, 600)}), (((100, 80),), {"box": (0, 0, 800)}),
])
def test_odd_resize_arguments_get_the_full_path(args, kwargs):
    assert fimage.resize.fn.pxlite_decode_request((1600, 1200), *args, **kwargs) is None


def test_thumbnail_size_is_pillows(photos):
    """The reduced path computes the final size itself (Pillow's thumbnail would compute it
    from the reduced image): the same arithmetic as Pillow's, checked against Pillow."""
    rnd = random.Random(5)
    cases = [(rnd.randrange(1, 700), rnd.randrange(1, 700), rnd.randrange(1, 300),
              rnd.randrange(1, 300)) for _ in range(400)]
    cases += [(1605, 3, 128, 128), (3, 1605, 128, 128), (1000, 1000, 333, 1), (999, 1000, 7, 7)]
    for w, h, x, y in cases:
        im = Image.new("L", (w, h))
        im.thumbnail((x, y))
        got = fimage._thumbnail_size((w, h), (x, y))
        assert (got or (w, h)) == im.size, (w, h, x, y)


# ---- through a table ----------------------------------------------------------------------------

@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every image pxlite opens: (file name, decoded at reduced scale?)."""
    seen: list[tuple[str, bool]] = []
    real = media.open_image

    def spy(path: Any, settings: Any, name: Any = None, reduce: Any = None) -> Image.Image:
        img = real(path, settings, name, reduce)
        seen.append((Path(path).name, media.reduction_of(img) is not None))
        return img
    monkeypatch.setattr(media, "open_image", spy)
    return seen


def _full_thumbnail(path: Path, size: tuple[int, int] = (128, 128)) -> Image.Image:
    img = ImageOps.exif_transpose(Image.open(path))  # a loaded copy: a full decode
    img.thumbnail(size)
    return img


def _cells(t: Any, col: str) -> dict[str, Image.Image]:
    rows = t.select(t.image.localpath, getattr(t, col).localpath).collect()
    out = {}
    for r in rows:
        with Image.open(r[f"{col}_localpath"]) as im:
            out[Path(r["image_localpath"]).name] = im.copy()
    return out


def test_thumbnail_column_decodes_reduced_and_stays_close(db, photos, opened, tmp_path):
    names = ["rgb1605x1203", "orient6", "orient8", "gray", "cmyk", "png", "small"]
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(photos[n])} for n in names])
    opened.clear()
    status = t.add_computed_column(th=t.image.thumbnail((128, 128)),
                                   destination=str(tmp_path / "th"))
    assert status.num_errors == 0
    reduced = {n for n, r in opened if r}
    assert reduced == {photos[n].name for n in ["rgb1605x1203", "orient6", "orient8", "gray",
                                                "cmyk"]}
    cells = _cells(t, "th")
    for n in names:
        got = cells[photos[n].name]
        want_img = fimage.thumbnail.fn(media.open_image(photos[n], config.resolve()), (128, 128))
        data, _ = media.encode_image(want_img)
        want = Image.open(io.BytesIO(data))
        assert got.size == want.size, n
        if n in ("png", "small"):
            assert got.tobytes() == want.tobytes(), n
        else:
            assert psnr(want.convert(got.mode), got) >= MIN_PSNR_DB, n
    # what a user sees: upright, the photo's own aspect
    assert cells[photos["orient6"].name].size == (96, 128)
    assert cells[photos["orient6"].name].size == _full_thumbnail(photos["orient6"]).size


@pytest.mark.parametrize("thumb_first", [True, False])
def test_rotate_beside_thumbnail_sees_full_pixels(db, photos, opened, tmp_path, thumb_first):
    """Both columns computed in one insert, one row at a time, from one cached input: the
    rotate output is byte-identical to rotating the full decode, whichever runs first."""
    names = ["rgb1600x1200", "orient6", "png"]
    t = db.create_table("t", {"image": pxl.Image})
    cols = {"th": t.image.thumbnail((128, 128)), "rot": t.image.rotate(90)}
    for name in (["th", "rot"] if thumb_first else ["rot", "th"]):
        t.add_computed_column(**{name: cols[name]}, destination=str(tmp_path / name))
    opened.clear()
    status = t.insert([{"image": str(photos[n])} for n in names])
    assert status.num_errors == 0
    rot = _cells(t, "rot")
    th = _cells(t, "th")
    for n in names:
        full = media.open_image(photos[n], config.resolve())
        data, _ = media.encode_image(full.rotate(90))
        with open(t.select(t.rot.localpath).where(t.image.fileurl == photos[n].as_uri())
                  .collect()[0]["rot_localpath"], "rb") as f:
            assert f.read() == data, n  # the very bytes of the full-decode path
        assert rot[photos[n].name].size == full.size
        assert th[photos[n].name].size == _full_thumbnail(photos[n]).size
    reduced = {n for n, r in opened if r}
    if thumb_first:  # thumbnail ran before rotate decoded the input: it got its own draft
        assert reduced == {photos["rgb1600x1200"].name, photos["orient6"].name}
    else:  # rotate decoded the full image first: thumbnail reuses those pixels
        assert reduced == set()


def test_width_beside_thumbnail_still_reduces(db, photos, opened, tmp_path):
    """``width`` reads only the header of the row's cached image; the thumbnail then gets its
    own reduced decode rather than loading that one in full."""
    t = db.create_table("t", {"image": pxl.Image})
    t.add_computed_column(w=t.image.width)
    t.add_computed_column(th=t.image.thumbnail((128, 128)), destination=str(tmp_path / "th"))
    opened.clear()
    t.insert([{"image": str(photos["rgb1600x1200"])}])
    assert (photos["rgb1600x1200"].name, True) in opened
    assert t.select(t.w).collect()[0]["w"] == 1600


def test_chains_and_computed_on_read_decode_in_full(db, photos, opened, tmp_path):
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(photos["rgb1600x1200"])}])
    opened.clear()
    t.add_computed_column(g=t.image.convert("L").thumbnail((128, 128)),
                          destination=str(tmp_path / "g"))
    t.add_computed_column(lazy=t.image.rotate(0), stored=False)
    rows = t.select(x=t.lazy.thumbnail((64, 64))).collect()
    assert rows[0]["x"].size == (64, 48)
    assert opened and not any(r for _, r in opened)
    full = Image.open(photos["rgb1600x1200"]).convert("L")
    full.thumbnail((128, 128))
    got = _cells(t, "g")[photos["rgb1600x1200"].name]
    assert got.size == full.size


def test_queries_reduce_too_and_return_the_full_size(db, photos, opened):
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(photos[n])} for n in ("rgb2001x997", "orient5", "png")])
    opened.clear()
    rows = t.select(t.image.fileurl, small=t.image.resize((200, 100))).collect()
    assert [r["small"].size for r in rows] == [(200, 100)] * 3
    assert {n for n, r in opened if r} == {photos["rgb2001x997"].name, photos["orient5"].name}
    for r in rows:
        path = Path(r["image_fileurl"].removeprefix("file://"))
        want = fimage.resize.fn(media.open_image(path, config.resolve()), (200, 100))
        assert psnr(want, r["small"]) >= MIN_PSNR_DB


def test_broken_jpeg_fails_the_same_way(db, photos, tmp_path):
    """A truncated file is the cell's error either way: the reduced decode loads where the full
    one did (inside the function), so the error type stays Pillow's."""
    data = photos["rgb1600x1200"].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(cut)}])
    t.add_computed_column(th=t.image.thumbnail((128, 128)), on_error="ignore")
    t.add_computed_column(rot=t.image.rotate(90), on_error="ignore")
    r = t.select(t.th.errortype, t.rot.errortype).collect()[0]
    assert r["th_errortype"] == r["rot_errortype"] == "OSError"


def test_readme_states_the_draft_behaviour():
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    para = next(p for p in text.split("\n\n") if "reduced scale" in p)
    assert "thumbnail" in para and "resize" in para and "35 dB" in para
    assert "JPEG" in para and "full" in para
    assert f"{MIN_PSNR_DB:.0f} dB" in fimage.__doc__
