"""Primary keys and updates by key (SPEC 12): create_table(primary_key=...) enforced by SQLite,
insert of an existing key names it, batch_update(rows, if_not_exists=...) recomputes
dependents, imports upsert with on_conflict=, and a version-2 catalog is migrated."""

from __future__ import annotations

import datetime as dt
import sqlite3

import apsw
import pytest

import pxlite as pxl
from pxlite import catalog
from pxlite.errors import AlreadyExistsError, NotFoundError, SchemaError


@pytest.fixture
def people(db):
    t = db.create_table("people", {"id": pxl.Int, "label": pxl.String, "n": pxl.Int},
                        primary_key="id")
    t.insert([{"id": i, "label": f"p{i}", "n": i} for i in range(3)])
    return t


def test_primary_key_is_recorded_and_enforced_by_sqlite(db, people):
    meta = catalog.load_table(db.db, "people")
    assert [c.name for c in meta.key_columns] == ["id"]
    assert repr(meta.column("id").type) == "Required[Int]"  # a key is never None
    # SQLite itself refuses a second row with the key, whoever writes it
    with pytest.raises(apsw.ConstraintError), db.db.transaction():
        db.db.execute(f"INSERT INTO {meta.sql} (_rowid, {meta.column('id').sql}) VALUES (99, 1)")
    with pxl.connect(db.path) as again:  # recorded in the catalog
        assert catalog.load_table(again.db, "people").primary_key == meta.primary_key


def test_insert_of_an_existing_key_names_it(people):
    with pytest.raises(AlreadyExistsError, match=r"row 1: a row with primary key id=2 already "
                                                 r"exists in table 'people'.*batch_update"):
        people.insert([{"id": 7, "label": "new"}, {"id": 2, "label": "dup"}])
    assert people.count() == 3  # nothing of the call was inserted
    with pytest.raises(AlreadyExistsError, match="id=8"):
        people.insert([{"id": 8}, {"id": 8}])  # repeated within the call
    with pytest.raises(SchemaError, match="column 'id' of 'people' is Required"):
        people.insert([{"label": "no key"}])
    assert people.count() == 3


def test_update_to_an_existing_key_names_it(people):
    """update() giving a row a key another row has is an AlreadyExistsError naming the row and
    the key, and changes nothing (not a raw apsw.ConstraintError)."""
    with pytest.raises(AlreadyExistsError, match=r"row 2 would get primary key id=0"):
        people.update({"id": 0}, where=people.label == "p1")
    with pytest.raises(AlreadyExistsError, match="primary key"):
        people.update({"id": 5})  # every row to one key
    assert sorted(r["id"] for r in people.select(people.id).collect()) == [0, 1, 2]
    people.update({"id": 10}, where=people.id == 2)  # a free key is fine
    assert sorted(r["id"] for r in people.select(people.id).collect()) == [0, 1, 10]


def test_insert_with_media_of_an_existing_key(db, jpegs):
    t = db.create_table("m", {"k": pxl.String, "image": pxl.Image}, primary_key=["k"])
    t.add_computed_column(w=t.image.width)
    t.insert(k="a", image=jpegs[0])
    with pytest.raises(AlreadyExistsError, match="k='a'"):
        t.insert([{"k": "b", "image": jpegs[1]}, {"k": "a", "image": jpegs[2]}])
    assert t.count() == 1


def test_composite_key(db):
    t = db.create_table("c", {"city": pxl.String, "year": pxl.Int, "when": pxl.Timestamp,
                              "v": pxl.Float}, primary_key=["city", "year"])
    t.insert([{"city": "Oslo", "year": 2020, "v": 1.0}, {"city": "Oslo", "year": 2021}])
    with pytest.raises(AlreadyExistsError, match=r"\(city='Oslo', year=2020\)"):
        t.insert(city="Oslo", year=2020)
    t.batch_update([{"city": "Oslo", "year": 2021, "v": 2.5,
                     "when": dt.datetime(2021, 5, 1, tzinfo=dt.UTC)}])
    row = t.where(t.year == 2021).collect()[0]
    assert row["v"] == 2.5 and row["when"] == dt.datetime(2021, 5, 1, tzinfo=dt.UTC)


def test_bad_primary_keys(db):
    with pytest.raises(NotFoundError, match="primary key column 'nope'"):
        db.create_table("t", {"id": pxl.Int}, primary_key="nope")
    with pytest.raises(SchemaError, match="must be one of Int, String"):
        db.create_table("t", {"img": pxl.Image}, primary_key="img")
    with pytest.raises(SchemaError, match="primary_key takes a column name"):
        db.create_table("t", {"id": pxl.Int}, primary_key=5)
    with pytest.raises(SchemaError, match="names a column twice"):
        db.create_table("t", {"id": pxl.Int}, primary_key=["id", "id"])
    assert db.list_tables() == []


def test_key_columns_cannot_be_dropped(db, people):
    with pytest.raises(SchemaError, match="part of the table's primary key"):
        people.drop_column("id")
    people.drop_column("n")
    people.rename_column("id", "ident")  # recorded by column id: still the key
    with pytest.raises(AlreadyExistsError, match="ident=1"):
        people.insert(ident=1)


def test_batch_update(people):
    status = people.batch_update([{"id": 1, "label": "one"}, {"id": 2, "n": 20}])
    assert str(status).startswith("Updated 2 rows with 0 errors")
    rows = {r["id"]: r for r in people.collect()}
    assert rows[1]["label"] == "one" and rows[1]["n"] == 1   # columns not given stay
    assert rows[2]["n"] == 20 and rows[2]["label"] == "p2"
    with pytest.raises(NotFoundError, match=r"row 1: no row of 'people' has primary key id=9"):
        people.batch_update([{"id": 0, "label": "z"}, {"id": 9, "label": "x"}])
    assert people.where(people.id == 0).collect()[0]["label"] == "p0"  # all or nothing
    status = people.batch_update([{"id": 0, "label": "zero"}, {"id": 9, "label": "x"}],
                                 if_not_exists="ignore")
    assert status.num_rows == 1 and people.count() == 3
    status = people.batch_update([{"id": 9, "label": "nine"}, {"id": 0, "n": 100}],
                                 if_not_exists="insert")
    assert str(status).startswith("Updated or inserted 2 rows")
    rows = {r["id"]: r for r in people.collect()}
    assert rows[9]["label"] == "nine" and rows[0] == {"id": 0, "label": "zero", "n": 100}
    # a key given twice in one call: the later values win
    people.batch_update([{"id": 1, "n": 5}, {"id": 1, "n": 6, "label": "uno"}])
    assert people.where(people.id == 1).collect()[0] == {"id": 1, "label": "uno", "n": 6}


def test_batch_update_refusals(db, people):
    with pytest.raises(SchemaError, match="if_not_exists must be one of"):
        people.batch_update([{"id": 1}], if_not_exists="upsert")
    with pytest.raises(SchemaError, match=r"row 0: the primary key column\(s\) \['id'\]"):
        people.batch_update([{"label": "no key"}])
    with pytest.raises(SchemaError, match="not columns of the table"):
        people.batch_update([{"id": 1, "nope": 1}])
    with pytest.raises(SchemaError, match="expected a dict"):
        people.batch_update([[1, "x"]])
    with pytest.raises(SchemaError, match="primary key column 'id'"):
        people.batch_update([{"id": "one", "label": "x"}])
    with pytest.raises(pxl.ComputeError, match="column 'n'"):
        people.batch_update([{"id": 1, "n": "not a number"}])
    people.batch_update([{"id": 1, "n": "bad"}], on_error="ignore")
    assert people.where(people.id == 1).select(people.n.errortype).collect()[0] == {
        "n_errortype": "SchemaError"}
    plain = db.create_table("plain", {"x": pxl.Int})
    with pytest.raises(SchemaError, match="has no primary key"):
        plain.batch_update([{"x": 1}])


def test_batch_update_recomputes_dependents_and_releases_files(db, jpegs, pngs):
    t = db.create_table("m", {"k": pxl.Int, "image": pxl.Image, "label": pxl.String},
                        primary_key="k")
    t.add_computed_column(w=t.image.width)
    t.add_computed_column(rot=t.image.rotate(90))
    t.insert([{"k": 1, "image": jpegs[0], "label": "a"}, {"k": 2, "image": jpegs[1]}])
    before = t.where(t.k == 1).select(t.rot.fileurl).collect()[0]["rot_fileurl"]
    t.batch_update([{"k": 1, "image": pngs[0]}])
    row = t.where(t.k == 1).select(t.w, t.rot, t.rot.fileurl).collect()[0]
    assert row["w"] == 40 and row["rot"].size == (40, 30)  # from the 40x30 png now
    assert row["rot_fileurl"] != before
    assert pxl.check(db=db).ok  # the superseded rotated file was removed after the commit
    assert t.where(t.k == 2).select(t.w).collect()[0]["w"] == 64  # others untouched


def test_import_upserts_with_on_conflict(db, tmp_path):
    src = tmp_path / "p.csv"
    src.write_text("id,label,n\n1,a,10\n2,b,20\n")
    t = pxl.io.import_csv("p", src, primary_key="id", db=db)
    t.add_computed_column(double=t.n * 2)
    src.write_text("id,label,n\n2,B,21\n3,c,30\n")
    with pytest.raises(AlreadyExistsError, match=r"row 1 \(line 2\).*id=2.*on_conflict"):
        pxl.io.import_csv(t, src)
    assert t.count() == 2  # nothing of the failed import
    status = pxl.io.import_csv(t, src, on_conflict="ignore")
    assert status is t and t.count() == 3
    assert t.where(t.id == 2).collect()[0]["label"] == "b"  # kept
    src.write_text("id,label,n\n2,B,21\n3,C,31\n4,d,40\n")
    pxl.io.import_csv(t, src, on_conflict="update")
    rows = {r["id"]: (r["label"], r["n"], r["double"]) for r in t.collect()}
    assert rows == {1: ("a", 10, 20), 2: ("B", 21, 42), 3: ("C", 31, 62), 4: ("d", 40, 80)}
    pxl.io.import_csv(t, src, on_conflict="update")  # again: the same table
    assert t.count() == 4
    plain = db.create_table("plain", {"id": pxl.Int, "label": pxl.String, "n": pxl.Int})
    with pytest.raises(SchemaError, match="has none"):
        pxl.io.import_csv(plain, src, on_conflict="update")
    with pytest.raises(SchemaError, match="on_conflict must be one of"):
        pxl.io.import_csv(t, src, on_conflict="merge")


def test_version_2_catalog_is_migrated(tmp_path):
    path = tmp_path / "old.pxl"
    with pxl.connect(path) as db:
        db.create_table("t", {"x": pxl.Int}).insert(x=1)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE px_tables DROP COLUMN primary_key")  # what schema 2 had
    con.execute("DROP TABLE px_table_uids")
    con.execute("DROP TABLE px_writers")
    con.execute("DROP TABLE px_indexes")  # schema 5's (its params: schema 7's)
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with pxl.connect(path) as db:
        assert db.db.migrated_from == 2
        t = db.get_table("t")
        meta = catalog.load_table(db.db, "t")
        assert t.count() == 1 and meta.primary_key == () and meta.uids == (meta.uid,)
        k = db.create_table("k", {"id": pxl.Int}, primary_key="id")
        k.insert(id=1)
        with pytest.raises(AlreadyExistsError):
            k.insert(id=1)
