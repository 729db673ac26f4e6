-- keyring.db, version 1: the epoch keys, wrapped by the root key. Key custody: back this file up
-- only with the root key, never with data.db or keys.db, so that destroying an epoch here makes
-- every older keys.db backup unreadable.

-- Marks the file as a Custodia keyring ("CUSR"), so a swapped or foreign file is refused.
PRAGMA application_id = 1129665362;

-- pending = 1: written by an initialisation whose metadata in keys.db may not have committed.
-- Such an epoch never wrapped a data key, so the next initialisation may replace it; an epoch
-- with pending = 0 is never replaced.
CREATE TABLE epochs (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    wrapped    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    pending    INTEGER NOT NULL DEFAULT 0 CHECK (pending IN (0, 1))
) STRICT;
