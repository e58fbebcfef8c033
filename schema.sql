-- pxlite catalog, schema version 1. The single source of truth for the catalog DDL; shipped in the
-- wheel as pxlite/schema.sql. User data lives in one table per pxlite table, named t_<id>, whose
-- columns are named c<col_id> (+ c<col_id>_et / c<col_id>_em for a cell's error type and message):
-- user-chosen names never reach SQL text.

CREATE TABLE px_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE px_dirs (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,      -- dotted path, e.g. 'demo' or 'demo.sub'
    created_at REAL NOT NULL
) STRICT;

CREATE TABLE px_tables (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: t_<id> names one table only
    uid         TEXT NOT NULL UNIQUE,     -- random; names the table's files in storage keys
    path        TEXT NOT NULL UNIQUE,     -- dotted path, e.g. 'demo.media'
    dir_id      INTEGER REFERENCES px_dirs(id),
    next_col_id INTEGER NOT NULL DEFAULT 1,
    created_at  REAL NOT NULL
) STRICT;

CREATE TABLE px_columns (
    table_id    INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    col_id      INTEGER NOT NULL,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    type        TEXT NOT NULL,            -- e.g. 'Int', 'Required[Image]'
    expr        TEXT,                     -- computed columns: expression JSON
    destination TEXT,                     -- computed media columns: canonical prefix URI, or NULL
    format      TEXT,                     -- computed image columns: 'jpeg'|'png'|'webp' or NULL (auto)
    on_error    TEXT NOT NULL DEFAULT 'abort',
    PRIMARY KEY (table_id, col_id),
    UNIQUE (table_id, name)
) STRICT;

-- Every storage prefix pxlite has written a table's files under, committed before the first file
-- lands there; files below <prefix><table uid>/<col_id>/ are pxlite's own (deleted with their
-- rows, swept by check()). Rows outlive a dropped table until its files are swept.
CREATE TABLE px_media_locations (
    table_uid TEXT NOT NULL,
    prefix    TEXT NOT NULL,
    PRIMARY KEY (table_uid, prefix)
) STRICT;

-- Deletes after commit: files whose rows are gone are listed here in the same transaction that
-- removes the rows, deleted after it commits, then unlisted. A crash in between leaves the intent
-- here; the next open (or check()) finishes it.
CREATE TABLE px_pending_deletes (
    uri TEXT PRIMARY KEY
) STRICT;
