-- keys.db, version 1: the root key's verifier and the data keys, each wrapped by an epoch key.
-- Kept apart from data.db so that destroying a key here erases the data it sealed in every copy
-- of data.db, backups included. The epoch keys live in keyring.db: an old backup of this file
-- holds data keys wrapped under epochs that may since have been destroyed there.

-- Marks the file as a Custodia key store ("CUSK"), so a swapped or foreign file is refused.
PRAGMA application_id = 1129665355;

-- At most one row: the CHECK pins the key to 1.
CREATE TABLE meta (
    singleton  INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    verifier   BLOB    NOT NULL,
    kdf        TEXT,
    created_at INTEGER NOT NULL
) STRICT;

-- epoch names a row of keyring.db's epochs. A foreign key cannot cross files, so the store
-- checks it under this file's write lock, which destroying an epoch also holds.
CREATE TABLE data_keys (
    id         BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    owner      BLOB    NOT NULL CHECK (length(owner) = 16),
    kind       TEXT    NOT NULL CHECK (kind IN ('subject', 'statutory')),
    epoch      INTEGER NOT NULL CHECK (epoch BETWEEN 0 AND 4294967295),
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX data_keys_by_owner ON data_keys (owner);
-- Re-keying pages through one epoch in id order; destroying an epoch asks if any key is left.
CREATE INDEX data_keys_by_epoch ON data_keys (epoch, id);
