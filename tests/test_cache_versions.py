"""Cached copies of files a user references remotely: a hit costs no network, the version is
recorded at download, and prefetch(refresh=True) notices a changed object."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import pxlite as pxl
from pxlite import storage


def _jpeg(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("storage_target", ["s3", "gcs", "azure"], indirect=True)
def test_changed_remote_object_is_refreshed(storage_target, tmp_path, monkeypatch):
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl", config=target.config)
    backend = storage.get_backend(target.prefix, target.settings)
    uri = storage.join(target.prefix, "user/photo.jpg")  # a user's object, not pxlite's
    backend.put_bytes(_jpeg("red"), uri)
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=uri)
    assert t.prefetch() == 1
    assert t.collect()[0]["image"].getpixel((0, 0))[0] > 200  # red

    backend.put_bytes(_jpeg("blue"), uri)  # the object changes behind pxlite's back
    calls = []
    real_get = type(backend).get_file
    monkeypatch.setattr(type(backend), "get_file",
                        lambda self, u, p: (calls.append(u), real_get(self, u, p))[1])
    assert t.collect()[0]["image"].getpixel((0, 0))[0] > 200  # a hit: still the cached copy
    assert calls == []                                          # ... and no download
    t.prefetch(refresh=True)
    assert calls == [uri]                                       # the changed object, once
    assert t.collect()[0]["image"].getpixel((0, 0))[2] > 200  # blue now
    t.prefetch(refresh=True)
    assert calls == [uri]                                       # unchanged: nothing downloaded
    db.close()


@pytest.mark.parametrize("storage_target", ["s3", "r2", "b2", "tigris", "gcs", "azure"],
                         indirect=True)
def test_pxlite_files_are_never_revalidated(tmp_path, monkeypatch, storage_target):
    """Content-addressed files cannot change: refresh does not even ask the server."""
    target = storage_target
    db = pxl.connect(tmp_path / "x.pxl",
                     config={**target.config, "input_media_dest": target.prefix})
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=Image.new("RGB", (8, 8), "green"))
    t.prefetch()
    backend = storage.get_backend(target.prefix, target.settings)
    monkeypatch.setattr(type(backend), "stat", lambda self, u: pytest.fail("stat was called"))
    t.prefetch(refresh=True)
    db.close()
