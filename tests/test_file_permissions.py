"""File permissions pxlite sets ($PXLITE_HOME, cache, database, media folders and files),
measured in a subprocess under two umasks (022 and 077).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


PERMS_SCRIPT = r"""
import json, os, stat, sys
root, mask = sys.argv[1], int(sys.argv[2], 8)
os.umask(mask)
os.environ["PXLITE_HOME"] = f"{root}/home"
sys.path.insert(0, sys.argv[3])
import pxlite as pxl
from PIL import Image
db = pxl.default()
t = db.create_table("t", {"image": pxl.Image})
t.insert(image=Image.new("RGB", (8, 8)))
pxl.cache_info()
os.makedirs(f"{root}/proj", exist_ok=True)  # connect() creates no missing folder
p = pxl.connect(f"{root}/proj/x.pxl")
u = p.create_table("t", {"image": pxl.Image})
u.insert(image=Image.new("RGB", (8, 8), "red"))
u.add_computed_column(r=u.image.rotate(90), destination=f"{root}/out")
def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)
def first_file(d):
    return next(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)
print(json.dumps({
    "home": mode(f"{root}/home"), "home_db": mode(f"{root}/home/pxlite.db"),
    "home_wal": mode(f"{root}/home/pxlite.db-wal"),
    "home_media": mode(f"{root}/home/media"),
    "home_media_file": mode(first_file(f"{root}/home/media")),
    "cache": mode(f"{root}/home/file_cache"), "cache_db": mode(f"{root}/home/file_cache/cache.db"),
    "db": mode(f"{root}/proj/x.pxl"), "media": mode(f"{root}/proj/x.pxl.media"),
    "media_file": mode(first_file(f"{root}/proj/x.pxl.media")),
    "dest_dir": mode(f"{root}/out"), "dest_file": mode(first_file(f"{root}/out")),
}))
"""


@pytest.fixture(scope="module")
def modes(tmp_path_factory) -> dict[int, dict[str, int]]:
    out = {}
    for mask in (0o022, 0o077):
        root = tmp_path_factory.mktemp(f"perm{mask:o}")
        r = subprocess.run([sys.executable, "-c", PERMS_SCRIPT, str(root), f"{mask:o}",
                            str(ROOT)], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items()
                                if not k.startswith("PXLITE_")})
        assert r.returncode == 0, r.stderr
        out[mask] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_database_and_media_folders_follow_umask(modes):
    for mask, m in modes.items():
        for key in ("db", "home_db", "home_wal"):
            assert m[key] == 0o644 & ~mask, (mask, key, oct(m[key]))
        for key in ("media", "home_media", "dest_dir"):
            assert m[key] == 0o777 & ~mask, (mask, key, oct(m[key]))


def test_umask_077_keeps_everything_private(modes):
    m = modes[0o077]
    public = {k: oct(v) for k, v in m.items() if v & 0o077}
    assert not public, public


def test_home_and_cache_are_private(modes):
    m = modes[0o022]
    assert m["home"] == 0o700 and m["cache"] == 0o700, {k: oct(m[k]) for k in ("home", "cache")}


def test_media_files_follow_umask(modes):
    m = modes[0o022]
    for key in ("media_file", "home_media_file", "dest_file"):
        assert m[key] == 0o644, (key, oct(m[key]))
