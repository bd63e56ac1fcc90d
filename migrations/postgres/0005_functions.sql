-- Narrow SECURITY DEFINER entry points for byoc_app. Each one does one job and exposes only what that job needs.
-- None of them gives byoc_app a general cross-organization read.

-- Records the outcome of verifying or using a credential of the context organization. Callable by any member
-- or calling service of that organization, because a use by a member or a service (an availability check that
-- hits invalid_grant) must be able to mark the credential failed. It changes only the three verification
-- columns. Returns false when the credential does not exist in the context organization.
CREATE FUNCTION byoc_record_verification(p_credential_id uuid, p_status text, p_error text, p_at timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
BEGIN
    IF byoc_ctx_org() IS NULL OR NOT (byoc_ctx_member_role() IS NOT NULL OR byoc_ctx_is_service()) THEN
        RAISE EXCEPTION 'no member or service context for this organization'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE organization_api_credentials
    SET verification_status = p_status,
        verification_error  = p_error,
        last_verified_at    = p_at
    WHERE id = p_credential_id
      AND org_id = byoc_ctx_org();
    RETURN FOUND;
END
$$;

-- Verifies the audit chain of the context organization (members and services of it only).
CREATE FUNCTION byoc_verify_audit_chain()
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
BEGIN
    IF byoc_ctx_org() IS NULL OR NOT (byoc_ctx_member_role() IS NOT NULL OR byoc_ctx_is_service()) THEN
        RAISE EXCEPTION 'no member or service context for this organization'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY SELECT * FROM byoc_audit_chain_check(byoc_ctx_org());
END
$$;

-- Operator paths: organization bootstrap (`byoc org create`, `byoc member add`, `byoc import-env`, the dev-mode
-- seed) and key rotation / `byoc keys check`.

CREATE FUNCTION byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer)
    RETURNS SETOF organizations
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
    INSERT INTO organizations (name, hot_lead_threshold)
    VALUES (p_name, p_hot_lead_threshold)
    RETURNING *
$$;

CREATE FUNCTION byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text)
    RETURNS SETOF organization_members
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
    INSERT INTO organization_members (org_id, user_id, role)
    VALUES (p_org_id, p_user_id, p_role)
    RETURNING *
$$;

CREATE FUNCTION byoc_operator_insert_credential(p_id uuid, p_org_id uuid, p_credential_type text,
                                                p_encrypted_data bytea, p_key_version bigint,
                                                p_display_name text, p_public_hint text)
    RETURNS SETOF organization_api_credentials
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
    INSERT INTO organization_api_credentials
        (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint)
    VALUES (p_id, p_org_id, p_credential_type, p_encrypted_data, p_key_version, p_display_name, p_public_hint)
    RETURNING *
$$;

-- One page of envelopes in id order (keyset pagination), optionally skipping rows already on a key version.
-- Exposes only what re-wrapping and checking need.
CREATE FUNCTION byoc_operator_envelope_batch(p_after_id uuid, p_skip_key_version bigint, p_limit integer)
    RETURNS TABLE (id uuid, org_id uuid, credential_type text, encryption_key_version bigint,
                   encrypted_data bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
BEGIN
    RETURN QUERY
        SELECT c.id, c.org_id, c.credential_type, c.encryption_key_version, c.encrypted_data
        FROM organization_api_credentials c
        WHERE c.id > coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid)
          AND c.encryption_key_version IS DISTINCT FROM p_skip_key_version
        ORDER BY c.id
        LIMIT p_limit;
END
$$;

-- Compare-and-swap of many envelopes in one statement: a row changes only if it still holds the expected
-- envelope, so a concurrent change by the service wins and rotation can be interrupted and resumed at any
-- point. Returns the ids that were swapped.
CREATE FUNCTION byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_new bytea[],
                                             p_new_key_versions bigint[])
    RETURNS SETOF uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
BEGIN
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_expected)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_new)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_new_key_versions) THEN
        RAISE EXCEPTION 'swap arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        UPDATE organization_api_credentials c
        SET encrypted_data = s.new_data,
            encryption_key_version = s.new_version
        FROM unnest(p_ids, p_expected, p_new, p_new_key_versions) AS s (id, expected, new_data, new_version)
        WHERE c.id = s.id
          AND c.encrypted_data = s.expected
        RETURNING c.id;
END
$$;

CREATE FUNCTION byoc_operator_count_by_key_version()
    RETURNS TABLE (encryption_key_version bigint, credentials bigint)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
    SELECT c.encryption_key_version, count(*)
    FROM organization_api_credentials c
    GROUP BY c.encryption_key_version
    ORDER BY c.encryption_key_version
$$;

-- Functions are executable by PUBLIC by default; take that back and grant byoc_app exactly what it calls
-- (the context helpers are needed by the policies, evaluated as byoc_app).
DO $grants$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND (p.proname LIKE 'byoc\_%' OR p.proname = 'check_org_id_immutability')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$grants$;

GRANT EXECUTE ON FUNCTION
    byoc_ctx_uuid(text), byoc_ctx_org(), byoc_ctx_user(), byoc_ctx_is_service(), byoc_ctx_member_role(),
    byoc_record_verification(uuid, text, text, timestamptz), byoc_verify_audit_chain(),
    byoc_operator_create_organization(text, integer), byoc_operator_add_member(uuid, uuid, text),
    byoc_operator_insert_credential(uuid, uuid, text, bytea, bigint, text, text),
    byoc_operator_envelope_batch(uuid, bigint, integer),
    byoc_operator_swap_envelopes(uuid[], bytea[], bytea[], bigint[]),
    byoc_operator_count_by_key_version()
TO byoc_app;
