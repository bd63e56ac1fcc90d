-- The byoc schema for PostgreSQL, in one place: roles, tables, the tenant context, row-level security, the audit
-- hash chain, the functions the service and the operator call, and every privilege. Read it top to bottom; each
-- object is defined once. Later changes are new migrations (and show up in `migrations/postgres/schema.sql`,
-- the checked-in `pg_dump --schema-only` that CI compares with a freshly migrated database).
--
-- Roles (cluster-wide names, see section 1; docs/operations.md has the SQL that creates the logins):
--   the owner          the role that runs `byoc migrate`; owns the database, every table and function. It needs
--                      no superuser rights: CREATEROLE (to create the three roles below once per cluster) and
--                      ownership of the database. It never runs the service.
--   byoc_app           the runtime role. Every connection of the service runs `SET ROLE byoc_app`; it owns
--                      nothing and reaches tenant rows only through the policies of section 5.
--   byoc_service       a marker: a login that is a member of it may act as a calling service (tenant context with
--                      `byoc.service` and no user). Checked on `session_user`, so `SET ROLE` cannot grant it.
--   byoc_operator      the operator CLI's role (`byoc org create`, `member add`, `import-env`, `keys rotate`,
--                      `keys check`): the cross-organization functions of section 8, nothing else.
--
-- Every SECURITY DEFINER function pins `search_path = pg_catalog, pg_temp` and schema-qualifies every name it
-- uses, so objects a caller creates in its own temporary schema never run with the owner's rights.

-- 1. Roles and database-level privileges ------------------------------------------------------------------------

DO $roles$
DECLARE
    wanted  text;
    attempt int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d
                   WHERE d.datname = pg_catalog.current_database()
                     AND pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE')) THEN
        RAISE EXCEPTION 'byoc migrate must run as the owner of database %', pg_catalog.current_database()
            USING HINT = 'ALTER DATABASE ... OWNER TO <the role in DATABASE_URL>, or use the owner''s URL';
    END IF;

    -- Roles are cluster-wide and many databases may migrate at once (the test suite migrates dozens): an
    -- existence check, and a retry when another database creates the role between check and create.
    FOREACH wanted IN ARRAY ARRAY['byoc_app', 'byoc_service', 'byoc_operator'] LOOP
        attempt := 0;
        LOOP
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = wanted) THEN
                    EXECUTE pg_catalog.format(
                        'CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION',
                        wanted);
                END IF;
                EXIT;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                attempt := attempt + 1;
                IF attempt > 5 THEN
                    RAISE;
                END IF;
            END;
        END LOOP;
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                   WHERE rolname = wanted
                     AND (rolsuper OR rolbypassrls OR rolcanlogin OR rolcreaterole OR rolcreatedb)) THEN
            RAISE EXCEPTION 'role % exists but may log in, bypass row-level security or administer roles', wanted
                USING HINT = 'it must be a plain NOLOGIN role; fix it by hand';
        END IF;
    END LOOP;

    -- None of the three may inherit another's rights (byoc_app must never reach the operator's functions).
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
               JOIN pg_catalog.pg_roles member ON member.oid = m.member
               WHERE member.rolname IN ('byoc_app', 'byoc_service', 'byoc_operator')) THEN
        RAISE EXCEPTION 'byoc_app, byoc_service and byoc_operator must not be members of any role'
            USING HINT = 'REVOKE the membership by hand';
    END IF;

    -- The owner must not be a member of byoc_app: the policies written for byoc_app would then apply to the owner
    -- inside its SECURITY DEFINER functions too (and the role lookup would recurse).
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND pg_catalog.pg_has_role(current_user, 'byoc_app', 'MEMBER') THEN
        RAISE EXCEPTION 'the owner % must not be a member of byoc_app', current_user
            USING HINT = pg_catalog.format('REVOKE byoc_app FROM %I; the service logs in as another role',
                                           current_user);
    END IF;

    -- CONNECT and TEMPORARY are granted to PUBLIC by default. Take them back: a login made for another byoc
    -- database on this cluster (a member of the same cluster-wide byoc_app) cannot connect here, and no
    -- runtime login gets a temporary schema to shadow types or tables in. Each login is granted CONNECT on this
    -- database by name (docs/operations.md).
    EXECUTE pg_catalog.format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
END
$roles$;

-- Nobody but the owner creates objects in the schema (PostgreSQL 15's default, stated for older templates).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO byoc_app, byoc_operator;

-- 2. Tables -----------------------------------------------------------------------------------------------------

CREATE TABLE public.organizations (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    hot_lead_threshold integer     NOT NULL DEFAULT 80 CHECK (hot_lead_threshold BETWEEN 0 AND 100),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.organization_members (
    org_id     uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE public.organization_api_credentials (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                 uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    credential_type        text        NOT NULL
        CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    -- The whole envelope (crates/byoc-crypto): format (1) ‖ key version (4) ‖ wrap nonce (12) ‖ wrapped data
    -- key (48) ‖ payload nonce (12) ‖ ciphertext and tag. Never plaintext.
    encrypted_data         bytea       NOT NULL CHECK (length(encrypted_data) > 0),
    encryption_key_version bigint      NOT NULL CHECK (encryption_key_version BETWEEN 1 AND 4294967295),
    display_name           text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    -- A non-secret hint for people, such as the last four characters of a secret.
    public_hint            text        CHECK (length(public_hint) <= 64),
    -- The provider's id of the account (Twilio's Account SID). Not a secret: the Twilio status webhook compares a
    -- callback's AccountSid with it before anything is decrypted. NULL for providers without one.
    provider_account_id    text        CHECK (length(provider_account_id) BETWEEN 1 AND 64),
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

-- The credential of a type that a service is given: active, verified first, newest, largest id, read in that
-- order without a sort.
CREATE INDEX organization_api_credentials_winner_idx
    ON public.organization_api_credentials
       (org_id, credential_type, (verification_status = 'verified') DESC, created_at DESC, id DESC)
    WHERE is_active;
-- Rotation and `keys check` walk the credentials in (org_id, id) order, so that a batch spans few
-- organizations and writes few `rotated` audit events. The key version is deliberately not indexed: rotation
-- rewrites it, and with no index on a column it changes an update can stay heap-only.
CREATE INDEX organization_api_credentials_org_id_id_idx ON public.organization_api_credentials (org_id, id);

-- The audit trail: one hash chain per organization (section 6). org_id has no foreign key of its own: every row
-- is written while its organization's chain head is locked, and the head references organizations.
CREATE TABLE public.credential_audit_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid        NOT NULL,
    -- Position in the organization's hash chain, from 1 with no gaps.
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

CREATE INDEX credential_audit_log_org_id_idx ON public.credential_audit_log (org_id, id DESC);

-- The last link of each organization's audit chain, so that deleting the newest rows is detectable too.
CREATE TABLE public.credential_audit_chain_heads (
    org_id    uuid   PRIMARY KEY REFERENCES public.organizations (id),
    last_seq  bigint NOT NULL,
    last_hash bytea  NOT NULL
);

-- Key check values, one per master key version, written by whoever first wrote with that version.
-- Global, not tenant data: it reveals nothing about any organization.
CREATE TABLE public.encryption_key_checks (
    key_version bigint      PRIMARY KEY CHECK (key_version BETWEEN 1 AND 4294967295),
    check_value bytea       NOT NULL CHECK (length(check_value) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- OAuth "connect" attempts: single use (consumed by deleting), expiring, bound to an org and a user.
CREATE TABLE public.oauth_states (
    id                     uuid        PRIMARY KEY,
    org_id                 uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
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

CREATE INDEX oauth_states_org_id_idx ON public.oauth_states (org_id, expires_at);

-- Outbound SMS, updated by Twilio's status callback.
CREATE TABLE public.sms_messages (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    credential_id        uuid        REFERENCES public.organization_api_credentials (id) ON DELETE SET NULL,
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

-- Settings-page sessions. The cookie holds a random session id; the table holds only its SHA-256 hash, the
-- organization and user it signs in, and its idle and absolute expiry. A session is live while
-- `now() < expires_at` and `now() < last_seen_at + idle_timeout_secs`. byoc_app creates one in the user's tenant
-- context and reaches the rest only through the functions of section 7 (a request carries only its cookie, so
-- the lookup happens before any tenant context exists).
CREATE TABLE public.dashboard_sessions (
    id_hash           bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    org_id            uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    user_id           uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    idle_timeout_secs integer     NOT NULL CHECK (idle_timeout_secs > 0),
    expires_at        timestamptz NOT NULL
);

CREATE INDEX dashboard_sessions_expires_at_idx ON public.dashboard_sessions (expires_at);

-- Per-organization daily provider call counters (quota monitoring).
CREATE TABLE public.provider_usage_daily (
    org_id     uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    provider   text        NOT NULL CHECK (provider IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    day        date        NOT NULL,
    calls      bigint      NOT NULL DEFAULT 0 CHECK (calls >= 0),
    failures   bigint      NOT NULL DEFAULT 0 CHECK (failures >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, provider, day)
);

-- 3. The tenant context -----------------------------------------------------------------------------------------
--
-- Set per transaction, never per session: `set_config('byoc.org_id', <uuid>, true)` and either
-- `set_config('byoc.user_id', <uuid>, true)` for a signed-in user or `set_config('byoc.service', <name>, true)`
-- for a calling service. An unset or empty value reads as NULL, so "no context" matches no rows; a malformed,
-- non-empty one fails the statement (it can only come from a bug). The helpers are plain SQL with every name
-- qualified and no SET clause, so the planner inlines them into the policies.

CREATE FUNCTION public.byoc_ctx_org() RETURNS uuid
    LANGUAGE sql STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '')::pg_catalog.uuid $$;

CREATE FUNCTION public.byoc_ctx_user() RETURNS uuid
    LANGUAGE sql STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.user_id', true), '')::pg_catalog.uuid $$;

-- True when the statement acts for a calling service (no user) inside an organization, and the session logged
-- in as a member of byoc_service. `session_user` is the login: `SET ROLE` does not change it, so a connection
-- of the service's user-request login cannot claim a service context, whatever it sets.
CREATE FUNCTION public.byoc_ctx_is_service() RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '') IS NOT NULL
       AND NULLIF(pg_catalog.current_setting('byoc.user_id', true), '') IS NULL
       AND NULLIF(pg_catalog.current_setting('byoc.service', true), '') IS NOT NULL
       AND pg_catalog.pg_has_role(SESSION_USER, 'byoc_service', 'MEMBER')
$$;

-- The context user's role in the context organization, or NULL. SECURITY DEFINER so that the lookup does not
-- recurse through organization_members' own policies.
CREATE FUNCTION public.byoc_ctx_member_role() RETURNS text
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    member_role pg_catalog.text;
BEGIN
    SELECT m.role INTO member_role
    FROM public.organization_members m
    WHERE m.org_id = public.byoc_ctx_org()
      AND m.user_id = public.byoc_ctx_user();
    RETURN member_role;
END
$$;

-- Sets the whole context at once (NULL clears a part), for the store's read-write transactions.
CREATE FUNCTION public.byoc_enter_context(p_org uuid, p_user uuid, p_service text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::pg_catalog.text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::pg_catalog.text, ''), true),
            pg_catalog.set_config('byoc.service', coalesce(p_service, ''), true);
END
$$;

-- 4. Row triggers -----------------------------------------------------------------------------------------------

-- updated_at is maintained by the database on every update.
CREATE FUNCTION public.byoc_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

-- org_id never changes on an existing row, whoever asks (the owner and superusers included).
CREATE FUNCTION public.check_org_id_immutability() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
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
        EXECUTE pg_catalog.format('CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.%I
                                   FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at()', tbl);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['organization_members', 'organization_api_credentials', 'credential_audit_log',
                               'credential_audit_chain_heads', 'oauth_states', 'sms_messages',
                               'provider_usage_daily', 'dashboard_sessions'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.%I
                                   FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
                                   EXECUTE FUNCTION public.check_org_id_immutability()', tbl);
    END LOOP;
END
$triggers$;

-- Cache invalidation across replicas: every change to a credential that can change what a service is given
-- (insert, deactivation, verification outcome, envelope edit, purge) notifies `byoc_credential_changes` with
-- {"kind": "credential", "org_id", "credential_type", "credential_id"}, whoever writes. A key rotation's re-wrap is not such a change:
-- it replaces the header and wrapped data key (the first 65 bytes of the envelope) and the key version, and
-- leaves the payload nonce and ciphertext (and every other column) as they were; it does not notify, or a
-- million-row rotation would flood the listeners. The test is on the row itself, so no setting can silence a
-- real change.
CREATE FUNCTION public.byoc_notify_credential_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.encryption_key_version IS DISTINCT FROM NEW.encryption_key_version
       AND pg_catalog.substr(OLD.encrypted_data, 66) = pg_catalog.substr(NEW.encrypted_data, 66)
       AND (pg_catalog.to_jsonb(OLD) - ARRAY['encrypted_data', 'encryption_key_version', 'updated_at'])
           = (pg_catalog.to_jsonb(NEW) - ARRAY['encrypted_data', 'encryption_key_version', 'updated_at']) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                 pg_catalog.json_build_object('kind', 'credential',
                                                              'org_id', changed.org_id,
                                                              'credential_type', changed.credential_type,
                                                              'credential_id', changed.id)::pg_catalog.text);
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_credential_change
    AFTER INSERT OR UPDATE OR DELETE ON public.organization_api_credentials
    FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_credential_change();

-- Member roles and organizations are cached by every replica too: a member added, given another role or removed
-- notifies {"kind": "member", "org_id", "user_id"} (the old row's user as well, should an update change it), and
-- an organization changed or removed notifies {"kind": "organization", "org_id"}, whoever writes (the SaaS may
-- write organization_members directly).
CREATE FUNCTION public.byoc_notify_member_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                     pg_catalog.json_build_object('kind', 'member', 'org_id', OLD.org_id,
                                                                  'user_id', OLD.user_id)::pg_catalog.text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.user_id IS DISTINCT FROM NEW.user_id) THEN
        PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                     pg_catalog.json_build_object('kind', 'member', 'org_id', NEW.org_id,
                                                                  'user_id', NEW.user_id)::pg_catalog.text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_member_change
    AFTER INSERT OR UPDATE OR DELETE ON public.organization_members
    FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_member_change();

CREATE FUNCTION public.byoc_notify_organization_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                 pg_catalog.json_build_object('kind', 'organization',
                                                              'org_id', OLD.id)::pg_catalog.text);
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_organization_change
    AFTER UPDATE OR DELETE ON public.organizations
    FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_organization_change();

-- 5. Row-level security -----------------------------------------------------------------------------------------
--
-- Enabled and forced on every tenant table. Every byoc_app policy requires the row's org_id (for organizations:
-- id) to equal the context organization, and the actor to be a member of it or a calling service; writes also
-- require the role the contract gives them (insert/update: owner or admin; delete: owner). Each helper is
-- wrapped in a scalar subquery so that it runs once per statement, not once per row; the service case is
-- checked first, so a calling service skips the membership lookup.
--
-- FORCE binds the owner too. The owner's one policy, byoc_owner_through_functions, admits rows only when the
-- owner's rights were reached from another login (current_user differs from session_user): inside the SECURITY
-- DEFINER functions below, called by the service's or the operator's login. A session logged in as the owner
-- sees no tenant rows. (Superusers bypass row-level security altogether.)

DO $rls$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['organizations', 'organization_members', 'organization_api_credentials',
                               'credential_audit_log', 'credential_audit_chain_heads', 'oauth_states',
                               'sms_messages', 'provider_usage_daily', 'dashboard_sessions'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE pg_catalog.format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE pg_catalog.format('CREATE POLICY byoc_owner_through_functions ON public.%I AS PERMISSIVE FOR ALL
                                   TO %I USING (current_user <> session_user)
                                   WITH CHECK (current_user <> session_user)', tbl, current_user);
    END LOOP;
END
$rls$;

CREATE POLICY org_select ON public.organizations FOR SELECT TO byoc_app
    USING (id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY org_update ON public.organizations FOR UPDATE TO byoc_app
    USING (id = (SELECT public.byoc_ctx_org()) AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin'))
    WITH CHECK (id = (SELECT public.byoc_ctx_org())
                AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin'));

-- An admin may manage members and admins; only an owner may touch an owner row.
CREATE POLICY members_select ON public.organization_members FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY members_insert ON public.organization_members FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_member_role()) = 'owner'
                     OR ((SELECT public.byoc_ctx_member_role()) = 'admin' AND role <> 'owner')));
CREATE POLICY members_update ON public.organization_members FOR UPDATE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_member_role()) = 'owner'
                OR ((SELECT public.byoc_ctx_member_role()) = 'admin' AND role <> 'owner')))
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_member_role()) = 'owner'
                     OR ((SELECT public.byoc_ctx_member_role()) = 'admin' AND role <> 'owner')));
CREATE POLICY members_delete ON public.organization_members FOR DELETE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org()) AND (SELECT public.byoc_ctx_member_role()) = 'owner');

-- The plan's four credential policies, with the role lookup matching the context organization AND user.
CREATE POLICY org_credentials_select ON public.organization_api_credentials FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY org_credentials_insert ON public.organization_api_credentials FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin')
                AND created_by = (SELECT public.byoc_ctx_user()));
CREATE POLICY org_credentials_update ON public.organization_api_credentials FOR UPDATE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org()) AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin'))
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin'));
CREATE POLICY org_credentials_delete ON public.organization_api_credentials FOR DELETE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org()) AND (SELECT public.byoc_ctx_member_role()) = 'owner');

-- The audit log is read by members and services; rows are appended only by byoc_append_audit_events (section 7).
CREATE POLICY audit_select ON public.credential_audit_log FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));

-- A connect attempt belongs to one user of one org; only owners and admins may start one.
CREATE POLICY oauth_states_select ON public.oauth_states FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org()) AND user_id = (SELECT public.byoc_ctx_user())
           AND (SELECT public.byoc_ctx_member_role()) IS NOT NULL);
CREATE POLICY oauth_states_insert ON public.oauth_states FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org()) AND user_id = (SELECT public.byoc_ctx_user())
                AND (SELECT public.byoc_ctx_member_role()) IN ('owner', 'admin'));
CREATE POLICY oauth_states_delete ON public.oauth_states FOR DELETE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org()) AND user_id = (SELECT public.byoc_ctx_user())
           AND (SELECT public.byoc_ctx_member_role()) IS NOT NULL);

-- Operational records written while using a credential, by members (test SMS, leads) and services (the status
-- webhook); never deleted by byoc_app.
CREATE POLICY sms_select ON public.sms_messages FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY sms_insert ON public.sms_messages FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY sms_update ON public.sms_messages FOR UPDATE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL))
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));

CREATE POLICY usage_select ON public.provider_usage_daily FOR SELECT TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY usage_insert ON public.provider_usage_daily FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));
CREATE POLICY usage_update ON public.provider_usage_daily FOR UPDATE TO byoc_app
    USING (org_id = (SELECT public.byoc_ctx_org())
           AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL))
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND ((SELECT public.byoc_ctx_is_service()) OR (SELECT public.byoc_ctx_member_role()) IS NOT NULL));

-- A user signs in to the settings page for themself, in an organization they are a member of.
CREATE POLICY dashboard_sessions_insert ON public.dashboard_sessions FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND user_id = (SELECT public.byoc_ctx_user())
                AND (SELECT public.byoc_ctx_member_role()) IS NOT NULL);

-- 6. The audit hash chain ---------------------------------------------------------------------------------------
--
-- Each audit row stores the hash of the previous row of the same organization (prev_hash) and its own hash:
--   hash = sha256(prev_hash || utf8(jsonb_build_array(seq, org_id, at as epoch microseconds, actor, action,
--                                                     credential_id, credential_type, detail)::text))
-- with 32 zero bytes before the first row. Links are computed while the organization's chain head is locked,
-- so concurrent writers of one organization are serialised and the chain has no forks or gaps; the head keeps
-- the last link, so deleting the newest rows is detected as well.

CREATE FUNCTION public.byoc_audit_genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex') $$;

-- Plain SQL with every name qualified and no SET clause, so that the planner inlines it.
CREATE FUNCTION public.byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamptz, actor text,
                                       action text, credential_id uuid, credential_type text, detail jsonb)
    RETURNS bytea
    LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.sha256(prev_hash OPERATOR(pg_catalog.||) pg_catalog.convert_to(
        pg_catalog.jsonb_build_array(
            seq, org_id,
            (pg_catalog."extract"('epoch', at) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,
            actor, action, credential_id, credential_type, detail)::pg_catalog.text,
        'UTF8'))
$$;

-- Links a row inserted without its links (the `rotated` events of a key rotation, an owner's own insert):
-- byoc_append_audit_events computes the links of a whole batch itself and inserts them complete.
CREATE FUNCTION public.byoc_audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head_seq  pg_catalog.int8;
    head_hash pg_catalog.bytea;
BEGIN
    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = NEW.org_id
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO public.credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (NEW.org_id, 0, public.byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
        FROM public.credential_audit_chain_heads h
        WHERE h.org_id = NEW.org_id
        FOR UPDATE;
    END IF;

    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := public.byoc_audit_hash(NEW.prev_hash, NEW.seq, NEW.org_id, NEW.at, NEW.actor, NEW.action,
                                       NEW.credential_id, NEW.credential_type, NEW.detail);
    UPDATE public.credential_audit_chain_heads
    SET last_seq = NEW.seq, last_hash = NEW.hash
    WHERE org_id = NEW.org_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_chain_link BEFORE INSERT ON public.credential_audit_log
    FOR EACH ROW
    WHEN (NEW.hash IS NULL)
    EXECUTE FUNCTION public.byoc_audit_chain_link();

-- Checks one organization's chain: intact, how many events were checked, the first seq at which it breaks (NULL
-- when intact) and what is wrong there. Operators run it as the owner:
--   SELECT * FROM byoc_audit_chain_check('<org uuid>');
-- byoc_app uses byoc_verify_audit_chain() (section 7), which checks the context organization only.
CREATE FUNCTION public.byoc_audit_chain_check(p_org uuid)
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r             record;
    expected_seq  pg_catalog.int8 := 1;
    expected_prev pg_catalog.bytea := public.byoc_audit_genesis_hash();
    checked       pg_catalog.int8 := 0;
    head_seq      pg_catalog.int8;
    head_hash     pg_catalog.bytea;
BEGIN
    FOR r IN
        SELECT l.seq, l.org_id, l.at, l.actor, l.action, l.credential_id, l.credential_type, l.detail,
               l.prev_hash, l.hash
        FROM public.credential_audit_log l
        WHERE l.org_id = p_org
        ORDER BY l.seq
    LOOP
        IF r.seq <> expected_seq THEN
            RETURN QUERY SELECT false, checked, expected_seq, 'an event is missing (gap in the sequence)';
            RETURN;
        END IF;
        IF r.prev_hash <> expected_prev THEN
            RETURN QUERY SELECT false, checked, r.seq, 'the previous-hash link does not match';
            RETURN;
        END IF;
        IF r.hash <> public.byoc_audit_hash(r.prev_hash, r.seq, r.org_id, r.at, r.actor,
                                                                 r.action, r.credential_id, r.credential_type,
                                                                 r.detail) THEN
            RETURN QUERY SELECT false, checked, r.seq, 'the event was changed after it was written';
            RETURN;
        END IF;
        checked := checked + 1;
        expected_prev := r.hash;
        expected_seq := expected_seq + 1;
    END LOOP;

    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = p_org;

    IF NOT FOUND THEN
        IF checked > 0 THEN
            RETURN QUERY SELECT false, checked, 1::pg_catalog.int8, 'the chain head is missing';
            RETURN;
        END IF;
    ELSIF head_seq > checked THEN
        RETURN QUERY SELECT false, checked, expected_seq, 'the newest events were deleted';
        RETURN;
    ELSIF head_seq <> checked OR head_hash <> expected_prev THEN
        RETURN QUERY SELECT false, checked, head_seq, 'the chain head does not match the newest event';
        RETURN;
    END IF;

    RETURN QUERY SELECT true, checked, NULL::pg_catalog.int8, NULL::pg_catalog.text;
END
$$;

-- 7. What the service calls beyond the policies -----------------------------------------------------------------
--
-- Narrow SECURITY DEFINER entry points for byoc_app, each doing one job for the context organization and
-- enforcing the role the contract gives that job. None gives a general cross-organization read.

-- Raises insufficient_privilege unless the context user's role is in p_roles, or (when p_services) the
-- context is a calling service. Returns the actor as the audit trail names it: 'user:<uuid>' or
-- 'service:<name>'.
CREATE FUNCTION public.byoc_require_context(p_roles text[], p_services boolean) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF public.byoc_ctx_org() IS NOT NULL THEN
        IF p_services AND public.byoc_ctx_is_service() THEN
            RETURN 'service:' || pg_catalog.current_setting('byoc.service');
        END IF;
        IF public.byoc_ctx_member_role() = ANY (p_roles) THEN
            RETURN 'user:' || public.byoc_ctx_user()::pg_catalog.text;
        END IF;
    END IF;
    RAISE EXCEPTION 'the tenant context does not allow this (needs %)',
        pg_catalog.array_to_string(p_roles ||
                                   CASE WHEN p_services THEN ARRAY['service'] ELSE ARRAY[]::pg_catalog.text[] END,
                                   ' or ')
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Records a verification outcome of a credential of the context organization, at the server's time. Verifying
-- is an owner's or admin's action in the contract; a calling service may record any outcome too (the
-- service marks a credential failed when its provider refuses a use). Only the three verification columns
-- change. Returns false when the credential does not exist in the context organization.
CREATE FUNCTION public.byoc_record_verification(p_credential_id uuid, p_status text, p_error text)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], true);
    UPDATE public.organization_api_credentials
    SET verification_status = p_status,
        verification_error  = p_error,
        last_verified_at    = pg_catalog.now()
    WHERE id = p_credential_id
      AND org_id = public.byoc_ctx_org();
    RETURN FOUND;
END
$$;

-- Stores a refresh token that Google rotated during a use. The refresh happens inside an availability check,
-- which any member (or a calling service) may run, while the update policy admits owners and admins only;
-- rather than widen that policy, this does exactly one thing: replace encrypted_data and encryption_key_version
-- of an existing, ACTIVE google_calendar credential of the context organization, only while the row still holds
-- the envelope the caller read (compare-and-swap). The new envelope must carry the stated key version in its
-- header (format 1: format byte, then the version as 4 bytes big-endian), so the version column cannot be made
-- to lie. The envelope is bound to (org, type, id) by its associated data, so a row can only receive an
-- envelope sealed for it by a holder of the master keys; without them a caller can at worst store bytes that
-- do not decrypt.
CREATE FUNCTION public.byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea,
                                                     p_new_key_version bigint)
    RETURNS SETOF public.organization_api_credentials
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    IF p_expected IS NULL OR p_new IS NULL OR pg_catalog.length(p_new) < 93
       OR pg_catalog.get_byte(p_new, 0) <> 1
       OR p_new_key_version IS DISTINCT FROM
          ((pg_catalog.get_byte(p_new, 1)::pg_catalog.int8 << 24)
           | (pg_catalog.get_byte(p_new, 2)::pg_catalog.int8 << 16)
           | (pg_catalog.get_byte(p_new, 3)::pg_catalog.int8 << 8)
           | pg_catalog.get_byte(p_new, 4)::pg_catalog.int8) THEN
        RAISE EXCEPTION 'not a format 1 envelope of the stated key version'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        UPDATE public.organization_api_credentials c
        SET encrypted_data = p_new,
            encryption_key_version = p_new_key_version
        WHERE c.id = p_credential_id
          AND c.org_id = public.byoc_ctx_org()
          AND c.credential_type = 'google_calendar'
          AND c.is_active
          AND c.encrypted_data = p_expected
        RETURNING c.*;
END
$$;

-- Appends events to the context organization's chain, in array order, and returns the new last sequence
-- number. The actor is the context's ('user:<uuid>' or 'service:<name>') and the time is the server's: the
-- runtime role cannot write an event in someone else's name or at another time. An event that records a
-- change needs the role that may make the change: `purged` an owner; `created`, `deactivated` and
-- `verification_reset` an owner or admin; `verified` an owner, admin or service; any other action (a read,
-- a use, a refresh token stored) any member or service. All arrays have one element per event; p_detail
-- holds JSON texts. The whole batch is linked while the head is locked once, inserted with one INSERT, and the
-- head moved once.
CREATE FUNCTION public.byoc_append_audit_events(p_org_id uuid, p_action text[], p_credential_id uuid[],
                                                p_credential_type text[], p_detail text[])
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    events      pg_catalog.int4 := coalesce(pg_catalog.cardinality(p_action), 0);
    event_actor pg_catalog.text;
    event_at    pg_catalog.timestamptz := pg_catalog.now();
    head_seq    pg_catalog.int8;
    head_hash   pg_catalog.bytea;
    seqs        pg_catalog.int8[] := '{}';
    details     pg_catalog.jsonb[] := '{}';
    prevs       pg_catalog.bytea[] := '{}';
    hashes      pg_catalog.bytea[] := '{}';
BEGIN
    IF p_org_id IS DISTINCT FROM public.byoc_ctx_org() THEN
        RAISE EXCEPTION 'audit events may only be appended to the context organization'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    event_actor := public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    IF coalesce(pg_catalog.cardinality(p_credential_id), 0) <> events
       OR coalesce(pg_catalog.cardinality(p_credential_type), 0) <> events
       OR coalesce(pg_catalog.cardinality(p_detail), 0) <> events THEN
        RAISE EXCEPTION 'audit event arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF 'purged' = ANY (p_action) THEN
        PERFORM public.byoc_require_context(ARRAY['owner'], false);
    END IF;
    IF p_action && ARRAY['created', 'deactivated', 'verification_reset'] THEN
        PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], false);
    END IF;
    IF 'verified' = ANY (p_action) THEN
        PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], true);
    END IF;

    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = p_org_id
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO public.credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (p_org_id, 0, public.byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
        FROM public.credential_audit_chain_heads h
        WHERE h.org_id = p_org_id
        FOR UPDATE;
    END IF;
    IF events = 0 THEN
        RETURN head_seq;
    END IF;

    FOR i IN 1 .. events LOOP
        seqs[i] := head_seq + i;
        details[i] := p_detail[i]::pg_catalog.jsonb;
        prevs[i] := head_hash;
        head_hash := public.byoc_audit_hash(head_hash, seqs[i], p_org_id, event_at, event_actor, p_action[i],
                                            p_credential_id[i], p_credential_type[i], details[i]);
        hashes[i] := head_hash;
    END LOOP;

    INSERT INTO public.credential_audit_log (org_id, seq, at, actor, action, credential_id, credential_type,
                                             detail, prev_hash, hash)
    SELECT p_org_id, e.seq, event_at, event_actor, e.action, e.credential_id, e.credential_type, e.detail,
           e.prev_hash, e.hash
    -- unnest of several arrays is FROM-clause syntax and takes no schema; the pinned path finds pg_catalog's.
    FROM unnest(seqs, p_action, p_credential_id, p_credential_type, details, prevs, hashes)
         AS e (seq, action, credential_id, credential_type, detail, prev_hash, hash)
    ORDER BY e.seq;

    UPDATE public.credential_audit_chain_heads
    SET last_seq = head_seq + events, last_hash = head_hash
    WHERE org_id = p_org_id;
    RETURN head_seq + events;
END
$$;

-- Verifies the audit chain of the context organization (its members and services only).
CREATE FUNCTION public.byoc_verify_audit_chain()
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    RETURN QUERY SELECT * FROM public.byoc_audit_chain_check(public.byoc_ctx_org());
END
$$;

-- The live settings-page session with this hash: bumps its last_seen_at and returns its organization and user
-- (no row when the hash is unknown or the session has expired). The 256-bit random id behind the hash is the
-- capability; nothing else about any session can be read.
CREATE FUNCTION public.byoc_touch_dashboard_session(p_id_hash bytea)
    RETURNS TABLE (org_id uuid, user_id uuid)
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.dashboard_sessions s
    SET last_seen_at = pg_catalog.now()
    WHERE s.id_hash = p_id_hash
      AND s.expires_at > pg_catalog.now()
      AND s.last_seen_at + pg_catalog.make_interval(secs => s.idle_timeout_secs) > pg_catalog.now()
    RETURNING s.org_id, s.user_id
$$;

-- Signing out: deletes the session with this hash, live or not; true when there was one.
CREATE FUNCTION public.byoc_end_dashboard_session(p_id_hash bytea)
    RETURNS boolean
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH ended AS (
        DELETE FROM public.dashboard_sessions s WHERE s.id_hash = p_id_hash RETURNING 1
    )
    SELECT pg_catalog.count(*) > 0 FROM ended
$$;

-- Deletes every session past its absolute or idle expiry (called when a session is created); returns how many.
CREATE FUNCTION public.byoc_delete_expired_dashboard_sessions()
    RETURNS bigint
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH expired AS (
        DELETE FROM public.dashboard_sessions s
        WHERE s.expires_at <= pg_catalog.now()
           OR s.last_seen_at + pg_catalog.make_interval(secs => s.idle_timeout_secs) <= pg_catalog.now()
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM expired
$$;

-- How many credentials each master key version wraps, across organizations. The service reports it at start
-- (a version missing from its keyring is named with the count it cannot open) and the operator around a
-- rotation; it says nothing about any organization.
CREATE FUNCTION public.byoc_credentials_per_key_version()
    RETURNS TABLE (encryption_key_version bigint, credentials bigint)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.encryption_key_version, pg_catalog.count(*)
    FROM public.organization_api_credentials c
    GROUP BY c.encryption_key_version
    ORDER BY c.encryption_key_version
$$;

-- 8. Operator functions -----------------------------------------------------------------------------------------
--
-- Cross-organization paths for byoc_operator only: organization bootstrap (`byoc org create`, `byoc member add`,
-- `byoc import-env`) and key rotation and `byoc keys check`. byoc_app cannot execute any of them.

CREATE FUNCTION public.byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer)
    RETURNS SETOF public.organizations
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.organizations (name, hot_lead_threshold)
    VALUES (p_name, p_hot_lead_threshold)
    RETURNING *
$$;

CREATE FUNCTION public.byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text)
    RETURNS SETOF public.organization_members
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.organization_members (org_id, user_id, role)
    VALUES (p_org_id, p_user_id, p_role)
    RETURNING *
$$;

-- `byoc import-env`: stores a credential in an organization with no user (`created_by` empty) and, in the same
-- transaction, its `created` audit event in p_actor's name, unless the organization already has an ACTIVE
-- credential of the same type with the same provider_account_id (the same Twilio Account SID): then it returns that
-- one (the verified one first, then the newest) and writes nothing. A credential without a provider_account_id is
-- always stored. The caller tells the two apart by id: the row returned has p_id only when it was inserted. The
-- organization's row is locked first (FOR NO KEY UPDATE, which the foreign key checks of other inserts into the
-- organization do not wait for), so concurrent imports into one organization run one after the other and the later
-- one finds the earlier one's row (at READ COMMITTED, the store's isolation, each statement of this function reads
-- what was committed before it began). A missing organization locks nothing and the insert fails on the foreign
-- key. The event's detail is p_detail with `session_user` set to the database login that ran the import
-- (SESSION_USER, which neither SET ROLE nor SECURITY DEFINER changes), whatever p_detail said.
CREATE FUNCTION public.byoc_operator_import_credential(p_id uuid, p_org_id uuid, p_credential_type text,
                                                       p_encrypted_data bytea, p_key_version bigint,
                                                       p_display_name text, p_public_hint text,
                                                       p_provider_account_id text, p_actor text, p_detail jsonb)
    RETURNS SETOF public.organization_api_credentials
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM public.organizations o WHERE o.id = p_org_id FOR NO KEY UPDATE;
    IF p_provider_account_id IS NOT NULL THEN
        RETURN QUERY
            SELECT c.* FROM public.organization_api_credentials c
            WHERE c.org_id = p_org_id
              AND c.credential_type = p_credential_type
              AND c.provider_account_id = p_provider_account_id
              AND c.is_active
            ORDER BY (c.verification_status = 'verified') DESC, c.created_at DESC, c.id DESC
            LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        WITH inserted AS (
            INSERT INTO public.organization_api_credentials
                (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint,
                 provider_account_id)
            VALUES (p_id, p_org_id, p_credential_type, p_encrypted_data, p_key_version, p_display_name,
                    p_public_hint, p_provider_account_id)
            RETURNING *
        ), audited AS (
            INSERT INTO public.credential_audit_log (org_id, actor, action, credential_id, credential_type, detail)
            SELECT i.org_id, p_actor, 'created', i.id, i.credential_type,
                   p_detail || pg_catalog.jsonb_build_object('session_user', SESSION_USER::pg_catalog.text)
            FROM inserted i
        )
        SELECT * FROM inserted;
END
$$;

-- One page of envelopes in (org_id, id) order after (p_after_org_id, p_after_id) (keyset pagination; both null
-- for the first page), optionally skipping rows already on a key version. Exposes only what re-wrapping and
-- checking need. Planned for each call's values (EXECUTE … USING): as a generic plan it sorted a sequential
-- scan of the whole table for every page instead of walking the (org_id, id) index.
CREATE FUNCTION public.byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint,
                                                    p_limit integer)
    RETURNS TABLE (id uuid, org_id uuid, credential_type text, encryption_key_version bigint,
                   encrypted_data bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT c.id, c.org_id, c.credential_type, c.encryption_key_version, c.encrypted_data
         FROM public.organization_api_credentials c
         WHERE (c.org_id, c.id) > ($1, $2)
           AND c.encryption_key_version IS DISTINCT FROM $3
         ORDER BY c.org_id, c.id
         LIMIT $4'
        USING coalesce(p_after_org_id, '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid),
              coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid),
              p_skip_key_version, p_limit;
END
$$;

-- Compare-and-swap of many envelopes in one statement (a row changes only if it still holds the expected
-- envelope under the expected key version, so a concurrent change by the service wins and rotation can be
-- interrupted and resumed anywhere), plus the `rotated` audit events of the rows swapped, in p_actor's name
-- (detail {"rewrapped", "from_key_version", "key_version"}), one per organization and old key version, inserted
-- in organization order so that concurrent swaps take the chain heads' locks in one order. A re-wrap does not
-- notify the listeners (section 4). Returns the ids that were swapped.
CREATE FUNCTION public.byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_expected_key_versions bigint[],
                                                    p_new bytea[], p_new_key_versions bigint[], p_actor text)
    RETURNS SETOF uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_expected)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_expected_key_versions)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_new)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_new_key_versions) THEN
        RAISE EXCEPTION 'swap arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH swapped AS (
            UPDATE public.organization_api_credentials c
            SET encrypted_data = s.new_data,
                encryption_key_version = s.new_version
            FROM unnest(p_ids, p_expected, p_expected_key_versions, p_new, p_new_key_versions)
                 AS s (id, expected, expected_version, new_data, new_version)
            WHERE c.id = s.id
              AND c.encrypted_data = s.expected
              AND c.encryption_key_version = s.expected_version
            RETURNING c.id, c.org_id, s.expected_version AS from_version, s.new_version AS to_version
        ), audited AS (
            INSERT INTO public.credential_audit_log (org_id, actor, action, detail)
            SELECT w.org_id, p_actor, 'rotated',
                   pg_catalog.jsonb_build_object('rewrapped', pg_catalog.count(*), 'from_key_version',
                                                 w.from_version, 'key_version', w.to_version)
            FROM swapped w
            GROUP BY w.org_id, w.from_version, w.to_version
            ORDER BY w.org_id, w.from_version, w.to_version
        )
        SELECT w.id FROM swapped w;
END
$$;

-- 9. Privileges -------------------------------------------------------------------------------------------------
--
-- byoc_app gets the least its path needs and owns nothing; it never inserts, updates or deletes audit rows.
GRANT SELECT, UPDATE (name, hot_lead_threshold) ON public.organizations TO byoc_app;
GRANT SELECT, INSERT, UPDATE (role), DELETE ON public.organization_members TO byoc_app;
-- New credentials always start pending; verification columns change only through byoc_record_verification.
GRANT SELECT, DELETE,
      INSERT (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint,
              provider_account_id, created_by),
      UPDATE (encrypted_data, encryption_key_version, display_name, public_hint, is_active)
    ON public.organization_api_credentials TO byoc_app;
GRANT SELECT ON public.credential_audit_log TO byoc_app;
GRANT SELECT, INSERT (key_version, check_value) ON public.encryption_key_checks TO byoc_app;
GRANT SELECT, INSERT, DELETE ON public.oauth_states TO byoc_app;
GRANT SELECT, INSERT, UPDATE (status, error_code, status_updated_at, delivered_at) ON public.sms_messages TO byoc_app;
GRANT SELECT, INSERT, UPDATE (calls, failures) ON public.provider_usage_daily TO byoc_app;
GRANT INSERT (id_hash, org_id, user_id, idle_timeout_secs, expires_at) ON public.dashboard_sessions TO byoc_app;

-- The operator reads and records key check values around a rotation; everything else it does goes through
-- the functions of section 8.
GRANT SELECT, INSERT (key_version, check_value) ON public.encryption_key_checks TO byoc_operator;

-- Functions are executable by PUBLIC by default: take that back from every function of this schema, then grant
-- each role exactly what it calls. The context helpers are granted to byoc_app because its policies call them.
DO $revoke$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$revoke$;

GRANT EXECUTE ON FUNCTION
    public.byoc_ctx_org(), public.byoc_ctx_user(), public.byoc_ctx_is_service(), public.byoc_ctx_member_role(),
    public.byoc_enter_context(uuid, uuid, text),
    public.byoc_record_verification(uuid, text, text),
    public.byoc_replace_rotated_envelope(uuid, bytea, bytea, bigint),
    public.byoc_append_audit_events(uuid, text[], uuid[], text[], text[]),
    public.byoc_verify_audit_chain(),
    public.byoc_touch_dashboard_session(bytea), public.byoc_end_dashboard_session(bytea),
    public.byoc_delete_expired_dashboard_sessions(),
    public.byoc_credentials_per_key_version()
TO byoc_app;

GRANT EXECUTE ON FUNCTION
    public.byoc_credentials_per_key_version(),
    public.byoc_operator_create_organization(text, integer),
    public.byoc_operator_add_member(uuid, uuid, text),
    public.byoc_operator_import_credential(uuid, uuid, text, bytea, bigint, text, text, text, text, jsonb),
    public.byoc_operator_envelope_batch(uuid, uuid, bigint, integer),
    public.byoc_operator_swap_envelopes(uuid[], bytea[], bigint[], bytea[], bigint[], text)
TO byoc_operator;
