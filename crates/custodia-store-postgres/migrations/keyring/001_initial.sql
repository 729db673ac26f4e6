-- {namespace}_keyring, version 1: the epoch keys, wrapped by the root key. Key custody: back this
-- schema up only together with the root key, never with the data or key schema dumps, so that
-- destroying an epoch here makes every older dump of {namespace}_keys unreadable.
-- Runs with search_path set to the keyring schema, so names are unqualified.

-- Epoch ids are u32; BIGINT holds them all.
-- pending: written by an initialisation whose metadata in {namespace}_keys may not have
-- committed (only when the keyring lives in another database). Such an epoch never wrapped a
-- data key, so the next initialisation may replace it; an epoch that is not pending never is.
CREATE TABLE epochs (
    id         BIGINT  NOT NULL PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    wrapped    BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL,
    pending    BOOLEAN NOT NULL DEFAULT FALSE
);
