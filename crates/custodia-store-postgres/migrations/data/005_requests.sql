-- {namespace}_data, version 5: data-subject requests, the disclosure log and the notification
-- outbox. Like the rest of this schema they hold pseudonymous ids, policy keys, states and
-- times; what a requester asked, every free-text reason or notice and every payload are sealed
-- by the vault.
-- Requests, disclosures and notifications are evidence of how a subject's rights were handled,
-- so they outlive the subject row, like the consent ledger: no foreign key to subjects (deleting
-- an erased subject keeps them under its pseudonymous id). The store checks the subject exists
-- when a request or a disclosure is recorded, and key-share locks its row until the commit, as
-- a foreign key would.
-- Runs with search_path set to the data schema, so names are unqualified.

-- `pos` orders rows inserted at the same millisecond by insertion; ids are random and cannot.
-- `flags` keeps its order. The pending identity check is four nullable columns, all set or all
-- NULL; only a keyed hash of its code is kept. `version` counts updates: an update names the
-- version it was decided on and applies only if the row is still at it.
CREATE TABLE requests (
    pos                     BIGINT  GENERATED ALWAYS AS IDENTITY,
    id                      BYTEA   NOT NULL CHECK (length(id) = 16),
    subject                 BYTEA   NOT NULL CHECK (length(subject) = 16),
    kind                    TEXT    NOT NULL,
    state                   TEXT    NOT NULL,
    law                     TEXT    NOT NULL,
    received_at             BIGINT  NOT NULL,
    acknowledge_by          BIGINT,
    due_at                  BIGINT  NOT NULL,
    original_due_at         BIGINT,
    flags                   TEXT[]  NOT NULL,
    verification_code_hash  BYTEA   CHECK (length(verification_code_hash) = 32),
    verification_issued_at  BIGINT,
    verification_expires_at BIGINT,
    verification_attempts   BIGINT  CHECK (verification_attempts >= 0),
    updated_at              BIGINT  NOT NULL,
    closed_at               BIGINT,
    version                 BIGINT  NOT NULL CHECK (version >= 0),
    details                 BYTEA   NOT NULL,
    CONSTRAINT requests_pkey PRIMARY KEY (id),
    CONSTRAINT requests_verification_complete CHECK (
        (verification_code_hash IS NULL) = (verification_issued_at IS NULL)
        AND (verification_code_hash IS NULL) = (verification_expires_at IS NULL)
        AND (verification_code_hash IS NULL) = (verification_attempts IS NULL))
);

-- The queue: requests in a state, by due date (the deadline watcher, the operator's list).
CREATE INDEX requests_by_state ON requests (state, due_at, id);

-- A subject's requests (the CCPA's count of requests in 12 months, the subject's own list).
CREATE INDEX requests_by_subject ON requests (subject, due_at, id);

-- `pos` gives the order disclosures were recorded in.
CREATE TABLE disclosures (
    pos            BIGINT GENERATED ALWAYS AS IDENTITY,
    id             BYTEA  NOT NULL CHECK (length(id) = 16),
    subject        BYTEA  NOT NULL CHECK (length(subject) = 16),
    recipient      TEXT   NOT NULL,
    recipient_kind TEXT   NOT NULL CHECK (recipient_kind IN ('processor', 'authority')),
    categories     TEXT[] NOT NULL,
    purpose        TEXT   NOT NULL,
    at             BIGINT NOT NULL,
    reference      TEXT,
    country        TEXT,
    mechanism      TEXT,
    CONSTRAINT disclosures_pkey PRIMARY KEY (id)
);

CREATE INDEX disclosures_by_subject ON disclosures (subject, pos);

-- Append-only, like the consent ledger: it is whom an erasure must reach, and what was handed
-- over to whom.
CREATE TRIGGER disclosures_are_append_only BEFORE UPDATE OR DELETE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION is_append_only();
CREATE TRIGGER disclosures_are_not_truncated BEFORE TRUNCATE ON disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION is_append_only();

-- The outbox. `pos` gives the order notifications were queued in. `request` may be NULL (a
-- notice outside any request); when set, the request must exist. `next_attempt_at` is when the
-- deliverer may next take it (NULL: never again); claiming one moves it forward, so a deliverer
-- that dies lets its claim lapse.
CREATE TABLE notifications (
    pos             BIGINT GENERATED ALWAYS AS IDENTITY,
    id              BYTEA  NOT NULL CHECK (length(id) = 16),
    kind            TEXT   NOT NULL,
    request         BYTEA  REFERENCES requests (id),
    subject         BYTEA  NOT NULL CHECK (length(subject) = 16),
    recipient       TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged',
                               'impossible', 'failed')),
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    settled_at      BIGINT,
    reason          BYTEA,
    payload         BYTEA  NOT NULL,
    CONSTRAINT notifications_pkey PRIMARY KEY (id)
);

-- A request's notifications (an erasure stays open until each is settled).
CREATE INDEX notifications_by_request ON notifications (request, pos);

-- The deliverer claims pending notifications whose next attempt is due.
CREATE INDEX notifications_by_due ON notifications (state, next_attempt_at, pos);
