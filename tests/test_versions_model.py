"""Random sequences of inserts, updates, deletes, added and dropped columns and reverts, checked
against a Python model: after every step each kept version reads what the model says it was,
and ``check`` is clean (no orphan, no missing file) — issue 20's "Done when"."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import pxlite as pxl
from pxlite.errors import VersionError

COLOURS = [(0, 0, 0), (200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]
KEEP = 6  # versions kept by the table: pruning is part of every run

OPS = st.one_of(
    st.tuples(st.just("insert"), st.lists(st.integers(0, len(COLOURS) - 1), min_size=1,
                                          max_size=3)),
    st.tuples(st.just("update"), st.integers(0, 2), st.text("ab", max_size=2)),
    st.tuples(st.just("image"), st.integers(0, 2), st.integers(0, len(COLOURS) - 1)),
    st.tuples(st.just("delete"), st.integers(0, 2)),
    st.tuples(st.just("add"), st.just(0)),
    st.tuples(st.just("drop"), st.integers(0, 5)),
    st.tuples(st.just("revert_to"), st.integers(0, 99)),
    st.tuples(st.just("revert"), st.just(0)),
)


class Model:
    """The table as the model sees it: visible columns, rows as dicts (holding the values of
    hidden columns too), and each kept version's state."""

    def __init__(self) -> None:
        self.visible = ["n", "img"]
        self.rows: list[dict[str, Any]] = []
        self.next_n = 0
        self.added = 0
        self.states: dict[int, tuple[list[str], list[dict[str, Any]]]] = {0: (["n", "img"], [])}
        self.state_of: dict[int, int] = {0: 0}
        self.latest = 0

    def content(self, state: tuple[list[str], list[dict[str, Any]]]) -> list[tuple]:
        cols, rows = state
        return sorted(tuple(r.get(c) for c in cols) for r in rows)

    def now(self) -> tuple[list[str], list[dict[str, Any]]]:
        return list(self.visible), copy.deepcopy(self.rows)


def _read(t: pxl.Table, colour_of: dict[str, int]) -> tuple[list[str], list[tuple]]:
    cols = t.columns()
    rs = t.select(*[t[c].fileurl if c == "img" else t[c] for c in cols]).collect()
    rows = []
    for r in rs:
        vals = list(r.values())
        vals[cols.index("img")] = colour_of[vals[cols.index("img")]]
        rows.append(tuple(vals))
    return cols, sorted(rows)


def _learn_colours(t: pxl.Table, model: Model, colour_of: dict[str, int]) -> None:
    """Which stored file holds which colour (content addressed: one file per colour)."""
    by_n = {r["n"]: r["img"] for r in model.rows}
    for r in t.select(t.n, t.img.fileurl).collect():
        colour_of[r["img_fileurl"]] = by_n[r["n"]]


def _apply(t: pxl.Table, model: Model, op: tuple) -> None:
    kind = op[0]
    if kind == "insert":
        new = []
        for c in op[1]:
            new.append({"n": model.next_n, "img": c})
            model.next_n += 1
        t.insert([{"n": r["n"], "img": Image.new("RGB", (4, 4), COLOURS[r["img"]])}
                  for r in new])
        model.rows += new
    elif kind == "update":
        strings = [c for c in model.visible if c.startswith("s")]
        if not strings:
            return
        t.update({strings[-1]: op[2]}, where=t.n % 3 == op[1])
        for r in model.rows:
            if r["n"] % 3 == op[1]:
                r[strings[-1]] = op[2]
    elif kind == "image":
        t.update({"img": Image.new("RGB", (4, 4), COLOURS[op[2]])}, where=t.n % 3 == op[1])
        for r in model.rows:
            if r["n"] % 3 == op[1]:
                r["img"] = op[2]
    elif kind == "delete":
        t.delete(where=t.n % 3 == op[1])
        model.rows = [r for r in model.rows if r["n"] % 3 != op[1]]
    elif kind == "add":
        name = f"s{model.added}"
        model.added += 1
        t.add_column(**{name: pxl.String})
        model.visible.append(name)
    elif kind == "drop":
        strings = [c for c in model.visible if c.startswith("s")]
        if not strings:
            return
        name = strings[op[1] % len(strings)]
        t.drop_column(name)
        model.visible.remove(name)


def _revert(t: pxl.Table, model: Model, op: tuple) -> int | None:
    """Revert; returns the version the model expects to be restored (None: an error)."""
    if op[0] == "revert_to":
        kept = sorted(model.states)
        target = kept[op[1] % len(kept)]
        t.revert(to=target)
        return target
    target = model.state_of[model.latest] - 1
    if target < 0 or target not in model.states:
        try:
            t.revert()
        except VersionError:
            return None
        raise AssertionError(f"revert() to {target} should have been refused")
    t.revert()
    return target


def _check_versions(db: pxl.Connection, t: pxl.Table, model: Model,
                    colour_of: dict[str, int]) -> None:
    kept = [v["version"] for v in t.get_versions()]
    assert kept == sorted(model.states, reverse=True)[:len(kept)], (kept, sorted(model.states))
    for v in list(model.states):
        if v not in kept:
            del model.states[v]
    assert len(kept) <= KEEP
    for v in kept:
        got = _read(db.get_table(f"t:{v}"), colour_of)
        assert got == (model.states[v][0], model.content(model.states[v])), v
    assert _read(t, colour_of) == (model.visible, model.content(model.now()))
    report = db.check()
    assert report.ok, str(report)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(OPS, min_size=1, max_size=16))
def test_random_changes_and_reverts_match_the_model(ops):
    with tempfile.TemporaryDirectory() as d:
        db = pxl.connect(Path(d) / "m.pxl", config={"version_retention_days": 30})
        try:
            t = db.create_table("t", {"n": pxl.Int, "img": pxl.Image},
                                version_retention_count=KEEP)
            model = Model()
            colour_of: dict[str, int] = {}
            for op in ops:
                target = None
                if op[0].startswith("revert"):
                    target = _revert(t, model, op)
                    if target is not None:
                        model.visible, model.rows = copy.deepcopy(model.states[target])
                else:
                    _apply(t, model, op)
                    _learn_colours(t, model, colour_of)
                latest = t.get_versions(1)[0]["version"]
                if latest != model.latest:
                    assert latest == model.latest + 1, (op, latest, model.latest)
                    model.latest = latest
                    model.states[latest] = model.now()
                    model.state_of[latest] = model.state_of[target] if target is not None \
                        else latest
                else:  # nothing changed: no version
                    assert model.content(model.now()) == model.content(model.states[latest])
                _check_versions(db, t, model, colour_of)
        finally:
            db.close()
