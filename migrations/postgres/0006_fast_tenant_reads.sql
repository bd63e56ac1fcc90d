-- Faster policy helpers and one-round-trip tenant reads.
--
-- The context helpers become plain SQL functions with no SET clause, so the planner inlines them into the
-- policies (a function with a SET clause is never inlined, and a SET search_path on every call is costly).
-- An unset or empty setting still reads as NULL (no rows); a malformed, non-empty one now fails the statement
-- with a cast error instead of being ignored (it can only come from a bug, and failing closed is right).
-- The role lookup no longer needs the definer switch either: the owner may read exactly the member row of the
-- context user in the context organization (policy members_context_lookup), nothing else.

CREATE OR REPLACE FUNCTION byoc_ctx_org() RETURNS uuid
    LANGUAGE sql STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION byoc_ctx_user() RETURNS uuid
    LANGUAGE sql STABLE
AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.user_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION byoc_ctx_is_service() RETURNS boolean
    LANGUAGE sql STABLE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '') IS NOT NULL
       AND NULLIF(pg_catalog.current_setting('byoc.user_id', true), '') IS NULL
       AND NULLIF(pg_catalog.current_setting('byoc.service', true), '') IS NOT NULL
$$;

DO $policy$
BEGIN
    EXECUTE format('CREATE POLICY members_context_lookup ON organization_members FOR SELECT TO %I
                    USING (org_id = public.byoc_ctx_org() AND user_id = public.byoc_ctx_user())', current_user);
END
$policy$;

-- "Member or service" policies check the service case first, so a calling service skips the membership
-- lookup (same meaning, cheaper for services).
ALTER POLICY org_select ON organizations
    USING (id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY members_select ON organization_members
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY org_credentials_select ON organization_api_credentials
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY audit_select ON credential_audit_log
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY audit_insert ON credential_audit_log
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY sms_select ON sms_messages
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY sms_insert ON sms_messages
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY sms_update ON sms_messages
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL))
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY usage_select ON provider_usage_daily
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY usage_insert ON provider_usage_daily
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));
ALTER POLICY usage_update ON provider_usage_daily
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL))
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_is_service()) OR (SELECT byoc_ctx_member_role()) IS NOT NULL));

-- Every name is schema-qualified, so no search_path is needed (pg_temp cannot shadow a qualified table).
CREATE OR REPLACE FUNCTION byoc_ctx_member_role() RETURNS text
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
AS $$
DECLARE
    member_role text;
BEGIN
    SELECT m.role INTO member_role
    FROM public.organization_members m
    WHERE m.org_id = public.byoc_ctx_org()
      AND m.user_id = public.byoc_ctx_user();
    RETURN member_role;
END
$$;

-- Tenant reads in one round trip. Each sets the tenant context (transaction-local set_config), reads under
-- row-level security as the caller (SECURITY INVOKER: byoc_app), clears the context again, and returns exactly
-- one row. `ctx_allowed` says whether the actor may read in this organization (a member or a service): true
-- whenever a row came back (the policies let it through), otherwise from an explicit membership check. The
-- other columns are NULL when nothing matched.

-- set_config('byoc.org_id' | 'byoc.user_id' | 'byoc.service', …, true) in one call; NULL clears a setting.
-- (plpgsql: a non-inlined SQL function would be re-planned on every call.)
CREATE FUNCTION byoc_enter_context(p_org uuid, p_user uuid, p_service text) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::text, ''), true),
            pg_catalog.set_config('byoc.service', coalesce(p_service, ''), true);
END
$$;

CREATE FUNCTION byoc_tenant_member_role(p_org uuid, p_user uuid) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    member_role text;
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::text, ''), true),
            pg_catalog.set_config('byoc.service', '', true);
    member_role := public.byoc_ctx_member_role();
    PERFORM pg_catalog.set_config('byoc.org_id', '', true), pg_catalog.set_config('byoc.user_id', '', true);
    RETURN member_role;
END
$$;

CREATE FUNCTION byoc_tenant_organization(p_org uuid, p_user uuid, p_service text)
    RETURNS TABLE (ctx_allowed boolean, id uuid, name text, hot_lead_threshold bigint, created_at timestamptz,
                   updated_at timestamptz)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::text, ''), true),
            pg_catalog.set_config('byoc.service', coalesce(p_service, ''), true);
    RETURN QUERY
        SELECT true, o.id, o.name, o.hot_lead_threshold::bigint, o.created_at, o.updated_at
        FROM public.organizations o
        WHERE o.id = p_org;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT public.byoc_ctx_member_role() IS NOT NULL OR public.byoc_ctx_is_service(),
                   NULL::uuid, NULL::text, NULL::bigint, NULL::timestamptz, NULL::timestamptz;
    END IF;
    PERFORM pg_catalog.set_config('byoc.org_id', '', true), pg_catalog.set_config('byoc.user_id', '', true),
            pg_catalog.set_config('byoc.service', '', true);
END
$$;

CREATE FUNCTION byoc_tenant_credential(p_org uuid, p_user uuid, p_service text, p_id uuid, p_type text)
    RETURNS TABLE (ctx_allowed boolean, id uuid, org_id uuid, credential_type text, display_name text,
                   public_hint text, is_active boolean, verification_status text, last_verified_at timestamptz,
                   verification_error text, created_at timestamptz, updated_at timestamptz, created_by uuid,
                   encryption_key_version bigint, encrypted_data bytea)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::text, ''), true),
            pg_catalog.set_config('byoc.service', coalesce(p_service, ''), true);
    IF p_id IS NOT NULL THEN
        -- One credential by id.
        RETURN QUERY
            SELECT true, c.id, c.org_id, c.credential_type, c.display_name, c.public_hint, c.is_active,
                   c.verification_status, c.last_verified_at, c.verification_error, c.created_at, c.updated_at,
                   c.created_by, c.encryption_key_version, c.encrypted_data
            FROM public.organization_api_credentials c
            WHERE c.id = p_id AND c.org_id = p_org;
    ELSE
        -- The credential of a type that wins: active, verified first, newest, largest id.
        RETURN QUERY
            SELECT true, c.id, c.org_id, c.credential_type, c.display_name, c.public_hint, c.is_active,
                   c.verification_status, c.last_verified_at, c.verification_error, c.created_at, c.updated_at,
                   c.created_by, c.encryption_key_version, c.encrypted_data
            FROM public.organization_api_credentials c
            WHERE c.org_id = p_org AND c.credential_type = p_type AND c.is_active
            ORDER BY (c.verification_status = 'verified') DESC, c.created_at DESC, c.id DESC
            LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT public.byoc_ctx_member_role() IS NOT NULL OR public.byoc_ctx_is_service(),
                   NULL::uuid, NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::boolean, NULL::text,
                   NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::uuid, NULL::bigint,
                   NULL::bytea;
    END IF;
    PERFORM pg_catalog.set_config('byoc.org_id', '', true), pg_catalog.set_config('byoc.user_id', '', true),
            pg_catalog.set_config('byoc.service', '', true);
END
$$;

REVOKE ALL ON FUNCTION byoc_enter_context(uuid, uuid, text), byoc_tenant_member_role(uuid, uuid),
    byoc_tenant_organization(uuid, uuid, text), byoc_tenant_credential(uuid, uuid, text, uuid, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION byoc_enter_context(uuid, uuid, text), byoc_tenant_member_role(uuid, uuid),
    byoc_tenant_organization(uuid, uuid, text), byoc_tenant_credential(uuid, uuid, text, uuid, text)
    TO byoc_app;
