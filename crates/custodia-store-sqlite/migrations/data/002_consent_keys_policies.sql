-- data.db, version 2: the consent ledger, API keys and published policy versions.
-- Like the rest of this file they hold pseudonymous ids, policy keys and times, never personal
-- values: the fact of a consent, a hash of each API key's secret, the policy as published.

-- The ledger is evidence of what a subject agreed to, so it outlives the subject row: no
-- foreign key to subjects (deleting an erased subject keeps its events under its pseudonymous
-- id). The store checks the subject exists when an event is appended instead.
-- `pos` aliases the rowid: the ledger is read in append order, which neither the random ids
-- nor `at` (events may be recorded late) give, and only an INTEGER PRIMARY KEY keeps that order
-- stable across VACUUM. `purposes` is a JSON array of strings: it keeps order, and an empty
-- list (a restriction covers every purpose) apart from none.
CREATE TABLE consent_events (
    pos               INTEGER NOT NULL PRIMARY KEY,
    id                BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject           BLOB    NOT NULL CHECK (length(subject) = 16),
    purposes          TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('given', 'withdrawn', 'refused',
                                  'expired', 'renewed', 'objected', 'restricted',
                                  'unrestricted')),
    guardian          BLOB    CHECK (length(guardian) = 16),
    guardian_verified INTEGER NOT NULL CHECK (guardian_verified IN (0, 1)),
    policy_version    TEXT    NOT NULL,
    method            TEXT    NOT NULL,
    at                INTEGER NOT NULL,
    expires_at        INTEGER
) STRICT;

CREATE INDEX consent_events_by_subject ON consent_events (subject, pos);

-- Append-only, like the audit log: the gate decides from the latest events, so rewriting one
-- would rewrite what a subject consented to.
CREATE TRIGGER consent_events_are_append_only_update BEFORE UPDATE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'the consent ledger is append-only');
END;
CREATE TRIGGER consent_events_are_append_only_delete BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'the consent ledger is append-only');
END;

-- `pos` lists keys oldest first. Only a hash of the secret is kept, so a copy of this file
-- cannot be used to call the API. `purposes` as in consent_events.
CREATE TABLE api_keys (
    pos         INTEGER NOT NULL PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    name        TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    admin       INTEGER NOT NULL CHECK (admin IN (0, 1)),
    purposes    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

-- `pos` lists versions in publication order; `source` is the last column because it can be
-- large (see records.ciphertext). `fresh_consent_purposes` as consent_events.purposes.
CREATE TABLE policy_versions (
    pos                    INTEGER NOT NULL PRIMARY KEY,
    version                TEXT    NOT NULL UNIQUE,
    published_at           INTEGER NOT NULL,
    fresh_consent_purposes TEXT    NOT NULL,
    source                 TEXT    NOT NULL
) STRICT;

-- A published version is what consents given under it were given to: it never changes.
CREATE TRIGGER policy_versions_are_append_only_update BEFORE UPDATE ON policy_versions
BEGIN
    SELECT RAISE(ABORT, 'published policy versions are append-only');
END;
CREATE TRIGGER policy_versions_are_append_only_delete BEFORE DELETE ON policy_versions
BEGIN
    SELECT RAISE(ABORT, 'published policy versions are append-only');
END;
