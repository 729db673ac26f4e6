-- {namespace}_keys, version 1: the root key's verifier and the data keys, each wrapped by an
-- epoch key. Kept in its own schema (and possibly its own database) so that destroying a key
-- here erases the data it sealed in every copy of the data schema, backups included. The epoch
-- keys live in {namespace}_keyring: a dump of this schema holds data keys wrapped under epochs
-- that may since have been destroyed there, and nothing that could unwrap them.
-- Runs with search_path set to the key schema, so names are unqualified.

-- At most one row: the CHECK pins the key to TRUE.
CREATE TABLE meta (
    singleton  BOOLEAN NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    verifier   BYTEA   NOT NULL,
    kdf        TEXT,
    created_at BIGINT  NOT NULL
);

-- epoch names a row of the keyring's epochs (u32 ids; BIGINT holds them all). No foreign key:
-- the keyring may live in another database. The store checks the epoch exists under an advisory
-- lock of this schema that destroying an epoch takes exclusively.
CREATE TABLE data_keys (
    id         BYTEA  NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    owner      BYTEA  NOT NULL CHECK (length(owner) = 16),
    kind       TEXT   NOT NULL CHECK (kind IN ('subject', 'statutory')),
    epoch      BIGINT NOT NULL CHECK (epoch BETWEEN 0 AND 4294967295),
    wrapped    BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX data_keys_by_owner ON data_keys (owner);
-- Re-keying pages through one epoch in id order; destroying an epoch asks if any key is left.
CREATE INDEX data_keys_by_epoch ON data_keys (epoch, id);
