-- HTTP findings of the security review (issue 16, section 7): the Twilio account id of a credential as
-- metadata, and the settings page's server-side sessions.
--
-- Every SECURITY DEFINER function below runs with `search_path = pg_catalog, pg_temp` and names every table and
-- function with its schema. Rows reach the tables' owner (which these functions run as, under FORCE ROW LEVEL
-- SECURITY) through the policies `…_definer_functions`, which admit the owner only while `current_user` differs
-- from `session_user`: inside a SECURITY DEFINER function (or a SET ROLE by a member of the owner role), never in
-- a session that logged in as the owner. So the service must log in as a role other than the tables' owner
-- (docs/operations.md, "Postgres roles").

-- 1. The provider's id of the account a credential belongs to (Twilio's Account SID). Not a secret: the Twilio
--    status webhook compares a callback's AccountSid with it before anything is decrypted. NULL for credentials
--    stored before this migration and for providers without one.

ALTER TABLE public.organization_api_credentials
    ADD COLUMN provider_account_id text CHECK (length(provider_account_id) BETWEEN 1 AND 64);

GRANT INSERT (provider_account_id) ON public.organization_api_credentials TO byoc_app;

DO $policy$
BEGIN
    EXECUTE format('CREATE POLICY organization_api_credentials_definer_functions
                        ON public.organization_api_credentials FOR ALL TO %I
                        USING (current_user <> session_user) WITH CHECK (current_user <> session_user)',
                   current_user);
END
$policy$;

-- `byoc import-env` stores the account id too: the operator insert takes it as an eighth argument.
DROP FUNCTION public.byoc_operator_insert_credential(uuid, uuid, text, bytea, bigint, text, text);

CREATE FUNCTION public.byoc_operator_insert_credential(p_id uuid, p_org_id uuid, p_credential_type text,
                                                       p_encrypted_data bytea, p_key_version bigint,
                                                       p_display_name text, p_public_hint text,
                                                       p_provider_account_id text)
    RETURNS SETOF public.organization_api_credentials
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.organization_api_credentials
        (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint,
         provider_account_id)
    VALUES (p_id, p_org_id, p_credential_type, p_encrypted_data, p_key_version, p_display_name, p_public_hint,
            p_provider_account_id)
    RETURNING *
$$;

REVOKE ALL ON FUNCTION public.byoc_operator_insert_credential(uuid, uuid, text, bytea, bigint, text, text, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    public.byoc_operator_insert_credential(uuid, uuid, text, bytea, bigint, text, text, text) TO byoc_app;

-- 2. Settings-page sessions. The cookie holds a random session id; the table holds only its SHA-256 hash, the
--    organization and user it signs in, and its idle and absolute expiry. A session is live while
--    `now() < expires_at` and `now() < last_seen_at + idle_timeout_secs`.
--
--    byoc_app creates a session in the user's tenant context (policy dashboard_sessions_insert: the context
--    user, a member of the context organization) and may not read, change or delete rows itself: a request
--    carries only the cookie, so the lookup happens before any tenant context exists, through
--    byoc_touch_dashboard_session; signing out deletes by hash through byoc_end_dashboard_session; dead
--    sessions are removed by byoc_delete_expired_dashboard_sessions (called when a session is created).

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

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.dashboard_sessions
    FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION public.check_org_id_immutability();

ALTER TABLE public.dashboard_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.dashboard_sessions FORCE ROW LEVEL SECURITY;

CREATE POLICY dashboard_sessions_insert ON public.dashboard_sessions FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT public.byoc_ctx_org())
                AND user_id = (SELECT public.byoc_ctx_user())
                AND (SELECT public.byoc_ctx_member_role()) IS NOT NULL);

DO $policy$
BEGIN
    EXECUTE format('CREATE POLICY dashboard_sessions_definer_functions ON public.dashboard_sessions FOR ALL TO %I
                        USING (current_user <> session_user) WITH CHECK (current_user <> session_user)',
                   current_user);
END
$policy$;

GRANT INSERT (id_hash, org_id, user_id, idle_timeout_secs, expires_at) ON public.dashboard_sessions TO byoc_app;

-- The live session with this hash: bumps its last_seen_at and returns its organization and user (no row when
-- the hash is unknown or the session has expired).
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

-- Deletes every session past its absolute or idle expiry; returns how many.
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

REVOKE ALL ON FUNCTION public.byoc_touch_dashboard_session(bytea), public.byoc_end_dashboard_session(bytea),
    public.byoc_delete_expired_dashboard_sessions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.byoc_touch_dashboard_session(bytea), public.byoc_end_dashboard_session(bytea),
    public.byoc_delete_expired_dashboard_sessions() TO byoc_app;
