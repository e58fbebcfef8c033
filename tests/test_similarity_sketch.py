"""The int8 sketch that narrows a filtered search (pxlite.vecsearch.Vectors._candidates): the
rows it keeps are always a superset of the exact top-k, whatever the metric, the direction, near
ties, NaNs and infinities; and it follows every change to the vectors (updates, new rows,
deletes that compact the matrix) once it has been made."""

from __future__ import annotations

import numpy as np
import pytest

import pxlite as pxl
from pxlite import vecsearch
from pxlite.embeddings import EmbeddingIndex

DIM = 64


def _vectors(metric: str, data: np.ndarray) -> vecsearch.Vectors:
    idx = EmbeddingIndex(1, "i", 1, 1, metric, "fp32", data.shape[1], None, None, "{}")
    v = vecsearch.Vectors(idx, np, "float32")
    v.load([(i + 1, row.astype("<f4").tobytes()) for i, row in enumerate(data)])
    return v


def _exact(v: vecsearch.Vectors, q, k, closest_first, positions, monkeypatch):
    """The search without the sketch: every selected row scored in float32."""
    with monkeypatch.context() as m:
        m.setattr(vecsearch, "_SKETCH_MIN", 10**12)
        return v.top(q, k, closest_first, positions)


def _near_ties(rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows a hair apart (1e-3 of their length) around a few centres: the int8 sketch's error
    (about 5e-3 of a row's length here) is larger than the gaps between their scores."""
    centres = rng.standard_normal((4, DIM)).astype(np.float32)
    rows = centres[rng.integers(0, 4, n)]
    return (rows + 1e-3 * rng.standard_normal((n, DIM))).astype(np.float32)


def _check_top(ids, data, q, metric, k, closest_first, positions) -> None:
    """``ids`` (rowids: position + 1) are a top-k of ``positions`` by scores computed in
    float64, in order, up to 1e-5 of the scores' size: far above float32's rounding, far below
    the sketch's error, so a row the sketch dropped wrongly shows."""
    x = data[positions].astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "cosine":
        score = x @ qq / (np.linalg.norm(x, axis=1) * np.linalg.norm(qq))
    elif metric == "ip":
        score = x @ qq
    else:  # l2 ranks by 2 x.q - |x|^2 (as the search does): its terms set the precision
        score = 2 * x @ qq - (x * x).sum(axis=1)
    if not closest_first:
        score = -score
    size = np.abs(score).max()
    if metric == "l2":
        size = ((x * x).sum(axis=1) + 2 * np.abs(x @ qq)).max()
    tol = 1e-5 * size
    kth = np.sort(score)[::-1][k - 1]
    chosen = np.isin(positions + 1, ids)
    assert len(ids) == k and chosen.sum() == k
    assert (score[chosen] >= kth - tol).all() and (score[~chosen] <= kth + tol).all()
    got = score[np.searchsorted(positions + 1, ids)]
    assert (np.diff(got) <= tol).all()  # best first


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("closest_first", [True, False])
def test_the_sketch_keeps_the_exact_top_k_among_near_ties(metric, closest_first, monkeypatch):
    rng = np.random.default_rng(11)
    data = np.concatenate([_near_ties(rng, 3000),
                           rng.standard_normal((3000, DIM)).astype(np.float32)])
    v = _vectors(metric, data)
    for trial in range(6):
        # queries along a centre (hundreds of near ties at the top) and random ones
        q = data[trial] if trial % 2 == 0 else rng.standard_normal(DIM).astype(np.float32)
        positions = np.sort(rng.choice(len(data), 4000, replace=False))
        for k in (1, 10, 100):
            _check_top(v.top(q, k, closest_first, positions)[0], data, q, metric, k,
                       closest_first, positions)
            vv = q / np.linalg.norm(q) if metric == "cosine" else q
            kept = v._candidates(vv, k, closest_first, positions)
            assert len(kept) < len(positions)  # it did narrow the rows


def test_the_sketch_ranks_by_bound_not_by_its_own_estimate(monkeypatch):
    """Without the bound the sketch's own estimate alone would pick the top-k: among near
    ties it picks other rows than the exact scores do."""
    rng = np.random.default_rng(2)
    data = _near_ties(rng, 6000)
    v = _vectors("ip", data)
    q = data[0].copy()
    positions = np.arange(len(data))
    _check_top(v.top(q, 10, True, positions)[0], data, q, "ip", 10, True, positions)
    v.slack[:] = 0  # the estimate taken for the score
    with pytest.raises(AssertionError):
        _check_top(v.top(q, 10, True, positions)[0], data, q, "ip", 10, True, positions)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN and inf
def test_rows_with_nan_or_infinity_are_always_rescored(monkeypatch):
    rng = np.random.default_rng(4)
    data = rng.standard_normal((5000, DIM)).astype(np.float32)
    data[7, 3] = np.inf
    data[9, 0] = np.nan
    data[11] = 0.0
    data[13] = 1e30  # finite, its squared norm is not
    for metric in ("cosine", "ip", "l2"):
        v = _vectors(metric, data)
        for closest_first in (True, False):
            for q in (data[13], rng.standard_normal(DIM).astype(np.float32)):
                positions = np.arange(len(data))
                got = v.top(q, 5, closest_first, positions)
                want = _exact(v, q, 5, closest_first, positions, monkeypatch)
                assert got[0] == want[0]
                np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_sketch_follows_updates_inserts_and_deletes(db, metric, monkeypatch):
    """Through a table: once a filtered search has made the sketch, a row updated to the query
    itself, new rows (the matrix grows) and deletes (it compacts) are all found exactly."""
    monkeypatch.setattr(vecsearch, "_SKETCH_MIN", 64)
    rng = np.random.default_rng(9)
    data = rng.standard_normal((600, DIM)).astype(np.float32)
    t = db.create_table("s", {"vec": pxl.Array[(DIM,), pxl.Float], "k": pxl.Int})
    t.insert([{"vec": row, "k": i} for i, row in enumerate(data)])
    t.add_embedding_index("vec", metric=metric, precision="fp32")
    q = rng.standard_normal(DIM).astype(np.float32)
    sim = t.vec.similarity(vector=q)
    closest = metric == "l2"  # ascending distance, or descending cosine

    def top(n: int = 5) -> list[int]:
        return t.where(t.k % 2 == 0).order_by(sim, asc=closest).limit(n) \
            .select(t.k).collect()["k"]

    def want(n: int = 5) -> list[int]:
        keys = sorted(current)
        m = np.array([current[i] for i in keys])
        if metric == "l2":
            score = -np.linalg.norm(m - q, axis=1)
        else:
            score = m @ q / np.linalg.norm(m, axis=1) / np.linalg.norm(q)
        order = np.argsort(-score, kind="stable")
        return [keys[i] for i in order if keys[i] % 2 == 0][:n]

    current = {i: data[i] for i in range(len(data))}
    assert top() == want()  # the sketch is made here
    r = rng.standard_normal(DIM).astype(np.float32)
    t.update({"vec": q}, where=t.k == 100)  # far from the top before: now the closest
    current[100] = q
    assert top()[0] == 100 and top() == want()
    new = rng.standard_normal((700, DIM)).astype(np.float32)
    new[3], new[4] = q + 0.01 * r, q + 0.02 * r  # k 603 (filtered out) and 604
    t.insert([{"vec": row, "k": 600 + i} for i, row in enumerate(new)])  # the matrix grows
    current.update({600 + i: row for i, row in enumerate(new)})
    assert 603 not in top(50) and top()[:2] == [100, 604] and top() == want()
    t.update({"vec": q + 0.005 * r}, where=t.k == 1000)
    current[1000] = q + 0.005 * r
    assert top()[:3] == [100, 1000, 604] and top() == want()
    t.delete(where=t.k < 500)  # enough to compact the vectors in memory
    for i in range(500):
        del current[i]
    assert top() == want() and top(30) == want(30)


def test_a_sketch_kept_current_equals_one_made_anew():
    """Every way apply() changes the matrix (rows rewritten, removed, added past its capacity,
    and the compaction of removed rows) leaves the sketch, and the squared norms, as a new load
    would make them."""
    rng = np.random.default_rng(6)
    data = rng.standard_normal((300, DIM)).astype(np.float32) * \
        rng.uniform(0.01, 100, (300, 1)).astype(np.float32)  # rows of very different sizes
    v = _vectors("l2", data)
    v._sketch_ready()
    rows = {i + 1: data[i] for i in range(len(data))}
    changes: dict[int, bytes | None] = {}
    for r in range(1, 301, 7):  # rewritten
        rows[r] = rng.standard_normal(DIM).astype(np.float32) * 50
        changes[r] = rows[r].astype("<f4").tobytes()
    for r in range(2, 301, 2):  # removed: enough to compact
        rows.pop(r, None)
        changes[r] = None
    for r in range(301, 500):  # added: the matrix grows
        rows[r] = rng.standard_normal(DIM).astype(np.float32)
        changes[r] = rows[r].astype("<f4").tobytes()
    assert v.apply(changes) and v.dead == 0  # compacted
    fresh = _vectors("l2", np.zeros((0, DIM), np.float32))
    fresh.load([(r, rows[r].astype("<f4").tobytes()) for r in sorted(rows)])
    fresh._sketch_ready()
    n = fresh.n
    assert v.n == n
    np.testing.assert_array_equal(v.rowids[:n], fresh.rowids[:n])
    np.testing.assert_array_equal(v.codes[:n], fresh.codes[:n])
    np.testing.assert_array_equal(v.scale[:n], fresh.scale[:n])
    np.testing.assert_array_equal(v.slack[:n], fresh.slack[:n])
    # and the l2 metric's squared norms, kept current row by row too
    np.testing.assert_allclose(v.sq[:n], fresh.sq[:n], rtol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on NaN and inf
def test_a_nan_row_does_not_take_a_place_in_the_top_k(monkeypatch):
    """By l2 a row with a NaN has no score at all (not even a worst one): it must not count
    among the k rows whose worst scores set the bar, or the true second row is dropped."""
    rng = np.random.default_rng(8)
    data = rng.standard_normal((3000, DIM)).astype(np.float32) * 10
    q = rng.standard_normal(DIM).astype(np.float32)
    data[5] = q                                      # the closest
    data[6] = q + rng.standard_normal(DIM).astype(np.float32)  # clearly the second
    data[7, 2] = np.nan
    v = _vectors("l2", data)
    positions = np.arange(len(data))
    want = _exact(v, q, 2, True, positions, monkeypatch)
    assert want[0][:2] == [6, 7]
    assert v.top(q, 2, True, positions)[0] == want[0]
