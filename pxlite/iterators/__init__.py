"""Iterators that turn one value into many rows: video frames and segments, audio segments,
document chunks, image tiles, sentences. See :mod:`pxlite.iterators.base` for the interface
(:class:`~pxlite.iterators.base.ComponentIterator`, :class:`~pxlite.iterators.base.IteratorCall`)
that ``create_view(..., iterator=...)`` consumes. The families load their heavy packages (PyAV,
pypdfium2) only when an iterator runs."""
