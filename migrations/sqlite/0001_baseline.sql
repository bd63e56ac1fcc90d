-- The embedded store's schema (one baseline; later changes are new migrations): the Postgres tables without row-level security (SQLite has none; the store puts
-- the org filter in every query and checks roles in code). UUIDs are hyphenated text, timestamps RFC 3339 text,
-- JSON is text. The audit hash chain is computed by the store in the same transaction as the insert.

CREATE TABLE organizations (
    id                 TEXT    PRIMARY KEY NOT NULL,
    name               TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    hot_lead_threshold INTEGER NOT NULL DEFAULT 80 CHECK (hot_lead_threshold BETWEEN 0 AND 100),
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
) STRICT;

CREATE TABLE organization_members (
    org_id     TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT;

CREATE TABLE organization_api_credentials (
    id                     TEXT    PRIMARY KEY NOT NULL,
    org_id                 TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    credential_type        TEXT    NOT NULL
        CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    encrypted_data         BLOB    NOT NULL CHECK (length(encrypted_data) > 0),
    encryption_key_version INTEGER NOT NULL CHECK (encryption_key_version BETWEEN 1 AND 4294967295),
    display_name           TEXT    NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    public_hint            TEXT    CHECK (length(public_hint) <= 64),
    -- The provider's id of the account (Twilio's Account SID); not a secret. NULL for providers without one.
    provider_account_id    TEXT    CHECK (length(provider_account_id) BETWEEN 1 AND 64),
    is_active              INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    last_verified_at       TEXT,
    verification_status    TEXT    NOT NULL DEFAULT 'pending'
        CHECK (verification_status IN ('pending', 'verified', 'failed')),
    verification_error     TEXT    CHECK (length(verification_error) <= 2000),
    created_at             TEXT    NOT NULL,
    updated_at             TEXT    NOT NULL,
    created_by             TEXT,
    CONSTRAINT organization_api_credentials_display_name_key UNIQUE (org_id, credential_type, display_name)
) STRICT;

-- The "which credential wins" lookup: active rows of one type in one org.
CREATE INDEX organization_api_credentials_active_idx
    ON organization_api_credentials (org_id, credential_type, created_at DESC, id DESC)
    WHERE is_active = 1;
-- Rotation and `keys check` walk the credentials in (org_id, id) order: a batch then spans few organizations,
-- and so writes few `rotated` audit events.
CREATE INDEX organization_api_credentials_org_id_id_idx ON organization_api_credentials (org_id, id);

CREATE TABLE credential_audit_log (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT    NOT NULL REFERENCES organizations (id),
    seq             INTEGER NOT NULL,
    at              TEXT    NOT NULL,
    actor           TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action          TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    credential_id   TEXT,
    credential_type TEXT CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    detail          TEXT    NOT NULL DEFAULT '{}',
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    CONSTRAINT credential_audit_log_chain_key UNIQUE (org_id, seq)
) STRICT;

CREATE INDEX credential_audit_log_org_id_idx ON credential_audit_log (org_id, id DESC);

CREATE TABLE credential_audit_chain_heads (
    org_id    TEXT    PRIMARY KEY NOT NULL REFERENCES organizations (id),
    last_seq  INTEGER NOT NULL,
    last_hash BLOB    NOT NULL
) STRICT;

CREATE TABLE encryption_key_checks (
    key_version INTEGER PRIMARY KEY CHECK (key_version BETWEEN 1 AND 4294967295),
    check_value BLOB    NOT NULL CHECK (length(check_value) > 0),
    created_at  TEXT    NOT NULL
) STRICT;

CREATE TABLE oauth_states (
    id                     TEXT PRIMARY KEY NOT NULL,
    org_id                 TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id                TEXT NOT NULL,
    provider               TEXT NOT NULL CHECK (provider IN ('google_calendar')),
    pkce_verifier_envelope BLOB NOT NULL CHECK (length(pkce_verifier_envelope) > 0),
    client_credential_id   TEXT,
    created_at             TEXT NOT NULL,
    expires_at             TEXT NOT NULL
) STRICT;

CREATE INDEX oauth_states_org_id_idx ON oauth_states (org_id, expires_at);

CREATE TABLE sms_messages (
    id                   TEXT PRIMARY KEY NOT NULL,
    org_id               TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    credential_id        TEXT REFERENCES organization_api_credentials (id) ON DELETE SET NULL,
    provider_message_sid TEXT NOT NULL CHECK (length(provider_message_sid) BETWEEN 1 AND 64),
    to_masked            TEXT NOT NULL CHECK (length(to_masked) <= 32),
    purpose              TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 64),
    status               TEXT NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
    error_code           TEXT CHECK (length(error_code) <= 32),
    sent_at              TEXT NOT NULL,
    status_updated_at    TEXT NOT NULL,
    delivered_at         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    CONSTRAINT sms_messages_sid_key UNIQUE (org_id, provider_message_sid)
) STRICT;

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

CREATE TABLE provider_usage_daily (
    org_id     TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider   TEXT    NOT NULL CHECK (provider IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    day        TEXT    NOT NULL,
    calls      INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    failures   INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (org_id, provider, day)
) STRICT;

-- updated_at maintained by the database, in the same microsecond RFC 3339 form the store writes (SQLite's clock
-- has milliseconds, padded to six digits), and never earlier than the previous value, so text order stays time
-- order (recursive triggers are off, so the inner UPDATE does not re-fire).
CREATE TRIGGER organizations_touch_updated_at AFTER UPDATE ON organizations FOR EACH ROW
BEGIN
    UPDATE organizations
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER organization_members_touch_updated_at AFTER UPDATE ON organization_members FOR EACH ROW
BEGIN
    UPDATE organization_members
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE org_id = NEW.org_id AND user_id = NEW.user_id;
END;
CREATE TRIGGER organization_api_credentials_touch_updated_at AFTER UPDATE ON organization_api_credentials
FOR EACH ROW
BEGIN
    UPDATE organization_api_credentials
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER sms_messages_touch_updated_at AFTER UPDATE ON sms_messages FOR EACH ROW
BEGIN
    UPDATE sms_messages
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER provider_usage_daily_touch_updated_at AFTER UPDATE ON provider_usage_daily FOR EACH ROW
BEGIN
    UPDATE provider_usage_daily
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE org_id = NEW.org_id AND provider = NEW.provider AND day = NEW.day;
END;

-- org_id never changes on an existing row (the plan's check_org_id_immutability).
CREATE TRIGGER organization_members_org_id_immutable BEFORE UPDATE OF org_id ON organization_members
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on organization_members');
END;
CREATE TRIGGER organization_api_credentials_org_id_immutable BEFORE UPDATE OF org_id
ON organization_api_credentials FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on organization_api_credentials');
END;
CREATE TRIGGER credential_audit_log_org_id_immutable BEFORE UPDATE OF org_id ON credential_audit_log
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on credential_audit_log');
END;
CREATE TRIGGER credential_audit_chain_heads_org_id_immutable BEFORE UPDATE OF org_id
ON credential_audit_chain_heads FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on credential_audit_chain_heads');
END;
CREATE TRIGGER oauth_states_org_id_immutable BEFORE UPDATE OF org_id ON oauth_states
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on oauth_states');
END;
CREATE TRIGGER sms_messages_org_id_immutable BEFORE UPDATE OF org_id ON sms_messages
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on sms_messages');
END;
CREATE TRIGGER provider_usage_daily_org_id_immutable BEFORE UPDATE OF org_id ON provider_usage_daily
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on provider_usage_daily');
END;

CREATE TRIGGER dashboard_sessions_org_id_immutable BEFORE UPDATE OF org_id ON dashboard_sessions
FOR EACH ROW WHEN NEW.org_id IS NOT OLD.org_id
BEGIN
    SELECT RAISE(ABORT, 'org_id cannot be changed on dashboard_sessions');
END;

-- The audit log is append-only through the store; refuse updates and deletes of audit rows outright.
-- (Tests that show tamper detection drop these triggers first, as an attacker with file access could.)
CREATE TRIGGER credential_audit_log_no_update BEFORE UPDATE ON credential_audit_log FOR EACH ROW
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be changed');
END;
CREATE TRIGGER credential_audit_log_no_delete BEFORE DELETE ON credential_audit_log FOR EACH ROW
BEGIN
    SELECT RAISE(ABORT, 'audit events cannot be deleted');
END;
