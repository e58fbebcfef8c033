"""What a person reads: file URLs that keep where the file is, describe() as text and HTML,
the notebook HTML of results (text whole, 20 rows, failed cells saying why), pxl.check() on
the right database, and readable settings. (tests/test_notebook.py runs these on a real
Jupyter kernel; tests/test_html_render.py renders them in Chromium.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from udfs.sample import interrupt_at

import pxlite as pxl
from pxlite.cli import main
from pxlite.display import ELLIPSIS, TEXT_URL_WIDTH, short_key, short_url
from pxlite.results import HTML_ROWS, ResultSet

KEY = "5e521de4f6f7/3/cd/cd826b6ba3d144d3bf0cb86747ba151d06cfd312bf782e4a50fe8f1f67aae159.jpg"


# ---- URLs ------------------------------------------------------------------------------------

def test_a_key_is_cut_never_the_place() -> None:
    assert short_key(KEY) == f"5e52{ELLIPSIS}/3/cd/cd82{ELLIPSIS}e159.jpg"
    for url, width, want in [
        (f"s3://my-bucket/rotated/{KEY}", 48, f"s3://my-bucket/rotated/{short_key(KEY)}"),
        (f"file:///tmp/tmp3mpz48ez/rotated/{KEY}", 48,
         f"file:///tmp/{ELLIPSIS}/rotated/{short_key(KEY)}"),
        (f"file:///tmp/tmp3mpz48ez/rotated/{KEY}", 64,
         f"file:///tmp/tmp3mpz48ez/rotated/{short_key(KEY)}"),
        (f"gs://bkt/out/thumbs/{KEY}", 80, f"gs://bkt/out/thumbs/{short_key(KEY)}"),
        (f"file:///data/photos.pxl.media/{KEY}", 42,
         f"file:///{ELLIPSIS}/photos.pxl.media/{ELLIPSIS}/cd82{ELLIPSIS}e159.jpg"),
        ("file:///home/u/very/long/path/photos/holiday/IMG_1234.jpg", 48,
         f"file:///home/{ELLIPSIS}/path/photos/holiday/IMG_1234.jpg"),
        ("file:///tmp/a/b/c/d/e/photos.pxl.media/", 31,
         f"file:///tmp/{ELLIPSIS}/photos.pxl.media/"),
    ]:
        assert short_url(url, width) == want, (url, width)
    assert short_url("s3://b/short.jpg", 48) == "s3://b/short.jpg"


@pytest.mark.parametrize("url", [
    f"file:///tmp/pytest-of-root/pytest-3/test_x0/photos.pxl.media/{KEY}",
    f"s3://a-rather-long-bucket-name/some/prefix/rotated/{KEY}",
    f"https://acct.blob.core.windows.net/container/out/thumbs/{KEY}",
    "https://cdn.example.com/" + "very-long-segment/" * 12 + "photo-1.jpg",
    "file:///d/" + "n" * 100 + ".jpg",
])
def test_short_url_fits_and_keeps_scheme_and_bucket(url: str) -> None:
    root = re.match(r"[a-z0-9]+://[^/]*", url).group()      # type: ignore[union-attr]
    for width in range(12, len(url) + 5):
        shown = short_url(url, width)
        assert len(shown) <= width, (width, shown)
        if width >= len(root) + 10:
            assert shown.startswith(root + "/"), (width, shown)
        if width >= len(root) + 30 and "/rotated/" in url:
            assert "/rotated/" in shown, (width, shown)


def _two_destinations(db, tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 60, 20, 90)).save(src / f"p{i}.jpg")
    t = db.create_table("media", {"image": pxl.Image, "label": pxl.String})
    t.insert([{"image": str(src / f"p{i}.jpg"), "label": f"photo {i}"} for i in range(3)])
    t.add_computed_column(rotated=t.image.rotate(90), destination=str(tmp_path / "rotated"))
    t.add_computed_column(thumb=t.image.thumbnail((16, 16)))
    return t


def test_file_urls_show_their_destination_in_text_and_html(db, tmp_path: Path) -> None:
    t = _two_destinations(db, tmp_path)
    rs = t.select(t.label, t.rotated.fileurl, t.thumb.fileurl, t.thumb).order_by(t.label).collect()
    text, html = repr(rs), rs._repr_html_()
    for shown in (text, re.sub(r' title="[^"]*"', "", html)):
        assert shown.count("/rotated/") == 3 and shown.count("/test.pxl.media/") >= 3, shown
        assert f"{ELLIPSIS}/1/" not in shown                       # the table part is kept
    full = rs[0]["rotated_fileurl"]                                 # the value is untouched
    assert re.fullmatch(r"file://.*/rotated/[0-9a-f]{12}/3/([0-9a-f]{2})/\1[0-9a-f]{62}\.jpg",
                        full), full
    assert f'title="{full}"' in html
    # a media column's own cells (stored relative to the media folder) show the folder too
    assert all("test.pxl.media/" in line for line in text.splitlines()[2:5]), text


def test_html_shows_text_whole_up_to_a_thousand_characters() -> None:
    long, longer = "word " * 150, "x" * 999 + "END" + "y" * 1000
    rs = ResultSet(["s"], [pxl.String], [(long,), (longer,)])
    html = rs._repr_html_()
    assert long.strip() in html                                      # 750 characters, whole
    cell = re.findall(r"<td>(x+ \u2026 y+)</td>", html)
    assert cell and len(cell[0]) <= 1000 and "END" not in html
    assert len(repr(rs).splitlines()[2]) <= 60                       # a text row stays short


def test_html_shows_twenty_rows_and_counts_the_rest() -> None:
    rs = ResultSet(["n", "s"], [pxl.Int, pxl.String], [(i, f"row {i}") for i in range(45)])
    html = rs._repr_html_()
    assert html.count("<tr>") == 1 + HTML_ROWS == 21
    assert "row 19<" in html and "row 20<" not in html
    assert f"{ELLIPSIS} 25 more rows (45 in all)" in html
    assert len(rs) == 45 and rs[44]["s"] == "row 44" and len(rs.to_dicts()) == 45
    assert "25 more" not in ResultSet(["n"], [pxl.Int], [(1,)])._repr_html_()
    assert "1 row<" in ResultSet(["n"], [pxl.Int], [(1,)])._repr_html_()
    assert "more rows" not in rs[:20]._repr_html_() and "20 rows" in rs[:20]._repr_html_()


def test_a_failed_image_cell_shows_its_error(db, tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    t = db.create_table("t", {"image": pxl.Image, "n": pxl.Int})
    t.insert([{"image": str(tmp_path / "a.jpg"), "n": 1},
              {"image": str(tmp_path / "gone.jpg"), "n": 2}], on_error="ignore")
    t.add_computed_column(r=t.image.rotate(90))
    rs = t.select(t.n, t.image, t.r).order_by(t.n).collect()
    assert rs[1]["r"] is None and rs[1]["image"] is None             # the values stay None
    row = repr(rs).splitlines()[3]
    assert "<SchemaError: file 'gone.jpg' does not exist>" in row, row
    assert "<SchemaError: input column 'image' has an error" in row, row
    html = rs._repr_html_()
    assert html.count('class="bad"') == 2 and "SchemaError: file" in html
    assert html.count("<img") == 2                                   # row 1's two images
    assert "SchemaError" in repr(rs[1:]) and "SchemaError" not in repr(rs[:1])


# ---- describe() --------------------------------------------------------------------------------

def test_describe_as_html(db, tmp_path: Path) -> None:
    t = _two_destinations(db, tmp_path)
    html = t._repr_html_()
    assert html.startswith("<style>") and '<table class="pxl-t">' in html
    for th in ("Column", "Type", "Computed with", "Destination"):
        assert f"<th>{th}</th>" in html
    assert "Table &#x27;media&#x27; (3 rows)" in html
    assert "image.rotate(90)" in html and "image.thumbnail((16, 16))" in html
    rotated = str(tmp_path / "rotated")
    assert f'title="file://{rotated}/"' in html and "set by destination=" in html
    assert "default: the media folder" in html and "paths and URLs stay where they are" in html


def test_describe_shows_where_existing_files_are_after_a_new_default(db, tmp_path) -> None:
    t = _two_destinations(db, tmp_path)
    out = tmp_path / "elsewhere"
    pxl.configure(output_media_dest=str(out))
    text = repr(t)
    line = next(li for li in text.splitlines() if li.startswith("thumb "))
    new = short_url(f"file://{out}/", TEXT_URL_WIDTH)
    assert f"{new} (output_media_dest from configure())" in line
    assert "  new files: file://" in line
    existing = text.splitlines()[text.splitlines().index(line) + 1]
    assert existing.strip().startswith("existing files: ") and "test.pxl.media/" in existing
    assert "existing files" not in next(li for li in text.splitlines()
                                        if li.startswith("rotated "))  # its own destination
    html = t._repr_html_()
    assert "existing files: " in html and f'title="{db.media_folder.prefix}"' in html
    t.insert(image=str(tmp_path / "src" / "p0.jpg"), label="late")   # a file in each folder
    text = repr(t)
    assert "existing files: " in text and "elsewhere/" in text.split("existing files: ")[1]


def test_describe_cuts_long_paths_in_text_keeping_the_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 4) / "more" / "and-more"
    deep.mkdir(parents=True)
    with pxl.connect(deep / "photos.pxl") as db:
        t = db.create_table("t", {"image": pxl.Image})
        t.add_computed_column(r=t.image.rotate(90))
        text, html = repr(t), t._repr_html_()
    prefix = f"file://{deep}/photos.pxl.media/"
    assert len(prefix) > 100 and prefix not in text
    assert max(len(line) for line in text.splitlines()) < 140, text
    assert "/photos.pxl.media/ (default: the media folder)" in text
    assert re.search(r"\n {20,}inserted paths and URLs stay where they are\n", text), text
    assert f'title="{prefix}"' in html


def test_describe_shows_a_pending_columns_progress(db) -> None:
    t = db.create_table("t", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(300)])
    with pytest.raises(KeyboardInterrupt):  # a column left pending, as Ctrl-C would
        t.add_computed_column(m=interrupt_at(t.n, 280))
    done = re.search(r"\[pending (\d+)/300\]", repr(t))
    assert done is not None and 0 < int(done.group(1)) < 300, repr(t)
    assert f'<progress value="{done.group(1)}" max="300">' in t._repr_html_()


def test_describe_goes_through_ipython_display_when_ipython_runs(db, monkeypatch) -> None:
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display  # noqa: F401  (imported as describe() would)

    shown: list[object] = []
    shell = InteractiveShell.instance()
    try:
        monkeypatch.setattr(shell, "display_pub",
                            type("Pub", (), {"publish": lambda self, data, **kw: shown.append(data),
                                             "is_publishing": False})())
        t = db.create_table("t", {"image": pxl.Image})
        assert t.describe() is None
        (data,) = shown
        assert "<table" in data["text/html"] and data["text/plain"] == repr(t)
    finally:
        InteractiveShell.clear_instance()


# ---- check() -----------------------------------------------------------------------------------

def test_check_names_its_database_and_never_creates_one(tmp_path, pxlite_home, capsys) -> None:
    db = pxl.connect(tmp_path / "photos.pxl")
    with pytest.raises(pxl.NotFoundError) as e:
        pxl.check()
    msg = str(e.value)
    assert str(pxlite_home / "pxlite.db") in msg and "db.check()" in msg
    assert str(tmp_path / "photos.pxl") in msg                       # what was opened
    assert not (pxlite_home / "pxlite.db").exists() and not pxlite_home.exists()
    report = db.check()
    assert report.ok and str(report).startswith(f"pxlite check of {tmp_path / 'photos.pxl'}: OK")
    assert f"of {str(tmp_path / 'photos.pxl')!r}" in repr(report)
    assert pxl.check(db=db).database == str(tmp_path / "photos.pxl")
    # the command without --db says the same, in one line, and makes nothing either
    assert main(["check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pxlite: error: pxl.check() checks the default database") and \
        err.count("\n") == 1, err
    assert not pxlite_home.exists()
    # once the default database exists, it is the one checked, by name
    pxl.create_table("t", {"n": pxl.Int})
    report = pxl.check()
    assert report.database == str(pxlite_home / "pxlite.db") and report.ok
    db.close()


def test_check_report_shows_itself_in_ipython(db) -> None:
    pytest.importorskip("IPython")
    from IPython.lib.pretty import pretty

    assert pretty(db.check()) == str(db.check())


# ---- settings ---------------------------------------------------------------------------------

def test_settings_print_one_a_line(monkeypatch) -> None:
    monkeypatch.setenv("PXLITE_OUTPUT_MEDIA_DEST", "/tmp/out")
    pxl.configure(s3={"aws_secret_access_key": "PXSECRETVALUE1234"})
    text = repr(pxl.settings())
    lines = text.splitlines()
    assert lines[0].startswith("Settings") and len(lines) > 15
    assert any(re.match(r"  output_media_dest +/tmp/out  \[environment\]$", li) for li in lines)
    assert "PXSECRETVALUE1234" not in text and "s3.aws_secret_access_key" in text
