"""Named fault points: the places where a crash must not lose or corrupt data.

:func:`point` does nothing. Crash-safety tests patch it to raise, or to ``os._exit`` a child
process, when a given name is reached, then check that reopening the database finds no row
naming a missing file. The points sit in the shared mechanisms every operation goes through:

- ``file_written``: a media file (or upload) has landed, its row is not committed yet
- ``before_commit``: the operation's rows are written, ``COMMIT`` has not run
- ``after_commit``: committed; superseded files are not deleted yet
- ``before_file_delete``: about to delete one superseded file (after its rows are gone)
"""

from __future__ import annotations

POINTS = ("file_written", "before_commit", "after_commit", "before_file_delete")


def point(name: str) -> None:
    """A named step (one of :data:`POINTS`); a no-op outside tests."""
    return None
