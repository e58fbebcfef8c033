"""pxlite.functions.clip without a model download: its definition, and its errors when open_clip
is absent or the weights are not on this machine (open_clip is not a test dependency: PyTorch
is a multi-GB download; a fake module stands in to inject open_clip's own failure)."""

from __future__ import annotations

import sys
import types

import pytest
from PIL import Image

import pxlite as pxl
from pxlite.errors import ComputeError, ConfigError, NotFoundError
from pxlite.functions import clip


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(clip, "_loaded", {})
    monkeypatch.delenv("PXLITE_CLIP_MODEL", raising=False)


def test_the_functions_and_the_pair():
    assert repr(clip.embed_text.return_type) == "Array[(512,), float32]"
    assert repr(clip.embed_image.return_type) == "Array[(512,), float32]"
    assert clip.clip.string_embed is clip.embed_text and clip.clip.image_embed is clip.embed_image
    assert clip.model_spec() == ("ViT-B-32", "openai")


def test_without_open_clip_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip fails
    with pytest.raises(ConfigError, match=r"pip install 'pxlite\[clip\]'"):
        clip.embed_text("a red car")


def test_a_weights_file_that_is_not_there(monkeypatch, tmp_path):
    monkeypatch.setenv("PXLITE_CLIP_MODEL", f"ViT-B-32:{tmp_path / 'nope.bin'}")
    with pytest.raises(NotFoundError, match=r"not on this machine \(no file at .*nope.bin\); "
                                            "pxlite never downloads a model"):
        clip.embed_image(Image.new("RGB", (4, 4)))


def test_weights_not_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    seen = {}

    def create(arch, pretrained):
        import os

        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        raise RuntimeError("We have no connection or you passed local_files_only")

    fake_torch = types.ModuleType("torch")
    fake_clip = types.ModuleType("open_clip")
    fake_clip.create_model_and_transforms = create  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "open_clip", fake_clip)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    with pytest.raises(NotFoundError, match=rf"ViT-B-32:openai are not on this machine.*"
                                            rf"{tmp_path / 'hf' / 'hub'}.*PXLITE_CLIP_MODEL="):
        clip.embed_text("x")
    assert seen["offline"] == "1"  # asked never to download


def test_a_bad_model_setting(monkeypatch):
    monkeypatch.setenv("PXLITE_CLIP_MODEL", "ViT-B-32")
    with pytest.raises(ConfigError, match="not 'ARCH:PRETRAINED'"):
        clip.model_spec()


def test_an_index_with_missing_weights_fails_naming_them(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PXLITE_CLIP_MODEL", f"ViT-B-32:{tmp_path / 'gone.bin'}")
    t = db.create_table("t", {"image": pxl.Image})
    t.insert(image=Image.new("RGB", (4, 4)))
    t.add_embedding_index("image", embedding=clip.clip)  # the build keeps the row's error
    msg = t.select(t.image).collect()  # the table works
    assert len(msg) == 1
    with pytest.raises((NotFoundError, ComputeError), match=r"gone.bin"):
        t.insert(image=Image.new("RGB", (4, 4)))
