-- {namespace}_data, version 4: media objects. Their bytes live in object storage, sealed under
-- a key of their own; a row holds that key wrapped by the subject's data key, where the bytes
-- are, and the object's lifecycle. Like the rest of this schema it holds ids, policy keys,
-- sizes, times and a MIME token, never personal values in clear.
-- `pos` orders objects registered at the same millisecond by insertion; ids are random and
-- cannot. `wrapped_key` is emptied (zero length) when the object is shredded. `parent` names the
-- input an output was made from; no foreign key, since an input may be deleted before its
-- outputs. The lease is five nullable columns, all set or all NULL.
-- Runs with search_path set to the data schema, so names are unqualified.
CREATE TABLE media (
    pos              BIGINT  GENERATED ALWAYS AS IDENTITY,
    id               BYTEA   NOT NULL CHECK (length(id) = 16),
    subject          BYTEA   NOT NULL REFERENCES subjects (id),
    category         TEXT    NOT NULL,
    purpose          TEXT    NOT NULL,
    key              BYTEA   NOT NULL CHECK (length(key) = 16),
    wrapped_key      BYTEA   NOT NULL,
    location         TEXT    NOT NULL,
    content_type     TEXT    NOT NULL,
    size             BIGINT  NOT NULL CHECK (size >= 0),
    stored_size      BIGINT  NOT NULL CHECK (stored_size >= 0),
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'stored', 'processed',
                                 'deleting')),
    parent           BYTEA   CHECK (length(parent) = 16),
    created_at       BIGINT  NOT NULL,
    processed_at     BIGINT,
    rule             TEXT    NOT NULL,
    expires_at       BIGINT,
    statutory        BOOLEAN NOT NULL,
    lease_id         BYTEA   CHECK (length(lease_id) = 16),
    lease_holder     BYTEA   CHECK (length(lease_holder) = 16),
    lease_purpose    TEXT,
    lease_granted_at BIGINT,
    lease_expires_at BIGINT,
    CONSTRAINT media_pkey PRIMARY KEY (id),
    CONSTRAINT media_lease_complete CHECK (
        (lease_id IS NULL) = (lease_holder IS NULL)
        AND (lease_id IS NULL) = (lease_purpose IS NULL)
        AND (lease_id IS NULL) = (lease_granted_at IS NULL)
        AND (lease_id IS NULL) = (lease_expires_at IS NULL))
);

-- Also serves the foreign key from media to subjects (deleting a subject looks here).
CREATE INDEX media_by_subject ON media (subject, created_at, pos);

-- The sweeper claims stored and processed objects whose expiry has passed; objects still
-- waiting for their rule's trigger have none and stay out of the index.
CREATE INDEX media_by_expiry ON media (state, expires_at, pos) WHERE expires_at IS NOT NULL;

-- The sweeper finishes objects left deleting and cleans up abandoned pending uploads by age.
CREATE INDEX media_by_state ON media (state, created_at, pos);
