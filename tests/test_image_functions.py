"""The built-in image functions (pxlite.functions.image), below the table layer: expressions built
on a column reference and evaluated on one row, compared with calling Pillow directly."""

from __future__ import annotations

import base64
import io
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from PIL import ImageChops

import pxlite as pxl
from pxlite.catalog import ColumnMeta, TableMeta
from pxlite.errors import SchemaError
from pxlite.exprs import Call, ColumnRef, Expr, RowContext, from_json
from pxlite.functions import image as fimage
from pxlite.types import Float, Image, Int, Json, String
from pxlite.udf import lookup, methods_for


def _gradient(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> PILImage.Image:
    rnd = random.Random(seed)
    w, h = size
    bands = len(mode)
    data = bytes(
        (x * 7 + y * 13 + b * 50 + rnd.randrange(8)) % 256
        for y in range(h) for x in range(w) for b in range(bands)
    )
    return PILImage.frombytes(mode, size, data)


W, H = 24, 16
IMAGES: dict[str, PILImage.Image] = {
    "rgb": _gradient((W, H)),
    "rgb2": _gradient((W, H), seed=1).transpose(PILImage.Transpose.FLIP_TOP_BOTTOM),
    "rgba": _gradient((W, H), "RGBA", 2),
    "rgba2": _gradient((W, H), "RGBA", 3),
    "mask": _gradient((W, H), "L", 4),
    "bordered": PILImage.new("L", (W, H), 0),
}
IMAGES["bordered"].paste(255, (3, 4, 10, 9))

META = TableMeta(id=1, uid="u", path="t", columns=[
    ColumnMeta(1, "image", 0, Image), ColumnMeta(2, "other", 1, Image),
    ColumnMeta(3, "mask", 2, Image), ColumnMeta(4, "n", 3, Int),
])
REF = ColumnRef(META, META.columns[0])
OTHER = ColumnRef(META, META.columns[1])
MASK = ColumnRef(META, META.columns[2])
N = ColumnRef(META, META.columns[3])


class Resolver:
    """A MediaResolver handing out the images above for their keys."""

    def value(self, col: ColumnMeta, uri: str) -> PILImage.Image:
        return IMAGES[uri]

    def fileurl(self, uri: str) -> str:
        return uri

    def localpath(self, uri: str) -> str:
        return uri


def row(image: str | None = "rgb", other: str | None = "rgb2", mask: str | None = "mask",
        n: int | None = 3) -> RowContext:
    return RowContext({1: image, 2: other, 3: mask, 4: n}, None, Resolver())


def same_pixels(a: PILImage.Image, b: PILImage.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()


def roundtrip(e: Expr) -> Expr:
    data = json.loads(json.dumps(e.to_json()))  # what the catalog stores
    back = from_json(data, META)
    assert repr(back) == repr(e)
    assert back.type == e.type
    return back


# (expression, what Pillow gives directly, the row's image key)
IMAGE_CASES = [
    (lambda r: r.rotate(90), lambda im: im.rotate(90), "rgb"),
    (lambda r: r.rotate(33.5, resample=pxl_resample("BICUBIC"), expand=True, fillcolor=(1, 2, 3)),
     lambda im: im.rotate(33.5, PILImage.Resampling.BICUBIC, expand=True, fillcolor=(1, 2, 3)),
     "rgb"),
    (lambda r: r.rotate(45, center=(2, 3), translate=(1, -1)),
     lambda im: im.rotate(45, center=(2, 3), translate=(1, -1)), "rgb"),
    (lambda r: r.transpose(pxl.FLIP_LEFT_RIGHT),
     lambda im: im.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT), "rgb"),
    (lambda r: r.transpose(pxl.TRANSVERSE),
     lambda im: im.transpose(PILImage.Transpose.TRANSVERSE), "rgb"),
    (lambda r: r.resize((10, 7)), lambda im: im.resize((10, 7)), "rgb"),
    (lambda r: r.resize([30, 20], resample=0, box=(1, 1, 20, 15)),
     lambda im: im.resize((30, 20), PILImage.Resampling.NEAREST, box=(1, 1, 20, 15)), "rgb"),
    (lambda r: r.resize((8, 8), reducing_gap=2.0),
     lambda im: im.resize((8, 8), reducing_gap=2.0), "rgb"),
    (lambda r: r.thumbnail((10, 10)), lambda im: _thumb(im, (10, 10)), "rgb"),
    (lambda r: r.thumbnail((12, 12), resample=1), lambda im: _thumb(im, (12, 12), 1), "rgb"),
    (lambda r: r.crop((2, 3, 12, 9)), lambda im: im.crop((2, 3, 12, 9)), "rgb"),
    (lambda r: r.convert("L"), lambda im: im.convert("L"), "rgb"),
    (lambda r: r.convert("P", palette=1, colors=16),
     lambda im: im.convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16), "rgb"),
    (lambda r: r.convert("L", matrix=[0.5, 0.25, 0.25, 0]),
     lambda im: im.convert("L", matrix=(0.5, 0.25, 0.25, 0)), "rgb"),
    (lambda r: r.reduce(2), lambda im: im.reduce(2), "rgb"),
    (lambda r: r.reduce((2, 4), box=(0, 0, 16, 16)),
     lambda im: im.reduce((2, 4), box=(0, 0, 16, 16)), "rgb"),
    (lambda r: r.getchannel("G"), lambda im: im.getchannel("G"), "rgb"),
    (lambda r: r.getchannel(3), lambda im: im.getchannel(3), "rgba"),
    (lambda r: r.point([255 - i for i in range(256)] * 3),
     lambda im: im.point([255 - i for i in range(256)] * 3), "rgb"),
    (lambda r: r.point([i // 2 for i in range(256)], mode="L"),
     lambda im: im.point([i // 2 for i in range(256)], "L"), "mask"),
    (lambda r: r.quantize(8), lambda im: im.quantize(8), "rgb"),
    (lambda r: r.quantize(colors=4, method=2, kmeans=1, dither=0),
     lambda im: im.quantize(4, PILImage.Quantize.FASTOCTREE, 1,
                            dither=PILImage.Dither.NONE), "rgb"),
    (lambda r: r.blend(OTHER, 0.25),
     lambda im: PILImage.blend(im, IMAGES["rgb2"], 0.25), "rgb"),
    (lambda r: r.composite(OTHER, MASK),
     lambda im: PILImage.composite(im, IMAGES["rgb2"], IMAGES["mask"]), "rgb"),
    (lambda r: r.rotate(90).resize((5, 9)).convert("L"),
     lambda im: im.rotate(90).resize((5, 9)).convert("L"), "rgb"),
]


def pxl_resample(name: str) -> int:
    return int(PILImage.Resampling[name])


def _thumb(im: PILImage.Image, size: tuple[int, int], resample: int = 3) -> PILImage.Image:
    out = im.copy()
    out.thumbnail(size, resample)
    return out


@pytest.mark.parametrize("case", range(len(IMAGE_CASES)))
def test_image_results_match_pillow(case: int) -> None:
    build, direct, key = IMAGE_CASES[case]
    e = build(REF)
    assert isinstance(e, Call) and e.type == Image
    got = e.eval(row(key))
    want = direct(IMAGES[key])
    assert isinstance(got, PILImage.Image)
    assert same_pixels(got, want)
    back = roundtrip(e)
    assert same_pixels(back.eval(row(key)), want)


def test_alpha_composite_and_chained_properties() -> None:
    e = REF.alpha_composite(OTHER)
    got = e.eval(row("rgba", "rgba2"))
    want = PILImage.alpha_composite(IMAGES["rgba"], IMAGES["rgba2"])
    assert ImageChops.difference(got, want).getbbox() is None
    assert same_pixels(roundtrip(e).eval(row("rgba", "rgba2")), want)


def test_effect_spread_is_random_but_keeps_shape() -> None:
    e = REF.effect_spread(2)
    assert e.type == Image
    got = e.eval(row())
    assert got.size == (W, H) and got.mode == "RGB"
    assert repr(roundtrip(e)) == "image.effect_spread(2)"
    # distance 0 moves nothing
    assert same_pixels(REF.effect_spread(0).eval(row()), IMAGES["rgb"].effect_spread(0))


def test_transpose_accepts_pil_enum() -> None:
    e = REF.transpose(PILImage.Transpose.ROTATE_90)
    want = IMAGES["rgb"].transpose(PILImage.Transpose.ROTATE_90)
    assert same_pixels(e.eval(row()), want)
    back = from_json(json.loads(json.dumps(e.to_json())), META)  # stored as the int 2
    assert repr(back) == "image.transpose(2)"
    assert same_pixels(back.eval(row()), want)


def test_resample_accepts_pil_enum() -> None:
    e = REF.resize((9, 9), resample=PILImage.Resampling.LANCZOS)
    want = IMAGES["rgb"].resize((9, 9), PILImage.Resampling.LANCZOS)
    assert same_pixels(e.eval(row()), want)
    back = from_json(json.loads(json.dumps(e.to_json())), META)
    assert same_pixels(back.eval(row()), want)


def test_thumbnail_does_not_touch_the_input() -> None:
    before = IMAGES["rgb"].tobytes(), IMAGES["rgb"].size
    out = REF.thumbnail((5, 5)).eval(row())
    assert max(out.size) <= 5
    assert (IMAGES["rgb"].tobytes(), IMAGES["rgb"].size) == before


# ---- scalar and Json results --------------------------------------------------------------------

SCALAR_CASES = [
    (lambda r: r.getbbox(), lambda im: list(im.getbbox()), "bordered", Json),
    (lambda r: r.getbbox(alpha_only=False), lambda im: list(im.getbbox(alpha_only=False)),
     "rgba", Json),
    (lambda r: r.getextrema(), lambda im: list(im.getextrema()), "mask", Json),
    (lambda r: r.getextrema(), lambda im: [list(x) for x in im.getextrema()], "rgb", Json),
    (lambda r: r.histogram(), lambda im: im.histogram(), "rgb", Json),
    (lambda r: r.histogram(mask=MASK), lambda im: im.histogram(IMAGES["mask"]), "rgb", Json),
    (lambda r: r.entropy(), lambda im: im.entropy(), "rgb", Float),
    (lambda r: r.entropy(MASK), lambda im: im.entropy(IMAGES["mask"]), "rgb", Float),
    (lambda r: r.width, lambda im: im.width, "rgb", Int),
    (lambda r: r.height, lambda im: im.height, "rgb", Int),
    (lambda r: r.mode, lambda im: im.mode, "rgba", String),
    (lambda r: r.size, lambda im: list(im.size), "rgb", Json),
    (lambda r: r.rotate(90, expand=True).size, lambda im: [H, W], "rgb", Json),
    (lambda r: r.crop((0, 0, 5, 4)).width, lambda im: 5, "rgb", Int),
]


@pytest.mark.parametrize("case", range(len(SCALAR_CASES)))
def test_scalar_results_match_pillow(case: int) -> None:
    build, direct, key, ctype = SCALAR_CASES[case]
    e = build(REF)
    assert e.type == ctype
    got = e.eval(row(key))
    assert got == direct(IMAGES[key])
    ctype.to_sql(got)  # storable in a column of that type
    assert roundtrip(e).eval(row(key)) == got


def test_getbbox_of_empty_image_is_none() -> None:
    IMAGES["empty"] = PILImage.new("L", (4, 4), 0)
    try:
        assert REF.getbbox().eval(row("empty")) is None
    finally:
        del IMAGES["empty"]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_b64_encode(fmt: str) -> None:
    e = REF.b64_encode(fmt) if fmt != "png" else REF.b64_encode()
    assert e.type == String
    text = e.eval(row())
    decoded = PILImage.open(io.BytesIO(base64.b64decode(text)))
    assert decoded.format == fmt.upper()
    assert decoded.size == (W, H)
    if fmt == "png":
        assert same_pixels(decoded.convert("RGB"), IMAGES["rgb"])
    assert roundtrip(e).eval(row()) == text


# ---- expressions: repr, properties, registration ------------------------------------------------

def test_repr_reads_like_python() -> None:
    assert repr(REF.rotate(90)) == "image.rotate(90)"
    assert repr(REF.rotate(90, expand=True)) == "image.rotate(90, expand=True)"
    assert repr(REF.resize((32, 32))) == "image.resize((32, 32))"
    assert repr(REF.transpose(pxl.FLIP_LEFT_RIGHT)) == "image.transpose(0)"
    assert repr(REF.blend(OTHER, 0.5)) == "image.blend(other, 0.5)"
    assert repr(REF.width) == "image.width"
    assert repr(REF.rotate(90).size) == "image.rotate(90).size"
    assert REF.rotate(90).default_name() == "rotate"


def test_properties_are_expressions_not_methods() -> None:
    for name, ctype in [("width", Int), ("height", Int), ("mode", String), ("size", Json)]:
        e = getattr(REF, name)
        assert isinstance(e, Call) and e.fn.is_property, name
        assert e.type == ctype
        assert not callable(e)
    assert (REF.width > 10).eval(row()) is True
    assert (REF.width * 2).eval(row()) == 2 * W


def test_all_functions_registered_with_docstrings() -> None:
    methods = methods_for(Image)
    names = ["rotate", "transpose", "resize", "thumbnail", "crop", "convert", "reduce",
             "getchannel", "point", "quantize", "effect_spread", "blend", "alpha_composite",
             "composite", "getbbox", "getextrema", "histogram", "entropy", "b64_encode",
             "width", "height", "mode", "size"]
    # the module also holds tile_iterator, an iterator factory (not a method of images)
    assert sorted(set(fimage.__all__) - {"tile_iterator"}) == sorted(names)
    assert "tile_iterator" in fimage.__all__ and "tile_iterator" not in methods
    for name in names:
        fn = methods[name]
        assert fn.name == f"pxlite.functions.image.{name}"
        assert lookup(fn.name) is fn
        assert fn.method_of == Image
        assert fn.is_property == (name in ("width", "height", "mode", "size"))
        assert fn.__doc__ and "Wraps ``PIL.Image." in fn.__doc__, name
        assert len(fn.__doc__.strip().splitlines()) == 1, name
        if not fn.is_property:
            assert getattr(REF, name).__doc__ == fn.__doc__  # help(t.image.rotate) shows it


def test_functions_run_directly_on_pil_images() -> None:
    assert fimage.rotate(IMAGES["rgb"], 90).size == (W, H)
    assert fimage.width(IMAGES["rgb"]) == W
    assert fimage.transpose(IMAGES["rgb"], 1).size == (W, H)


def test_expression_arguments() -> None:
    e = REF.rotate(N * 30)
    assert same_pixels(e.eval(row(n=3)), IMAGES["rgb"].rotate(90))
    assert same_pixels(roundtrip(e).eval(row(n=3)), IMAGES["rgb"].rotate(90))
    e2 = REF.resize(REF.rotate(90, expand=True).size)
    assert e2.eval(row()).size == (H, W)
    assert roundtrip(e2).eval(row()).size == (H, W)


# ---- errors and missing values ------------------------------------------------------------------

@pytest.mark.parametrize("build, match", [
    (lambda: REF.rotate(), r"rotate\(\).*angle"),
    (lambda: REF.rotate(90, bogus=1), r"rotate\(\).*bogus"),
    (lambda: REF.resize(), r"resize\(\).*size"),
    (lambda: REF.crop((0, 0, 1, 1), 5), r"crop\(\)"),
    (lambda: REF.blend(OTHER), r"blend\(\).*alpha"),
    (lambda: REF.blend(N, 0.5), r"blend\(\): im2 must be an image"),
    (lambda: REF.composite(OTHER, N), r"composite\(\): mask must be an image"),
    (lambda: REF.blend(IMAGES["rgb"], 0.5), r"blend\(\): im2 must be an image column"),
    (lambda: REF.transpose(7), r"transpose\(\): method must be one of"),
    (lambda: REF.transpose("flip"), r"transpose\(\): method must be an int"),
    (lambda: REF.rotate(90, fillcolor=object()), r"rotate\(\).*fillcolor.*cannot be stored"),
    (lambda: REF.width(), r"not callable"),
])
def test_bad_arguments_raise_schema_error(build, match) -> None:
    with pytest.raises((SchemaError, TypeError), match=match) as ei:
        build()
    if "callable" not in match:
        assert ei.type is SchemaError


def test_unknown_method_is_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute or method 'rotat'"):
        REF.rotat(90)


@pytest.mark.parametrize("lut", [lambda x: 255 - x, "abc", 5, [1, "x"], None])
def test_point_needs_a_lookup_list(lut) -> None:
    with pytest.raises(SchemaError, match=r"point\(\): lut"):
        REF.point(lut)
    with pytest.raises(SchemaError, match=r"point\(\): lut"):
        fimage.point(IMAGES["rgb"], lut)


def test_none_input_gives_none() -> None:
    empty = row(image=None, other=None, mask=None)
    exprs = [REF.rotate(90), REF.width, REF.size, REF.thumbnail((4, 4)), REF.getbbox(),
             REF.histogram(), REF.b64_encode(), REF.point([0] * 256), REF.rotate(90).width,
             REF.blend(OTHER, 0.5)]
    for e in exprs:
        assert e.eval(empty) is None, repr(e)
    # a missing second image gives a missing result too
    assert REF.blend(OTHER, 0.5).eval(row(other=None)) is None
    assert REF.alpha_composite(OTHER).eval(row("rgba", None)) is None
    assert REF.composite(OTHER, MASK).eval(row(mask=None)) is None


def test_pillow_errors_surface_at_eval() -> None:
    # a mode mismatch is Pillow's to report, when the cell is computed
    with pytest.raises(ValueError):
        REF.blend(OTHER, 0.5).eval(row("rgb", "rgba"))


# ---- hypothesis: argument values round-trip through the catalog ----------------------------------

_fast = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(angle=st.one_of(st.integers(-720, 720),
                       st.floats(-360, 360, allow_nan=False, allow_infinity=False)),
       expand=st.booleans(), resample=st.sampled_from([0, 2, 3]))
def test_rotate_roundtrip(angle: float, expand: bool, resample: int) -> None:
    e = REF.rotate(angle, resample=resample, expand=expand)
    want = IMAGES["rgb"].rotate(angle, resample, expand=expand)
    assert same_pixels(e.eval(row()), want)
    assert same_pixels(roundtrip(e).eval(row()), want)


@_fast
@given(w=st.integers(1, 40), h=st.integers(1, 40), as_list=st.booleans(),
       resample=st.sampled_from([None, 0, 1, 2, 3, 4, 5]))
def test_resize_roundtrip(w: int, h: int, as_list: bool, resample: int | None) -> None:
    size = [w, h] if as_list else (w, h)
    e = REF.resize(size) if resample is None else REF.resize(size, resample=resample)
    want = IMAGES["rgb"].resize((w, h), resample)
    got = roundtrip(e).eval(row())
    assert got.size == (w, h)
    assert same_pixels(got, want)
    assert same_pixels(e.eval(row()), want)


@_fast
@given(box=st.tuples(st.integers(-5, 30), st.integers(-5, 20), st.integers(-5, 30),
                     st.integers(-5, 20)).filter(lambda b: b[2] >= b[0] and b[3] >= b[1]))
def test_crop_roundtrip(box: tuple[int, int, int, int]) -> None:
    e = REF.crop(box)
    want = IMAGES["rgb"].crop(box)
    assert same_pixels(e.eval(row()), want)
    assert same_pixels(roundtrip(e).eval(row()), want)
    assert REF.crop(box).size.eval(row()) == [box[2] - box[0], box[3] - box[1]]
