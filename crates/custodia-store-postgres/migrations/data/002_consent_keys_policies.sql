-- {namespace}_data, version 2: the consent ledger, API keys and published policy versions.
-- Like the rest of this schema they hold pseudonymous ids, policy keys and times, never personal
-- values: the fact of a consent, a hash of each API key's secret, the policy as published.
-- Runs with search_path set to the data schema, so names are unqualified.

-- The ledger is evidence of what a subject agreed to, so it outlives the subject row: no
-- foreign key to subjects (deleting an erased subject keeps its events under its pseudonymous
-- id). The store checks the subject exists when an event is appended, and key-share locks its
-- row until the commit, as a foreign key would.
-- `pos` gives append order, which neither the random ids nor `at` (events may be recorded late)
-- give. `purposes` keeps its order; an empty array (a restriction covers every purpose) is a
-- value, not an absence.
CREATE TABLE consent_events (
    pos               BIGINT  GENERATED ALWAYS AS IDENTITY,
    id                BYTEA   NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    subject           BYTEA   NOT NULL CHECK (length(subject) = 16),
    purposes          TEXT[]  NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('given', 'withdrawn', 'refused',
                                  'expired', 'renewed', 'objected', 'restricted',
                                  'unrestricted')),
    guardian          BYTEA   CHECK (length(guardian) = 16),
    guardian_verified BOOLEAN NOT NULL,
    policy_version    TEXT    NOT NULL,
    method            TEXT    NOT NULL,
    at                BIGINT  NOT NULL,
    expires_at        BIGINT
);

CREATE INDEX consent_events_by_subject ON consent_events (subject, pos);

-- `pos` lists keys oldest first. Only a hash of the secret is kept, so a copy of this schema
-- cannot be used to call the API.
CREATE TABLE api_keys (
    pos         BIGINT  GENERATED ALWAYS AS IDENTITY,
    id          BYTEA   NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    name        TEXT    NOT NULL,
    secret_hash BYTEA   NOT NULL CHECK (length(secret_hash) = 32),
    admin       BOOLEAN NOT NULL,
    purposes    TEXT[]  NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

-- `pos` lists versions in publication order.
CREATE TABLE policy_versions (
    pos                    BIGINT GENERATED ALWAYS AS IDENTITY,
    version                TEXT   NOT NULL PRIMARY KEY,
    published_at           BIGINT NOT NULL,
    fresh_consent_purposes TEXT[] NOT NULL,
    source                 TEXT   NOT NULL
);

-- Append-only, like the audit log: the gate decides from the latest consent events, so
-- rewriting one would rewrite what a subject consented to, and a published version is what
-- consents given under it were given to.
CREATE FUNCTION is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER consent_events_are_append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION is_append_only();
CREATE TRIGGER consent_events_are_not_truncated BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION is_append_only();
CREATE TRIGGER policy_versions_are_append_only BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION is_append_only();
CREATE TRIGGER policy_versions_are_not_truncated BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION is_append_only();
