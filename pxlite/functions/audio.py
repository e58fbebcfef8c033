"""Audio functions and iterators (PyAV, the ``pxlite[video]`` extra), with Pixeltable's names:
``get_metadata`` (a method of Audio expressions) and :func:`audio_splitter` (see
:class:`pxlite.iterators.audio.AudioSplitter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..iterators.audio import AudioSplitter
from ..iterators.base import ComponentIterator
from ..types import Audio
from .iterator_call import IteratorCall, make_call
from .media_common import media_function
from .video import container_metadata

if TYPE_CHECKING:
    from ..exprs import Expr

__all__ = ["audio_splitter", "get_metadata"]


def audio_splitter(audio: Expr | str, *, duration: float | None = None,
                   max_size: int | None = None, overlap: float = 0.0,
                   min_segment_duration: float = 0.0) -> IteratorCall | ComponentIterator:
    """An audio file's segments, one row each: ``segment_start``, ``segment_end``,
    ``audio_segment``; sized by ``duration`` (seconds) or ``max_size`` (bytes), with
    ``overlap`` seconds repeated and a last segment shorter than ``min_segment_duration``
    dropped. On an expression, the iterator call a view takes; on a local path, the running
    iterator."""
    return make_call(AudioSplitter, audio, {"duration": duration, "max_size": max_size,
                                            "overlap": overlap,
                                            "min_segment_duration": min_segment_duration})


@media_function("audio", Audio, (("av", "video"),))
def get_metadata(audio: str) -> dict:
    """An audio file's container and stream metadata (Pixeltable's ``ContainerMetadata``:
    size, bit rate, tags, and per stream codec, channels, duration and time base)."""
    return container_metadata(audio, "get_metadata()")
