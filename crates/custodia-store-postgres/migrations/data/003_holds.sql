-- {namespace}_data, version 3: legal holds, which suspend retention deletion.
-- A hold names a subject by pseudonymous id and a category by policy key; either may be absent
-- (every subject, every category). `reason` is the operator's case reference, not personal data.
-- `pos` gives the order holds were placed in. No foreign key to subjects: a hold may name a
-- subject whose row an erasure later removes, and it must stay as evidence of why data was kept.
-- Runs with search_path set to the data schema, so names are unqualified.
CREATE TABLE holds (
    pos         BIGINT GENERATED ALWAYS AS IDENTITY,
    id          BYTEA  NOT NULL CHECK (length(id) = 16),
    subject     BYTEA  CHECK (length(subject) = 16),
    category    TEXT,
    reason      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    ends_at     BIGINT,
    released_at BIGINT,
    CONSTRAINT holds_pkey PRIMARY KEY (id)
);

-- The sweeper asks, for every due record, whether an unreleased hold covers it; released holds
-- pile up over the years and never matter again.
CREATE INDEX holds_in_force ON holds (subject, category) WHERE released_at IS NULL;
