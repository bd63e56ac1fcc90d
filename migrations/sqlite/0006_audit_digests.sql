-- Issue 23: signed audit digests, as in migrations/postgres/0006_audit_digests.sql (no row-level security: the
-- store is one process). Times are RFC 3339 text; the delivery schedule is Unix milliseconds (NULL once delivered
-- or given up).
CREATE TABLE audit_digests (
    org_id           TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    digest_seq       INTEGER NOT NULL CHECK (digest_seq >= 1),
    head_seq         INTEGER NOT NULL CHECK (head_seq >= 1),
    head_hash        BLOB    NOT NULL CHECK (length(head_hash) = 32),
    payload          TEXT    NOT NULL CHECK (length(payload) BETWEEN 2 AND 4000),
    payload_hash     BLOB    NOT NULL CHECK (length(payload_hash) = 32),
    signature        BLOB    NOT NULL CHECK (length(signature) = 64),
    issued_at        TEXT    NOT NULL,
    filed            INTEGER NOT NULL DEFAULT 0 CHECK (filed IN (0, 1)),
    delivery_id      TEXT    NOT NULL UNIQUE,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_delivery_ms INTEGER,
    last_error       TEXT    CHECK (length(last_error) <= 500),
    PRIMARY KEY (org_id, digest_seq),
    CONSTRAINT audit_digests_one_per_head UNIQUE (org_id, head_seq)
) STRICT;

CREATE INDEX audit_digests_next_delivery_idx ON audit_digests (next_delivery_ms)
    WHERE next_delivery_ms IS NOT NULL;
CREATE INDEX audit_digests_unfiled_idx ON audit_digests (issued_at) WHERE filed = 0;

CREATE TRIGGER audit_digests_org_id_immutable BEFORE UPDATE OF org_id ON audit_digests
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on audit_digests');
END;
