"""The ``pxlite`` command: each subcommand, and errors as one line with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite.cli import main

ROOT = Path(__file__).parents[1]


@pytest.fixture
def dbfile(tmp_path, jpegs):
    p = tmp_path / "c.pxl"
    with pxl.connect(p) as db:
        db.create_dir("d")
        t = db.create_table("d.t", {"image": pxl.Image, "n": pxl.Int})
        t.insert([{"image": j, "n": i} for i, j in enumerate(jpegs[:3])])
    return p


def test_ls_describe_show(dbfile, capsys):
    assert main(["ls", "--db", str(dbfile)]) == 0
    out = capsys.readouterr().out
    assert "d/" in out and "d.t  (3 rows)" in out
    assert main(["describe", "d.t", "--db", str(dbfile)]) == 0
    assert "image   Image" in capsys.readouterr().out
    assert main(["show", "d.t", "-n", "2", "--db", str(dbfile)]) == 0
    out = capsys.readouterr().out
    assert "(2 rows)" in out and "img_00000.jpg" in out


def test_errors_are_one_line(dbfile, capsys):
    assert main(["describe", "nope", "--db", str(dbfile)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pxlite: error: table 'nope' does not exist") and err.count("\n") == 1
    (dbfile.parent / "junk.pxl").write_text("junk")
    assert main(["ls", "--db", str(dbfile.parent / "junk.pxl")]) == 1
    assert "not a pxlite database" in capsys.readouterr().err
    assert main([]) == 2


def test_config_shows_sources_and_masks_secrets(monkeypatch, capsys, pxlite_home):
    pxlite_home.mkdir(parents=True, exist_ok=True)
    (pxlite_home / "config.toml").write_text(
        '[pxlite]\nfile_cache_size_g = 3\n[s3]\naws_secret_access_key = "supersecretvalue"\n')
    monkeypatch.setenv("PXLITE_OUTPUT_MEDIA_DEST", "/tmp/out")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "supersecretvalue" not in out and "****ue" in out
    assert "file_cache_size_g" in out and "config.toml]" in out
    assert "/tmp/out  [environment]" in out


def test_cache_info_and_clear(capsys):
    assert main(["cache", "info"]) == 0
    assert "size_bytes" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 0 cached files" in capsys.readouterr().out


def test_demo_runs(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "Added 4 column values with 0 errors" in out
    assert "originals still there: True" in out
    assert (tmp_path / "demo" / "demo.pxl").is_file()


def test_wheel_installs_and_runs_demo(tmp_path):
    """The built wheel (schema.sql inside) works from a fresh venv, outside the source tree."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("pxlite-*.whl")
    import zipfile

    assert "pxlite/schema.sql" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    # system site packages provide the dependencies (no network); the wheel provides pxlite
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True,
                   timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PXLITE_HOME"] = str(tmp_path / "home")
    where = subprocess.run([str(py), "-c", "import pxlite; print(pxlite.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout
    out = subprocess.run([str(venv / "bin" / "pxlite"), "demo", "--dir", str(tmp_path / "d"),
                          "-n", "3"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Added" in out.stdout and "originals still there: True" in out.stdout


@pytest.mark.parametrize("text,line", [
    ("[pxlite]\nfile_cache_size_g = 3\ninput_media_dest = \n", 3),
    ("[s3]\naws_secret_access_key = \"PXSECRET-toml-0001\"\nthis is not toml\n", 3),
    ("[pxlite]\n[pxlite]\n", 2),
    ("x = \"unterminated\n", 1),
])
def test_config_with_malformed_toml_is_one_line_error(pxlite_home, text, line):
    pxlite_home.mkdir(parents=True, exist_ok=True)
    (pxlite_home / "config.toml").write_text(text)
    env = {**os.environ, "PXLITE_HOME": str(pxlite_home),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PXLITE_DEBUG", None)
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "config"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert out.stdout == ""
    err = out.stderr
    assert err.count("\n") == 1 and err.startswith("pxlite: error: "), err
    assert str(pxlite_home / "config.toml") in err and f"line {line}" in err, err
    assert "Traceback" not in err and "PXSECRET" not in err
