"""Names: arbitrary text (and non-text) as table, directory and column names.

Whatever a caller passes, a name is accepted exactly when it is a valid identifier path (the
oracle in hostile_inputs.py), and a refused name raises SchemaError/NotFoundError and changes
nothing in the catalog. The catalog's ordinary name errors are in test_catalog.py.
"""

from __future__ import annotations

import pytest
from hostile_inputs import HYP, INJECTIONS, valid_column, valid_path
from hypothesis import assume, example, given
from hypothesis import strategies as st

import pxlite as pxl
from pxlite.errors import NotFoundError, SchemaError


def _snapshot(db: pxl.Connection) -> tuple:
    """Everything the catalog holds, to compare before/after a refused call."""
    q = db.db.query
    return (q("SELECT * FROM px_dirs ORDER BY id"), q("SELECT * FROM px_tables ORDER BY id"),
            q("SELECT * FROM px_columns ORDER BY table_id, col_id"),
            q("SELECT * FROM px_media_locations ORDER BY 1, 2"),
            q("SELECT * FROM px_pending_deletes ORDER BY 1"),
            q("SELECT type, name, sql FROM sqlite_schema ORDER BY name"))



NAMES = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,6})?", fullmatch=True),
    st.sampled_from([*INJECTIONS, "", " ", ".", "a.", ".a", "a..b", "é", "a\x00b", "a\n", "1a",
                     "a-b", "a b", "ａ", "K", "ǅ", "ı",  # noqa: RUF001 (look-alikes on purpose)
                     "name", "select", "path"]),
    st.integers(), st.none(), st.binary(max_size=6), st.floats(),
)


def test_table_and_dir_names_accepted_only_when_valid(db):
    db.create_dir("known")
    base = _snapshot(db)
    seen = {"accepted": 0, "refused": 0}

    @HYP
    @given(name=NAMES, as_dir=st.booleans())
    @example(name="known.x'); DROP TABLE px_tables;--", as_dir=False)
    @example(name="known.sub", as_dir=True)
    def check(name, as_dir):
        before = _snapshot(db)
        try:
            if as_dir:
                db.create_dir(name)
            else:
                t = db.create_table(name, {"x": pxl.Int})
        except SchemaError as e:
            assert not valid_path(name), f"{name!r} is a valid path but was refused: {e}"
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        except NotFoundError:  # a valid dotted path whose parent directory does not exist
            assert valid_path(name) and "." in name
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        assert valid_path(name), f"{name!r} was accepted"
        seen["accepted"] += 1
        if as_dir:
            assert name in db.list_dirs()
            db.drop_dir(name)
        else:
            assert name in db.list_tables()
            again = db.get_table(name)
            assert again._path == name and f"Table '{name}'" in repr(again)
            t.insert(x=7)
            assert again.collect()["x"] == [7]
            db.drop_table(name)
        assert _snapshot(db) == before

    check()
    assert _snapshot(db) == base
    # get/drop of arbitrary names never fail with anything but SchemaError/NotFoundError
    for name in [*INJECTIONS, "", "a..b", 5, None]:
        with pytest.raises((SchemaError, NotFoundError)):
            db.get_table(name)
        with pytest.raises((SchemaError, NotFoundError)):
            db.drop_table(name)
    print(f"table/dir names: {seen}")


def test_column_names_accepted_only_when_valid(db):
    base = _snapshot(db)
    seen = {"accepted": 0, "refused": 0}

    @HYP
    @given(name=NAMES, other=NAMES)
    def check(name, other):
        assume(name != "k")  # {"k": ..., "k": ...} is one dict key
        before = _snapshot(db)
        try:
            t = db.create_table("t", {name: pxl.String, "k": pxl.Int})
        except SchemaError as e:
            assert not valid_column(name) or name == "k", f"{name!r} refused: {e}"
            assert _snapshot(db) == before
            seen["refused"] += 1
            return
        except pxl.AlreadyExistsError:
            pytest.fail("leftover table")
        assert valid_column(name)
        seen["accepted"] += 1
        try:
            t.insert([{name: name, "k": 1}])
            assert t.collect().to_dicts() == [{name: name, "k": 1}]
            assert t[name].col.name == name and name in repr(t)
            assert t.select(**{"o" + name: t[name]}).collect()["o" + name] == [name]
            mid = _snapshot(db)
            try:
                t.add_column(**{other: pxl.Int}) if isinstance(other, str) else \
                    t.rename_column(name, other)
            except (SchemaError, pxl.AlreadyExistsError):
                assert not valid_column(other) or other in (name, "k")
                assert _snapshot(db) == mid
            else:
                assert valid_column(other)
        finally:
            db.drop_table("t")
        assert _snapshot(db) == before

    check()
    assert _snapshot(db) == base
    print(f"column names: {seen}")
