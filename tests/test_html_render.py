"""The notebook HTML of a result, rendered by a real browser (headless Chromium): every
thumbnail decodes and shows, and long URLs do not push the table past a 1,200 px window.
A screenshot is left in the test's tmp_path for a human to look at (nothing asserts on pixels).

Chromium is the Debian package ``chromium`` (tools/test.sh installs it); in CI (``CI=true``) a
missing browser fails this test, locally it skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import pxlite as pxl

WINDOW = (1200, 900)

#: Added by the test, not by pxlite: once everything has loaded, the page reports its width
#: and how many images decoded in its title, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  const biggest = Math.max(0, ...imgs.map((i) => Math.max(i.naturalWidth, i.naturalHeight)));
  const cells = [...document.querySelectorAll("td")];
  const mono = cells.filter((c) => getComputedStyle(c).fontFamily.includes("monospace")).length;
  const bordered = cells.filter((c) => getComputedStyle(c).borderTopStyle !== "none").length;
  document.title = `probe scrollWidth=${document.documentElement.scrollWidth} ` +
                   `loaded=${ok} images=${imgs.length} biggest=${biggest} ` +
                   `mono=${mono} bordered=${bordered} cells=${cells.length}`;
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed: tools/test.sh installs the Debian package")
    pytest.skip("chromium is not installed (tools/test.sh installs it)")


def _run_chromium(exe: str, page: Path, profile: Path, *extra: str) -> str:
    args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=3000",
            *extra, page.as_uri()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _result_with_images(db, tmp_path: Path):
    """Five rows: photos-like JPEGs, a PNG with transparency, a grey image, and long URLs."""
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i in range(5):
        size = (640, 480) if i % 2 == 0 else (300, 500)
        if i == 3:
            img = Image.new("RGBA", size, (0, 0, 0, 0))
            ImageDraw.Draw(img).ellipse((20, 20, size[0] - 20, size[1] - 20), (0, 120, 255, 200))
            p = src / f"logo {i}.png"
        else:
            img = Image.effect_noise(size, 40).convert("L" if i == 4 else "RGB")
            if img.mode == "RGB":
                ImageDraw.Draw(img).rectangle((10, 10, 200, 120), fill=(200, 40 * i, 10))
            p = src / f"photo #{i}.jpg"
        img.save(p)
        paths.append(p)
    t = db.create_table("render", {"image": pxl.Image, "url": pxl.String, "n": pxl.Int})
    t.insert([{"image": str(p), "n": i,
               "url": f"https://cdn.example.com/{'very-long-segment/' * 12}photo-{i}.jpg"}
              for i, p in enumerate(paths)])
    # the same images as references too (shown as cut, monospace URLs beside the thumbnail)
    return t.select(t.image, t.image.fileurl, t.url, t.n).order_by(t.n).collect()


def test_html_renders_in_chromium(db, tmp_path: Path) -> None:
    exe = _chromium()
    rs = _result_with_images(db, tmp_path)
    body = rs._repr_html_()
    assert body.count("<img") == 5
    page = tmp_path / "result.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>-</title>"
                    f"</head><body>{body}{PROBE}</body></html>", encoding="utf-8")

    dom = _run_chromium(exe, page, tmp_path / "profile", "--dump-dom")
    probe = re.search(r"probe scrollWidth=(\d+) loaded=(\d+) images=(\d+) biggest=(\d+) "
                      r"mono=(\d+) bordered=(\d+) cells=(\d+)", dom)
    assert probe is not None, dom[-2000:]
    width, loaded, images, biggest, mono, bordered, cells = (int(g) for g in probe.groups())
    assert images == 5 and loaded == 5, probe.group(0)        # every thumbnail decoded
    assert width <= WINDOW[0], probe.group(0)                 # nothing overflows the window
    assert biggest <= 96, probe.group(0)                      # small thumbnails
    assert mono == 10, probe.group(0)                         # the two URL columns
    assert cells == 20 and bordered == 20, probe.group(0)

    shot = tmp_path / "result.png"
    _run_chromium(exe, page, tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 0
    print(f"screenshot: {shot}")
