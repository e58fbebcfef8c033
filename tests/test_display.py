"""Showing results: one broken cell (a missing, truncated or replaced file) shows as text saying
what is wrong, in the notebook HTML and in the text table; every other cell still renders."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.results import ResultSet


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
    assert good.startswith("<img src=\"data:image/jpeg;base64,")
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


# ---- text rules ------------------------------------------------------------------------------

def test_text_shows_an_image_value_as_size_and_format(db, tmp_path: Path) -> None:
    """An opened image shows as ``<Image WxH FORMAT>``; a computed one (no file format yet) by
    its pixel mode; a stored reference by its path."""
    p = tmp_path / "a.jpg"
    Image.new("RGB", (640, 480), (1, 2, 3)).save(p)
    with Image.open(p) as opened:
        rs = ResultSet(["image"], [pxl.Image], [(opened,)])
        assert "<Image 640x480 JPEG>" in repr(rs)
    t = db.create_table("c", {"image": pxl.Image})
    t.insert(image=str(p))
    text = repr(t.select(t.image, r=t.image.rotate(90)).collect())
    row = text.splitlines()[2]
    assert "a.jpg" in row and "<Image 640x480 RGB>" in row, text


def test_middle_cut_keeps_the_start_and_the_file_name() -> None:
    from pxlite.display import end_cut, middle_cut

    url = "https://example.com/" + "x" * 80 + "/holiday-photo.jpg"
    cut = middle_cut(url, 48)
    assert len(cut) == 48 and cut.startswith("https://") and cut.endswith("/holiday-photo.jpg")
    assert "..." in cut
    assert middle_cut("short.jpg", 48) == "short.jpg"
    long_name = "/d/" + "n" * 100 + ".jpg"
    assert len(middle_cut(long_name, 20)) == 20 and middle_cut(long_name, 20).endswith(".jpg")
    assert all(len(middle_cut(url, w)) == w for w in range(1, 60))
    assert end_cut("abcdefghij", 6) == "abc..." and end_cut("abc", 6) == "abc"


def test_a_long_local_reference_is_cut_in_the_middle_and_decoded(db, tmp_path: Path) -> None:
    folder = tmp_path / ("deep" * 8) / ("er" * 10)
    folder.mkdir(parents=True)
    p = folder / "my photo #1.jpg"
    Image.new("RGB", (8, 8)).save(p)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=str(p))
    row = repr(t.collect()).splitlines()[2]
    assert row.startswith("file://") and row.endswith("/my photo #1.jpg"), row
    assert "\u2026" in row and len(row) <= 48 and "%20" not in row
    assert row.startswith(f"file://{str(tmp_path).split('/')[0]}/") and "/" + "er" * 10 + "/" in row


def test_a_url_reference_is_shown_without_its_credentials() -> None:
    url = "https://acct.blob.core.windows.net/c/p.jpg?sv=2024&sig=SECRETSECRET"
    rs = ResultSet(["image"], [pxl.Image], [(url,)])
    assert "SECRETSECRET" not in repr(rs) and "SECRETSECRET" not in rs._repr_html_()


def test_to_text_fits_a_width_without_wrapping() -> None:
    rows = [(i, "word " * 30, f"https://example.com/{'p' * 70}/img{i}.jpg") for i in range(3)]
    rs = ResultSet(["n", "text", "image"], [pxl.Int, pxl.String, pxl.Image], rows)
    wide = rs.to_text()
    assert max(len(line) for line in wide.splitlines()) > 90
    for width in (40, 60, 100):
        lines = rs.to_text(width=width).splitlines()
        assert len(lines) == 2 + 3 + 1                     # header, rule, rows, count
        assert all(len(line) <= width for line in lines), (width, lines)
        assert lines[2].startswith("0  word")
    narrow = rs.to_text(width=60).splitlines()
    assert narrow[2].endswith("img0.jpg") or "..." in narrow[2]
    many = ResultSet([f"col{i}" for i in range(30)], [pxl.Int] * 30, [tuple(range(30))])
    assert all(len(line) <= 50 for line in many.to_text(width=50).splitlines())


def test_cli_show_fits_the_terminal(tmp_path: Path) -> None:
    p = tmp_path / ("a-long-folder-name" * 3) / "photo with a rather long file name.png"
    p.parent.mkdir(parents=True)
    Image.new("RGB", (20, 10)).save(p)
    dbfile = tmp_path / "c.pxl"
    with pxl.connect(dbfile) as db:
        t = db.create_table("t", {"image": pxl.Image, "note": pxl.String, "n": pxl.Int})
        t.insert([{"image": str(p), "note": "lorem ipsum " * 10, "n": i} for i in range(3)])
    env = {**os.environ, "COLUMNS": "60"}
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "show", "t", "-n", "10",
                          "--db", str(dbfile)], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[-1] == "(3 rows)" and len(lines) == 6, out
    assert all(len(line) <= 60 for line in lines), out
    assert "lorem" in lines[2] and lines[2].rstrip().endswith("0"), out


# ---- HTML -------------------------------------------------------------------------------------

def _thumbs(html_text: str) -> list[tuple[str, Image.Image]]:
    found = re.findall(r'src="data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)"', html_text)
    return [(mime, Image.open(io.BytesIO(base64.b64decode(b64)))) for mime, b64 in found]


def test_html_thumbnails_are_small_jpeg_and_keep_alpha(db, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    noise = Image.effect_noise((640, 480), 60).convert("RGB")
    noise.save(photo, quality=90)
    logo = tmp_path / "logo.png"
    rgba = Image.new("RGBA", (300, 200), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (100, 50, 200, 150))
    rgba.save(logo)
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": str(photo), "n": 0}, {"image": str(logo), "n": 1}])
    out = t.order_by(t.n).collect()._repr_html_()
    (mime0, jpeg), (mime1, alpha) = _thumbs(out)
    assert mime0 == "image/jpeg" and jpeg.size == (96, 72)
    assert len(base64.b64decode(re.findall(r"base64,([^\"]+)", out)[0])) < 8000
    assert mime1 in ("image/webp", "image/png") and max(alpha.size) == 96
    assert alpha.mode == "RGBA" and alpha.getpixel((2, 2))[3] == 0
    assert alpha.getpixel((48, 32))[3] == 255


def test_html_has_css_and_cuts_long_urls_in_the_middle() -> None:
    url = "https://example.com/" + "/".join(["segment"] * 20) + "/picture.jpg"
    rs = ResultSet(["image", "n"], [pxl.Image, pxl.Int], [(url, 1)])
    out = rs._repr_html_()
    assert "<style>" in out and "border" in out and "monospace" in out
    cell = re.search(r'<td class="ref" title="([^"]+)">([^<]+)</td>', out)
    assert cell is not None, out
    assert cell.group(1) == url
    assert cell.group(2).startswith("https://") and cell.group(2).endswith("/picture.jpg")
    assert "\u2026" in cell.group(2) and len(cell.group(2)) <= 60
    assert cell.group(2).startswith("https://example.com/segment/")


def test_a_url_in_a_text_column_is_shown_as_a_reference(db, tmp_path: Path) -> None:
    """``.fileurl`` is text, but a URL: cut in the middle, decoded, monospace, full in title."""
    folder = tmp_path / ("folder-" * 10)
    folder.mkdir()
    p = folder / "my photo #1.jpg"
    Image.new("RGB", (8, 8)).save(p)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=str(p))
    rs = t.select(t.image.fileurl).collect()
    row = repr(rs).splitlines()[2]
    assert row.startswith("file://") and row.endswith("/my photo #1.jpg") and "\u2026" in row
    cell = re.search(r'<td class="ref" title="([^"]+)">([^<]+)</td>', rs._repr_html_())
    assert cell is not None and cell.group(1).endswith("/my photo #1.jpg")
    assert cell.group(2).endswith("/my photo #1.jpg") and "\u2026" in cell.group(2)


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "I;16", "1"])
def test_html_thumbnail_of_any_mode(mode: str) -> None:
    img = Image.new(mode, (200, 100))
    rs = ResultSet(["image"], [pxl.Image], [(img,)])
    [(mime, thumb)] = _thumbs(rs._repr_html_())
    assert thumb.size == (96, 48) and mime in ("image/jpeg", "image/webp", "image/png")
    assert img.size == (200, 100)          # the caller's image is left alone
