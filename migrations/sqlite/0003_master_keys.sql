-- Master key versions held by a key management service (the Postgres table `master_keys`): the KMS's ciphertext
-- of a master key and its check value, never the key.

CREATE TABLE master_keys (
    key_version INTEGER PRIMARY KEY CHECK (key_version BETWEEN 1 AND 4294967295),
    kms_key_id  TEXT    NOT NULL CHECK (length(kms_key_id) BETWEEN 1 AND 2048),
    ciphertext  BLOB    NOT NULL CHECK (length(ciphertext) BETWEEN 1 AND 65536),
    check_value BLOB    NOT NULL CHECK (length(check_value) = 32),
    created_at  TEXT    NOT NULL
) STRICT;
