"""Embedding indexes and versions: a revert keeps searches right; an index follows its vectors'
column through reverts (gone before it was added, back after its drop was undone)."""

from __future__ import annotations

import pytest
from PIL import Image
from udfs.embed import embed_image, embed_text

import pxlite as pxl
from pxlite.errors import NotFoundError

COLOURS = {"red": (250, 10, 10), "green": (0, 150, 0), "blue": (0, 0, 250),
           "orange": (255, 140, 0)}


@pytest.fixture
def db(tmp_path):
    conn = pxl.connect(tmp_path / "v.pxl", config={"version_retention_days": 30})
    yield conn
    conn.close()


@pytest.fixture
def t(db):
    t = db.create_table("t", {"img": pxl.Image, "label": pxl.String})
    t.insert([{"img": Image.new("RGB", (8, 8), c), "label": n} for n, c in COLOURS.items()])
    return t


def _top(t, word="red", n=2):
    sim = t.img.similarity(string=word)
    return t.order_by(sim, asc=False).limit(n).select(t.label).collect()["label"]


def test_reverted_rows_are_searched_again(t):
    t.add_embedding_index("img", image_embed=embed_image, string_embed=embed_text)
    assert _top(t) == ["red", "orange"]          # the vectors are in memory now
    t.delete(where=t.label == "red")
    assert _top(t) == ["orange", "green"]
    t.revert()
    assert _top(t) == ["red", "orange"]          # the revert's rows reached the vectors
    t.update({"img": Image.new("RGB", (8, 8), (0, 0, 255))}, where=t.label == "red")
    assert _top(t) == ["orange", "green"]
    t.revert()
    assert _top(t) == ["red", "orange"]


def test_an_index_follows_its_column_through_reverts(t, db):
    before = t.get_versions()[0]["version"]
    t.add_embedding_index("img", idx_name="colours", image_embed=embed_image,
                          string_embed=embed_text)
    assert _top(t) == ["red", "orange"]
    with_index = t.get_versions()[0]["version"]
    t.revert(to=before)                           # before the index existed: no index
    assert t.get_metadata()["indexes"] == {}
    with pytest.raises(NotFoundError, match="no embedding index"):
        _top(t)
    t.insert(img=Image.new("RGB", (8, 8), (240, 0, 0)), label="red2")  # no vector computed
    t.revert(to=with_index)                       # forward again: the index is back
    assert list(t.get_metadata()["indexes"]) == ["colours"]
    assert _top(t) == ["red", "orange"]
    t.drop_embedding_index(idx_name="colours")
    assert t.get_metadata()["indexes"] == {}
    t.revert()                                    # undo the drop: the index is back, current
    assert list(t.get_metadata()["indexes"]) == ["colours"]
    t.insert(img=Image.new("RGB", (8, 8), (255, 0, 0)), label="red3")
    assert _top(t, n=3) == ["red3", "red", "orange"]
    t.delete(where=t.label == "red3")
    assert _top(t) == ["red", "orange"]


def test_a_name_reused_after_a_revert(t):
    before = t.get_versions()[0]["version"]
    t.add_embedding_index("img", idx_name="e", image_embed=embed_image, string_embed=embed_text)
    t.revert(to=before)
    t.add_embedding_index("img", idx_name="e", image_embed=embed_image, metric="l2",
                          string_embed=embed_text)
    assert t.get_metadata()["indexes"]["e"]["parameters"]["metric"] == "l2"
    sim = t.img.similarity(string="blue")
    assert t.order_by(sim).limit(1).select(t.label).collect()["label"] == ["blue"]


def test_a_version_is_searched_as_it_was(t, db):
    t.add_embedding_index("img", image_embed=embed_image, string_embed=embed_text)
    v = t.get_versions()[0]["version"]
    t.delete(where=t.label == "red")
    assert _top(t) == ["orange", "green"]
    old = db.get_table(f"t:{v}")
    assert _top(old) == ["red", "orange"]         # time travel: that version's vectors
    assert _top(t) == ["orange", "green"]         # and the live table's are its own
