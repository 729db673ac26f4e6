-- {namespace}_data, version 1: subjects, encrypted records and the audit chain.
-- Every personal value is ciphertext here; the clear columns are pseudonymous ids, policy keys
-- and times, which retention and the gate need without decrypting anything.
-- Runs with search_path set to the data schema, so names are unqualified.

CREATE TABLE subjects (
    id             BYTEA  NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    lookup         BYTEA  NOT NULL UNIQUE CHECK (length(lookup) = 32),
    profile        BYTEA  NOT NULL,
    key            BYTEA  NOT NULL CHECK (length(key) = 16),
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL,
    closed_at      BIGINT,
    erased_at      BIGINT
);

-- `pos` orders records collected at the same millisecond by insertion; ids are random and
-- cannot.
CREATE TABLE records (
    pos          BIGINT  GENERATED ALWAYS AS IDENTITY,
    id           BYTEA   NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    subject      BYTEA   NOT NULL REFERENCES subjects (id),
    category     TEXT    NOT NULL,
    purpose      TEXT    NOT NULL,
    key          BYTEA   NOT NULL CHECK (length(key) = 16),
    ciphertext   BYTEA   NOT NULL,
    collected_at BIGINT  NOT NULL,
    rule         TEXT    NOT NULL,
    expires_at   BIGINT,
    statutory    BOOLEAN NOT NULL
);

-- Ciphertext is random and never compresses: EXTERNAL skips TOAST's doomed compression attempt
-- on every large value while still moving it out of line.
ALTER TABLE records ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
ALTER TABLE subjects ALTER COLUMN profile SET STORAGE EXTERNAL;

-- Also serves the foreign key from records to subjects (deleting a subject looks here).
CREATE INDEX records_by_subject ON records (subject, collected_at, pos);

-- Most records wait for a trigger (account closed, processed) with no expiry yet; the sweeper
-- only ever looks at the others.
CREATE INDEX records_by_expiry ON records (expires_at, pos) WHERE expires_at IS NOT NULL;

-- One column per AuditEvent field, so entries can be queried. NULL and '' stay distinct and
-- `reasons` keeps its order: every field is hashed, so the store must give back what it got.
CREATE TABLE audit (
    seq       BIGINT NOT NULL PRIMARY KEY CHECK (seq >= 1),
    prev_hash BYTEA  NOT NULL CHECK (length(prev_hash) = 32),
    hash      BYTEA  NOT NULL CHECK (length(hash) = 32),
    kind      TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT,
    subject   TEXT,
    category  TEXT,
    purpose   TEXT,
    record    TEXT,
    outcome   TEXT,
    reasons   TEXT[] NOT NULL,
    rule      TEXT
);

-- The last appended entry (seq 0 and the zero hash for an empty chain). Every commit that
-- appends takes this row with SELECT ... FOR UPDATE, which serialises appends across instances
-- sharing the database, so the chain never forks; the seq primary key above turns any writer
-- that skipped the lock into a failed commit rather than a fork.
CREATE TABLE audit_head (
    singleton BOOLEAN NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    seq       BIGINT  NOT NULL CHECK (seq >= 0),
    hash      BYTEA   NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_head (singleton, seq, hash) VALUES (TRUE, 0, decode(repeat('00', 32), 'hex'));

-- The chain proves tampering after the fact; this stops a stray code path from rewriting
-- history in the first place.
CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_is_not_truncated BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
