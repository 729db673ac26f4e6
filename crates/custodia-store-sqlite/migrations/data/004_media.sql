-- data.db, version 4: media objects. Their bytes live in object storage, sealed under a key of
-- their own; a row holds that key wrapped by the subject's data key, where the bytes are, and
-- the object's lifecycle. Like the rest of this file it holds ids, policy keys, sizes, times
-- and a MIME token, never personal values in clear.

-- `pos` aliases the rowid: objects registered at the same millisecond come back in insertion
-- order, and only an INTEGER PRIMARY KEY keeps that order stable across VACUUM. `wrapped_key`
-- is emptied (zero length) when the object is shredded. `parent` names the input an output was
-- made from; no foreign key, since an input may be deleted before its outputs. The lease is
-- five nullable columns, all set or all NULL.
CREATE TABLE media (
    pos              INTEGER NOT NULL PRIMARY KEY,
    id               BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject          BLOB    NOT NULL REFERENCES subjects (id),
    category         TEXT    NOT NULL,
    purpose          TEXT    NOT NULL,
    key              BLOB    NOT NULL CHECK (length(key) = 16),
    wrapped_key      BLOB    NOT NULL,
    location         TEXT    NOT NULL,
    content_type     TEXT    NOT NULL,
    size             INTEGER NOT NULL CHECK (size >= 0),
    stored_size      INTEGER NOT NULL CHECK (stored_size >= 0),
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'stored', 'processed',
                                 'deleting')),
    parent           BLOB    CHECK (length(parent) = 16),
    created_at       INTEGER NOT NULL,
    processed_at     INTEGER,
    rule             TEXT    NOT NULL,
    expires_at       INTEGER,
    statutory        INTEGER NOT NULL CHECK (statutory IN (0, 1)),
    lease_id         BLOB    CHECK (length(lease_id) = 16),
    lease_holder     BLOB    CHECK (length(lease_holder) = 16),
    lease_purpose    TEXT,
    lease_granted_at INTEGER,
    lease_expires_at INTEGER,
    CHECK ((lease_id IS NULL) = (lease_holder IS NULL)
       AND (lease_id IS NULL) = (lease_purpose IS NULL)
       AND (lease_id IS NULL) = (lease_granted_at IS NULL)
       AND (lease_id IS NULL) = (lease_expires_at IS NULL))
) STRICT;

-- Also serves the foreign key from media to subjects (deleting a subject looks here).
CREATE INDEX media_by_subject ON media (subject, created_at);

-- The sweeper claims stored and processed objects whose expiry has passed; objects still
-- waiting for their rule's trigger have none and stay out of the index.
CREATE INDEX media_by_expiry ON media (state, expires_at) WHERE expires_at IS NOT NULL;

-- The sweeper finishes objects left deleting and cleans up abandoned pending uploads by age.
CREATE INDEX media_by_state ON media (state, created_at);
