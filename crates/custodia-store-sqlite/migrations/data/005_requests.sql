-- data.db, version 5: data-subject requests, the disclosure log and the notification outbox.
-- Like the rest of this file they hold pseudonymous ids, policy keys, states and times; what a
-- requester asked, every free-text reason or notice and every payload are sealed by the vault.

-- Requests, disclosures and notifications are evidence of how a subject's rights were handled,
-- so they outlive the subject row, like the consent ledger: no foreign key to subjects (deleting
-- an erased subject keeps them under its pseudonymous id). The store checks the subject exists
-- when a request or a disclosure is recorded instead.

-- `pos` aliases the rowid (stable across VACUUM, as elsewhere in this file). `flags` is a JSON
-- array of strings, as consent_events.purposes. The pending identity check is four nullable
-- columns, all set or all NULL; only a keyed hash of its code is kept. `version` counts updates:
-- an update names the version it was decided on and applies only if the row is still at it.
-- `details` is the last column because it can be large (see records.ciphertext).
CREATE TABLE requests (
    pos                     INTEGER NOT NULL PRIMARY KEY,
    id                      BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject                 BLOB    NOT NULL CHECK (length(subject) = 16),
    kind                    TEXT    NOT NULL,
    state                   TEXT    NOT NULL,
    law                     TEXT    NOT NULL,
    received_at             INTEGER NOT NULL,
    acknowledge_by          INTEGER,
    due_at                  INTEGER NOT NULL,
    original_due_at         INTEGER,
    flags                   TEXT    NOT NULL,
    verification_code_hash  BLOB    CHECK (length(verification_code_hash) = 32),
    verification_issued_at  INTEGER,
    verification_expires_at INTEGER,
    verification_attempts   INTEGER CHECK (verification_attempts >= 0),
    updated_at              INTEGER NOT NULL,
    closed_at               INTEGER,
    version                 INTEGER NOT NULL CHECK (version >= 0),
    details                 BLOB    NOT NULL,
    CHECK ((verification_code_hash IS NULL) = (verification_issued_at IS NULL)
       AND (verification_code_hash IS NULL) = (verification_expires_at IS NULL)
       AND (verification_code_hash IS NULL) = (verification_attempts IS NULL))
) STRICT;

-- The queue: requests in a state, by due date (the deadline watcher, the operator's list).
CREATE INDEX requests_by_state ON requests (state, due_at);

-- A subject's requests (the CCPA's count of requests in 12 months, the subject's own list).
CREATE INDEX requests_by_subject ON requests (subject, due_at);

-- `pos` gives the order disclosures were recorded in. `categories` as requests.flags.
CREATE TABLE disclosures (
    pos            INTEGER NOT NULL PRIMARY KEY,
    id             BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject        BLOB    NOT NULL CHECK (length(subject) = 16),
    recipient      TEXT    NOT NULL,
    recipient_kind TEXT    NOT NULL CHECK (recipient_kind IN ('processor', 'authority')),
    categories     TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    at             INTEGER NOT NULL,
    reference      TEXT,
    country        TEXT,
    mechanism      TEXT
) STRICT;

CREATE INDEX disclosures_by_subject ON disclosures (subject, pos);

-- Append-only, like the consent ledger: it is whom an erasure must reach, and what was handed
-- over to whom.
CREATE TRIGGER disclosures_are_append_only_update BEFORE UPDATE ON disclosures
BEGIN
    SELECT RAISE(ABORT, 'the disclosure log is append-only');
END;
CREATE TRIGGER disclosures_are_append_only_delete BEFORE DELETE ON disclosures
BEGIN
    SELECT RAISE(ABORT, 'the disclosure log is append-only');
END;

-- The outbox. `pos` gives the order notifications were queued in. `request` may be NULL (a
-- notice outside any request); when set, the request must exist. `next_attempt_at` is when the
-- deliverer may next take it (NULL: never again); claiming one moves it forward, so a deliverer
-- that dies lets its claim lapse. `payload` (emptied once not needed) is last, as requests.details.
CREATE TABLE notifications (
    pos             INTEGER NOT NULL PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    kind            TEXT    NOT NULL,
    request         BLOB    REFERENCES requests (id),
    subject         BLOB    NOT NULL CHECK (length(subject) = 16),
    recipient       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged',
                                'impossible', 'failed')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    settled_at      INTEGER,
    reason          BLOB,
    payload         BLOB    NOT NULL
) STRICT;

-- A request's notifications (an erasure stays open until each is settled).
CREATE INDEX notifications_by_request ON notifications (request, pos);

-- The deliverer claims pending notifications whose next attempt is due.
CREATE INDEX notifications_by_due ON notifications (state, next_attempt_at);
