"""Math functions as methods of Float and Int: SQLite and Python give the same values (halves,
negative zero, infinities, subnormals, the Int extremes, None), Python's rounding included."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlcheck import check, each, python_calls, shown

import pxlite as pxl
from pxlite.functions import math as pmath

FLOATS = [0.0, -0.0, 0.25, 0.5, 1.5, 2.5, -2.5, 3.5, 1.6, -19.27469, 100.0, 1.32e57, math.inf,
          -math.inf, 0.49999999999999994, -0.49999999999999994, 4503599627370495.5,
          9007199254740993.0, 5e-324, -1e308, None, 709.5, 2.675, -0.4, 1e-7]
INTS = [0, 1, 3, -19, 100, 4171780, 2**62, -(2**63), 2**63 - 1, None, -1, 7]


@pytest.fixture
def t(db):
    t = db.create_table("m", {"x": pxl.Float, "n": pxl.Int, "y": pxl.Float})
    ys = [2.0, 0.5, -1.0, 3.0, None, 0.0]
    t.insert([{"x": x, "n": INTS[i % len(INTS)], "y": ys[i % len(ys)]}
              for i, x in enumerate(FLOATS)])
    return t


py = each
failed = shown


def ints(t):
    return [INTS[i % len(INTS)] for i in range(len(FLOATS))]


def test_round_is_pythons(t):
    assert pmath.round(2.5) == 2 and pmath.round(3.5) == 4 and pmath.round(-2.5) == -2
    for digits in (None, 0):
        got = check(t, t.x.round(digits) if digits is not None else t.x.round())
        assert got == py(lambda v: float(round(v, 0)), FLOATS)
        assert python_calls(t, t.x.round(digits)) == 0  # SQLite computes it, halves included
    for digits in (1, 2, -1, 5):
        assert check(t, t.x.round(digits)) == py(lambda v, d=digits: float(round(v, d)), FLOATS)
    assert check(t, t.n.round()) == py(lambda v: float(v), ints(t))
    assert check(t, t.n.round(-2)) == py(lambda v: float(round(v, -2)), ints(t))
    # SQLite's own round() goes away from zero; pxlite's does not
    assert t._conn.db.query("SELECT round(2.5)")[0][0] == 3.0
    assert t.where(t.x.round() == 2.0).select(t.x).collect()["x"] == [1.5, 2.5, 1.6]


@pytest.mark.parametrize("name", ["abs", "ceil", "floor"])
def test_abs_ceil_floor(t, name):
    ref = {"abs": lambda v: float(abs(v)),
           "ceil": lambda v: float(math.ceil(v)) if math.isfinite(v) else v,
           "floor": lambda v: float(math.floor(v)) if math.isfinite(v) else v}[name]
    got = check(t, getattr(t.x, name)())
    assert got == py(ref, FLOATS)
    assert all(math.copysign(1, g) == math.copysign(1, e) for g, e in
               zip(got, py(ref, FLOATS), strict=True) if g is not None and g == 0)
    assert check(t, getattr(t.n, name)()) == py(lambda v: float(ref(v)), ints(t))
    assert python_calls(t, getattr(t.x, name)()) == 0


def test_pow_sqrt_exp_log(t):
    for y in (2, 0.5, -1, 0, 3, 1e10):
        assert failed(check(t, t.x.pow(y))) == failed(py(math.pow, FLOATS, y))
    assert failed(check(t, t.x.pow(t.y))) == failed(
        [None if x is None or y is None else py(math.pow, [x], y)[0]
         for x, y in zip(FLOATS, t.select(t.y).collect()["y"], strict=True)])
    assert check(t, t.n.pow(2)) == py(lambda v: math.pow(v, 2), ints(t))
    for name, fn in (("sqrt", math.sqrt), ("exp", math.exp), ("log", math.log),
                     ("log10", math.log10)):
        assert failed(check(t, getattr(t.x, name)())) == failed(py(fn, FLOATS)), name
        assert failed(check(t, getattr(t.n, name)())) == failed(py(fn, ints(t))), name


def test_math_runs_in_sqlite_where_python_agrees(db):
    t = db.create_table("p", {"x": pxl.Float})
    t.insert([{"x": v} for v in (0.5, 1.0, 2.25, 10.0, 70.0)])
    for e in (t.x.pow(2), t.x.sqrt(), t.x.exp(), t.x.log(), t.x.log10(), t.x.to_int(),
              t.x.pow(t.x)):
        check(t, e)
        assert python_calls(t, e) == 0, e
    t.insert([{"x": -4.0}])  # sqrt(-4), log(-4): Python raises; pow(-4, 2) too goes to Python
    assert python_calls(t, t.x.sqrt()) == 1 and python_calls(t, t.x.pow(2)) == 1
    assert failed(check(t, t.x.sqrt()))[-1] == "failed"
    assert check(t, t.x.pow(2))[-1] == 16.0


def test_int_methods(t):
    n = ints(t)
    assert check(t, t.n.to_float()) == py(float, n)
    for other in (3, -1, 0, 2**62):
        assert check(t, t.n.bitwise_and(other)) == py(lambda v, o=other: v & o, n)
        assert check(t, t.n.bitwise_or(other)) == py(lambda v, o=other: v | o, n)
        assert check(t, t.n.bitwise_xor(other)) == py(lambda v, o=other: v ^ o, n)
    assert check(t, t.n.bitwise_xor(t.n)) == py(lambda v: 0, n)
    assert failed(check(t, t.x.to_int())) == failed(py(pmath.to_int.fn, FLOATS))
    assert check(t, t.x.to_int())[:4] == [0, 0, 0, 0]
    with pytest.raises(AttributeError):
        t.x.bitwise_and(1)  # Float has no bitwise methods


_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(st.lists(st.floats(allow_nan=False) | st.integers(-(2**60), 2**60).map(lambda i: i / 2),
                min_size=1, max_size=20))
def test_round_and_floor_agree_on_any_float(tmp_path_factory, xs):
    db = pxl.connect(tmp_path_factory.mktemp("r") / "r.pxl")
    t = db.create_table("r", {"x": pxl.Float})
    t.insert([{"x": x} for x in xs])
    assert check(t, t.x.round()) == [float(round(x, 0)) for x in xs]
    check(t, t.x.floor())
    check(t, t.x.ceil())
    check(t, t.x.pow(0.5))
    db.close()
