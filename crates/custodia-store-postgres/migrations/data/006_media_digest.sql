-- {namespace}_data, version 6: the plaintext digest of a media object, when its uploader
-- announced one (RFC 9530 Content-Digest) and the upload matched it. Sealed by the vault under
-- the subject's data key like a record's value, so it says nothing in clear and is unreadable
-- once the subject is erased; emptied (zero length) with the wrapped key when the object alone
-- is shredded. An export names it in its manifest instead of hashing the object again.
-- Runs with search_path set to the data schema, so names are unqualified.
ALTER TABLE media ADD COLUMN digest BYTEA NOT NULL DEFAULT ''::bytea;
