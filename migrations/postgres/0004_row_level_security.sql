-- Row-level security, enabled and forced on every tenant table, and the privileges of byoc_app.
--
-- Policies apply to byoc_app. Every one requires the row's org_id to equal the context organization; reads
-- also require the context user to be a member of that organization (or a calling service, see
-- byoc_ctx_is_service); inserts and updates require owner or admin; deletes require owner. The role lookup is a
-- SECURITY DEFINER function (no recursion through organization_members' own policies) that matches the member
-- row on the context organization AND the context user: the plan's `org_id = org_id` bug (always true) is gone.
-- Each helper is wrapped in a scalar subquery so it runs once per statement, not once per row.
--
-- The table owner is subject to the policies too (FORCE). Its only policy, byoc_definer_access, admits rows
-- while `byoc.definer` is 'on', which only the SECURITY DEFINER functions of these migrations set (through
-- their SET clause, restored on exit); byoc_app is not a member of the owner role, so setting it gains
-- byoc_app nothing.

CREATE FUNCTION byoc_ctx_member_role() RETURNS text
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
    SELECT m.role
    FROM organization_members m
    WHERE m.org_id = byoc_ctx_org()
      AND m.user_id = byoc_ctx_user()
$$;

DO $rls$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['organizations', 'organization_members', 'organization_api_credentials',
                               'credential_audit_log', 'credential_audit_chain_heads', 'oauth_states',
                               'sms_messages', 'provider_usage_daily'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY byoc_definer_access ON %I AS PERMISSIVE FOR ALL TO %I
                        USING (current_setting(''byoc.definer'', true) = ''on'')
                        WITH CHECK (current_setting(''byoc.definer'', true) = ''on'')', tbl, current_user);
    END LOOP;
END
$rls$;

-- organizations: the key column is id.
CREATE POLICY org_select ON organizations FOR SELECT TO byoc_app
    USING (id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY org_update ON organizations FOR UPDATE TO byoc_app
    USING (id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin'))
    WITH CHECK (id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin'));

-- organization_members: an admin may manage members and admins, only an owner may touch an owner row.
CREATE POLICY members_select ON organization_members FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY members_insert ON organization_members FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) = 'owner'
                     OR ((SELECT byoc_ctx_member_role()) = 'admin' AND role <> 'owner')));
CREATE POLICY members_update ON organization_members FOR UPDATE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) = 'owner'
                OR ((SELECT byoc_ctx_member_role()) = 'admin' AND role <> 'owner')))
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) = 'owner'
                     OR ((SELECT byoc_ctx_member_role()) = 'admin' AND role <> 'owner')));
CREATE POLICY members_delete ON organization_members FOR DELETE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) = 'owner');

-- organization_api_credentials: the plan's four policies with the role lookup fixed.
CREATE POLICY org_credentials_select ON organization_api_credentials FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY org_credentials_insert ON organization_api_credentials FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin')
                AND created_by = (SELECT byoc_ctx_user()));
CREATE POLICY org_credentials_update ON organization_api_credentials FOR UPDATE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin'))
    WITH CHECK (org_id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin'));
CREATE POLICY org_credentials_delete ON organization_api_credentials FOR DELETE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org()) AND (SELECT byoc_ctx_member_role()) = 'owner');

-- credential_audit_log: members and services read and append; nobody (as byoc_app) updates or deletes.
CREATE POLICY audit_select ON credential_audit_log FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY audit_insert ON credential_audit_log FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));

-- oauth_states: a state belongs to one user of one org; only owners and admins may start a connect.
CREATE POLICY oauth_states_select ON oauth_states FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org()) AND user_id = (SELECT byoc_ctx_user())
           AND (SELECT byoc_ctx_member_role()) IS NOT NULL);
CREATE POLICY oauth_states_insert ON oauth_states FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org()) AND user_id = (SELECT byoc_ctx_user())
                AND (SELECT byoc_ctx_member_role()) IN ('owner', 'admin'));
CREATE POLICY oauth_states_delete ON oauth_states FOR DELETE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org()) AND user_id = (SELECT byoc_ctx_user())
           AND (SELECT byoc_ctx_member_role()) IS NOT NULL);

-- sms_messages and provider_usage_daily: operational records written while using a credential, by members
-- (test SMS, leads) and services (status webhook); never deleted by byoc_app.
CREATE POLICY sms_select ON sms_messages FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY sms_insert ON sms_messages FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY sms_update ON sms_messages FOR UPDATE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())))
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));

CREATE POLICY usage_select ON provider_usage_daily FOR SELECT TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY usage_insert ON provider_usage_daily FOR INSERT TO byoc_app
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));
CREATE POLICY usage_update ON provider_usage_daily FOR UPDATE TO byoc_app
    USING (org_id = (SELECT byoc_ctx_org())
           AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())))
    WITH CHECK (org_id = (SELECT byoc_ctx_org())
                AND ((SELECT byoc_ctx_member_role()) IS NOT NULL OR (SELECT byoc_ctx_is_service())));

-- Privileges: the least byoc_app needs. It owns nothing; it never updates or deletes audit rows.
GRANT SELECT, UPDATE (name, hot_lead_threshold) ON organizations TO byoc_app;
GRANT SELECT, INSERT, UPDATE (role), DELETE ON organization_members TO byoc_app;
-- New credentials always start pending; verification columns change only through byoc_record_verification.
GRANT SELECT, DELETE,
      INSERT (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint,
              created_by),
      UPDATE (encrypted_data, encryption_key_version, display_name, public_hint, is_active)
    ON organization_api_credentials TO byoc_app;
GRANT SELECT, INSERT (org_id, at, actor, action, credential_id, credential_type, detail)
    ON credential_audit_log TO byoc_app;
GRANT SELECT, INSERT (key_version, check_value) ON encryption_key_checks TO byoc_app;
GRANT SELECT, INSERT, DELETE ON oauth_states TO byoc_app;
GRANT SELECT, INSERT, UPDATE (status, error_code, status_updated_at, delivered_at) ON sms_messages TO byoc_app;
GRANT SELECT, INSERT, UPDATE (calls, failures) ON provider_usage_daily TO byoc_app;
