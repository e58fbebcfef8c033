"""Bounded history (issue 20, point 4): versions older than ``version_retention_days`` (30 by
default) and beyond ``version_retention_count`` are pruned at the end of writes and by
``check(fix=True)``, per database or per table; pruning really frees rows, columns and files."""

from __future__ import annotations

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import catalog, config
from pxlite.errors import ConfigError, SchemaError


def _versions(t) -> list[int]:
    return [v["version"] for v in t.get_versions()]


def _age(db, table: str, days: float) -> None:
    """Make every version of ``table`` ``days`` older (as if made then)."""
    tid = catalog.load_table(db.db, table).id
    with db.db.transaction():
        db.db.execute("UPDATE px_versions SET created_at = created_at - ? WHERE table_id = ?",
                      (days * 86400, tid))


def _log_rows(db, table: str) -> int:
    return db.db.query(f"SELECT count(*) FROM {catalog.load_table(db.db, table).log_sql}")[0][0]


def test_the_default_keeps_30_days(tmp_path):
    assert config.KEYS["version_retention_days"][1] == 30.0  # (the tests' environment: 0)
    assert config.KEYS["version_retention_count"][1] is None
    db = pxl.connect(tmp_path / "d.pxl", config={"version_retention_days": 30})
    t = db.create_table("t", {"n": pxl.Int})
    for i in range(3):
        t.insert([{"n": i}])
    _age(db, "t", 29)
    t.insert([{"n": 3}])
    assert _versions(t) == [4, 3, 2, 1, 0]
    _age(db, "t", 2)  # 0..3 are 31 days old now, 4 two days
    t.insert([{"n": 4}])
    # 3 was current 30 days ago: kept, so every change of the last 30 days can be undone
    assert _versions(t) == [5, 4, 3]
    t.revert(to=3)
    assert sorted(t.collect()["n"]) == [0, 1, 2]
    db.close()


def test_a_count_bounds_the_history(db):
    pxl.configure(version_retention_days=30, version_retention_count=3)
    t = db.create_table("t", {"n": pxl.Int})
    for i in range(6):
        t.insert([{"n": i}])
    assert _versions(t) == [6, 5, 4]
    assert db.get_table("t:4").count() == 4


def test_a_table_has_its_own_retention(db):
    pxl.configure(version_retention_days=30)
    keep = db.create_table("keep", {"n": pxl.Int}, version_retention_count=2)
    other = db.create_table("other", {"n": pxl.Int})
    for i in range(4):
        keep.insert([{"n": i}])
        other.insert([{"n": i}])
    assert _versions(keep) == [4, 3] and _versions(other) == [4, 3, 2, 1, 0]
    other.set_version_retention(days=0)
    assert _versions(other) == [4]
    keep.set_version_retention()  # back to the database's setting: nothing pruned comes back
    keep.insert([{"n": 9}])
    assert _versions(keep) == [5, 4, 3]
    with pytest.raises(SchemaError, match="number of days >= 0"):
        keep.set_version_retention(days=-1)
    with pytest.raises(SchemaError, match="whole number >= 1"):
        keep.set_version_retention(count=0)


def test_pruning_frees_undo_log_rows_and_files(db):
    """Retention 30 days, then the versions age: the rows of the undo log go, and the files
    only they named (deleted rows, replaced images) are deleted through the delete gate."""
    pxl.configure(version_retention_days=30)
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), (20 * i, 0, 0)), "n": i} for i in range(10)])
    t.delete(where=t.n >= 5)
    t.update({"img": Image.new("RGB", (8, 8), "white")}, where=t.n == 0)
    files = list(db.media_dir.rglob("*.jpg"))
    assert len(files) == 11 and _log_rows(db, "t") == 6
    assert db.check().ok
    _age(db, "t", 31)
    report = db.check(fix=True)  # no write needed: check(fix=True) prunes too
    assert report.ok, str(report)
    assert _versions(t) == [3] and _log_rows(db, "t") == 0
    assert len(list(db.media_dir.rglob("*.jpg"))) == 5  # the 5 rows' files, no more
    assert db.check().ok


def test_a_dropped_column_goes_with_the_last_version_naming_it(db):
    pxl.configure(version_retention_days=30)
    t = db.create_table("t", {"img": pxl.Image, "n": pxl.Int})
    t.insert([{"img": Image.new("RGB", (8, 8), "red"), "n": 1}])
    t.add_computed_column(rot=t.img.rotate(90))
    rot = catalog.load_table(db.db, "t").column("rot")
    t.drop_column("rot")
    assert rot.sql in catalog.sql_columns(db.db, "t_1")  # hidden: versions 2 and 3 name it
    assert len(list(db.media_dir.rglob("*.jpg"))) == 2
    t.set_version_retention(count=2)  # keeps 3 (after the drop) and... 2, which names it
    assert rot.sql in catalog.sql_columns(db.db, "t_1")
    t.set_version_retention(count=1)
    assert rot.sql not in catalog.sql_columns(db.db, "t_1")
    assert rot.sql not in catalog.sql_columns(db.db, "h_1")
    assert len(list(db.media_dir.rglob("*.jpg"))) == 1
    assert db.check().ok


@pytest.mark.parametrize("key,value,match", [
    ("version_retention_days", -1, "number of days >= 0"),
    ("version_retention_days", "soon", "expected a number of days"),
    ("version_retention_count", 0, "whole number >= 1"),
])
def test_bad_retention_settings_are_refused(key, value, match):
    with pytest.raises(ConfigError, match=match):
        pxl.configure(**{key: value})


def test_retention_comes_from_the_environment_too(tmp_path, monkeypatch):
    monkeypatch.setenv("PXLITE_VERSION_RETENTION_COUNT", "2")
    monkeypatch.setenv("PXLITE_VERSION_RETENTION_DAYS", "30")
    db = pxl.connect(tmp_path / "e.pxl")
    t = db.create_table("t", {"n": pxl.Int})
    for i in range(4):
        t.insert([{"n": i}])
    assert _versions(t) == [4, 3]
    db.close()
