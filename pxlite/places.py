"""Where a database's files live, and which of them it owns.

One room for the idea every delete depends on (DESIGN.md, "Ownership"):

* **The media folder** beside the database file (``x.pxl.media/``) travels with it: files there
  are stored relative to it (``media:<key>``), so the pair can be moved or copied and each copy
  works on its own files. It is always this database's own, unless it is physically the folder
  of the database this one was copied from (a symlink to it, or the same folder given twice).
* **Destinations** (``destination=``, ``output_media_dest``/``input_media_dest``, else the media
  folder) resolve to canonical prefixes, spelled as the table already records its folder.
* **Locations**: every prefix a table's files were written under is recorded (with the identity
  of the database that recorded it) before the first file lands there. A :class:`Location` is
  one such place: its key grammar both ways (``<prefix><uid>/<col>/<xx>/<sha256>.<ext>``), the
  test "is this one of its files", and listing that skips what is not.
* **Identity**: a random ``db_id`` plus the path and device:inode the file was last opened at.
  The same file (same inode, any path) is the same database. Any other file (a copy, a backup,
  a restore, a move across filesystems: it cannot always tell which) takes a new identity and
  gives its tables new uids, so it writes its new files into a key space of its own and owns
  none of the locations its original recorded: it reads them, never deletes there, says so once
  when it cannot tell a move from a copy, and :meth:`Places.claim` takes them back for a user
  who knows the database was moved.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from . import catalog, media, storage
from . import config as _config
from .catalog import MEDIA_LOCATION, TableMeta
from .db import Database
from .errors import BusyError, OwnershipWarning

_IDENTITY_KEYS = ("db_id", "opened_path", "opened_file", "media_dir", "media_shared",
                  "unclaimed_from")


def file_id(path: Path) -> str:
    """``device:inode`` of a file or folder (following symlinks: the real one), '' if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


class Ownership(NamedTuple):
    """Which recorded locations this database may delete files in.

    ``db_id`` is this database file's identity: a location recorded under another identity (a
    copy's original, a backup's live database, the database before it was moved to another
    machine, until claimed) is only read, never cleaned. The media folder is owned unless it is
    physically shared with the database this one was copied from (``owns_media``). A database
    that cannot prove its identity yet owns nothing (``db_id`` '').
    """

    db_id: str
    owns_media: bool

    def owns(self, prefix: str, owner: str) -> bool:
        if prefix == MEDIA_LOCATION:
            return self.owns_media
        return bool(self.db_id) and owner == self.db_id


NO_OWNERSHIP = Ownership("", False)


class Location(NamedTuple):
    """One recorded place of one table's files: ``<prefix><uid>/<col id>/<xx>/<sha256>.<ext>``.

    ``prefix`` is in stored form (``'media:'`` for the database's own media folder, else an
    absolute canonical prefix URI); ``owner`` the identity that recorded it; ``owned`` whether
    this database may delete files there.
    """

    uid: str
    prefix: str
    owner: str
    owned: bool

    def folder(self, col_id: int | None = None) -> str:
        """The stored prefix of the table's files here (or of one column's)."""
        return self.prefix + media.key_folder(self.uid, col_id)

    def holds(self, stored: str) -> bool:
        """Is ``stored`` one of this location's files, in pxlite's exact key shape (a written
        file or a killed write's temp file)? Anything else under the prefix is not pxlite's."""
        return stored.startswith(self.prefix) and \
            media.key_owner(stored[len(self.prefix):]) == self.uid


def _identity_change(known: dict[str, str | None], here: str, here_file: str,
                     media_file: str, media_is_link: bool) -> dict[str, str] | None:
    """What to record so the catalog names this file as itself; None when it already does.

    The same file (device:inode) is the same database, wherever it now is (renamed, moved
    within its filesystem). Any other file takes a new identity: a copy made while its
    original is still there, or, when the file it was last opened as is not visible (another
    machine, a renamed pair, a restored backup), a move or a copy it cannot tell apart
    (``unclaimed_from``).
    """
    db_id, opened = known.get("db_id"), known.get("opened_path")
    shared = known.get("media_shared") or ""
    if db_id and opened == here and known.get("opened_file") == here_file:
        return None
    if db_id and known.get("opened_file") == here_file:
        change = {"opened_path": here}
        if media_file and media_file != shared:
            change["media_dir"] = media_file
        return change
    original_visible = bool(opened) and opened != here and os.path.lexists(opened or "")
    change = {"db_id": secrets.token_hex(16), "opened_path": here, "opened_file": here_file,
              "media_shared": "", "unclaimed_from": "" if original_visible or not db_id
              else (opened or "")}
    if (db_id and media_file and media_file in (known.get("media_dir"), shared)
            and (original_visible or media_is_link)):
        change["media_shared"] = media_file  # physically the original's media folder
    elif media_file:
        change["media_dir"] = media_file
    return change


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside pxlite (the
    user's ``pxl.connect(...)`` or write), whichever path inside pxlite led to it."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


class Places:
    """Where one database's files live and which it owns (see the module docstring).

    Holds the catalog connection it reads locations and identity from, the media folder, and
    the database's own settings (``config=``, over ``configure()``, environment and file).
    """

    def __init__(self, db: Database, media_dir: str | os.PathLike[str] | None,
                 config: dict[str, Any]) -> None:
        self.db = db
        self.config = config
        self.media_dir = Path(media_dir).expanduser().absolute() if media_dir else \
            db.path.with_name(db.path.name + ".media")
        self.media_folder = media.MediaFolder(storage.to_uri(self.media_dir).rstrip("/") + "/")
        self.ownership: Ownership = NO_OWNERSHIP
        self._proven = False
        self._dest_cache: dict[str, str] = {}
        self._lock = threading.Lock()

    # ---- settings and references -----------------------------------------------------------
    def settings(self) -> _config.Settings:
        """Effective settings now: this database's config= over configure() over env over file."""
        return _config.resolve(self.config)

    @property
    def media_prefix(self) -> str:
        """The database's own media folder, as a file:// prefix (made when first needed)."""
        self.media_dir.mkdir(parents=True, exist_ok=True)
        return self.media_folder.prefix

    def stored(self, uri: str) -> str:
        """The form a row stores for ``uri`` (relative inside the media folder)."""
        return self.media_folder.stored(uri)

    def resolve(self, stored: str) -> str:
        """The absolute URI of a stored reference."""
        return self.media_folder.uri(stored)

    def canonical_dest(self, dest: str | os.PathLike[str]) -> str:
        """The canonical prefix URI of a destination (form checked; no network)."""
        key = os.fspath(dest)
        with self._lock:
            if key not in self._dest_cache:
                self._dest_cache[key] = storage.canonical_prefix(key, self.settings())
            return self._dest_cache[key]

    def validate_dest(self, dest: str | os.PathLike[str]) -> str:
        """Check a destination fully (form, bucket, write access) and return its prefix URI."""
        return storage.validate_destination(os.fspath(dest), self.settings())

    # ---- where files go ----------------------------------------------------------------------
    def input_prefix(self, meta: TableMeta, settings: _config.Settings) -> str:
        """Where inserted media files go: ``input_media_dest``, else the media folder."""
        return self._prefix_of(meta, settings.get("input_media_dest"))

    def output_prefix(self, meta: TableMeta, destination: str | None,
                      settings: _config.Settings) -> str:
        """Where a computed column's files go: its destination > output_media_dest > default."""
        if destination == MEDIA_LOCATION:
            return self.media_prefix  # set explicitly to the database's own media folder
        return self._prefix_of(meta, destination or settings.get("output_media_dest"))

    def _prefix_of(self, meta: TableMeta, dest: str | None) -> str:
        """The prefix of a destination as given (None or "": the media folder), spelled as the
        table already records its folder."""
        if not dest:
            return self.media_prefix
        return self.known_spelling(meta, self.canonical_dest(dest))

    def known_spelling(self, meta: TableMeta, prefix: str) -> str:
        """A local destination prefix as the table already knows it: when ``prefix`` is
        another spelling (a symlink, ``//``) of a folder recorded as one of the table's
        locations (or of the media folder), that recorded spelling. One folder is then never
        two locations, so no file is ever seen twice, once as an orphan."""
        if not prefix.startswith("file:"):
            return prefix
        real = os.path.realpath(storage.file_path(prefix))
        known = [self.resolve(loc.prefix) for loc in self.locations(meta.uids or (meta.uid,))]
        for where in [self.media_folder.prefix, *known]:
            if where != prefix and where.startswith("file:") and \
                    os.path.realpath(storage.file_path(where)) == real:
                return where
        return prefix

    def record_location(self, meta: TableMeta, prefix: str) -> None:
        """Inside a write transaction: record that ``meta``'s new files go under ``prefix``
        (absolute), before any lands there (check() then recognises what a crash leaves)."""
        stored = self.stored(prefix)
        if stored in catalog.locations(self.db, meta.uid):
            return
        catalog.record_location(self.db, meta.uid, stored, self.ownership.db_id)
        if stored == MEDIA_LOCATION:
            current = file_id(self.media_dir)
            if current and catalog.get_meta(self.db, "media_dir") != current:
                catalog.set_meta(self.db, {"media_dir": current})

    # ---- locations and ownership ---------------------------------------------------------------
    def locations(self, uids: Iterable[str] | None = None) -> list[Location]:
        """The recorded locations (of the given table uids, or all), owned or not."""
        wanted = None if uids is None else set(uids)
        own = self.ownership
        return [Location(u, p, o, own.owns(p, o)) for u, p, o in catalog.all_locations(self.db)
                if wanted is None or u in wanted]

    def owned_folders(self, meta: TableMeta, col_id: int | None = None) -> list[str]:
        """The stored prefixes of the files this database wrote for a table (or one of its
        columns), under every uid the table has had, in locations it owns."""
        return [loc.folder(col_id) for loc in self.locations(meta.uids or (meta.uid,))
                if loc.owned]

    def owner_test(self) -> Callable[[str], Location | None]:
        """A function: the owned location a stored URI was written in by this database, or None
        when it is not a file this database wrote and may delete.

        The URI must be in pxlite's key shape under a location this database owns, for the uid
        that location was recorded for. Every automatic delete passes this test, so neither a
        crafted catalog (a shared or downloaded database file) nor a copy of a database can
        direct deletions at files it did not write: a pending-delete or location row alone
        proves nothing.
        """
        owned = [loc for loc in self.locations() if loc.owned]

        def location(uri: str) -> Location | None:
            return next((loc for loc in owned if loc.holds(uri)), None)

        return location

    # ---- identity ----------------------------------------------------------------------------
    def establish(self) -> Ownership:
        """Who this database file is, and which locations it may clean (at connect time).

        Nothing here takes the write lock unless the identity changes; when another process
        holds it, this connection reads but owns nothing until it writes (:meth:`ensure`)."""
        db = self.db
        with db.read():
            known = {k: catalog.get_meta(db, k) for k in _IDENTITY_KEYS}
        if self._change(known) is None:
            return self._adopt_known(known)
        if db.read_only:
            return NO_OWNERSHIP  # unproven: it may read, it cannot delete anyway
        try:
            with db.nowait():
                self.ensure()
        except BusyError:
            return NO_OWNERSHIP
        return self.ownership

    def ensure(self) -> bool:
        """Record this file's identity if it is not recorded yet (a write transaction): run
        before an operation writes anything, so a copy never writes into its original's key
        space, even when its open could not take the lock. True when this connection was not
        sure of its identity before (its tables' uids may have changed since it read them)."""
        if self._proven or self.db.read_only:
            return False
        db = self.db
        with db.transaction():
            known = {k: catalog.get_meta(db, k) for k in _IDENTITY_KEYS}  # locked now
            change = self._change(known)
            if change is not None:
                self._record(change, known)
                known.update(change)
        self._adopt_known(known)
        if change is not None and change.get("unclaimed_from"):
            self._warn_unclaimed(change["unclaimed_from"])
        return True

    def _change(self, known: dict[str, str | None]) -> dict[str, str] | None:
        return _identity_change(known, str(self.db.path), file_id(self.db.path),
                                file_id(self.media_dir), self.media_dir.is_symlink())

    def _adopt_known(self, known: dict[str, str | None]) -> Ownership:
        shared = known.get("media_shared") or ""
        self.ownership = Ownership(known.get("db_id") or "",
                                   not (shared and file_id(self.media_dir) == shared))
        self._proven = True
        return self.ownership

    def _record(self, change: dict[str, str], known: dict[str, str | None]) -> None:
        """Write an identity change (inside the write transaction)."""
        db = self.db
        catalog.set_meta(db, change)
        if "db_id" not in change:
            return
        if known.get("db_id"):
            # Another file than the one it was: its new files go to key spaces of its own.
            catalog.new_table_uids(db)
        elif db.migrated_from == 1:
            # A catalog from before identities: it could not tell copies apart, so it keeps
            # owning what it recorded (as before), and its media-folder references become
            # relative so the pair is portable from now on.
            db.execute("UPDATE px_media_locations SET owner = ?", (change["db_id"],))
            self._relativize_legacy()

    def _relativize_legacy(self) -> None:
        db, prefix = self.db, self.media_folder.prefix
        n = len(prefix)
        for meta in catalog.live_tables(db):
            for c in meta.media_columns:
                db.execute(f"UPDATE {meta.store} SET {c.sql} = ? || substr({c.sql}, ?) "
                           f"WHERE substr({c.sql}, 1, ?) = ?",
                           (MEDIA_LOCATION, n + 1, n, prefix))
        db.execute("UPDATE OR IGNORE px_media_locations SET prefix = ? WHERE prefix = ?",
                   (MEDIA_LOCATION, prefix))
        db.execute("UPDATE OR IGNORE px_pending_deletes SET uri = ? || substr(uri, ?) "
                   "WHERE substr(uri, 1, ?) = ?", (MEDIA_LOCATION, n + 1, n, prefix))

    def unowned(self) -> list[str]:
        """The places this database reads but does not clean (absolute prefixes): locations
        recorded by the database it was copied or moved from, and a shared media folder."""
        return sorted({self.resolve(loc.prefix) for loc in self.locations() if not loc.owned})

    def unclaimed_from(self) -> str:
        """The path it was last opened at when it took a new identity without seeing that file
        (a move it could not tell from a copy), until :meth:`claim`; else ''."""
        return catalog.get_meta(self.db, "unclaimed_from") or ""

    def _warn_unclaimed(self, before: str) -> None:
        places = self.unowned()
        if not places:
            return
        shown = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
        was = ("is not the file it was last opened as (restored from a backup, or replaced?)"
               if before == str(self.db.path) else
               f"was last opened as {before}, which is not visible from here (moved to another "
               "machine, renamed with its media folder, or restored from a backup?)")
        warnings.warn(
            f"pxlite: {self.db.path} {was}. It reads all its files but deletes none in "
            f"{len(places)} location(s) recorded before ({shown}): another database may still "
            "name them. If this database was moved, not copied, claim them: "
            f"db.claim_locations() or `pxlite claim --db {self.db.path}`", OwnershipWarning,
            stacklevel=_caller_level())

    def claim(self) -> list[str]:
        """Take ownership of every recorded location (and of the media folder if it was shared):
        for a database that was moved, not copied. Returns the places claimed (absolute
        prefixes). Files there that no row of this database names become orphans that
        ``check(fix=True)`` removes: never claim locations another live database uses."""
        self.ensure()
        db = self.db
        before = set(self.unowned())
        with db.transaction():
            catalog.set_locations_owner(db, self.ownership.db_id)
            catalog.set_meta(db, {"media_shared": "", "unclaimed_from": ""})
        self.ownership = Ownership(self.ownership.db_id, True)
        return sorted(before)
