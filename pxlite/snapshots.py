"""Read-only handles on one version of a table: time travel (``pxl.get_table('dir.t:3')``) and
snapshots (``pxl.create_snapshot('dir.snap', t)``).

A :class:`TableVersion` is a :class:`~pxlite.table.Table` whose rows are that version's (a
temporary view over the data table and its undo log, pxlite/versions.py) and whose columns are
that version's. Queries, counts, ``describe()`` and media reads work as on the table; every
other public method (any write, now or added later) is refused with an error naming the
version, and the write operation refuses a version's description as a second line of defence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import catalog, versions
from .catalog import TableMeta
from .errors import NotFoundError, VersionError
from .table import TABLE_ATTRIBUTES, Table

if TYPE_CHECKING:
    from .connection import Connection

#: The Table methods and attributes a version answers (they only read).
READS = frozenset({
    "select", "where", "order_by", "limit", "group_by", "join", "distinct", "sample", "tail",
    "cursor", "collect", "count", "head", "show", "describe", "columns", "get_versions",
    "history", "get_metadata", "prefetch",
})


class TableVersion(Table):
    """Version ``version`` of the table at ``table_path``, read-only; ``label`` is how it was
    asked for (``'dir.t:3'``, or a snapshot's path)."""

    def __init__(self, conn: Connection, table_path: str, version: int,
                 label: str | None = None, snapshot: bool = False) -> None:
        self._table_path, self._version, self._snapshot = table_path, version, snapshot
        super().__init__(conn, label or f"{table_path}:{version}",
                         catalog.load_table(conn.db, table_path).id)
        self._meta()  # a version that is not kept fails here, not at the first read

    def __getattribute__(self, name: str) -> Any:
        if name in TABLE_ATTRIBUTES and name not in READS:
            label = object.__getattribute__(self, "_path")
            version = object.__getattribute__(self, "_version")
            base = object.__getattribute__(self, "_table_path")

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise VersionError(
                    f"{label!r} is version {version} of table {base!r}, read-only: {name}() "
                    f"changes a table; call it on pxl.get_table({base!r}), or bring this version "
                    f"back with pxl.get_table({base!r}).revert(to={version})")

            return refuse
        return super().__getattribute__(name)

    def _meta(self) -> TableMeta:
        meta = versions.meta_at(self._conn.db, self._table_path, self._version)
        if meta.id != self._id:
            raise NotFoundError(f"table {self._table_path!r} of {self._path!r} was dropped, and "
                                "another table of that name made since; its versions went "
                                "with it")
        return meta

    def _recheck(self, meta: TableMeta) -> None:
        versions.still_kept(self._conn.db, meta)

    def get_versions(self, n: int | None = None) -> list[versions.VersionMetadata]:
        """The kept versions up to the one this handle reads, most recent first."""
        return [v for v in super().get_versions() if v["version"] <= self._version][:n]

    def get_metadata(self) -> dict[str, Any]:
        """As :meth:`Table.get_metadata`, for this version (``kind`` 'snapshot' or
        'version', ``base`` the table's path)."""
        md = super().get_metadata()
        md.update(kind="snapshot" if self._snapshot else "version", base=self._table_path,
                  is_snapshot=self._snapshot, version=self._version,
                  version_created=self.get_versions()[0]["created_at"])
        return md

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TableVersion) and other._path == self._path
                and other._conn.path == self._conn.path)

    def __hash__(self) -> int:
        return hash((str(self._conn.path), self._path))


def parse_versioned_path(path: object) -> tuple[str, int] | None:
    """``'dir.t:3'`` -> ``('dir.t', 3)``; None for a path without ``:``; SchemaError-like
    VersionError for a version that is not a whole number."""
    if not isinstance(path, str) or ":" not in path:
        return None
    base, _, number = path.rpartition(":")
    catalog.check_path(base)
    if not number.isdigit() or not number.isascii():
        raise VersionError(f"{path!r}: the version after ':' must be a whole number >= 0, as in "
                           f"'{base}:3' (get_versions() lists them)")
    return base, int(number)
