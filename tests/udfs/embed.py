"""Deterministic embedding UDFs for the tests (no model download): importable in worker
processes as ``udfs.embed``. Both embed into one 16-dimensional space, so a string and an image
can be compared, as with CLIP: a word's vector is fixed by its letters, an image's by its mean
colour (so "red" finds red images)."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import PIL.Image

import pxlite as pxl

DIM = 16
_COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255),
            "white": (255, 255, 255), "black": (0, 0, 0), "yellow": (255, 220, 0)}


def colour_vector(rgb: tuple[float, float, float]) -> np.ndarray:
    r, g, b = (c / 255.0 for c in rgb)
    v = np.zeros(DIM, dtype=np.float32)
    v[:3] = (r, g, b)
    v[3] = 0.05  # never all zero (black)
    return v


def word_vector(text: str) -> np.ndarray:
    """A colour word is its colour's vector; any other text a hash-seeded random vector."""
    for word, rgb in _COLOURS.items():
        if word in text.lower():
            return colour_vector(rgb)
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


@pxl.udf
def embed_text(text: str) -> pxl.Array[(DIM,), pxl.Float]:
    return word_vector(text)


@pxl.udf
def embed_image(img: PIL.Image.Image) -> pxl.Array[(DIM,), pxl.Float]:
    time.sleep(float(os.environ.get("PXLITE_TEST_EMBED_SLEEP", "0")))
    small = np.asarray(img.convert("RGB").resize((4, 4)), dtype=np.float64)
    return colour_vector(tuple(small.reshape(-1, 3).mean(axis=0)))


@pxl.udf
def embed_pid(img: PIL.Image.Image) -> pxl.Array[(DIM,), pxl.Float]:
    """The worker's pid in the first number (which process computed a row)."""
    v = embed_image.fn(img)
    v[DIM - 1] = os.getpid()
    return v


@pxl.udf
def embed_bad_shape(text: str) -> pxl.Array[(DIM,), pxl.Float]:
    """Declares 16 numbers, returns 3: the row's cell errors."""
    return np.zeros(3, dtype=np.float32)


@pxl.udf
def not_an_embedding(text: str) -> str:
    return text


@pxl.udf
def free_length(text: str) -> pxl.Array[(None,), pxl.Float]:
    return np.zeros(4, dtype=np.float32)
