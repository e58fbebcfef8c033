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
    out = capsys.readouterr().out
    assert "size:    0 B of 10.0 GB (0% used" in out and "files:   0" in out  # human sizes
    from pxlite.cli import human_size

    assert [human_size(n) for n in (999, 1000, 3_400_000, 2.5e12, 7e16)] == [
        "999 B", "1.0 kB", "3.4 MB", "2.5 TB", "70000.0 TB"]
    assert main(["cache", "clear"]) == 0
    assert "removed 0 cached files" in capsys.readouterr().out


def _cli_cache_info(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "pxlite.cli", "cache", "info"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


_USE_CACHE = """
import pxlite as pxl
from pxlite.cache import get_cache

cache = get_cache(pxl.settings())
for _ in range(3):  # one miss, then two hits; saved at exit (hits write nothing)
    cache.get_path("https://example.invalid/a.jpg", lambda tmp: tmp.write_bytes(b"cached bytes"))
"""


def test_cache_info_counts_hits_across_processes(pxlite_home):
    """Hit/miss counters live in the cache folder: one process's counts (saved at its exit)
    show in another's `pxlite cache info`, this process's unsaved ones are added, and
    `cache clear` sets them back to zero."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    used = subprocess.run([sys.executable, "-c", _USE_CACHE], env=env, capture_output=True,
                          text=True, timeout=60)
    assert used.returncode == 0, used.stderr
    out = _cli_cache_info(env)
    assert "hits:    2\n" in out and "misses:  1 (hit rate 67%)" in out
    from pxlite.cache import get_cache

    get_cache(pxl.settings()).get_path("https://example.invalid/a.jpg", _fetch)  # a hit here
    assert (pxl.cache_info().hits, pxl.cache_info().misses) == (3, 1)
    assert "hits:    3\n" in _cli_cache_info(env)  # info() saved this process's hit
    assert main(["cache", "clear"]) == 0
    assert (pxl.cache_info().hits, pxl.cache_info().misses) == (0, 0)
    assert "hits:    0\nmisses:  0\n" in _cli_cache_info(env)


def _fetch(tmp: Path) -> None:
    tmp.write_bytes(b"should not be called: the entry is cached")


@pytest.mark.parametrize("command", [["ls"], ["describe", "d.t"], ["show", "d.t"], ["check"]])
@pytest.mark.parametrize("where", ["nothere.pxl", "nofolder/nothere.pxl"])
def test_read_commands_refuse_a_missing_database(tmp_path, capsys, command, where):
    """Reading never creates a database (nor its folders): one line naming the path and how
    to get a database there."""
    path = tmp_path / where
    assert main([*command, "--db", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"pxlite: error: no database file at {path}; ")
    assert "`pxlite ls --db FILE`" in err and f"pxl.connect({str(path)!r})" in err
    assert not path.exists() and not path.parent.with_name("nofolder").exists()


def test_cli_errors_point_to_cli_commands(dbfile, capsys):
    assert main(["describe", "d.tt", "--db", str(dbfile)]) == 1
    err = capsys.readouterr().err
    assert err == (f"pxlite: error: table 'd.tt' does not exist in {dbfile}; did you mean 'd.t'? "
                   f"`pxlite ls --db {dbfile}` shows the tables there are\n")
    assert main(["show", "d", "--db", str(dbfile)]) == 1
    assert "'d' is a directory, not a table; `pxlite ls --db" in capsys.readouterr().err


def test_check_fix_fails_while_files_are_missing(dbfile, capsys):
    """--fix removes orphans but cannot bring missing files back: the exit status says so,
    and the report says how to write computed files again."""
    with pxl.connect(dbfile) as db:
        t = db.get_table("d.t")
        t.add_computed_column(rot=t.image.rotate(90))
    written = sorted(f for f in dbfile.with_name("c.pxl.media").rglob("*") if f.is_file())
    assert len(written) == 3
    written[0].unlink()
    with pytest.raises(SystemExit) as e:
        main(["check", "--fix", "--db", str(dbfile)])
    assert e.value.code == 1
    out = capsys.readouterr().out
    assert "missing files: 1 (1 written by pxlite" in out
    assert "pxl.connect(" in out and ".get_table('d.t').recompute_columns('rot')" in out
    with pxl.connect(dbfile) as db:
        db.get_table("d.t").recompute_columns("rot")
    assert main(["check", "--fix", "--db", str(dbfile)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_report_names_the_home_database_as_pxl(pxlite_home):
    from pxlite.maintenance import CheckReport, MissingFile

    gone = [MissingFile("d.t", "rot", 1, "file:///x.jpg", computed=True),
            MissingFile("d.t", "image", 2, "file:///y.jpg", owned=False)]
    home = str(pxlite_home.absolute() / "pxlite.db")
    assert "\n  pxl.get_table('d.t').recompute_columns('rot')\n" in str(
        CheckReport(database=home, missing=gone))
    text = str(CheckReport(database=home, missing=gone[1:]))
    assert "recompute" not in text and "restored from a backup" in text
    # A file pxlite wrote for an inserted (not computed) column: no recompute brings it back.
    inserted = [MissingFile("d.t", "image", 3, "file:///z.jpg", owned=True)]
    text = str(CheckReport(database=home, missing=inserted))
    assert "recompute" not in text and "restored from a backup" in text


def test_demo_runs(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "Added 4 column values with 0 errors" in out
    assert "originals still there: True" in out
    assert "Reverted 1 row with 0 errors" in out and "the latest: revert" in out
    assert (tmp_path / "demo" / "demo.pxl").is_file()


def _dependency_dirs(wheel: Path) -> list[str]:
    """The folders where this interpreter finds the distributions the wheel requires (and what
    they require in turn), from the wheel's own METADATA, so the inner venv sees exactly those."""
    import zipfile
    from importlib import metadata

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        text = z.read(name).decode()
    reqs = [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]
    dirs: list[str] = []
    seen: set[str] = set()
    while reqs:
        req = Requirement(reqs.pop())
        if (req.marker and not req.marker.evaluate({"extra": ""})) or req.name.lower() in seen:
            continue
        seen.add(req.name.lower())
        dist = metadata.distribution(req.name)  # missing: the outer environment is incomplete
        where = str(dist.locate_file(""))
        if where not in dirs:
            dirs.append(where)
        reqs.extend(dist.requires or [])
    return dirs


def test_wheel_installs_and_runs_demo(tmp_path):
    """The built wheel (schema.sql inside) works from a fresh venv, outside the source tree."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("pxlite-*.whl")
    import zipfile

    assert "pxlite/schema.sql" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    # The inner venv gets its dependencies explicitly, wherever the outer interpreter lives.
    # Not --system-site-packages: `venv` always builds on the *base* interpreter, so when the
    # tests run inside a venv (the README's way) the dependencies installed there are invisible
    # to it. Not a pip resolve: that would need the network. Instead a .pth file names the
    # folders where this interpreter found the wheel's declared dependencies: a plain path line
    # only extends sys.path (the .pth files in those folders, such as the editable pxlite's,
    # are not processed), and it comes after the venv's own site-packages, so pxlite is the
    # wheel's copy, which the assertion below proves.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "outer_dependencies.pth").write_text("\n".join(_dependency_dirs(wheel)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PXLITE_HOME"] = str(tmp_path / "home")
    where = subprocess.run([str(py), "-c", "import pxlite; print(pxlite.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
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
