-- Tables, constraints, indexes and the maintenance triggers (updated_at, org_id immutability).

CREATE TABLE organizations (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    hot_lead_threshold integer     NOT NULL DEFAULT 80 CHECK (hot_lead_threshold BETWEEN 0 AND 100),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_members (
    org_id     uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE organization_api_credentials (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                 uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    credential_type        text        NOT NULL
        CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    -- The whole envelope: wrapped data key, nonce, ciphertext and tag. Never plaintext.
    encrypted_data         bytea       NOT NULL CHECK (length(encrypted_data) > 0),
    encryption_key_version bigint      NOT NULL CHECK (encryption_key_version BETWEEN 1 AND 4294967295),
    display_name           text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    -- A non-secret hint for people, such as the last four characters of an account SID.
    public_hint            text        CHECK (length(public_hint) <= 64),
    is_active              boolean     NOT NULL DEFAULT true,
    last_verified_at       timestamptz,
    verification_status    text        NOT NULL DEFAULT 'pending'
        CHECK (verification_status IN ('pending', 'verified', 'failed')),
    verification_error     text        CHECK (length(verification_error) <= 2000),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    created_by             uuid,
    CONSTRAINT organization_api_credentials_display_name_key UNIQUE (org_id, credential_type, display_name)
);

-- The "which credential wins" lookup: active rows of one type in one org.
CREATE INDEX organization_api_credentials_active_idx
    ON organization_api_credentials (org_id, credential_type, created_at DESC, id DESC)
    WHERE is_active;
-- Key rotation progress.
CREATE INDEX organization_api_credentials_key_version_idx
    ON organization_api_credentials (encryption_key_version);

CREATE TABLE credential_audit_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid        NOT NULL REFERENCES organizations (id),
    -- Position in the organization's hash chain, from 1 with no gaps. Filled by the chain trigger.
    seq             bigint      NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action          text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.:]{0,63}$'),
    -- No foreign key: purging a credential keeps its audit entries.
    credential_id   uuid,
    credential_type text CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    CONSTRAINT credential_audit_log_chain_key UNIQUE (org_id, seq)
);

CREATE INDEX credential_audit_log_org_id_idx ON credential_audit_log (org_id, id DESC);

-- The last link of each organization's audit chain, so that deleting the newest rows is detectable too.
-- Only the chain trigger (running as the owner) writes it.
CREATE TABLE credential_audit_chain_heads (
    org_id    uuid   PRIMARY KEY REFERENCES organizations (id),
    last_seq  bigint NOT NULL,
    last_hash bytea  NOT NULL
);

-- Key check values, one per master key version, written by whoever first wrote with that version.
-- Global, not tenant data: it reveals nothing about any organization.
CREATE TABLE encryption_key_checks (
    key_version bigint      PRIMARY KEY CHECK (key_version BETWEEN 1 AND 4294967295),
    check_value bytea       NOT NULL CHECK (length(check_value) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- OAuth "connect" attempts: single use (consumed by deleting), expiring, bound to an org and a user.
CREATE TABLE oauth_states (
    id                     uuid        PRIMARY KEY,
    org_id                 uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id                uuid        NOT NULL,
    provider               text        NOT NULL CHECK (provider IN ('google_calendar')),
    -- The PKCE code verifier, as an encryption envelope.
    pkce_verifier_envelope bytea       NOT NULL CHECK (length(pkce_verifier_envelope) > 0),
    -- The org's own OAuth client credential, or NULL for the platform's client.
    client_credential_id   uuid,
    created_at             timestamptz NOT NULL DEFAULT now(),
    expires_at             timestamptz NOT NULL,
    CHECK (expires_at > created_at)
);

CREATE INDEX oauth_states_org_id_idx ON oauth_states (org_id, expires_at);

-- Outbound SMS, updated by Twilio's status callback.
CREATE TABLE sms_messages (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    credential_id        uuid        REFERENCES organization_api_credentials (id) ON DELETE SET NULL,
    provider_message_sid text        NOT NULL CHECK (length(provider_message_sid) BETWEEN 1 AND 64),
    to_masked            text        NOT NULL CHECK (length(to_masked) <= 32),
    purpose              text        NOT NULL CHECK (length(purpose) BETWEEN 1 AND 64),
    status               text        NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
    error_code           text        CHECK (length(error_code) <= 32),
    sent_at              timestamptz NOT NULL,
    status_updated_at    timestamptz NOT NULL,
    delivered_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sms_messages_sid_key UNIQUE (org_id, provider_message_sid)
);

-- Per-organization daily provider call counters (quota monitoring).
CREATE TABLE provider_usage_daily (
    org_id     uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider   text        NOT NULL CHECK (provider IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    day        date        NOT NULL,
    calls      bigint      NOT NULL DEFAULT 0 CHECK (calls >= 0),
    failures   bigint      NOT NULL DEFAULT 0 CHECK (failures >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, provider, day)
);

-- updated_at is maintained by the database on every update.
CREATE FUNCTION byoc_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- org_id never changes on an existing row, whoever asks (the owner and superusers included).
CREATE FUNCTION check_org_id_immutability() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF NEW.org_id IS DISTINCT FROM OLD.org_id THEN
        RAISE EXCEPTION 'org_id cannot be changed on %', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

DO $triggers$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['organizations', 'organization_members', 'organization_api_credentials',
                               'sms_messages', 'provider_usage_daily'] LOOP
        EXECUTE format('CREATE TRIGGER touch_updated_at BEFORE UPDATE ON %I
                        FOR EACH ROW EXECUTE FUNCTION byoc_touch_updated_at()', tbl);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['organization_members', 'organization_api_credentials', 'credential_audit_log',
                               'credential_audit_chain_heads', 'oauth_states', 'sms_messages',
                               'provider_usage_daily'] LOOP
        EXECUTE format('CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON %I
                        FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
                        EXECUTE FUNCTION check_org_id_immutability()', tbl);
    END LOOP;
END
$triggers$;
