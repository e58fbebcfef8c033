"""What a Pixeltable user expects of the API (issue 12, points 1-11), each with its own test."""

from __future__ import annotations

import gc
import warnings

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ComputeError, NotFoundError, SchemaError


@pytest.fixture
def db(tmp_path):
    conn = pxl.connect(tmp_path / "api.pxl")
    yield conn
    conn.close()


def test_select_without_arguments_means_every_column(db):
    t = db.create_table("t", {"a": pxl.Int, "b": pxl.String})
    t.insert(a=1, b="x")
    assert t.select().collect().to_dicts() == [{"a": 1, "b": "x"}]
    assert t.where(t.a == 1).select().collect().names == ["a", "b"]


@pxl.udf
def add(a: int, b: int) -> int:
    return a + b


@pxl.udf
def add_or_100(a: int, b: int | None = None) -> int:
    return a + (100 if b is None else b)


def test_a_none_for_any_parameter_that_does_not_take_it_gives_none(db):
    t = db.create_table("t", {"a": pxl.Int, "b": pxl.Int})
    t.insert([{"a": 1, "b": 2}, {"a": 1, "b": None}, {"a": None, "b": 3}])
    st = t.add_computed_column(s=add(t.a, t.b))
    assert st.num_errors == 0
    t.add_computed_column(o=add_or_100(t.a, t.b))
    assert t.select(t.s, t.o).collect().to_dicts() == [
        {"s": 3, "o": 3}, {"s": None, "o": 101}, {"s": None, "o": None}]


@pxl.udf
def inverse(x: int) -> float:
    return 1 / x


def test_an_error_in_a_cell_propagates_to_what_is_computed_from_it(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert([{"x": 1}, {"x": 0}])
    st = t.add_computed_column(inv=inverse(t.x), on_error="ignore")
    assert st.num_errors == 1
    st = t.add_computed_column(twice=t.inv * 2)
    assert st.num_errors == 1  # not a silent None
    rows = t.select(t.twice, t.twice.errortype, t.twice.errormsg).collect().to_dicts()
    assert rows[0] == {"twice": 2.0, "twice_errortype": None, "twice_errormsg": None}
    assert rows[1]["twice"] is None and rows[1]["twice_errortype"] == "ZeroDivisionError"
    assert "input column 'inv' has an error" in rows[1]["twice_errormsg"]
    t.insert(x=0, on_error="ignore")  # new rows propagate too
    assert t.where(t.twice.errortype == "ZeroDivisionError").count() == 2


def test_columns_are_accepted_by_reference_where_a_name_is(db, tmp_path):
    t = db.create_table("t", {"x": pxl.Int, "image": pxl.Image})
    t.insert(x=2, image=Image.new("RGB", (4, 4)))
    t.add_computed_column(y=t.x + 1)
    t.add_computed_column(r=t.image.rotate(90))
    assert t.recompute_columns(t.y).num_rows == 1
    assert t.move_media(t.r, str(tmp_path / "moved")).num_rows == 1
    t.rename_column(t.y, "z")
    t.drop_column(t.z)
    assert t.columns() == ["x", "image", "r"]
    other = db.create_table("u", {"x": pxl.Int})
    with pytest.raises(SchemaError, match="belongs to table 'u'"):
        t.drop_column(other.x)


def test_a_function_failing_in_a_query_is_a_compute_error(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert([{"x": 1}, {"x": 0}])
    with pytest.raises(ComputeError) as e:
        t.select(v=inverse(t.x)).collect()
    msg = str(e.value)
    assert "row 2" in msg and "v = inverse(x)" in msg and "ZeroDivisionError" in msg, msg
    assert isinstance(e.value.__cause__, ZeroDivisionError)


def test_every_if_exists_option_is_checked_and_replace_replaces(db):
    t = db.create_table("t", {"x": pxl.Int})
    for call in (lambda: db.drop_table("t", if_not_exists="bogus"),
                 lambda: db.drop_dir("d", if_not_exists="bogus"),
                 lambda: db.create_dir("d", if_exists="bogus"),
                 lambda: t.add_column(y=pxl.Int, if_exists="bogus"),
                 lambda: t.add_computed_column(z=t.x + 1, if_exists="bogus")):
        with pytest.raises(SchemaError, match="bogus"):
            call()
    assert db.list_tables() == ["t"]
    t.insert(x=1)
    t.add_column(x=pxl.String, if_exists="replace")
    assert t.select(t.x).collect().to_dicts() == [{"x": None}]
    db.drop_dir("missing", force=True)  # nothing to drop: no error
    with pytest.raises(NotFoundError, match="missing"):
        db.list_tables("missing")


def test_an_existing_column_is_an_error_or_kept_by_every_column_adder(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert(x=1)
    t.add_computed_column(c=t.x + 1)
    adders = {"add_column": lambda **kw: t.add_column(x=pxl.String, **kw),
              "add_computed_column": lambda **kw: t.add_computed_column(c=t.x * 10, **kw),
              "stored=False": lambda **kw: t.add_computed_column(c=t.x * 10, stored=False, **kw)}
    for what, add in adders.items():
        with pytest.raises(pxl.AlreadyExistsError,
                           match=r"already has a column named .*if_exists='replace' or 'ignore'"):
            add()
        add(if_exists="ignore")
        assert t.collect().to_dicts() == [{"x": 1, "c": 2}], what


def test_a_destination_that_is_no_path_is_a_schema_error(db):
    t = db.create_table("t", {"image": pxl.Image})
    with pytest.raises(SchemaError, match="destination"):
        t.add_computed_column(r=t.image.rotate(90), destination=27)


def test_reflected_modulo_and_equal_handles(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert([{"x": 3}, {"x": 5}])
    assert t.select(m=2 % t.x, n=t.x % 2).collect().to_dicts() == [
        {"m": 2, "n": 1}, {"m": 2, "n": 1}]
    again = db.get_table("t")
    assert again == t and hash(again) == hash(t) and len({t, again}) == 1
    assert t != db.create_table("u", {"x": pxl.Int})


def test_mpeg_program_stream_is_a_video(db, tmp_path):
    p = tmp_path / "clip.mpg"
    p.write_bytes(b"\x00\x00\x01\xba" + bytes(60))
    t = db.create_table("t", {"v": pxl.Video})
    t.insert(v=str(p))
    assert t.count() == 1


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_reading_only_a_header_leaves_no_file_open(db, tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (10, 7)).save(p)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": str(p)}] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert t.select(t.image.width).collect()["width"] == [10] * 3
        t.add_computed_column(h=t.image.height)
        gc.collect()
    assert t.select(t.h).collect()["h"] == [7] * 3


def test_recompute_counts_rows(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert([{"x": i} for i in range(4)])
    t.add_computed_column(y=t.x + 1)
    t.add_computed_column(z=t.y * 2)
    st = t.recompute_columns("y")  # z depends on y: recomputed too
    assert st.num_rows == 4 and str(st).startswith("Recomputed 4 rows")


def test_a_column_computed_when_read_writes_nothing(db, tmp_path):
    t = db.create_table("t", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": Image.new("RGB", (8, 6), "red"), "k": 1}])
    before = {p for p in db.media_dir.rglob("*") if p.is_file()}
    st = t.add_computed_column(rot=t.image.rotate(90, expand=True), stored=False)
    assert st.num_rows == 0
    t.add_computed_column(w=t.rot.width, stored=False)
    assert "computed when read" in repr(t)
    t.insert([{"image": Image.new("RGB", (4, 2), "blue"), "k": 2}])
    rows = t.select(t.k, t.rot, t.w).order_by(t.k).collect()
    assert [r["rot"].size for r in rows] == [(6, 8), (2, 4)] and rows["w"] == [6, 2]
    assert t.where(t.w > 3).select(t.k).collect()["k"] == [1]  # filtered in Python
    # stored columns can read it; nothing of it is written
    t.add_computed_column(w2=t.w * 2)
    assert t.select(t.w2).order_by(t.k).collect()["w2"] == [12, 4]
    after = {p for p in db.media_dir.rglob("*") if p.is_file()}
    assert len(after - before) == 1  # only the second inserted image
    with pytest.raises(SchemaError, match="nothing is written"):
        t.add_computed_column(x=t.image.rotate(1), stored=False, destination=str(tmp_path))
    with pytest.raises(SchemaError, match="computed when read"):
        t.recompute_columns("rot")


def test_result_cells_by_row_and_column(db):
    t = db.create_table("t", {"a": pxl.Int, "b": pxl.String})
    t.insert([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    rs = t.order_by(t.a).collect()
    assert rs[1, "b"] == "y" and rs[0, 1] == "x" and rs[1, 0] == 2
    with pytest.raises(NotFoundError, match="no column 'c'"):
        rs[0, "c"]


def test_local_file_names_are_shown_as_written(db, tmp_path):
    p = tmp_path / "my photo #1.png"
    Image.new("RGB", (4, 4)).save(p)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=str(p))
    text = repr(t.collect())
    assert "my photo #1.png" in text and "%20" not in text, text


def test_a_table_used_after_close_is_a_pxlite_error(tmp_path):
    conn = pxl.connect(tmp_path / "c.pxl")
    t = conn.create_table("t", {"a": pxl.Int})
    conn.close()
    for call in (t.count, lambda: t.insert(a=1), lambda: t.collect()):
        with pytest.raises(pxl.errors.DatabaseError, match="is closed; open it again"):
            call()


@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_files_uploaded_to_the_cloud_also_enter_the_cache(storage_target, tmp_path):
    """Computed outputs and persisted inputs are cached from the bytes uploaded: reading them
    back downloads nothing (the cache holds every one, under its content-addressed key)."""
    from pxlite import catalog
    from pxlite.cache import get_cache

    target = storage_target
    db = pxl.connect(tmp_path / "c.pxl", config={**target.config,
                                                  "input_media_dest": target.prefix + "in/"})
    t = db.create_table("t", {"image": pxl.Image})
    t.insert([{"image": Image.new("RGB", (8, 6), c)} for c in ("red", "green", "blue")])
    t.add_computed_column(rot=t.image.rotate(90), destination=target.prefix + "out/")
    meta = catalog.load_table(db.db, "t")
    cache = get_cache(db.settings())
    for name in ("image", "rot"):
        c = meta.column(name)
        uris = [r[0] for r in db.db.query(f"SELECT {c.sql} FROM {meta.sql}")]
        assert len(uris) == 3 and all(not u.startswith("file:") for u in uris)
        assert all(cache.contains(u) for u in uris), (name, uris)
    # A persisted file path (uploaded, not encoded): cached too, also when the object was
    # already there (identical content inserted before, its cache entry since evicted).
    path = tmp_path / "p.png"
    Image.new("RGB", (5, 4), "white").save(path)
    u = db.create_table("u", {"image": pxl.Image})  # nothing computed: nothing reads it back
    u.insert(image=str(path))
    c = catalog.load_table(db.db, "u").column("image")
    ((uri,),) = db.db.query(f"SELECT {c.sql} FROM {catalog.load_table(db.db, 'u').sql}")
    assert not uri.startswith("file:") and cache.contains(uri)
    cache.evict(uri)
    u.insert(image=str(path))
    assert cache.contains(uri)


_THREADS: set[str] = set()


@pxl.udf
def _where_computed(x: int) -> int:
    import threading

    _THREADS.add(threading.current_thread().name)
    return x * 10


def test_columns_computed_when_read_run_on_the_compute_threads(db):
    t = db.create_table("t", {"x": pxl.Int})
    t.insert([{"x": i} for i in range(20)])
    t.add_computed_column(y=_where_computed(t.x), stored=False)
    _THREADS.clear()
    assert t.select(t.y).order_by(t.x).collect()["y"] == [i * 10 for i in range(20)]
    assert _THREADS and all(n.startswith("pxlite-query") for n in _THREADS), _THREADS
