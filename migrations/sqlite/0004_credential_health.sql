-- Issue 21: periodic re-verification and the transactional outbox of credential events, as in the Postgres
-- migration 0004 (no row-level security: the store is one process). Scheduling times are Unix milliseconds.

-- When each credential is next re-verified (a row appears the first time the service claims work after the
-- credential exists, at a random point of the interval).
CREATE TABLE credential_reverify_schedule (
    credential_id TEXT    PRIMARY KEY NOT NULL REFERENCES organization_api_credentials (id) ON DELETE CASCADE,
    org_id        TEXT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    due_at_ms     INTEGER NOT NULL
) STRICT;

CREATE INDEX credential_reverify_schedule_due_idx ON credential_reverify_schedule (due_at_ms);

-- The outbox: written by the triggers below in the transaction that changes the credential, deleted once
-- delivered. No foreign keys: a purge's event outlives its credential.
CREATE TABLE credential_events (
    id                  TEXT    PRIMARY KEY NOT NULL,
    org_id              TEXT    NOT NULL,
    credential_id       TEXT    NOT NULL,
    credential_type     TEXT    NOT NULL
        CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    display_name        TEXT    NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    event_type          TEXT    NOT NULL
        CHECK (event_type IN ('credential.verified', 'credential.verification_failed', 'credential.deactivated',
                              'credential.purged', 'credential.reconnect_needed')),
    verification_status TEXT    NOT NULL CHECK (verification_status IN ('pending', 'verified', 'failed')),
    verification_error  TEXT    CHECK (length(verification_error) <= 2000),
    occurred_at         TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms     INTEGER NOT NULL,
    last_error          TEXT    CHECK (length(last_error) <= 500)
) STRICT;

CREATE INDEX credential_events_next_attempt_idx ON credential_events (next_attempt_ms);

-- The same events as Postgres's byoc_queue_credential_event: verified, verification_failed (reconnect_needed for
-- Google Calendar), deactivated, purged. The id is a random UUID (version 4), the time the database's.
CREATE TRIGGER credential_event_on_purge AFTER DELETE ON organization_api_credentials
BEGIN
    INSERT INTO credential_events (id, org_id, credential_id, credential_type, display_name, event_type,
                                   verification_status, verification_error, occurred_at, next_attempt_ms)
    VALUES (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
                || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
                || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
            OLD.org_id, OLD.id, OLD.credential_type, OLD.display_name, 'credential.purged',
            OLD.verification_status, OLD.verification_error, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;

CREATE TRIGGER credential_event_on_deactivation AFTER UPDATE OF is_active ON organization_api_credentials
WHEN OLD.is_active = 1 AND NEW.is_active = 0
BEGIN
    INSERT INTO credential_events (id, org_id, credential_id, credential_type, display_name, event_type,
                                   verification_status, verification_error, occurred_at, next_attempt_ms)
    VALUES (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
                || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
                || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
            NEW.org_id, NEW.id, NEW.credential_type, NEW.display_name, 'credential.deactivated',
            NEW.verification_status, NEW.verification_error, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;

CREATE TRIGGER credential_event_on_verification AFTER UPDATE OF verification_status ON organization_api_credentials
WHEN OLD.verification_status IS NOT NEW.verification_status AND NEW.verification_status IN ('verified', 'failed')
BEGIN
    INSERT INTO credential_events (id, org_id, credential_id, credential_type, display_name, event_type,
                                   verification_status, verification_error, occurred_at, next_attempt_ms)
    VALUES (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'
                || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1)
                || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
            NEW.org_id, NEW.id, NEW.credential_type, NEW.display_name,
            CASE
                WHEN NEW.verification_status = 'verified' THEN 'credential.verified'
                WHEN NEW.credential_type = 'google_calendar' THEN 'credential.reconnect_needed'
                ELSE 'credential.verification_failed'
            END,
            NEW.verification_status, NEW.verification_error, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
