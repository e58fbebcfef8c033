"""Generated test and demo images: noisy photographs-like content, deterministic per seed.

Lives in the package (not only under tools/) because ``pxlite demo`` needs it on an installed
wheel. Noise makes JPEG sizes realistic (~90 KB at 640x480, quality 90) so benchmarks measure
real encode/decode work.
"""

from __future__ import annotations

import random
from pathlib import Path


def make_image(seed: int, size: tuple[int, int] = (640, 480), alpha: bool = False):
    """One RGB (or RGBA) image: a colour gradient, a few shapes, and per-pixel noise."""
    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    w, h = size
    base = Image.linear_gradient("L").resize((w, h))
    r = base.point(lambda v: (v + rnd.randrange(256)) % 256)
    g = base.transpose(Image.Transpose.ROTATE_90).resize((w, h))
    b = Image.effect_noise((w, h), 24).point(lambda v: (v + seed * 37) % 256)
    img = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1 = min(w - 1, x0 + rnd.randrange(w // 3 + 1))
        y1 = min(h - 1, y0 + rnd.randrange(h // 3 + 1))
        fill = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    noise = Image.effect_noise((w, h), 20).convert("RGB")
    img = Image.blend(img, noise, 0.12)
    if alpha:
        img.putalpha(Image.linear_gradient("L").resize((w, h)))
    return img


def write_images(folder: Path, n: int, size: tuple[int, int] = (640, 480), *, fmt: str = "jpeg",
                 start: int = 0) -> list[Path]:
    """Write ``n`` generated images into ``folder`` (created); return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": "jpg", "png": "png", "webp": "webp"}[fmt]
    paths = []
    for i in range(start, start + n):
        p = folder / f"img_{i:05d}.{ext}"
        if not p.exists():
            img = make_image(i, size, alpha=(fmt == "png" and i % 2 == 1))
            if fmt == "jpeg":
                img.save(p, format="JPEG", quality=90)
            else:
                img.save(p, format=fmt.upper())
        paths.append(p)
    return paths
