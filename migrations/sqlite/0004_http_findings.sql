-- HTTP findings of the security review (issue 16, section 7), as the Postgres migration 0014 without row-level
-- security: the Twilio account id of a credential as metadata, and the settings page's server-side sessions.

-- The provider's id of the account a credential belongs to (Twilio's Account SID); not a secret. NULL for
-- credentials stored before this migration and for providers without one.
ALTER TABLE organization_api_credentials
    ADD COLUMN provider_account_id TEXT CHECK (length(provider_account_id) BETWEEN 1 AND 64);

-- Settings-page sessions: the SHA-256 hash of the cookie's random id, the organization and user it signs in,
-- and its idle and absolute expiry (live while now < expires_at and now < last_seen_at + idle_timeout_secs).
CREATE TABLE dashboard_sessions (
    id_hash           BLOB    PRIMARY KEY NOT NULL CHECK (length(id_hash) = 32),
    org_id            TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id           TEXT    NOT NULL,
    created_at        TEXT    NOT NULL,
    last_seen_at      TEXT    NOT NULL,
    idle_timeout_secs INTEGER NOT NULL CHECK (idle_timeout_secs > 0),
    expires_at        TEXT    NOT NULL
) STRICT;

CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);

CREATE TRIGGER dashboard_sessions_org_id_immutable BEFORE UPDATE OF org_id ON dashboard_sessions
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on dashboard_sessions');
END;
