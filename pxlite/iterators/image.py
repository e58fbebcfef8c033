"""Image iterator: :class:`TileIterator` cuts an image into tiles (Pillow, always installed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError
from ..types import Image, Json, Required, is_pil_image
from .base import ComponentIterator, check_keys, register_iterator

if TYPE_CHECKING:
    from ..types import ColumnType


def _pair(fn: str, name: str, v: Any, *, minimum: int) -> list[int]:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= minimum for x in v):
        return [int(v[0]), int(v[1])]
    need = "positive" if minimum > 0 else "non-negative"
    raise SchemaError(f"{fn}(): {name} must be a pair of {need} integers (width, height), "
                      f"got {v!r}")


@register_iterator
class TileIterator(ComponentIterator):
    """``tile_iterator(image, tile_size, *, overlap=(0, 0))``: one row per tile of an image,
    in row-major order (left to right, then top to bottom).

    Outputs (Pixeltable's): ``tile`` (Image, always exactly ``tile_size``: tiles past the right
    or bottom edge are padded with black), ``tile_coord`` (Json ``[i, j]``: the tile's column
    and row in the grid) and ``tile_box`` (Json ``[x1, y1, x2, y2]``: its pixels in the image).
    Adjacent tiles share ``overlap`` pixels (each side strictly smaller than the tile).
    """

    name = "pxlite.functions.image.tile_iterator"
    input_type = Image
    unstored = ("tile",)

    @classmethod
    def check_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        fn = "tile_iterator"
        check_keys(fn, args, ("tile_size", "overlap"))
        if args.get("tile_size") is None:
            raise SchemaError(f"{fn}(): tile_size is required, e.g. tile_size=(256, 256)")
        size = _pair(fn, "tile_size", args["tile_size"], minimum=1)
        overlap = _pair(fn, "overlap", args.get("overlap", (0, 0)), minimum=0)
        if overlap[0] >= size[0] or overlap[1] >= size[1]:
            raise SchemaError(f"{fn}(): overlap {tuple(overlap)} must be strictly smaller than "
                              f"tile_size {tuple(size)} on each side")
        return {"tile_size": size, "overlap": overlap}

    @classmethod
    def output_schema(cls, args: Mapping[str, Any]) -> dict[str, ColumnType]:
        return {"tile": Image, "tile_coord": Required[Json], "tile_box": Required[Json]}

    def _rows(self) -> Iterator[dict[str, Any]]:
        img = self.value
        if not is_pil_image(img):
            raise SchemaError(f"tile_iterator(): expected a PIL image, got {type(img).__name__}")
        img.load()  # once, not per tile
        (tw, th), (ow, oh) = self.args["tile_size"], self.args["overlap"]
        w, h = img.size
        # the widths t, 2t - o, 3t - 2o... hold exactly 1, 2, 3... tiles; one pixel more needs
        # one tile more
        cols = (w - ow - 1) // (tw - ow) + 1
        rows = (h - oh - 1) // (th - oh) + 1
        for j in range(rows):
            for i in range(cols):
                x1, y1 = i * (tw - ow), j * (th - oh)
                box = (x1, y1, x1 + tw, y1 + th)
                yield {"tile": img.crop(box), "tile_coord": [i, j], "tile_box": list(box)}


__all__ = ["TileIterator"]
