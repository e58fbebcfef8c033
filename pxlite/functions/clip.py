"""CLIP embeddings: images and text in one vector space, for ``add_embedding_index``.

    from pxlite.functions import clip
    t.add_embedding_index(t.image, embedding=clip.clip)      # both modalities, one model
    sim = t.image.similarity(string="a red car")             # text finds images

``embed_text(text)`` and ``embed_image(image)`` each return a 512-float vector
(``pxl.Array[(512,), pxl.Float]``) from the same CLIP model, computed with open_clip
(``pip install 'pxlite[clip]'``: open-clip-torch and PyTorch, a large download). ``clip.clip``
gives both to an index at once (its ``string_embed`` and ``image_embed``).

pxlite never downloads a model. The model is ``PXLITE_CLIP_MODEL`` (``'ARCH:PRETRAINED'``,
default ``'ViT-B-32:openai'``): PRETRAINED is a weights file on this machine
(``'ViT-B-32:/models/clip.bin'``) or an open_clip tag whose weights are already in the usual
cache (the Hugging Face cache, ``~/.cache/huggingface``, where ``open_clip`` put them the
first time it fetched them). Weights that are not there are an error saying where pxlite
looked and how to get them, before anything is computed. The model must give 512 numbers
(ViT-B-32, ViT-B-16 and the like). It is loaded once per process, on the CPU (or CUDA when
PyTorch sees one).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, NamedTuple

import PIL.Image

from ..errors import ConfigError, NotFoundError
from ..types import Array, Float
from ..udf import Function, udf

DIM = 512
DEFAULT_MODEL = "ViT-B-32:openai"

#: The functions' result type (a 512-float vector).
Vector = Array[(DIM,), Float]

_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def model_spec() -> tuple[str, str]:
    """The model to use: ``(architecture, pretrained)`` from ``PXLITE_CLIP_MODEL``."""
    spec = os.environ.get("PXLITE_CLIP_MODEL", "").strip() or DEFAULT_MODEL
    arch, sep, pretrained = spec.partition(":")
    if not sep or not arch or not pretrained:
        raise ConfigError(f"PXLITE_CLIP_MODEL={spec!r} is not 'ARCH:PRETRAINED', e.g. "
                          "'ViT-B-32:openai' or 'ViT-B-32:/models/clip.bin'")
    return arch, pretrained


def _is_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors"))


def hub_cache() -> Path:
    """Where the Hugging Face cache is (``HF_HUB_CACHE``, ``HF_HOME``, or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _missing(arch: str, pretrained: str, why: str) -> NotFoundError:
    return NotFoundError(
        f"the CLIP weights {arch}:{pretrained} are not on this machine ({why}); pxlite never "
        f"downloads a model. Looked in the Hugging Face cache at {hub_cache()}. Fetch them "
        f"once where a network is allowed (python -c \"import open_clip; "
        f"open_clip.create_model_and_transforms('{arch}', pretrained='{pretrained}')\") and "
        "copy the cache here, or point PXLITE_CLIP_MODEL at a weights file: "
        f"PXLITE_CLIP_MODEL='{arch}:/path/to/weights.bin'")


def _load() -> Any:
    """The model, its image transform and tokenizer (loaded once per process)."""
    arch, pretrained = model_spec()
    key = f"{arch}:{pretrained}"
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if _is_path(pretrained) and not Path(pretrained).expanduser().is_file():
            raise _missing(arch, pretrained, f"no file at {pretrained}")
        try:
            import open_clip  # heavy (PyTorch): only when an embedding is computed
            import torch
        except ImportError as e:
            raise ConfigError(f"CLIP embeddings need open_clip and PyTorch ({e}): pip install "
                              "'pxlite[clip]'") from e
        offline = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        os.environ.update({k: "1" for k in offline})  # a cache miss fails: never a download
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=str(Path(pretrained).expanduser()) if _is_path(pretrained)
                else pretrained)
        except Exception as e:  # open_clip's own errors for a missing file / offline cache
            raise _missing(arch, pretrained, f"{type(e).__name__}: {str(e)[:200]}") from e
        finally:
            for k, v in offline.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = model.to(device).eval()
        out = (model, preprocess, open_clip.get_tokenizer(arch), torch, device)
        _loaded[key] = out
        return out


def _vector(features: Any) -> Any:
    import numpy as np

    v = features.detach().to("cpu").numpy().astype(np.float32).reshape(-1)
    if v.shape[0] != DIM:
        arch, pretrained = model_spec()
        raise ConfigError(f"the CLIP model {arch}:{pretrained} gives vectors of {v.shape[0]} "
                          f"numbers; pxlite.functions.clip serves models of {DIM} (ViT-B-32, "
                          "ViT-B-16)")
    return v


@udf
def embed_text(text: str) -> Vector:  # type: ignore[valid-type]
    """CLIP's embedding of a text (its text tower), in the space of :func:`embed_image`."""
    model, _, tokenizer, torch, device = _load()
    with torch.no_grad():
        return _vector(model.encode_text(tokenizer([text]).to(device))[0])


@udf
def embed_image(image: PIL.Image.Image) -> Vector:  # type: ignore[valid-type]
    """CLIP's embedding of an image (its vision tower), in the space of :func:`embed_text`."""
    model, preprocess, _, torch, device = _load()
    with torch.no_grad():
        pixels = preprocess(image.convert("RGB")).unsqueeze(0).to(device)
        return _vector(model.encode_image(pixels)[0])


class Embedding(NamedTuple):
    """A multimodal embedding for ``add_embedding_index(embedding=...)``: its functions by
    modality."""

    string_embed: Function
    image_embed: Function


#: CLIP for both modalities: ``t.add_embedding_index(t.image, embedding=clip.clip)``.
clip = Embedding(string_embed=embed_text, image_embed=embed_image)
