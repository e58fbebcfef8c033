"""Built-in image functions: thin, typed wrappers of Pillow, usable as methods and properties of
Image expressions (``t.image.rotate(90)``, ``t.image.width``).

Each wrapper is registered as ``pxlite.functions.image.<name>`` so a computed column that uses it
is found again when a database reopens. The return type hint decides the column type: a
``PIL.Image.Image`` result is an Image column, ``int``/``float``/``str`` are scalars and lists
(Pillow's tuples, histograms...) are Json.

Arguments are stored in the catalog as JSON literals (or are expressions themselves), so they must
be plain values: numbers, strings, lists/tuples, None. Pillow's enums (``Image.Resampling.BICUBIC``,
``Image.Transpose.ROTATE_90``...) are ints and accepted wherever Pillow takes them; a Python
callable (e.g. a ``point`` lambda) cannot be stored and is refused when the expression is built.
Wrappers never modify their input (the same decoded image may feed several columns of a row).

Fewer pixels: ``thumbnail`` and a ``resize`` to at most half of each side, called directly on an
Image column, tell the row (``exprs.DECODE_REQUEST``) the smallest decode they need. A JPEG is
then decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Pillow's ``draft``), kept at least twice the
target on each side, and finished with the same Pillow resample to exactly the size the full
decode gives; the result stays within a tight tolerance of the full decode's (tests: a PSNR
of at least 35 dB on photo-like images). Pillow's own ``thumbnail`` does the same on a freshly
opened file.
"""

from __future__ import annotations

import base64
import enum
import inspect
import io
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar, cast

from PIL import Image as PILImage

from ..errors import SchemaError
from ..exprs import DECODE_REQUEST
from ..iterators.image import TileIterator
from ..media import reduction_of
from ..types import Image
from ..udf import Function, register
from .iterator_call import make_call

__all__ = [
    "alpha_composite",
    "b64_encode",
    "blend",
    "composite",
    "convert",
    "crop",
    "effect_spread",
    "entropy",
    "getbbox",
    "getchannel",
    "getextrema",
    "height",
    "histogram",
    "mode",
    "point",
    "quantize",
    "reduce",
    "resize",
    "rotate",
    "size",
    "thumbnail",
    "tile_iterator",
    "transpose",
    "width",
]

_Check = Callable[[inspect.BoundArguments], None]
_E = TypeVar("_E", bound=enum.IntEnum)


# ---- registration --------------------------------------------------------------------------------

class _CheckedSignature(inspect.Signature):
    """A signature whose ``bind`` also validates the arguments, so mistakes surface when the
    expression is built (``t.image.point(lambda x: x)``), not when the column is computed."""

    __slots__ = ("_check", "_fn_name", "_image_params")

    def __init__(self, sig: inspect.Signature, fn_name: str, image_params: frozenset[str],
                 check: _Check | None) -> None:
        super().__init__(list(sig.parameters.values()), return_annotation=sig.return_annotation)
        self._fn_name, self._image_params, self._check = fn_name, image_params, check

    def bind(self, *args: Any, **kwargs: Any) -> inspect.BoundArguments:
        bound = super().bind(*args, **kwargs)
        if self._check is not None:
            self._check(bound)
        _check_arguments(self._fn_name, self._image_params, bound)
        return bound


def _check_arguments(fn_name: str, image_params: frozenset[str],
                     bound: inspect.BoundArguments) -> None:
    from ..exprs import Expr, lit_to_json

    if not any(isinstance(v, Expr) for v in bound.arguments.values()):
        return  # a direct call on plain values, not an expression being built
    for pname, v in bound.arguments.items():
        if isinstance(v, Expr):
            if pname in image_params and v.type.name != Image.name:
                raise SchemaError(f"{fn_name}(): {pname} must be an image expression, got {v!r} "
                                  f"of type {v.type.name}")
            continue
        if pname in image_params and isinstance(v, PILImage.Image):
            raise SchemaError(f"{fn_name}(): {pname} must be an image column or expression; a PIL "
                              "image value cannot be stored in a column definition")
        try:
            lit_to_json(v)
        except SchemaError:
            raise SchemaError(
                f"{fn_name}(): the argument {pname}={v!r} cannot be stored in a column "
                "definition; use numbers, strings, lists/tuples, None or expressions"
            ) from None


def _image_params(fn: Callable[..., Any]) -> frozenset[str]:
    """Parameters after the receiver whose annotation names an image (blend's im2, masks...)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return frozenset(p.name for p in params if "PILImage.Image" in str(p.annotation))


def _register(*, is_property: bool = False, check: _Check | None = None,
              decode_request: Callable[..., tuple[int, int] | None] | None = None
              ) -> Callable[[Callable[..., Any]], Function]:
    def wrap(fn: Callable[..., Any]) -> Function:
        if decode_request is not None:
            setattr(fn, DECODE_REQUEST, decode_request)  # read by exprs.Call (see module doc)
        func = Function(fn, name=f"pxlite.functions.image.{fn.__name__}", is_method=True,
                            is_property=is_property, method_of=Image)
        func.signature = _CheckedSignature(func.signature, fn.__name__, _image_params(fn), check)
        register(func)
        return func

    return wrap


# ---- argument helpers (run at call time, on the stored JSON values) ------------------------------

def _tup(v: Any) -> Any:
    """JSON may hand back a list where Pillow wants a tuple."""
    return tuple(_tup(x) for x in v) if isinstance(v, (list, tuple)) else v


def _int_arg(fn_name: str, pname: str, v: Any) -> int | None:
    """An int-valued option (resample, method, dither...): ints and Pillow's IntEnums."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise SchemaError(f"{fn_name}(): {pname} must be an int (or a PIL enum), got {v!r}")
    return int(v)


def _required_int_arg(fn_name: str, pname: str, v: Any) -> int:
    """An int-valued option that has no None form (it becomes a Pillow enum here)."""
    m = _int_arg(fn_name, pname, v)
    if m is None:
        raise SchemaError(f"{fn_name}(): {pname} must be an int (or a PIL enum), got None")
    return m


def _pillow_int(enum_type: type[_E], v: int | None) -> _E:
    """``v`` passed on unchanged where Pillow's annotation names an IntEnum (``Resampling``,
    ``Dither``). Pillow takes plain ints (and, in places, None) there and checks them itself, with
    its own messages; converting to the enum here would refuse values Pillow accepts."""
    return cast(_E, v)


def _as_list(v: Any) -> Any:
    return [_as_list(x) for x in v] if isinstance(v, (list, tuple)) else v


def _check_transpose(bound: inspect.BoundArguments) -> None:
    method = bound.arguments.get("method")
    from ..exprs import Expr

    if not isinstance(method, Expr):
        _transpose_method(method)


def _transpose_method(method: Any) -> PILImage.Transpose:
    m = _int_arg("transpose", "method", method)
    if m is None or m not in {t.value for t in PILImage.Transpose}:
        raise SchemaError(
            f"transpose(): method must be one of pxl.FLIP_LEFT_RIGHT (0), FLIP_TOP_BOTTOM, "
            f"ROTATE_90, ROTATE_180, ROTATE_270, TRANSPOSE, TRANSVERSE (6); got {method!r}")
    return PILImage.Transpose(m)


def _check_lut(lut: Any) -> None:
    if callable(lut) or not isinstance(lut, (list, tuple)):
        raise SchemaError(
            f"point(): lut must be a lookup-table list of numbers (256 per band), got {lut!r}; a "
            "Python callable cannot be stored in a column definition, so build the table first, "
            "e.g. [f(i) for i in range(256)] * len(image.getbands())"
        )
    for x in lut:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            raise SchemaError(f"point(): lut entries must be numbers, got {x!r}")


def _check_point(bound: inspect.BoundArguments) -> None:
    from ..exprs import Expr

    lut = bound.arguments.get("lut")
    if not isinstance(lut, Expr):
        _check_lut(lut)


# ---- reduced decodes (see the module docstring) --------------------------------------------------

#: Pillow's filters that average what they shrink. NEAREST picks single pixels, which a reduced
#: decode would pick differently, so it always gets the full image.
_FILTERS = frozenset(int(r) for r in PILImage.Resampling) - {int(PILImage.Resampling.NEAREST)}
#: The reduced decode stays at least this many times the target on each side, like Pillow's
#: default ``reducing_gap`` for thumbnails, so the final resample keeps the full decode's quality.
_MIN_GAP = 2.0


def _positive_pair(v: Any, *, ints: bool) -> tuple[Any, Any] | None:
    """``v`` as a (width, height) of positive numbers (ints when ``ints``), else None: a size
    the full path would refuse gets the full path, and its error."""
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        return None
    kind = numbers.Integral if ints else numbers.Real
    if any(isinstance(x, bool) or not isinstance(x, kind) or not float(x) >= 1 for x in v):
        return None
    return v[0], v[1]


def _filter(resample: Any) -> bool:
    return resample is None or (not isinstance(resample, bool) and isinstance(
        resample, numbers.Integral) and int(resample) in _FILTERS)


def _thumbnail_size(full: tuple[int, int], size: tuple[float, float]) -> tuple[int, int] | None:
    """The size Pillow's ``Image.thumbnail`` gives an image of ``full`` size, or None when it
    leaves it alone (it already fits). The same arithmetic as Pillow's (10 to 13), so the
    reduced path ends at exactly the full decode's size; a test compares it with Pillow's."""
    x, y = math.floor(size[0]), math.floor(size[1])
    w, h = full
    if x >= w and y >= h:
        return None
    aspect = w / h

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def _thumbnail_request(full: tuple[int, int], size: Any, resample: Any = 3,
                       reducing_gap: Any = 2.0) -> tuple[int, int] | None:
    """What ``thumbnail`` needs decoded: Pillow's own draft request (``size`` times
    ``reducing_gap``, at least 2), or None (no shrinking, no reducing_gap, NEAREST, odd args)."""
    pair = _positive_pair(_tup(size), ints=False)
    if pair is None or not _filter(resample) or reducing_gap is None or isinstance(
            reducing_gap, bool) or not isinstance(reducing_gap, numbers.Real):
        return None
    if _thumbnail_size(full, pair) is None:
        return None
    gap = max(_MIN_GAP, float(reducing_gap))
    return int(pair[0] * gap), int(pair[1] * gap)


def _resize_request(full: tuple[int, int], size: Any, resample: Any = None, box: Any = None,
                    reducing_gap: Any = None) -> tuple[int, int] | None:
    """What ``resize`` needs decoded: when the target is at most half of the source region on
    each side, a decode that keeps that region at least twice the target; else None."""
    pair = _positive_pair(_tup(size), ints=True)
    if pair is None or not _filter(resample):
        return None
    w, h = full
    if box is None:
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    else:
        b = _tup(box)
        if not isinstance(b, tuple) or len(b) != 4 or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) for v in b):
            return None
        x0, y0, x1, y1 = (float(v) for v in b)
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return None  # Pillow refuses it: the full path reports that
    tw, th = pair
    bw, bh = x1 - x0, y1 - y0
    if _MIN_GAP * tw > bw or _MIN_GAP * th > bh:
        return None
    # libjpeg's scale s divides w // request, so the region keeps bw / s >= 2 * tw pixels.
    return math.ceil(_MIN_GAP * tw * w / bw), math.ceil(_MIN_GAP * th * h / bh)


# ---- transforms (image -> image) -----------------------------------------------------------------

@_register()
def rotate(img: PILImage.Image, angle: float, resample: int = 0, expand: bool = False,
           center: tuple[float, float] | None = None, translate: tuple[int, int] | None = None,
           fillcolor: float | tuple[float, ...] | str | None = None) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.rotate``: a copy rotated ``angle`` degrees counter-clockwise."""
    return img.rotate(angle, expand=expand, center=_tup(center), translate=_tup(translate),
                      fillcolor=_tup(fillcolor), resample=_pillow_int(
                          PILImage.Resampling, _int_arg("rotate", "resample", resample)))


@_register(check=_check_transpose)
def transpose(img: PILImage.Image, method: int) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.transpose``: flipped or turned by 90° steps (pxl.ROTATE_90...)."""
    return img.transpose(_transpose_method(method))


@_register(decode_request=_resize_request)
def resize(img: PILImage.Image, size: tuple[int, int], resample: int | None = None,
           box: tuple[float, float, float, float] | None = None,
           reducing_gap: float | None = None) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.resize``: a copy scaled to exactly ``size`` (width, height)."""
    reduced = reduction_of(img)
    if reduced is not None:  # a JPEG decoded at reduced scale: the same call, box mapped onto it
        box = reduced.map_box(None if box is None else _tup(box))
    return img.resize(_tup(size), resample=_int_arg("resize", "resample", resample),
                      box=_tup(box), reducing_gap=reducing_gap)


@_register(decode_request=_thumbnail_request)
def thumbnail(img: PILImage.Image, size: tuple[int, int], resample: int = 3,
              reducing_gap: float | None = 2.0) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.thumbnail``: a copy shrunk to fit in ``size``, keeping the aspect."""
    filt = _pillow_int(PILImage.Resampling, _int_arg("thumbnail", "resample", resample))
    reduced = reduction_of(img)
    if reduced is not None:
        # What Pillow's thumbnail does after its own draft: resize to the size computed from
        # the full image, over the box the full image covers in the reduced decode.
        final = _thumbnail_size(reduced.full_size, _tup(size))
        if final is not None:  # (always: the request asked for a reduction only when shrinking)
            return img.resize(final, filt, box=reduced.map_box(), reducing_gap=reducing_gap)
    out = img.copy()  # Pillow's thumbnail works in place; never touch the input
    out.thumbnail(_tup(size), reducing_gap=reducing_gap, resample=filt)
    return out


@_register()
def crop(img: PILImage.Image, box: tuple[int, int, int, int] | None = None) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.crop``: the region ``box`` = (left, upper, right, lower)."""
    return img.crop(_tup(box))


@_register()
def convert(img: PILImage.Image, mode: str | None = None,
            matrix: tuple[float, ...] | None = None, dither: int | None = None,
            palette: int = 0, colors: int = 256) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.convert``: a copy in another mode ('L', 'RGB', 'RGBA'...)."""
    pal = _required_int_arg("convert", "palette", palette)
    dith = _pillow_int(PILImage.Dither, _int_arg("convert", "dither", dither))
    return img.convert(mode, matrix=_tup(matrix), dither=dith, palette=PILImage.Palette(pal),
                       colors=colors)


@_register()
def reduce(img: PILImage.Image, factor: int | tuple[int, int],
           box: tuple[int, int, int, int] | None = None) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.reduce``: a copy shrunk by an integer ``factor`` (box averaging)."""
    return img.reduce(_tup(factor), box=_tup(box))


@_register()
def getchannel(img: PILImage.Image, channel: int | str) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.getchannel``: one band ('R', 'A', or its index) as an 'L' image."""
    return img.getchannel(channel)


@_register(check=_check_point)
def point(img: PILImage.Image, lut: list[float], mode: str | None = None) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.point``: pixels mapped through a lookup-table list."""
    _check_lut(lut)
    return img.point(list(lut), mode)


@_register()
def quantize(img: PILImage.Image, colors: int = 256, method: int | None = None, kmeans: int = 0,
             palette: PILImage.Image | None = None, dither: int = 3) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.quantize``: a 'P' image with at most ``colors`` colors."""
    return img.quantize(colors, method=_int_arg("quantize", "method", method), kmeans=kmeans,
                        palette=palette,
                        dither=PILImage.Dither(_required_int_arg("quantize", "dither", dither)))


@_register()
def effect_spread(img: PILImage.Image, distance: int) -> PILImage.Image:
    """Wraps ``PIL.Image.Image.effect_spread``: pixels randomly moved up to ``distance`` away."""
    return img.effect_spread(distance)


@_register()
def blend(im1: PILImage.Image, im2: PILImage.Image, alpha: float) -> PILImage.Image | None:
    """Wraps ``PIL.Image.blend``: ``im1 * (1 - alpha) + im2 * alpha`` (same mode and size)."""
    if im2 is None:
        return None
    return PILImage.blend(im1, im2, alpha)


@_register()
def alpha_composite(im1: PILImage.Image, im2: PILImage.Image) -> PILImage.Image | None:
    """Wraps ``PIL.Image.alpha_composite``: ``im2`` laid over ``im1`` (both RGBA, same size)."""
    if im2 is None:
        return None
    return PILImage.alpha_composite(im1, im2)


@_register()
def composite(image1: PILImage.Image, image2: PILImage.Image,
              mask: PILImage.Image) -> PILImage.Image | None:
    """Wraps ``PIL.Image.composite``: ``image1`` where ``mask`` is opaque, ``image2`` elsewhere."""
    if image2 is None or mask is None:
        return None
    return PILImage.composite(image1, image2, mask)


# ---- measurements --------------------------------------------------------------------------------

@_register()
def getbbox(img: PILImage.Image, alpha_only: bool = True) -> list[int] | None:
    """Wraps ``PIL.Image.Image.getbbox``: [left, top, right, bottom] of non-zero pixels, or None."""
    bbox = img.getbbox(alpha_only=alpha_only)
    return None if bbox is None else list(bbox)


@_register()
def getextrema(img: PILImage.Image) -> list[Any]:
    """Wraps ``PIL.Image.Image.getextrema``: [min, max], or one [min, max] per band."""
    return _as_list(img.getextrema())


@_register()
def histogram(img: PILImage.Image, mask: PILImage.Image | None = None,
              extrema: tuple[float, float] | None = None) -> list[int]:
    """Wraps ``PIL.Image.Image.histogram``: pixel counts per value, band after band."""
    return img.histogram(mask, _tup(extrema))


@_register()
def entropy(img: PILImage.Image, mask: PILImage.Image | None = None,
            extrema: tuple[float, float] | None = None) -> float:
    """Wraps ``PIL.Image.Image.entropy``: the Shannon entropy of the histogram, in bits."""
    return float(img.entropy(mask, _tup(extrema)))


@_register()
def b64_encode(img: PILImage.Image, image_format: str = "png") -> str:
    """Wraps ``PIL.Image.Image.save``: the image encoded as ``image_format``, as base64 text."""
    buf = io.BytesIO()
    img.save(buf, format=image_format)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---- properties ----------------------------------------------------------------------------------

@_register(is_property=True)
def width(img: PILImage.Image) -> int:
    """Wraps ``PIL.Image.Image.width``: the width in pixels."""
    return img.width


@_register(is_property=True)
def height(img: PILImage.Image) -> int:
    """Wraps ``PIL.Image.Image.height``: the height in pixels."""
    return img.height


@_register(is_property=True)
def mode(img: PILImage.Image) -> str:
    """Wraps ``PIL.Image.Image.mode``: the pixel format ('RGB', 'RGBA', 'L'...)."""
    return img.mode


@_register(is_property=True)
def size(img: PILImage.Image) -> list[int]:
    """Wraps ``PIL.Image.Image.size``: [width, height] (a list: tuples are not a column type)."""
    return list(img.size)


# ---- iterators -----------------------------------------------------------------------------------

def tile_iterator(image: Any, tile_size: tuple[int, int], *,
                  overlap: tuple[int, int] = (0, 0)) -> Any:
    """An image's tiles, one row each: ``tile``, ``tile_coord``, ``tile_box`` (see
    :class:`pxlite.iterators.image.TileIterator`), ``tile_size`` (width, height) each, in
    row-major order, adjacent tiles sharing ``overlap`` pixels. On an Image expression, the
    iterator call a view takes (``create_view(..., iterator=tile_iterator(t.image, (256,
    256)))``); on a PIL image, the running iterator."""
    return make_call(TileIterator, image, {"tile_size": tile_size, "overlap": overlap})
