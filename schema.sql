-- pxlite catalog, schema version 8. The single source of truth for the catalog DDL; shipped in the
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
    created_at  REAL NOT NULL,
    primary_key TEXT                      -- JSON list of the col_ids of its primary key, or NULL;
                                          -- enforced by the unique index t_<id>_pk
) STRICT;

-- Every uid a table has had (px_tables.uid is the current one, where its new files go). A
-- database that takes a new identity (a copy, or opened where it cannot tell a move from a copy)
-- gives each table a new uid, so it never writes into a key space its original may clean.
CREATE TABLE px_table_uids (
    uid      TEXT PRIMARY KEY,
    table_id INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE
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
    pending     INTEGER NOT NULL DEFAULT 0,  -- 1 while an add_computed_column is unfinished
    stored      INTEGER NOT NULL DEFAULT 1,  -- 0: a computed column evaluated when read
    PRIMARY KEY (table_id, col_id),
    UNIQUE (table_id, name)
) STRICT;

-- px_meta holds the database's identity: 'db_id' (random), 'opened_path' and 'opened_file'
-- (path and device:inode it was last opened at), 'media_dir' (device:inode of its media folder),
-- 'media_shared' (the media folder it shares with the database it was copied from, if any) and
-- 'unclaimed_from' (the path it was last opened at, when it took a new identity without seeing
-- that file: a move or a copy, it cannot tell). Opened as another file than the one it was
-- last opened as, a database takes a new db_id, so the locations its original recorded are no
-- longer its own until claimed (places.py).

-- Every storage prefix pxlite has written a table's files under, committed before the first file
-- lands there; files below <prefix><table uid>/<col_id>/ are pxlite's own (deleted with their
-- rows, swept by check()) when owner is this database's db_id. The database's own media folder
-- is the prefix 'media:' (files there are stored relative to it as 'media:<key>'). Rows outlive a
-- dropped table until its files are swept.
CREATE TABLE px_media_locations (
    table_uid TEXT NOT NULL,
    prefix    TEXT NOT NULL,
    owner     TEXT NOT NULL DEFAULT '',   -- db_id of the database that recorded it
    PRIMARY KEY (table_uid, prefix)
) STRICT;

-- Deletes after commit: files whose rows are gone are listed here in the same transaction that
-- removes the rows, deleted after it commits, then unlisted. A crash in between leaves the intent
-- here; the next open (or check()) finishes it.
CREATE TABLE px_pending_deletes (
    uri TEXT PRIMARY KEY                  -- stored form: 'media:<key>' or an absolute URI
) STRICT;

-- Long operations in progress (add_computed_column, recompute_columns): computed outside the
-- write lock and committed in brief batches, in rowid order. Rows up to done_upto are committed;
-- an interrupted operation resumes from there when the same call runs again. The row also
-- tells a writer that waits for the lock what is running (pid, host, since when).
CREATE TABLE px_jobs (
    id         INTEGER PRIMARY KEY,
    table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,         -- 'add_computed_column' | 'recompute_columns'
    spec       TEXT NOT NULL,         -- JSON: what was asked (to recognise the same call again)
    done_upto  INTEGER NOT NULL,      -- rowids <= this are done and committed
    done_rows  INTEGER NOT NULL DEFAULT 0,
    total_rows INTEGER NOT NULL DEFAULT 0,
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL
) STRICT;

-- Operations writing files right now (registered before their first file lands, removed when
-- they end): a delete of a file in the key space of a table being written waits (stays in
-- px_pending_deletes) while another live operation may come to name it; the last writer, or
-- check(fix=True), finishes it. A crashed writer's row is recognised by its dead pid.
CREATE TABLE px_writers (
    id         INTEGER PRIMARY KEY,
    table_uid  TEXT NOT NULL,         -- the key space its files go to (a table's current uid)
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    proc_start TEXT NOT NULL,         -- the process's start time ('' where unknown): pid reuse
    kind       TEXT NOT NULL,
    started_at REAL NOT NULL
) STRICT;

-- Indexes a user asked for (add_btree_index): one SQLite index each, named i_<id> (an id, never a
-- user string), on the data table's column c<col_id>. Dropped with their column or table.
CREATE TABLE px_indexes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: i_<id> names one index only
    table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,             -- the index's name (given, or idx<n>)
    col_id     INTEGER NOT NULL,
    kind       TEXT NOT NULL,             -- 'btree' | 'embedding'
    created_at REAL NOT NULL,
    params     TEXT,                      -- an embedding index's definition (JSON): metric,
                                          -- precision, embedding functions, the vector column;
                                          -- its change log is the table x_<id> (pxlite.embeddings)
    UNIQUE (table_id, name)
) STRICT;

-- Versions (pxlite/versions.py). Every change to a versioned table is a version: one row here,
-- numbered from 0 (the table's creation) up. The rows a version changed keep their state from
-- before it in the table's undo log h_<id> (same c<col_id> columns as t_<id>, plus _v: the
-- version that changed the row, _op: what became of the row: 'u' updated, 'd' deleted, 'r'
-- deleted and inserted again, 'i' a row a revert inserted that did not exist before; primary key
-- (_v, _rowid); the first change of a row in a version keeps its image).
-- Rowids are never reused: a row whose rowid is above a version's high_water did not exist then.
CREATE TABLE px_versions (
    table_id      INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    kind          TEXT NOT NULL,      -- 'create', 'insert', 'update', 'delete', 'add_column',
                                      -- 'drop_column', 'revert', ...
    inserts       INTEGER NOT NULL DEFAULT 0,
    updates       INTEGER NOT NULL DEFAULT 0,
    deletes       INTEGER NOT NULL DEFAULT 0,
    schema_change TEXT,               -- what changed in the columns, or NULL
    reverted_to   INTEGER,            -- a revert: the version it went back to
    state_of      INTEGER NOT NULL,   -- the version whose content this one has (itself, unless
                                      -- a revert): revert() steps back from there
    columns       TEXT NOT NULL,      -- JSON: the table's columns as of this version
    high_water    INTEGER,            -- the largest rowid given out up to this version (NULL:
                                      -- a baseline made by a migration, until the next write)
    PRIMARY KEY (table_id, version)
) STRICT;

-- A column dropped from a versioned table keeps its SQL columns (and its files) while a retained
-- version names it; the pruning of the last such version drops them.
CREATE TABLE px_dropped_columns (
    table_id INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    col_id   INTEGER NOT NULL,
    meta     TEXT NOT NULL,           -- JSON: the column as it was
    version  INTEGER NOT NULL,        -- the version that dropped it
    PRIMARY KEY (table_id, col_id)
) STRICT;

-- Per table: versioned or not (a table without a row here is versioned) and its own retention
-- (NULL: the database's version_retention_days / version_retention_count settings).
CREATE TABLE px_version_policy (
    table_id        INTEGER PRIMARY KEY REFERENCES px_tables(id) ON DELETE CASCADE,
    versioned       INTEGER NOT NULL DEFAULT 1,
    retention_days  REAL,
    retention_count INTEGER
) STRICT;

-- Snapshots: a name for one version of a table (read-only), sharing the namespace of tables and
-- directories. A snapshot keeps its version, the history after it and their files.
CREATE TABLE px_snapshots (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,
    dir_id     INTEGER REFERENCES px_dirs(id),
    table_id   INTEGER NOT NULL REFERENCES px_tables(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    created_at REAL NOT NULL
) STRICT;
CREATE INDEX px_snapshots_table ON px_snapshots(table_id);
-- Views (pxlite/views.py): a view is a table (px_tables, t_<id>) whose rows come from its base
-- (a table or another view) and follow it in the same commit as the base's changes. Its data
-- table holds its own columns and _base, the rowid of the base row each row comes from (for a
-- filtered view, its own rowid too); the SQL view v_<id> joins it to its bases, whose columns
-- the view shows. A base with views is not dropped (no ON DELETE): its views go first.
CREATE TABLE px_views (
    table_id  INTEGER PRIMARY KEY REFERENCES px_tables(id) ON DELETE CASCADE,
    base_id   INTEGER NOT NULL REFERENCES px_tables(id),
    predicate TEXT,                   -- where(): expression JSON over the base, or NULL
    iterator  TEXT,                   -- JSON: the iterator call and its output columns, or NULL
    options   TEXT NOT NULL DEFAULT '{}',  -- JSON: store_media, destination
    built     INTEGER NOT NULL DEFAULT 0   -- 0 until create_view has populated it (resumable)
) STRICT;
CREATE INDEX px_views_base ON px_views(base_id);
