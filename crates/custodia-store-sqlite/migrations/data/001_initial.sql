-- data.db, version 1: subjects, encrypted records and the audit chain.
-- Every personal value is ciphertext here; the clear columns are pseudonymous ids, policy keys
-- and times, which retention and the gate need without decrypting anything.

-- Marks the file as a Custodia data store ("CUSD"), so a swapped or foreign file is refused.
PRAGMA application_id = 1129665348;

-- WITHOUT ROWID: rows are small and always found by id or lookup, so the primary key is the
-- table and no second B-tree is kept for the rowid.
CREATE TABLE subjects (
    id             BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    lookup         BLOB    NOT NULL UNIQUE CHECK (length(lookup) = 32),
    profile        BLOB    NOT NULL,
    key            BLOB    NOT NULL CHECK (length(key) = 16),
    created_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    closed_at      INTEGER,
    erased_at      INTEGER
) STRICT, WITHOUT ROWID;

-- `pos` aliases the rowid: records come back in collection time, then insertion order, and only
-- an INTEGER PRIMARY KEY keeps that order stable across VACUUM.
-- `ciphertext` is the last column on purpose: SQLite reads a row's columns in order, and a large
-- value spills into overflow pages, so every column after it would cost reading the whole value.
CREATE TABLE records (
    pos          INTEGER NOT NULL PRIMARY KEY,
    id           BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject      BLOB    NOT NULL REFERENCES subjects (id),
    category     TEXT    NOT NULL,
    purpose      TEXT    NOT NULL,
    key          BLOB    NOT NULL CHECK (length(key) = 16),
    collected_at INTEGER NOT NULL,
    rule         TEXT    NOT NULL,
    expires_at   INTEGER,
    statutory    INTEGER NOT NULL CHECK (statutory IN (0, 1)),
    ciphertext   BLOB    NOT NULL
) STRICT;

-- Also serves the foreign key from records to subjects (deleting a subject looks here).
CREATE INDEX records_by_subject ON records (subject, collected_at);

-- Most records wait for a trigger (account closed, processed) with no expiry yet; the sweeper
-- only ever looks at the others.
CREATE INDEX records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;

-- One column per AuditEvent field, so entries can be queried; `reasons` is a JSON array of
-- strings, which keeps order and tells an empty list apart from none.
CREATE TABLE audit (
    seq       INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
    prev_hash BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash      BLOB    NOT NULL CHECK (length(hash) = 32),
    kind      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT,
    subject   TEXT,
    category  TEXT,
    purpose   TEXT,
    record    TEXT,
    outcome   TEXT,
    reasons   TEXT    NOT NULL,
    rule      TEXT
) STRICT;

-- The chain proves tampering after the fact; these stop a stray code path from rewriting
-- history in the first place.
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
