"""A mistyped table, directory or column name: the NotFoundError suggests the close names."""

from __future__ import annotations

import pytest

import pxlite as pxl
from pxlite.catalog import did_you_mean
from pxlite.errors import NotFoundError


@pytest.fixture
def media(db):
    db.create_dir("demo")
    return db.create_table("demo.media", {"image": pxl.Image, "label": pxl.String})


def test_mistyped_table(db, media):
    with pytest.raises(NotFoundError, match=r"'demo\.meda' does not exist; "
                                            r"did you mean 'demo\.media'\? list_tables\(\)"):
        db.get_table("demo.meda")
    # the right name in the wrong directory (here: none)
    with pytest.raises(NotFoundError, match=r"did you mean 'demo\.media'\?"):
        db.get_table("media")


def test_mistyped_column(media):
    with pytest.raises(NotFoundError, match=r"no column 'imgae'; did you mean 'image'\? "
                                            r"its columns: image, label"):
        media.select(media["imgae"])
    with pytest.raises(AttributeError, match=r"did you mean 'label'\?"):
        _ = media.lable


def test_mistyped_directory(db, media):
    with pytest.raises(NotFoundError, match=r"directory 'dmeo' does not exist .*"
                                            r"did you mean 'demo'\? create it first"):
        db.create_table("dmeo.t", {"a": pxl.Int})


def test_no_hint_when_nothing_is_close(db, media):
    with pytest.raises(NotFoundError) as e:
        db.get_table("zzzz")
    assert "did you mean" not in str(e.value)
    assert did_you_mean("x" * 1_000_000, ["x"]) == ""  # a huge name costs nothing
    assert did_you_mean("Image", ["image", "label"]) == "did you mean 'image'? "
