"""add_embedding_index / drop_embedding_index: the vectors in the database file, built as a
resumable long operation on the executors, kept current by every write, and every error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from udfs.embed import (
    DIM,
    embed_image,
    embed_pid,
    embed_text,
    free_length,
    not_an_embedding,
)

import pxlite as pxl
from pxlite import catalog, embeddings
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red": (250, 10, 10), "green": (0, 150, 0), "blue": (0, 0, 250),
           "white": (255, 255, 255), "dark": (20, 20, 20), "orange": (255, 140, 0)}


def _pictures(folder: Path, n: int | None = None) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        p = folder / f"{name}.png"
        Image.new("RGB", (8, 8), rgb).save(p)
        rows.append({"img": str(p), "label": name, "k": i})
    if n is not None:  # more rows: colours repeated, shifted a little
        for i in range(len(rows), n):
            rgb = tuple((c + 7 * i) % 256 for c in list(COLOURS.values())[i % len(COLOURS)])
            p = folder / f"x{i}.png"
            Image.new("RGB", (8, 8), rgb).save(p)
            rows.append({"img": str(p), "label": f"x{i}", "k": i})
    return rows


@pytest.fixture
def pics(db, tmp_path):
    t = db.create_table("pics", {"img": pxl.Image, "label": pxl.String, "k": pxl.Int})
    t.insert(_pictures(tmp_path / "pics"))
    return t


def _top(t, sim, n=3, asc=False):
    return t.order_by(sim, asc=asc).limit(n).select(t.label).collect()["label"]


def test_an_index_on_an_image_column(pics, db):
    pics.add_embedding_index(pics.img, string_embed=embed_text, image_embed=embed_image)
    md = pics.get_metadata()
    assert md["indexes"]["idx0"] == {
        "name": "idx0", "columns": ["img"], "index_type": "embedding",
        "parameters": {"metric": "cosine", "precision": "fp16", "dim": DIM,
                       "string_embed": "udfs.embed.embed_text",
                       "image_embed": "udfs.embed.embed_image"}}
    # the vectors are a hidden column: not listed, selected, described or exported
    assert pics.columns() == ["img", "label", "k"] and set(md["columns"]) == {"img", "label", "k"}
    assert list(pics.limit(1).collect()[0]) == ["img", "label", "k"]
    assert "_pxl_ix_" not in repr(pics)
    assert _top(pics, pics.img.similarity(string="red"))[0] == "red"
    assert _top(pics, pics.img.similarity(image=Image.new("RGB", (3, 3), (0, 0, 240))))[0] == \
        "blue"
    # stored at the index's precision (fp16: 2 bytes a number), in the database file
    meta = catalog.load_table(db.db, "pics")
    hidden = meta.column("_pxl_ix_idx0")
    assert {len(r[0]) for r in db.db.query(f"SELECT {hidden.sql} FROM {meta.sql}")} == {2 * DIM}


def test_embedding_fills_each_modality_its_function_takes(pics):
    pics.add_embedding_index("label", embedding=embed_text, metric="l2", precision="fp32")
    idx = pics.get_metadata()["indexes"]["idx0"]["parameters"]
    assert idx["string_embed"] == "udfs.embed.embed_text" and idx["image_embed"] is None
    assert _top(pics, pics.label.similarity(string="green"), 1, asc=True) == ["green"]


def test_kept_current_by_insert_update_delete(pics, tmp_path):
    pics.add_embedding_index(pics.img, embedding=embed_image, string_embed=embed_text)
    sim = pics.img.similarity(string="yellow")
    assert _top(pics, sim, 1) == ["orange"]
    Image.new("RGB", (8, 8), (255, 220, 0)).save(tmp_path / "y.png")
    pics.insert(img=str(tmp_path / "y.png"), label="yellow", k=10)
    assert _top(pics, sim, 1) == ["yellow"]                       # insert
    pics.update({"img": str(tmp_path / "pics" / "blue.png")}, where=pics.label == "yellow")
    assert _top(pics, sim, 1) == ["orange"]                       # update of the indexed column
    assert _top(pics, pics.img.similarity(string="blue"), 2) == ["blue", "yellow"]
    pics.delete(where=pics.label == "orange")
    assert _top(pics, sim, 1) == ["white"]                        # delete
    pics.delete()
    assert _top(pics, sim, 1) == []


def test_kept_current_by_other_connections_and_plain_sql(pics, db):
    pics.add_embedding_index(pics.img, image_embed=embed_image, string_embed=embed_text)
    sim = pics.img.similarity(string="red")
    assert _top(pics, sim, 1) == ["red"]  # this connection now holds the vectors in memory
    with pxl.connect(db.path) as other:
        t2 = other.get_table("pics")
        t2.delete(where=t2.label == "red")
    assert _top(pics, sim, 1) == ["orange"]
    # a write no pxlite code made (another program, a revert): the triggers log it too
    meta = catalog.load_table(db.db, "pics")
    hidden = meta.column("_pxl_ix_idx0")
    blue = db.db.query(f"SELECT {hidden.sql} FROM {meta.sql} WHERE {meta.column('label').sql} "
                       "= 'blue'")[0][0]
    with db.db.transaction():
        db.db.execute(f"UPDATE {meta.sql} SET {hidden.sql} = ? WHERE "
                      f"{meta.column('label').sql} = 'white'", (blue,))
    assert _top(pics, pics.img.similarity(string="blue"), 2) == ["blue", "white"]


def test_top_k_equals_a_brute_force_for_every_metric(db):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3000, DIM)).astype(np.float32)
    t = db.create_table("v", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int})
    t.insert([{"vec": v, "k": i} for i, v in enumerate(vecs)])
    for metric in ("cosine", "ip", "l2"):
        t.add_embedding_index(t.vec, idx_name=metric, metric=metric, precision="fp32")
    for trial in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        cos = vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))
        ip = vecs @ q
        l2 = np.linalg.norm(vecs - q, axis=1)
        for metric, score, asc in (("cosine", cos, False), ("ip", ip, False), ("l2", l2, True)):
            sim = t.vec.similarity(vector=q, idx=metric)
            res = t.order_by(sim, asc=asc).limit(10).select(t.k, s=sim).collect()
            want = np.argsort(score if asc else -score)[:10]
            assert res["k"] == want.tolist(), (metric, trial)  # recall 1.0, in order
            assert res["s"] == pytest.approx(score[want].tolist(), rel=1e-4, abs=1e-5)


def test_an_array_column_of_precomputed_vectors(db):
    t = db.create_table("v", {"vec": pxl.Array[(DIM,), pxl.Float], "name": pxl.String})
    words = ["red", "green", "blue"]
    t.insert([{"vec": embed_text.fn(w), "name": w} for w in words])
    t.add_embedding_index("vec", precision="fp32")          # the column itself: no copy
    meta = catalog.load_table(t._conn.db, "v")
    assert [c.name for c in meta.columns] == ["vec", "name"]
    assert t.order_by(t.vec.similarity(vector=embed_text.fn("blue")), asc=False).limit(1) \
        .select(t.name).collect()["name"] == ["blue"]
    with pytest.raises(SchemaError, match="no string embedding"):
        t.order_by(t.vec.similarity(string="blue")).limit(1).collect()
    t.add_embedding_index("vec", idx_name="s", string_embed=embed_text)  # fp16: no copy either
    assert [c.name for c in catalog.load_table(t._conn.db, "v").columns] == ["vec", "name"]
    sim = t.vec.similarity(string="green", idx="s")
    assert t.order_by(sim, asc=False).limit(1).select(t.name).collect()["name"] == ["green"]


@pytest.mark.parametrize(("dtype", "precision", "rounded"),
                         [(np.float32, "fp16", np.float16), (np.float64, "fp32", np.float32),
                          (np.float16, "fp32", np.float16)])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_an_array_index_searches_the_vectors_at_its_precision(db, dtype, precision, rounded,
                                                               metric):
    """An index on an Array column of another element type reads the column itself (no second
    copy, nothing more to write per insert) and rounds the vectors to its precision: the top-k
    search, a similarity computed in SQL and one computed in Python all give the scores of the
    rounded vectors."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((40, 8)) * np.linspace(0.001, 3.0, 8)  # digits fp16 drops
    t = db.create_table("r", {"vec": pxl.Array[(8,), dtype], "k": pxl.Int})
    t.insert([{"vec": v.astype(dtype), "k": i} for i, v in enumerate(vecs)])
    t.add_embedding_index("vec", metric=metric, precision=precision)
    assert [c.name for c in catalog.load_table(t._conn.db, "r").columns] == ["vec", "k"]
    q = rng.standard_normal(8).astype(np.float32)
    m = vecs.astype(dtype).astype(rounded).astype(np.float64)
    qd = q.astype(np.float64)
    want = {"cosine": m @ qd / (np.linalg.norm(m, axis=1) * np.linalg.norm(qd)),
            "ip": m @ qd, "l2": np.linalg.norm(m - qd, axis=1)}[metric]
    sim = t.vec.similarity(vector=q)
    asc = metric == "l2"
    top = t.order_by(sim, asc=asc).limit(5).select(t.k, s=sim).collect()
    order = np.argsort(want if asc else -want, kind="stable")[:5]
    assert top["k"] == [int(i) for i in order]
    assert np.allclose(top["s"], want[order], rtol=1e-5, atol=1e-5)
    in_sql = t.select(t.k, s=sim).order_by(t.k).collect()  # no top-k: SQL computes it
    assert np.allclose(in_sql["s"], want, rtol=1e-5, atol=1e-5)
    t.insert(vec=vecs[0].astype(dtype), k=99)  # a new row: the vectors in memory are updated
    again = t.order_by(sim, asc=asc).limit(1).select(t.k, s=sim).collect()
    assert np.isclose(again["s"][0], want[order[0]], rtol=1e-5, atol=1e-5)


def test_if_exists_and_names(pics):
    pics.add_embedding_index("img", idx_name="clip", image_embed=embed_image)
    with pytest.raises(AlreadyExistsError, match="duplicate index name"):
        pics.add_embedding_index("img", idx_name="clip", image_embed=embed_image, metric="l2")
    pics.add_embedding_index("img", idx_name="clip", image_embed=embed_image, metric="l2",
                             if_exists="ignore")
    assert pics.get_metadata()["indexes"]["clip"]["parameters"]["metric"] == "cosine"
    # without a name: an identical definition on the column is the existing index
    with pytest.raises(AlreadyExistsError, match="identical embedding index"):
        pics.add_embedding_index("img", image_embed=embed_image)
    pics.add_embedding_index("img", image_embed=embed_image, if_exists="ignore")
    assert list(pics.get_metadata()["indexes"]) == ["clip"]
    pics.add_embedding_index("img", idx_name="clip", image_embed=embed_image, metric="l2",
                             if_exists="replace")
    assert pics.get_metadata()["indexes"]["clip"]["parameters"]["metric"] == "l2"
    assert _top(pics, pics.img.similarity(image=Image.new("RGB", (2, 2), (0, 150, 0))), 1,
                asc=True) == ["green"]
    pics.add_embedding_index("img", image_embed=embed_image, metric="ip")  # another: idx0
    pics.add_btree_index("label", idx_name="lab")
    with pytest.raises(SchemaError, match="not an embedding index"):
        pics.add_embedding_index("img", idx_name="lab", image_embed=embed_image,
                                 if_exists="replace")
    with pytest.raises(SchemaError, match="if_exists must be one of"):
        pics.add_embedding_index("img", image_embed=embed_image, if_exists="nope")
    with pytest.raises(SchemaError, match="invalid index name"):
        pics.add_embedding_index("img", idx_name="BOGUS NAME", image_embed=embed_image)
    assert sorted(pics.get_metadata()["indexes"]) == ["clip", "idx0", "lab"]


@pytest.mark.parametrize("kwargs, error, match", [
    ({"column": "k", "embedding": embed_text}, SchemaError, "not a valid type for an embedding"),
    ({"column": "img"}, SchemaError, "needs an embedding function"),
    ({"column": "img", "string_embed": embed_text}, SchemaError, "pass image_embed="),
    ({"column": "img", "embedding": not_an_embedding}, SchemaError, "must return an Array"),
    ({"column": "label", "embedding": free_length}, SchemaError, "fixed length"),
    ({"column": "label", "string_embed": embed_image}, SchemaError,
     "not a valid string embedding"),
    ({"column": "label", "string_embed": str.upper}, SchemaError, "must be a pxlite function"),
    ({"column": "label", "embedding": "embed_text"}, SchemaError, "must be a pxlite function"),
    ({"column": "label", "embedding": embed_text, "metric": "dot"}, SchemaError,
     "metric must be one of"),
    ({"column": "label", "embedding": embed_text, "precision": "fp8"}, SchemaError,
     "precision must be one of"),
    ({"column": "nope", "embedding": embed_text}, NotFoundError, "has no column 'nope'"),
])
def test_bad_definitions_are_refused(pics, kwargs, error, match):
    col = kwargs.pop("column")
    with pytest.raises(error, match=match):
        pics.add_embedding_index(col, **kwargs)
    assert pics.get_metadata()["indexes"] == {}
    assert [c.name for c in catalog.load_table(pics._conn.db, "pics").columns] == \
        ["img", "label", "k"]


def test_array_column_shape_errors(db):
    t = db.create_table("v", {"vec": pxl.Array[(8,), pxl.Float], "m": pxl.Array[(2, 8), pxl.Float],
                              "i": pxl.Array[(8,), pxl.Int]})
    with pytest.raises(SchemaError, match="returns vectors of 16 numbers, but column 'vec' "
                                          "holds vectors of 8"):
        t.add_embedding_index("vec", string_embed=embed_text)
    with pytest.raises(SchemaError, match="1-dimensional"):
        t.add_embedding_index("m")
    with pytest.raises(SchemaError, match="must be floats"):
        t.add_embedding_index("i")
    other = db.create_table("o", {"vec": pxl.Array[(8,), pxl.Float]})
    with pytest.raises(SchemaError, match="belongs to table 'o'"):
        t.add_embedding_index(other.vec)


def test_drop_embedding_index(pics, db):
    pics.add_embedding_index("img", idx_name="a", image_embed=embed_image)
    pics.add_embedding_index("img", idx_name="b", image_embed=embed_image, metric="ip")
    pics.add_btree_index("label", idx_name="lab")
    with pytest.raises(SchemaError, match="multiple embedding indexes"):
        pics.drop_embedding_index(column="img")
    with pytest.raises(SchemaError, match=r"column 'img' of 'pics' has several indexes \(a, "
                                          r"b\); drop one by idx_name="):
        pics.drop_index(column=pics.img)  # by reference: named by its column's name
    with pytest.raises(SchemaError, match="either column= or idx_name="):
        pics.drop_embedding_index()
    with pytest.raises(SchemaError, match="not an embedding index"):
        pics.drop_embedding_index(idx_name="lab")
    with pytest.raises(NotFoundError, match="does not exist"):
        pics.drop_embedding_index(idx_name="zzz")
    pics.drop_embedding_index(idx_name="zzz", if_not_exists="ignore")
    pics.drop_embedding_index(idx_name="a")
    pics.drop_index(idx_name="b")  # drop_index takes embedding indexes too
    with pytest.raises(NotFoundError, match="does not have an embedding index"):
        pics.drop_embedding_index(column=pics.img)
    pics.drop_embedding_index(column="img", if_not_exists="ignore")
    names = [r[0] for r in db.db.query("SELECT name FROM sqlite_schema")]
    assert not any(n.startswith("x_") for n in names)  # change logs and triggers gone
    assert [c.name for c in catalog.load_table(db.db, "pics").columns] == ["img", "label", "k"]
    with pytest.raises(NotFoundError, match="no embedding index"):
        pics.order_by(pics.img.similarity(string="red")).limit(1).collect()


def test_dropping_the_column_drops_its_indexes(pics, db):
    pics.add_embedding_index("img", image_embed=embed_image)
    pics.drop_column("img")
    assert pics.get_metadata()["indexes"] == {}
    assert [c.name for c in catalog.load_table(db.db, "pics").columns] == ["label", "k"]
    t = db.create_table("v", {"vec": pxl.Array[(DIM,), pxl.Float]})
    t.insert(vec=np.ones(DIM))
    t.add_embedding_index("vec", precision="fp32")
    t.drop_column("vec")  # the triggers on it went first (SQLite refuses otherwise)
    assert t.get_metadata()["indexes"] == {}


def test_the_index_survives_reopening(tmp_path):
    path = tmp_path / "a.pxl"
    with pxl.connect(path) as db:
        t = db.create_table("pics", {"img": pxl.Image, "label": pxl.String, "k": pxl.Int})
        t.insert(_pictures(tmp_path / "pics"))
        t.add_embedding_index("img", image_embed=embed_image, string_embed=embed_text)
    with pxl.connect(path) as db:
        t = db.get_table("pics")
        assert _top(t, t.img.similarity(string="green"), 1) == ["green"]
        t.insert(img=str(tmp_path / "pics" / "green.png"), label="green2", k=7)
        assert _top(t, t.img.similarity(string="green"), 2) == ["green", "green2"]


def test_a_row_whose_embedding_fails_keeps_its_error_and_is_not_found(pics, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken")
    status = pics.insert([{"img": str(tmp_path / "pics" / "red.png"), "label": "ok", "k": 20}])
    assert status.num_errors == 0
    pics.add_embedding_index("img", image_embed=embed_image, string_embed=embed_text)
    pics.insert([{"img": str(tmp_path / "bad.png"), "label": "bad", "k": 21}],
                on_error="ignore")
    labels = pics.order_by(pics.img.similarity(string="red"), asc=False) \
        .select(pics.label).collect()["label"]
    assert labels[-1] == "bad"  # no vector: after every row that has one
    assert pics.order_by(pics.img.similarity(string="red"), asc=False).limit(7) \
        .select(s=pics.img.similarity(string="red")).collect()["s"][-1] is not None


def test_built_on_worker_processes(pics):
    # embed_pid writes the computing process's pid into the vector (fp32 keeps it exact)
    pics.add_embedding_index("img", image_embed=embed_pid, precision="fp32",
                             executor="processes")
    meta = catalog.load_table(pics._conn.db, "pics")
    hidden = meta.column("_pxl_ix_idx0")
    pids = {int(np.frombuffer(r[0], dtype=np.float32)[DIM - 1]) for r in
            pics._conn.db.query(f"SELECT {hidden.sql} FROM {meta.sql}")}
    assert pids and os.getpid() not in pids
    # an insert computes its rows' vectors on the processes too
    pics.insert([{"img": _pictures(Path(pics._conn.path).parent / "more")[0]["img"],
                  "label": "again", "k": 50}], executor="processes")
    pids = {int(np.frombuffer(r[0], dtype=np.float32)[DIM - 1]) for r in
            pics._conn.db.query(f"SELECT {hidden.sql} FROM {meta.sql}")}
    assert len(pids) >= 1 and os.getpid() not in pids and pics.count() == 7


CHILD = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    import pxlite as pxl
    from pxlite import compute
    from udfs.embed import embed_image
    compute.BATCH_SECONDS = 0.05
    args = json.loads(sys.argv[1])
    os.environ["PXLITE_TEST_EMBED_SLEEP"] = str(args["sleep"])
    t = pxl.connect(args["db"]).get_table("pics")
    print("started", flush=True)
    t.add_embedding_index("img", image_embed=embed_image)
    print("done", flush=True)
""")


def test_an_interrupted_build_resumes(tmp_path):
    path = tmp_path / "a.pxl"
    n = 60
    with pxl.connect(path) as db:
        t = db.create_table("pics", {"img": pxl.Image, "label": pxl.String, "k": pxl.Int})
        t.insert(_pictures(tmp_path / "pics", n))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), tests=str(ROOT / "tests")))
    child = subprocess.Popen([sys.executable, str(script), json.dumps({"db": str(path),
                                                                       "sleep": 0.05})],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PXLITE_HOME": str(tmp_path / "home")})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with pxl.connect(path) as db:
                jobs = catalog.jobs(db.db)
                if jobs and jobs[0].done_rows >= 8:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("the build committed nothing")
        child.send_signal(signal.SIGKILL)
    finally:
        child.communicate(timeout=60)
    with pxl.connect(path) as db:
        t = db.get_table("pics")
        done = catalog.jobs(db.db)[0].done_rows
        assert 8 <= done < n
        assert t.get_metadata()["indexes"] == {}  # not usable before it is complete
        with pytest.raises(NotFoundError, match="no embedding index"):
            t.order_by(t.img.similarity(image=Image.new("RGB", (2, 2)))).limit(1).collect()
        t.add_embedding_index("img", image_embed=embed_image)  # the same call: resumes
        assert catalog.jobs(db.db) == []
        assert list(t.get_metadata()["indexes"]) == ["idx0"]
        found = t.order_by(t.img.similarity(image=Image.new("RGB", (2, 2), (0, 0, 250))),
                           asc=False).limit(1).select(t.label).collect()["label"]
        assert found == ["blue"]
        meta = catalog.load_table(db.db, "pics")
        hidden = meta.column("_pxl_ix_idx0")
        assert db.db.query(f"SELECT count(*) FROM {meta.sql} WHERE {hidden.sql} IS NULL"
                           )[0][0] == 0


def test_an_interrupted_build_can_be_cancelled(pics, db, monkeypatch):
    from pxlite import compute

    calls = []

    def stop_after_first(*a, **k):
        calls.append(1)
        raise compute.Interrupted("stop")

    monkeypatch.setattr(compute, "_commit_batch", stop_after_first)
    with pytest.raises(KeyboardInterrupt, match="run the same add_embedding_index"):
        pics.add_embedding_index("img", idx_name="e", image_embed=embed_image)
    monkeypatch.undo()
    assert any(c.name == "_pxl_ix_e" and c.pending
               for c in catalog.load_table(db.db, "pics").columns)
    pics.drop_embedding_index(idx_name="e")  # cancels the unfinished build
    assert [c.name for c in catalog.load_table(db.db, "pics").columns] == ["img", "label", "k"]


def test_a_damaged_definition_is_reported(pics, db):
    pics.add_embedding_index("img", image_embed=embed_image)
    with db.db.transaction():
        db.db.execute("UPDATE px_indexes SET params = '{broken'")
    with pytest.raises(SchemaError, match=r"cannot be read.*drop it"):
        pics.get_metadata()
    idx = catalog.indexes(db.db, catalog.load_table(db.db, "pics"))[0]
    with pytest.raises(SchemaError):
        embeddings.of(idx)


def test_more_bad_definitions(db):
    @pxl.udf
    def of_a_number(n: int) -> pxl.Array[(DIM,), pxl.Float]:
        return np.zeros(DIM, dtype=np.float32)

    @pxl.udf
    def short(img: Image.Image) -> pxl.Array[(8,), pxl.Float]:
        return np.zeros(8, dtype=np.float32)

    t = db.create_table("t", {"s": pxl.String, "img": pxl.Image, "v": pxl.Array[(4,), pxl.Float]})
    t.insert(s="a", v=[1, 2, 3, 4])
    with pytest.raises(SchemaError, match="must take a single string or image parameter"):
        t.add_embedding_index("s", embedding=of_a_number)
    with pytest.raises(SchemaError, match="vectors of different lengths"):
        t.add_embedding_index("img", image_embed=short, string_embed=embed_text)
    t.add_computed_column(w=t.v.astype(pxl.Array[(4,), np.float16]), stored=False)
    with pytest.raises(SchemaError, match="computed when read"):
        t.add_embedding_index("w")
    t.add_embedding_index("s", idx_name="half", string_embed=embed_text)  # a hidden column
    with pytest.raises(SchemaError, match="not a complete column"):
        t.add_embedding_index("_pxl_ix_half")


def test_vector_sql_functions_refuse_bad_values():
    from pxlite import vecsql

    with pytest.raises(SchemaError, match="must be a BLOB, got str"):
        vecsql.score("cosine", "float32", "abc", np.ones(2, dtype=np.float32).tobytes())
    with pytest.raises(SchemaError, match="vector lengths differ: 3 and 2"):
        vecsql.l2_distance(np.ones(3, dtype=np.float32).tobytes(),
                           np.ones(2, dtype=np.float32).tobytes())
    zero = np.zeros(2, dtype=np.float32).tobytes()
    assert vecsql.score("cosine", "float32", zero, zero) is None  # no direction: no cosine
    assert vecsql.score("ip", "float16", np.ones(2, dtype=np.float16).tobytes(),
                        np.full(2, 2.0, dtype=np.float32).tobytes()) == 4.0
    assert vecsql.score("l2", "float32", None, zero) is None
