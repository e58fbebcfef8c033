"""similarity() in queries: top-k searches filtered first, the values in select and where, the
SQL path (sqlite-vec) equal to its numpy fallback, explain(), and every error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from udfs.embed import DIM, embed_image, embed_text

import pxlite as pxl
from pxlite import vecsql
from pxlite.errors import NotFoundError, SchemaError

ROOT = Path(__file__).resolve().parents[1]
N = 400


@pytest.fixture
def vecs(db):
    rng = np.random.default_rng(7)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    t = db.create_table("v", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int,
                              "cat": pxl.String})
    t.insert([{"vec": v, "k": i, "cat": "abc"[i % 3]} for i, v in enumerate(data)])
    t.add_embedding_index("vec", precision="fp32")
    return t, data


def _cos(data, q):
    return data @ q / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))


def test_filter_before_top_k_gives_k_rows(vecs):
    t, data = vecs
    q = data[0]  # row 0 is category 'a': the closest rows of all are mostly not 'c'
    cos = _cos(data, q)
    want = [i for i in np.argsort(-cos) if i % 3 == 2][:10]
    sim = t.vec.similarity(vector=q)
    res = t.where(t.cat == "c").order_by(sim, asc=False).limit(10).select(t.k, sim).collect()
    assert res["k"] == want and len(res) == 10
    # a condition only Python evaluates (a UDF) is applied first as well
    res = t.where(t.k % 2 == 1) \
        .order_by(sim, asc=False).limit(5).select(t.k).collect()
    assert res["k"] == [i for i in np.argsort(-cos) if i % 2 == 1][:5]
    # a filter matching fewer rows than k: all of them
    res = t.where(t.k < 4).order_by(sim, asc=False).limit(10).select(t.k).collect()
    assert sorted(res["k"]) == [0, 1, 2, 3] and res["k"][0] == 0


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_filtered_searches_by_every_metric_give_exact_values(db, metric):
    """A filtered search scores only the rows where() selects, read from the vectors in memory
    a block at a time: ranks and values match numpy over those rows (several blocks here)."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((N, DIM)).astype(np.float32)
    t = db.create_table("m", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int})
    t.insert([{"vec": v, "k": i} for i, v in enumerate(data)])
    t.add_embedding_index("vec", metric=metric, precision="fp32")
    q = rng.standard_normal(DIM).astype(np.float32)
    keep = np.arange(N)[np.arange(N) % 4 != 1]  # 300 rows
    if metric == "l2":
        vals = np.linalg.norm(data[keep] - q, axis=1)
        order = keep[np.argsort(vals)][:7]
        want = np.linalg.norm(data[order] - q, axis=1)
    else:
        vals = data[keep] @ q
        order = keep[np.argsort(-vals)][:7]
        want = data[order] @ q
    sim = t.vec.similarity(vector=q)
    res = t.where(t.k % 4 != 1).order_by(sim, asc=metric == "l2").limit(7) \
        .select(t.k, s=sim).collect()
    assert res["k"] == order.tolist()
    assert res["s"] == pytest.approx(want.tolist(), rel=1e-5)
    # rows deleted (gaps among the rowids) and rows without a vector: the same, over the rest
    t.delete(where=t.k % 3 == 0)  # enough to compact the vectors in memory: gaps
    t.insert([{"k": N + i} for i in range(3)] + [{"vec": data[0], "k": N + 3}])
    keep = keep[keep % 3 != 0]
    if metric == "l2":
        order = keep[np.argsort(np.linalg.norm(data[keep] - q, axis=1))][:7]
    else:
        order = keep[np.argsort(-(data[keep] @ q))][:7]
    res = t.where(t.k % 4 != 1).order_by(sim, asc=metric == "l2").limit(7).select(t.k).collect()
    assert res["k"] == order.tolist()
    few = t.where(t.k >= N - 3).order_by(sim, asc=metric == "l2")
    got = few.limit(10).select(t.k).collect()["k"]
    assert sorted(got[:3]) == [N - 3, N - 2, N + 3] and got[3:] == [N, N + 1, N + 2]
    assert few.limit(4).select(t.k).collect()["k"] == got[:4]


def test_a_row_before_every_vector_is_not_taken_for_one(db):
    """The vectors in memory start at a later row (the first has none): a filter selecting the
    first row finds no vector for it, and ranks it after every row that has one."""
    t = db.create_table("f", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int})
    rng = np.random.default_rng(5)
    t.insert([{"k": 0}] + [{"vec": rng.standard_normal(DIM).astype(np.float32), "k": i}
                           for i in range(1, 6)])
    t.add_embedding_index("vec", precision="fp32")
    sim = t.vec.similarity(vector=rng.standard_normal(DIM).astype(np.float32))
    res = t.where(t.k <= 1).order_by(sim, asc=False).limit(2).select(t.k, s=sim).collect()
    assert res["k"] == [1, 0] and res["s"][1] is None


def test_rowids_come_as_one_array_in_rowid_order(vecs):
    from pxlite import catalog, vecsearch

    t, _ = vecs
    db = t._conn.db
    meta = catalog.load_table(db, "v")
    k = meta.column("k").sql
    got = vecsearch.rowid_array(
        db, f"SELECT _rowid FROM {meta.sql} WHERE {k} < 5 ORDER BY _rowid DESC", [])
    assert got.dtype == np.int64 and got.tolist() == sorted(got.tolist()) and len(got) == 5
    assert vecsearch.rowid_array(db, f"SELECT _rowid FROM {meta.sql} WHERE {k} < 0",
                                 []).tolist() == []


def test_offset_no_limit_farthest_and_other_keys(vecs):
    t, data = vecs
    q = data[5]
    order = np.argsort(-_cos(data, q)).tolist()
    sim = t.vec.similarity(vector=q)
    assert t.order_by(sim, asc=False).limit(3, offset=4).select(t.k).collect()["k"] == \
        order[4:7]
    assert t.order_by(sim, asc=False).select(t.k).collect()["k"] == order
    assert t.order_by(sim).limit(3).select(t.k).collect()["k"] == order[::-1][:3]  # farthest
    assert t.order_by(sim, asc=False).head(2)["k"] == order[:2]
    with t.order_by(sim, asc=False).limit(3).cursor() as cur:
        assert [r["k"] for r in cur] == order[:3]


def test_values_agree_between_top_k_and_sql(vecs):
    t, data = vecs
    q = data[9] + 0.1
    sim = t.vec.similarity(vector=q)
    top = t.order_by(sim, asc=False).limit(5).select(t.k, s=sim).collect()
    by_sql = {r["k"]: r["s"] for r in t.where(t.k.isin(top["k"])).select(t.k, s=sim).collect()}
    assert top["s"] == pytest.approx([by_sql[k] for k in top["k"]], rel=1e-5)
    assert top["s"] == pytest.approx(_cos(data, q)[top["k"]].tolist(), rel=1e-5)
    # a similarity in where() and in an expression runs in SQL
    above = t.where(sim > top["s"][2] - 1e-6).select(t.k).collect()["k"]
    assert sorted(above) == sorted(top["k"][:3])
    doubled = t.where(t.k == top["k"][0]).select(d=sim * 2).collect()["d"][0]
    assert doubled == pytest.approx(2 * top["s"][0], rel=1e-5)


def test_the_numpy_fallback_gives_the_sqlite_vec_results(tmp_path):
    script = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
import numpy as np, pxlite as pxl
from pxlite import vecsql
db = pxl.connect({str(tmp_path / 'f.pxl')!r})
t = db.get_table('v') if 'v' in db.list_tables() else None
if t is None:
    t = db.create_table('v', {{'vec': pxl.Array[(8,), pxl.Float], 'k': pxl.Int}})
    rng = np.random.default_rng(3)
    t.insert([{{'vec': v, 'k': i}} for i, v in enumerate(rng.standard_normal((200, 8)))])
    for m in ('cosine', 'l2', 'ip'):
        t.add_embedding_index('vec', idx_name=m, metric=m, precision='fp32')
q = np.linspace(-1, 1, 8).astype(np.float32)
out = {{}}
for m in ('cosine', 'l2', 'ip'):
    sim = t.vec.similarity(vector=q, idx=m)
    out[m] = [t.select(t.k, s=sim).where(sim > -1e9).collect().to_dicts(),
              t.order_by(sim, asc=m == 'l2').limit(5).select(t.k, sim).collect()["k"]]
out['how'] = vecsql.installed(db.db.sqlite)
print(json.dumps(out))
"""
    def run(flag):
        env = {**os.environ, "PXLITE_SQLITE_VEC": flag}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        import json
        return json.loads(done.stdout)

    with_ext, without = run("1"), run("0")
    assert with_ext["how"].startswith("sqlite-vec") and without["how"].startswith("numpy")
    for m in ("cosine", "l2", "ip"):
        assert with_ext[m][1] == without[m][1]  # the same top rows
        a, b = with_ext[m][0], without[m][0]
        assert [r["k"] for r in a] == [r["k"] for r in b]
        assert [r["s"] for r in a] == pytest.approx([r["s"] for r in b], rel=1e-5, abs=1e-6)


def test_a_failed_load_falls_back_with_one_note(monkeypatch, db):
    monkeypatch.setattr(vecsql, "_load", lambda conn: (_ for _ in ()).throw(
        OSError("no such file")))
    monkeypatch.setattr(vecsql, "_noted", [])
    t = db.create_table("v", {"vec": pxl.Array[(4,), pxl.Float]})
    t.insert([{"vec": [1, 0, 0, 0]}, {"vec": [0, 1, 0, 0]}])
    t.add_embedding_index("vec", precision="fp32")
    sim = t.vec.similarity(vector=np.array([1.0, 0.1, 0, 0]))
    with pytest.warns(RuntimeWarning, match="sqlite-vec extension could not be loaded.*numpy"):
        vals = t.select(s=sim).collect()["s"]
    assert vals == pytest.approx([0.995037, 0.0995037], rel=1e-5)
    assert vecsql.installed(db.db.sqlite).startswith("numpy (sqlite-vec could not be loaded")


def test_explain_says_how_the_search_runs(vecs, capsys):
    t, data = vecs
    sim = t.vec.similarity(vector=data[1])
    t.where(t.cat == "b").order_by(sim, asc=False).limit(10).select(t.k, sim).explain()
    out = capsys.readouterr().out
    assert "exact top-10 (closest first) among the 133 rows where() selects, by cosine over " \
           f"the {N} vectors of index 'idx0' (fp32) held in memory (numpy)" in out
    t.select(t.k, s=sim).where(sim > 0.5).explain()
    out = capsys.readouterr().out
    assert "vec_distance_cosine" in out and "In Python: nothing" in out


def test_explain_says_when_the_sketch_narrowed_a_search(vecs, capsys, monkeypatch):
    from pxlite import vecsearch

    monkeypatch.setattr(vecsearch, "_SKETCH_MIN", 64)  # (thousands of rows, in use)
    t, data = vecs
    sim = t.vec.similarity(vector=data[1])
    t.where(t.cat == "b").order_by(sim, asc=False).limit(3).select(t.k).explain()
    out = capsys.readouterr().out
    assert "an int8 sketch of the vectors, with a bound on its error, left " in out
    assert " of those 133 rows to score in float32" in out
    t.where(t.cat == "b").order_by(sim, asc=False).limit(30).select(t.k).explain()
    assert "sketch" not in capsys.readouterr().out  # 30 of 133: not worth narrowing


def test_image_queries_by_pil_path_and_url(db, tmp_path):
    t = db.create_table("p", {"img": pxl.Image, "label": pxl.String})
    paths = {}
    for name, rgb in (("red", (250, 0, 0)), ("blue", (0, 0, 250)), ("green", (0, 200, 0))):
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (6, 6), rgb).save(paths[name])
        t.insert(img=str(paths[name]), label=name)
    t.add_embedding_index("img", image_embed=embed_image, string_embed=embed_text)
    q = tmp_path / "q.jpg"
    Image.new("RGB", (6, 6), (0, 10, 240)).save(q)
    for value in (Image.open(q), str(q), q, q.as_uri()):
        sim = t.img.similarity(image=value)
        assert t.order_by(sim, asc=False).limit(1).select(t.label).collect()["label"] == \
            ["blue"]
    with pytest.raises(NotFoundError, match="no file at"):
        t.order_by(t.img.similarity(image=str(tmp_path / "nope.png"))).limit(1).collect()
    # the deprecated positional form picks the modality from the value
    assert t.order_by(t.img.similarity("green"), asc=False).limit(1).select(t.label) \
        .collect()["label"] == ["green"]


def test_argument_errors(vecs):
    t, _ = vecs
    with pytest.raises(SchemaError, match=r"exactly one of string=.*image=.*vector="):
        t.vec.similarity()
    with pytest.raises(SchemaError, match="exactly one of"):
        t.vec.similarity(string="a", vector=np.ones(DIM))
    with pytest.raises(SchemaError, match="not also positionally"):
        t.vec.similarity("a", string="b")
    with pytest.raises(SchemaError, match="takes a value, not an expression"):
        t.vec.similarity(string=t.cat)
    with pytest.raises(SchemaError, match=r"string=...\): expected a str, got list"):
        t.vec.similarity(string=["red truck"])
    with pytest.raises(SchemaError, match=r"image=...\): expected a PIL image"):
        t.vec.similarity(image=("red",))
    with pytest.raises(SchemaError, match="1-dimensional array of numbers"):
        t.vec.similarity(vector=np.ones((2, 2)))
    with pytest.raises(SchemaError, match="expected a numpy array"):
        t.vec.similarity(vector="abc")
    with pytest.raises(SchemaError, match=r"idx=...\) takes an index name"):
        t.vec.similarity(vector=np.ones(DIM), idx=3)


def test_index_errors(vecs, db):
    t, _ = vecs
    q = np.ones(DIM)
    with pytest.raises(NotFoundError, match="column 'k' of 'v' has no embedding index; add one"):
        t.order_by(t.k.similarity(vector=q)).limit(1).collect()
    with pytest.raises(NotFoundError, match="embedding index 'zz' not found on column 'vec'"):
        t.order_by(t.vec.similarity(vector=q, idx="zz")).limit(1).collect()
    with pytest.raises(SchemaError, match=r"query vector has 3 numbers.*vectors of 16"):
        t.order_by(t.vec.similarity(vector=np.ones(3))).limit(1).collect()
    with pytest.raises(SchemaError, match=r"no string embedding.*takes vector="):
        t.order_by(t.vec.similarity(string="x")).limit(1).collect()
    t.add_embedding_index("vec", idx_name="other", metric="l2", precision="fp32")
    with pytest.raises(SchemaError, match=r"several embedding indexes.*idx="):
        t.select(t.vec.similarity(vector=q)).collect()
    with pytest.raises(SchemaError, match="cannot be stored in a column definition"):
        t.add_computed_column(s=t.vec.similarity(vector=q, idx="other"))
    # a write's where() may use one too (its rows are found by a query)
    near = t.vec.similarity(vector=t.where(t.k == 3).select(t.vec).collect()["vec"][0],
                            idx="other")
    assert t.delete(where=near < 1e-4).num_rows == 1 and t.where(t.k == 3).count() == 0
    unbound = t.vec.similarity(vector=q)
    with pytest.raises(SchemaError, match="computed in a query"):
        unbound.eval(None)


def test_a_missing_embedding_function_is_named(tmp_path):
    path = tmp_path / "a.pxl"
    script = f"""
import sys
sys.path[:0] = [{str(ROOT)!r}]
import numpy as np, pxlite as pxl

@pxl.udf
def local_embed(s: str) -> pxl.Array[(4,), pxl.Float]:
    return np.ones(4, dtype=np.float32)

t = pxl.connect({str(path)!r}).create_table('t', {{'s': pxl.String}})
t.insert(s='x')
t.add_embedding_index('s', string_embed=local_embed)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with pxl.connect(path) as db:
        t = db.get_table("t")
        with pytest.raises(NotFoundError, match=r"function '__main__.local_embed' cannot be "
                                                "found"):
            t.order_by(t.s.similarity(string="x")).limit(1).collect()
        t.insert(s="y", on_error="ignore")  # the rest of the table works; the cell errs
        assert t.count() == 2


def test_similarity_in_joins_and_groups_runs_in_sql(vecs, db):
    t, data = vecs
    names = db.create_table("n", {"k": pxl.Int, "name": pxl.String})
    names.insert([{"k": i, "name": f"n{i}"} for i in range(5)])
    sim = t.vec.similarity(vector=data[2])
    res = t.join(names, on=t.k == names.k).order_by(sim, asc=False).limit(1) \
        .select(names.name).collect()
    assert res["name"] == ["n2"]
    import pxlite.functions as pxlf
    best = t.group_by(t.cat).select(t.cat, m=pxlf.max(sim)).order_by(t.cat).collect()
    assert best["m"][2] == pytest.approx(1.0, rel=1e-5)  # row 2 is in 'c'
