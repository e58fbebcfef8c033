"""The one family of pxlite errors.

Every error pxlite raises on purpose derives from :class:`PxliteError`. The subclasses are grouped
by what the caller can do about them: fix a name (:class:`NotFoundError`,
:class:`AlreadyExistsError`), fix a value or schema (:class:`SchemaError`), fix settings
(:class:`ConfigError`), retry or fix storage (:class:`StorageError`), look at a failed cell
(:class:`ComputeError`), or deal with an unusable database file (:class:`DatabaseError`). Messages
name the object, what was expected and the fix; causes are chained with ``raise ... from``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .redact import redact

if TYPE_CHECKING:
    from types import TracebackType


class PxliteError(Exception):
    """Base class of every error pxlite raises on purpose."""


class NotFoundError(PxliteError, KeyError):
    """A table, directory, column, UDF or stored object does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(PxliteError):
    """A table, directory or column with that name exists already (use ``if_exists=``)."""


class SchemaError(PxliteError, ValueError):
    """A name, type, value or expression does not fit the schema."""


class ConfigError(PxliteError, ValueError):
    """A setting, destination URI or optional dependency is missing or wrong."""


class DatabaseError(PxliteError):
    """The database file cannot be used: not a pxlite file, too new, corrupt or read-only."""


class BusyError(DatabaseError):
    """Another connection held the database's write lock for longer than the busy timeout."""


class StorageError(PxliteError):
    """A storage operation failed.

    ``retryable`` is True when trying again later may succeed (timeouts, throttling, a server that
    went away); False when something must be fixed first (missing bucket, no permission).
    """

    def __init__(self, message: str, *, uri: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.uri = uri
        self.retryable = retryable


class ObjectNotFoundError(StorageError, NotFoundError):
    """The stored object a URI names does not exist (never retryable)."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        super().__init__(message, uri=uri, retryable=False)


class ComputeError(PxliteError):
    """Computing or validating one cell failed; names the table, row, column and cause."""

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
        errortype: str | None = None,
        retryable: bool = False,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        #: True when the cause was a retryable storage error: running the call again may work.
        self.retryable = retryable
        #: The exception that failed the cell (a StorageError, what a UDF raised...). Its
        #: message is part of this one; ``__cause__`` holds only what adds to it (see
        #: :func:`useful_cause`), so a traceback does not print the message twice.
        self.error = error
        self.table = table
        self.row = row
        self.column = column
        self.value = value
        self.errortype = errortype or type(self).__name__


class ExecutorError(PxliteError):
    """The executor itself failed, not a cell: a worker process died, the Dask scheduler went
    away, a task was lost with every worker that tried it, a UDF is missing on a worker. What
    was committed stays; a long operation stays pending, so running the same call again goes on
    where it stopped."""


class VersionError(PxliteError):
    """A request about a table's versions that cannot be met: a write to a read-only version or
    snapshot, a revert with nothing before it or to a version no longer kept, versions of a
    table created with ``versioned=False``."""


class OwnershipWarning(UserWarning):
    """A database was opened where it cannot tell whether it was moved or copied (the file it
    was last opened as is not visible: another machine, a renamed pair, a restored backup), so
    it does not delete files in the locations its original recorded. Said once, at that open;
    ``db.claim_locations()`` (or ``pxlite claim``) takes them back for a database that was moved."""


# ---- argument choices and per-cell errors: one spelling each ---------------------------------
#: What an operation does with a bad cell: 'abort' the whole call, or 'ignore' (store None and
#: keep the error in the cell's errortype/errormsg).
ON_ERROR = ("abort", "ignore")


def check_choice(value: object, argument: str, allowed: tuple[str, ...]) -> str:
    """Validate a string option such as ``if_exists`` or ``on_error``: every method taking one
    refuses anything else (a typo must never fall through to a default behaviour)."""
    if not isinstance(value, str) or value not in allowed:
        raise SchemaError(f"{argument} must be one of {', '.join(map(repr, allowed))}, "
                          f"got {value!r}")
    return value


def check_on_error(on_error: object) -> str:
    """Validate ``on_error=`` ('abort' or 'ignore')."""
    return check_choice(on_error, "on_error", ON_ERROR)


def cell_error(e: BaseException) -> tuple[str, str]:
    """``(errortype, errormsg)`` stored for a failed cell under ``on_error='ignore'``.

    The message is stored in the database file, so credentials are masked first
    (:func:`pxlite.redact.redact`: URL user-info, SAS and token query parameters, the secrets of
    the settings in use), whatever raised it (a UDF, a web server, an SDK).
    """
    return type(e).__name__, redact(str(e) or repr(e))


def failed_cell(on_error: str, e: BaseException, abort: PxliteError, *,
                required: bool = False) -> list[Any]:
    """THE per-cell error policy, for inserted, updated and computed cells alike: under
    ``on_error='abort'`` (and always for a Required column, which cannot be left empty) raise
    ``abort`` (the error naming table, row, column and cause), chained to ``e``; under
    ``'ignore'`` return the cell to store, ``[None, errortype, errormsg]``."""
    if on_error == "abort" or required:
        if isinstance(abort, ComputeError):
            abort.error = e
        raise abort from useful_cause(e)
    return [None, *cell_error(e)]


# ---- short tracebacks ------------------------------------------------------------------------
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def useful_cause(e: BaseException) -> BaseException | None:
    """What of ``e``'s chain is worth printing under an error whose message already repeats
    ``e``'s: the first exception in it that is not a pxlite error (the OSError, the cloud SDK's
    error, what a UDF raised), its traceback cut to its frames outside pxlite (the UDF's own
    lines) or, when it has none, to the frame that raised it; None when the chain holds only
    pxlite errors, whose messages and internal frames would say nothing new."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if not isinstance(current, PxliteError):
            return current.with_traceback(_outside(current.__traceback__))
        current = current.__cause__ if current.__cause__ is not None else (
            None if current.__suppress_context__ else current.__context__)
    return None


def _outside(tb: TracebackType | None) -> TracebackType | None:
    """A traceback from its first frame outside pxlite; else its last frame only."""
    last = tb
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
            return tb
        last, tb = tb, tb.tb_next
    return last
