-- data.db, version 3: legal holds, which suspend retention deletion.
-- A hold names a subject by pseudonymous id and a category by policy key; either may be absent
-- (every subject, every category). `reason` is the operator's case reference, not personal data.
-- `pos` aliases the rowid: holds are listed in the order they were placed. No foreign key to
-- subjects: a hold may name a subject whose row an erasure later removes, and it must stay as
-- evidence of why data was kept.
CREATE TABLE holds (
    pos         INTEGER NOT NULL PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    subject     BLOB    CHECK (length(subject) = 16),
    category    TEXT,
    reason      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    ends_at     INTEGER,
    released_at INTEGER
) STRICT;

-- The sweeper asks, for every due record, whether an unreleased hold covers it; released holds
-- pile up over the years and never matter again.
CREATE INDEX holds_in_force ON holds (subject, category) WHERE released_at IS NULL;
