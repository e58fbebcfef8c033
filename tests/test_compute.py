"""Computed columns on local destinations: existing and new rows, updates, errors, UDFs,
formats, precedence, and definitions that survive a new process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from udfs import sample
from udfs.sample import area, shout

import pxlite as pxl
from pxlite import compute
from pxlite.errors import ComputeError, ConfigError, SchemaError


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


@pytest.fixture
def t(db, jpegs):
    t = db.create_table("t", {"image": pxl.Image, "label": pxl.String})
    t.insert([{"image": p, "label": f"l{i}"} for i, p in enumerate(jpegs[:4])])
    return t


def test_existing_and_new_rows(t, jpegs, tmp_path):
    st = t.add_computed_column(rot=t.image.rotate(90))
    assert re.fullmatch(r"Added 4 column values with 0 errors in \d+\.\d\d s \([\d,.]+ rows/s\)",
                        str(st))
    t.add_computed_column(w=t.rot.width)
    t.insert(image=jpegs[4], label="new")
    rows = t.select(t.label, t.rot, t.w, t.rot.fileurl).order_by(t.label).collect()
    assert len(rows) == 5 and all(r["rot"].size == (64, 48) for r in rows)  # expand=False
    assert rows["w"] == [64] * 5
    media = tmp_path / "test.pxl.media"
    assert all(u.startswith(media.as_uri()) and u.endswith(".jpg") for u in rows["rot_fileurl"])
    src = Image.open(jpegs[0]).rotate(90)
    got = t.where(t.label == "l0").select(t.rot).collect()[0]["rot"]
    assert got.size == src.size
    diff = [abs(a - b) for a, b in zip(got.convert("L").tobytes(), src.convert("L").tobytes(),
                                          strict=True)]
    assert sum(diff) / len(diff) < 8  # the same picture, give or take JPEG
    assert "image.rotate(90)" in repr(t) and "rot.width" in repr(t)


def test_update_recomputes_and_replaces_files(t, jpegs, tmp_path):
    t.add_computed_column(small=t.image.resize((8, 6)))
    media = tmp_path / "test.pxl.media"
    old = t.where(t.label == "l0").select(t.small.fileurl).collect()[0]["small_fileurl"]
    t.update({"image": jpegs[5]}, where=t.label == "l0")
    new = t.where(t.label == "l0").select(t.small.fileurl).collect()[0]["small_fileurl"]
    assert new != old
    assert not Path(old[len("file://"):]).exists()  # superseded file deleted after the commit
    assert Path(new[len("file://"):]).exists()
    assert len([f for f in _files(media) if f.suffix == ".jpg"]) == 4


def test_drop_input_refused(t):
    t.add_computed_column(rot=t.image.rotate(90))
    t.add_computed_column(w=t.rot.width)
    with pytest.raises(SchemaError, match=r"'rot', 'w'.*depend"):
        t.drop_column("image")
    t.drop_column("w")
    t.drop_column("rot")
    t.drop_column("image")


def test_per_cell_errors_and_abort(db, jpegs, tmp_path):
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(jpegs[0].read_bytes()[:200])  # a truncated JPEG: the header is fine
    t.insert([{"image": jpegs[0], "k": 0}, {"image": bad, "k": 1}, {"image": jpegs[1], "k": 2}])
    media = tmp_path / "test.pxl.media"
    before = _files(media)
    with pytest.raises(ComputeError) as ei:
        t.add_computed_column(rot=t.image.rotate(90))
    e = ei.value
    assert e.column == "rot" and e.row == 2 and "bad.jpg" in str(e)
    assert "truncated" in str(e).lower()
    assert _files(media) == before and t.columns() == ["image", "k"]  # nothing left behind
    st = t.add_computed_column(rot=t.image.rotate(90), on_error="ignore")
    assert st.num_errors == 1 and "with 1 error" in str(st)
    r = t.select(t.k, t.rot, t.rot.errortype, t.rot.errormsg).order_by(t.k).collect()
    assert r["rot"][1] is None and r["rot_errortype"][0::2] == [None, None]
    assert r["rot_errortype"][1] == e.errortype
    assert "truncated" in r["rot_errormsg"][1].lower() and "bad.jpg" in r["rot_errormsg"][1]
    # insert follows its own on_error for the computed cells too
    with pytest.raises(ComputeError, match="rot"):
        t.insert(image=bad, k=3)
    assert t.count() == 3
    st = t.insert([{"image": bad, "k": 3}], on_error="ignore")
    assert st.num_errors == 1 and t.count() == 4
    # recompute the errored rows once the input is fixed
    bad.write_bytes(jpegs[2].read_bytes())
    st = t.recompute_columns("rot", errors_only=True)
    assert st.num_rows == 2 and st.num_errors == 0
    assert t.where(t.rot.errortype != None).count() == 0  # noqa: E711


def test_udfs_plain_and_method(t):
    t.add_computed_column(a=area(t.image))
    t.add_computed_column(g=t.image.grayscale())
    t.add_computed_column(s=shout(t.label, 2))
    r = t.select(t.a, t.g, t.s).limit(1).collect()[0]
    assert r["a"] == 64 * 48 and r["g"].mode == "L" and r["s"] == "L0!!"
    assert "area(image)" in repr(t) and "image.grayscale()" in repr(t)
    assert t.select(shout(t.label)).limit(1).collect()[0]["shout"] == "L0!"


def test_formats(t, tmp_path):
    t.add_computed_column(p=t.image.rotate(45), format="png")
    t.add_computed_column(wp=t.image.rotate(45), format="webp")
    t.add_computed_column(a=t.image.convert("RGBA"))
    r = t.select(t.p.fileurl, t.wp.fileurl, t.a.fileurl).limit(1).collect()[0]
    assert r["p_fileurl"].endswith(".png") and r["wp_fileurl"].endswith(".webp")
    assert r["a_fileurl"].endswith(".png")  # alpha -> PNG
    with pytest.raises(SchemaError, match="format"):
        t.add_computed_column(x=t.image.rotate(1), format="gif")
    with pytest.raises(SchemaError, match="image results only"):
        t.add_computed_column(x=t.image.width, format="png")
    with pytest.raises(SchemaError, match="not files"):
        t.add_computed_column(x=t.image.width, destination=str(tmp_path))


def test_destination_precedence_local(db, t, tmp_path):
    col_dest, glob_dest = tmp_path / "col", tmp_path / "glob"
    t.add_computed_column(a=t.image.rotate(1))
    pxl.configure(output_media_dest=str(glob_dest))
    t.add_computed_column(b=t.image.rotate(2))
    t.add_computed_column(c=t.image.rotate(3), destination=str(col_dest))
    r = t.select(t.a.fileurl, t.b.fileurl, t.c.fileurl).limit(1).collect()[0]
    # a's files were written before the setting changed: they stay where they are
    assert r["a_fileurl"].startswith((tmp_path / "test.pxl.media").as_uri())
    assert r["b_fileurl"].startswith(glob_dest.as_uri())
    assert r["c_fileurl"].startswith(col_dest.as_uri())
    pxl.configure(output_media_dest=None)
    t.insert(image=t.select(t.image.localpath).limit(1).collect()[0]["image_localpath"])
    r = t.select(t.a.fileurl, t.c.fileurl).order_by(t.label).limit(1).collect()[0]
    # the new row: a back to the db media folder, c still in its own destination
    newest = t.where(t.label == None).select(t.a.fileurl, t.c.fileurl).collect()[0]  # noqa: E711
    assert newest["a_fileurl"].startswith((tmp_path / "test.pxl.media").as_uri())
    assert newest["c_fileurl"].startswith(col_dest.as_uri())


def test_bad_definitions(t, tmp_path):
    with pytest.raises(SchemaError, match="exactly one"):
        t.add_computed_column(a=t.image.width, b=t.image.height)
    with pytest.raises(SchemaError, match="expected an expression"):
        t.add_computed_column(a=5)
    with pytest.raises(ConfigError):
        t.add_computed_column(a=t.image.rotate(90), destination="ftp://x/y/")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError):
        t.add_computed_column(a=t.image.rotate(90), destination=str(tmp_path / "afile" / "sub"))
    t.add_computed_column(rot=t.image.rotate(90))
    with pytest.raises(SchemaError, match="computed"):
        t.insert([{"rot": 1}])
    with pytest.raises(SchemaError, match="computed"):
        t.update({"rot": None})
    assert t.columns() == ["image", "label", "rot"]


_REOPEN = textwrap.dedent("""
    import sys, pxlite as pxl
    import udfs.sample  # the program imports its own UDFs; pxlite never imports what a file names
    db = pxl.connect(sys.argv[1])
    t = db.get_table("t")
    print(t.insert(image=sys.argv[2], label="child"))
    r = t.where(t.label == "child").select(t.rot, t.a).collect()[0]
    print(r["rot"].size, r["a"])
""")


def test_definitions_survive_a_new_process(t, jpegs, tmp_path):
    t.add_computed_column(rot=t.image.rotate(90))
    t.add_computed_column(a=area(t.rot))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1])])}
    out = subprocess.run([sys.executable, "-c", _REOPEN, str(tmp_path / "test.pxl"), str(jpegs[5])],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Inserted 1 row with 0 errors" in out.stdout and "(64, 48) 3072" in out.stdout


_MISSING = textwrap.dedent("""
    import sys, pxlite as pxl
    db = pxl.connect(sys.argv[1])
    t = db.get_table("t")
    print(repr(t))
    print(t.select(t.label).collect()["label"])
    try:
        t.insert(label="x")
    except pxl.ComputeError as e:
        print("ERR", e)
""")


def test_missing_udf_is_a_clear_error(db, tmp_path):
    mod = tmp_path / "gone_udfs.py"
    mod.write_text("import pxlite as pxl\n@pxl.udf\ndef twice(s: str) -> str:\n    return s * 2\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import gone_udfs
        t = db.create_table("t", {"label": pxl.String})
        t.insert(label="a")
        t.add_computed_column(d=gone_udfs.twice(t.label))
        assert t.select(t.d).collect()["d"] == ["aa"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gone_udfs", None)
    mod.unlink()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", _MISSING, str(tmp_path / "test.pxl")], env=env,
                         capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).parent))
    assert out.returncode == 0, out.stderr
    assert "missing" in out.stdout and "gone_udfs.twice" in out.stdout  # describe still works
    assert "['a']" in out.stdout                                         # the rest of the table too
    assert "ERR" in out.stdout and "'gone_udfs.twice' cannot be found" in out.stdout


_TRUST = textwrap.dedent("""
    import json, sys, pxlite as pxl
    db = pxl.connect(sys.argv[1], config=json.loads(sys.argv[2]))
    t = db.get_table("t")
    print(repr(t))
    print(t.insert([{"label": "b"}], on_error="ignore"))
    print(t.select(t.d, t.d.errormsg).collect().to_dicts())
""")


def test_opening_a_database_never_imports_a_module_it_names(db, tmp_path):
    """A database names the functions of its computed columns; opening it (a downloaded dataset,
    a colleague's file) must not import the modules named, since importing runs their code."""
    (tmp_path / "mods").mkdir()
    marker = tmp_path / "imported"
    (tmp_path / "mods" / "trusty.py").write_text(
        f"open({str(marker)!r}, 'a').write('x')\n"
        "import pxlite as pxl\n@pxl.udf\ndef twice(s: str) -> str:\n    return s * 2\n")
    sys.path.insert(0, str(tmp_path / "mods"))
    try:
        import trusty
        t = db.create_table("t", {"label": pxl.String})
        t.insert(label="a")
        t.add_computed_column(d=trusty.twice(t.label))
    finally:
        sys.path.remove(str(tmp_path / "mods"))
        sys.modules.pop("trusty", None)
    marker.unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"),
                                                        str(Path(__file__).parents[1])])}

    def child(config: dict) -> str:
        out = subprocess.run([sys.executable, "-c", _TRUST, str(tmp_path / "test.pxl"),
                              json.dumps(config)], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    out = child({})
    assert not marker.exists()  # the module was not imported
    assert "'trusty.twice' cannot be found" in out and "udf_modules" in out
    assert "with 1 error" in out
    out = child({"udf_modules": ["trusty"]})  # the user trusts it: found again
    assert marker.exists() and "'d': 'bb'" in out


def test_pixel_limit_refuses_bombs(tmp_path):
    """A huge declared size is refused from the header, before decoding (no memory spent)."""
    db = pxl.connect(tmp_path / "b.pxl", config={"max_image_pixels": 10_000})
    t = db.create_table("t", {"image": pxl.Image})
    big = tmp_path / "big.png"
    Image.new("L", (200, 100)).save(big)
    t.insert(image=big)
    with pytest.raises(ComputeError, match="20,000 pixels, over the limit of 10,000"):
        t.add_computed_column(r=t.image.rotate(90))
    from PIL import Image as PILImage

    assert PILImage.MAX_IMAGE_PIXELS != 10_000  # Pillow's global setting is left alone


def test_recompute_where_and_errors_only(db, jpegs, tmp_path):
    """A parameterized where combined with errors_only selects exactly the errored rows in it."""
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(jpegs[0].read_bytes()[:200])
    t.insert([{"image": jpegs[0], "k": 0}, {"image": bad, "k": 1}, {"image": bad, "k": 2}])
    t.add_computed_column(rot=t.image.rotate(90), on_error="ignore")
    bad.write_bytes(jpegs[1].read_bytes())
    st = t.recompute_columns("rot", where=t.k >= 2, errors_only=True)
    assert st.num_rows == 1 and st.num_errors == 0
    errs = t.select(t.k, t.rot.errortype).order_by(t.k).collect()["rot_errortype"]
    assert errs[0] is None and errs[1] is not None and errs[2] is None
    assert t.recompute_columns("rot", where=t.k.isin([0, 1]), errors_only=True).num_rows == 1
    assert t.where(t.rot.errortype != None).count() == 0  # noqa: E711


def test_cheap_rows_are_computed_in_the_calling_thread_slow_ones_on_threads(db):
    """A column whose rows take microseconds (Python holding the GIL) gains nothing from
    threads and pays for them: after timing its first rows, pxlite computes them in the
    calling thread. Slow rows (Pillow, a model, here a sleep) go to the compute threads."""
    t = db.create_table("nums", {"n": pxl.Int})
    t.insert([{"n": i} for i in range(300)])
    sample.THREADS_SEEN.clear()
    t.add_computed_column(cheap=sample.thread_noted(t.n))
    assert set(sample.THREADS_SEEN) == {"MainThread"} and len(sample.THREADS_SEEN) == 300
    sample.THREADS_SEEN.clear()
    t.insert([{"n": 1000 + i} for i in range(200)])  # an insert computes its rows the same way
    assert set(sample.THREADS_SEEN) == {"MainThread"} and len(sample.THREADS_SEEN) == 200

    sample.THREADS_SEEN.clear()
    t.add_computed_column(slow=sample.slow_thread_noted(t.n))
    seen = sample.THREADS_SEEN
    assert len(seen) == 500 and seen[:2] == ["MainThread"] * 2  # the two timed rows
    assert all(name.startswith("pxlite") for name in seen[2:])
    assert len(set(seen[2:])) >= min(2, compute.workers())  # spread over the threads
    rows = t.select(t.n, t.cheap, t.slow).order_by(t.n).collect()
    assert all(r["cheap"] == r["n"] + 1 == r["slow"] for r in rows) and len(rows) == 500
