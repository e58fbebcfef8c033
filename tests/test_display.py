"""Showing results: one broken cell (a missing, truncated or replaced file) shows as text saying
what is wrong, in the notebook HTML and in the text table; every other cell still renders."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

import pxlite as pxl


def _table_with_broken_files(db, tmp_path: Path):
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200), (9, 9, 9)]):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (64, 48), colour).save(p)
        paths.append(p)
    t = db.create_table("shown", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": str(p), "n": i} for i, p in enumerate(paths)])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])     # truncated: the header still parses
    paths[2].unlink()                                 # missing
    paths[3].write_text("<html>not found</html>")     # replaced by an error page
    return t, paths


def test_html_shows_broken_cells_as_text(db, tmp_path: Path) -> None:
    t, _ = _table_with_broken_files(db, tmp_path)
    rs = t.select(t.image, t.n).order_by(t.n).collect()
    out = rs._repr_html_()
    cells = re.findall(r"<tr><td[^>]*>(.*?)</td><td>(\d)</td></tr>", out)
    assert [n for _, n in cells] == ["0", "1", "2", "3"], out[:500]
    good, truncated, missing, html_page = (c for c, _ in cells)
    assert good.startswith("<img src=\"data:image/png;base64,")
    assert "truncated" in truncated and "img1.png" in truncated, truncated
    assert "does not exist" in missing and "img2.png" in missing, missing
    assert "not an image" in html_page and "HTML" in html_page, html_page
    assert "4 rows" in out


def test_text_repr_says_what_is_wrong(db, tmp_path: Path) -> None:
    t, _ = _table_with_broken_files(db, tmp_path)
    text = repr(t.select(t.image, t.n).order_by(t.n).collect())
    lines = text.splitlines()
    assert lines[-1] == "(4 rows)"
    body = lines[2:-1]
    assert "img0.png" in body[0] and "<" not in body[0]
    assert "does not exist" in body[2] and "img2.png" in body[2], body[2]
    assert "not an image" in body[3], body[3]
    assert all(line.rstrip().endswith(str(i)) for i, line in enumerate(body))


def test_html_leaves_the_callers_images_alone(db, tmp_path: Path) -> None:
    """Computed image values in a result are the caller's: the thumbnail is made from a copy,
    while images resolved only for display are shrunk in place (no full-size copy)."""
    p = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(p)
    t = db.create_table("c", {"image": pxl.Image})
    t.insert(image=str(p))
    rs = t.select(t.image, r=t.image.rotate(90)).collect()
    assert "<img" in rs._repr_html_()
    assert rs[0]["r"].size == (300, 200)
    assert rs._repr_html_().count("<img") == 2
