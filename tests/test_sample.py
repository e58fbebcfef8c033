"""Samples (Pixeltable's Table.sample / Query.sample): n, fraction and n_per_stratum, stratified
or not, after where(); the same rows for a seed in any process; mistakes refused."""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import pxlite as pxl
from pxlite.errors import SchemaError
from pxlite.queryrun import sample_key

ROOT = Path(__file__).resolve().parents[1]


@pxl.udf
def py_int(x: int | None) -> int | None:
    return x


def _make(db: pxl.Connection, row_mult: int = 4, cats: int = 6, with_null: bool = False
          ) -> pxl.Table:
    """Pixeltable's sample data: stratum (cat1, cat2) has row_mult * (cat1+1) * (cat2+1) rows;
    with_null: the last value of each category is None."""
    rows = []
    for c1 in range(cats):
        for c2 in range(cats):
            v1 = None if with_null and c1 == cats - 1 else c1
            v2 = None if with_null and c2 == cats - 1 else c2
            rows += [{"id": len(rows) + k, "cat1": v1, "cat2": v2, "s": f"é{c1}"}
                     for k in range(row_mult * (c1 + 1) * (c2 + 1))]
    t = db.create_table("samples", {"id": pxl.Int, "cat1": pxl.Int, "cat2": pxl.Int,
                                    "s": pxl.String})
    t.insert(rows)
    return t


def test_n_and_fraction(db):
    t = _make(db)
    total = t.count()
    rs = t.sample(n=20, seed=1).collect()
    assert len(rs) == 20 and len(set(rs["id"])) == 20 and rs.names == ["id", "cat1", "cat2", "s"]
    assert t.where(t.id < 200).sample(n=20, seed=1).select(t.id).collect()["id"] != []
    assert all(i < 200 for i in t.where(t.id < 200).sample(n=20, seed=1).collect()["id"])
    assert len(t.sample(n=total + 5, seed=1).collect()) == total
    for frac, seed in ((0.10, 12345), (0.123, 42), (0.5, 876)):
        n = len(t.sample(fraction=frac, seed=seed).collect())
        assert abs(n - frac * total) / (frac * total) < 0.25, (frac, n)
    assert len(t.sample(fraction=1.0, seed=3).collect()) == total
    assert len(t.sample(fraction=0.0, seed=3).collect()) == 0
    assert t.sample(fraction=0.2, seed=5).count() == len(t.sample(fraction=0.2, seed=5).collect())
    assert t.sample(n=7, seed=5).count() == 7


def test_a_seed_gives_the_same_sample_and_fraction_is_per_row(db):
    t = _make(db)
    a = t.sample(n=30, seed=99).collect()["id"]
    assert t.sample(n=30, seed=99).collect()["id"] == a  # same rows, same order
    assert t.sample(n=30, seed=100).collect()["id"] != a
    f = set(t.sample(fraction=0.3, seed=7).collect()["id"])
    # a row is in a fraction sample by its own key: filtering first keeps exactly those rows
    assert set(t.where(t.id < 500).sample(fraction=0.3, seed=7).collect()["id"]) == \
        {i for i in f if i < 500}
    # a where() in Python gives the same sample as the same where() in SQL
    for kw in ({"n": 15}, {"fraction": 0.25}):
        in_sql = t.where(t.cat1 == 2).sample(seed=11, **kw).collect()["id"]
        in_py = t.where(py_int(t.cat1) == 2).sample(seed=11, **kw).collect()["id"]
        assert in_py == in_sql and in_sql
    # without a seed, each run draws anew
    assert t.sample(n=10).collect()["id"] != t.sample(n=10).collect()["id"]


def test_the_same_sample_in_another_process(db, tmp_path):
    t = _make(db, row_mult=1)
    here = {"n": t.sample(n=12, seed=4171780).collect()["id"],
            "f": t.sample(fraction=0.2, seed=4171780).collect()["id"],
            "s": t.sample(n_per_stratum=1, stratify_by=[t.cat1, t.cat2], seed=4171780)
            .collect()["id"]}
    code = (
        "import json, sys, pxlite as pxl\n"
        f"t = pxl.connect({str(db.path)!r}).get_table('samples')\n"
        "print(json.dumps({'n': t.sample(n=12, seed=4171780).collect()['id'],\n"
        "                  'f': t.sample(fraction=0.2, seed=4171780).collect()['id'],\n"
        "                  's': t.sample(n_per_stratum=1, stratify_by=[t.cat1, t.cat2],\n"
        "                            seed=4171780).collect()['id']}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True)
    assert json.loads(out.stdout) == here


def test_stratified_samples(db):
    t = _make(db, with_null=True)
    strata = collections.Counter((r["cat1"], r["cat2"]) for r in t.collect())
    rs = t.where(t.cat1 != None).sample(n_per_stratum=2, stratify_by=[t.cat1, t.cat2],  # noqa: E711
                                        seed=3).collect()
    assert len(rs) == 2 * 5 * 6
    assert collections.Counter((r["cat1"], r["cat2"]) for r in rs) == \
        {k: 2 for k in strata if k[0] is not None}
    ten = t.where(t.cat1 != None).sample(n=10, stratify_by=[t.cat1, t.cat2], seed=3).collect()  # noqa: E711
    assert len(ten) == 10 and len({(r["cat1"], r["cat2"]) for r in ten}) == 10  # one each first
    frac = t.sample(fraction=0.1, stratify_by=[t.cat1, t.cat2], seed=8).collect()
    got = collections.Counter((r["cat1"], r["cat2"]) for r in frac)
    assert got == {k: math.ceil(0.1 * n) for k, n in strata.items()}  # None is a stratum too
    one = t.sample(n_per_stratum=1, stratify_by=t.s, seed=2).collect()
    assert sorted(one["s"]) == [f"é{c}" for c in range(6)]
    assert t.sample(n_per_stratum=1, stratify_by=t.s, seed=2).collect()["id"] == one["id"]
    assert t.sample(n_per_stratum=3, stratify_by=[t.cat1], seed=2).count() == 18


def test_a_sample_of_images(db, jpegs):
    t = db.create_table("im", {"image": pxl.Image, "k": pxl.Int})
    t.insert([{"image": p, "k": i} for i, p in enumerate(jpegs)])
    rs = t.sample(n=2, seed=1).select(t.k, t.image.width).collect()
    assert len(rs) == 2 and rs["width"] == [64, 64]


def test_sample_key_is_uniform_and_fixed():
    keys = [sample_key(5, r) for r in range(1, 20001)]
    assert all(0 <= k < 2**63 for k in keys) and len(set(keys)) == len(keys)
    assert abs(sum(k < 2**62 for k in keys) / len(keys) - 0.5) < 0.02
    assert sample_key(5, 17) == sample_key(5, 17) != sample_key(6, 17)
    assert sample_key(-1, 3) == sample_key(2**64 - 1, 3)  # seeds are taken modulo 2**64


def test_sample_mistakes_are_refused(db):
    t = _make(db, row_mult=1, cats=2)
    s = t.select().sample(n=10, seed=1)
    for before, what in ((t.group_by(t.cat1), "group_by"), (t.order_by(t.id), "order_by"),
                         (t.limit(5), "limit"), (t.distinct(), "group_by")):
        with pytest.raises(SchemaError, match=f"cannot be used with {what}"):
            before.sample(n=10)
    with pytest.raises(SchemaError, match="given already"):
        s.sample(n=10)
    for after in (s.show, s.head, s.tail, lambda: s.where(t.id > 1), lambda: s.group_by(t.id),
                  lambda: s.order_by(t.id), lambda: s.limit(5), s.distinct):
        with pytest.raises(SchemaError, match="after sample"):
            after()
    for kwargs, match in (({"n": 0.01}, "whole number"), ({"n": -1}, "must be >= 1"),
                          ({"n": 0}, "must be >= 1"),
                          ({"n_per_stratum": "abc", "stratify_by": t.id}, "whole number"),
                          ({"n_per_stratum": 0, "stratify_by": t.id}, "must be >= 1"),
                          ({"fraction": "x"}, "number from 0 to 1"),
                          ({"fraction": -0.5}, "must be >= 0 and <= 1"),
                          ({"fraction": 12.9}, "must be >= 0 and <= 1"),
                          ({"n": 10, "seed": -123.456}, "seed"),
                          ({}, "exactly one of"),
                          ({"n": 10, "n_per_stratum": 5, "stratify_by": t.id}, "exactly one of"),
                          ({"n": 10, "fraction": 0.1}, "exactly one of"),
                          ({"n_per_stratum": 5}, "needs stratify_by"),
                          ({"n": 10, "stratify_by": 47}, "expression or a list"),
                          ({"n": 10, "stratify_by": [None]}, "takes expressions"),
                          ({"n": 10, "stratify_by": [123]}, "takes expressions")):
        with pytest.raises(SchemaError, match=match):
            t.sample(**kwargs)
    j = db.create_table("js", {"j": pxl.Json, "im": pxl.Image})
    for col in (j.j, j.im):
        with pytest.raises(SchemaError, match="a stratum is a scalar value"):
            j.sample(n=1, stratify_by=col)
    with pytest.raises(SchemaError, match="stratified sample needs a where"):
        t.where(py_int(t.id) > 1).sample(n=2, stratify_by=t.cat1).collect()
    with pytest.raises(SchemaError, match="must be computable in SQL"):
        t.sample(n=2, stratify_by=py_int(t.cat1)).collect()
    # the valid combinations
    for kwargs in ({"n": 10}, {"fraction": 0.123}, {"n": 10, "stratify_by": t.cat1},
                   {"fraction": 0.123, "stratify_by": t.cat1},
                   {"n_per_stratum": 5, "stratify_by": [t.cat1, t.cat2, t.s]}):
        t.sample(seed=27, **kwargs).collect()
