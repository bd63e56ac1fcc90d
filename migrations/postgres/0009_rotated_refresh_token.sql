-- Storing a refresh token that Google rotated during a use.
--
-- When Google's token endpoint answers a refresh with a new refresh token, the service must store it or the
-- connection breaks once Google retires the old one. The refresh happens inside an availability check, which
-- any member (or a calling service) may run, while the table's update policy admits owners and admins only.
-- Rather than widen that policy, byoc_app gets this one SECURITY DEFINER entry point, which can do exactly
-- one thing: replace encrypted_data and encryption_key_version of an existing, ACTIVE google_calendar
-- credential of the context organization, and only while the row still holds the envelope the caller read
-- (compare-and-swap, so two requests that both saw the rotation write once and an edit made meanwhile is
-- never overwritten). Display name, hint, activity and verification columns are out of its reach; so are
-- other organizations, other providers and deactivated credentials. The new envelope must carry the stated
-- key version in its header (format 1: format byte, then the version as 4 bytes big-endian), so the version
-- column cannot be made to lie. The caller must be a member or a calling service of the context
-- organization. The envelope is bound to (org, type, id) by its associated data, so a row can only receive
-- an envelope sealed for it by a holder of the master keys; without them a caller can at worst store bytes
-- that do not decrypt, which is no more than marking the credential failed (byoc_record_verification).
-- The update fires the change notification (migration 0007), so every replica drops its cached copy.

CREATE FUNCTION byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea,
                                              p_new_key_version bigint)
    RETURNS SETOF organization_api_credentials
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
    IF p_expected IS NULL OR p_new IS NULL OR length(p_new) < 93 OR get_byte(p_new, 0) <> 1
       OR p_new_key_version IS DISTINCT FROM
          ((get_byte(p_new, 1)::bigint << 24) | (get_byte(p_new, 2)::bigint << 16)
           | (get_byte(p_new, 3)::bigint << 8) | get_byte(p_new, 4)::bigint) THEN
        RAISE EXCEPTION 'not a format 1 envelope of the stated key version'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        UPDATE organization_api_credentials c
        SET encrypted_data = p_new,
            encryption_key_version = p_new_key_version
        WHERE c.id = p_credential_id
          AND c.org_id = byoc_ctx_org()
          AND c.credential_type = 'google_calendar'
          AND c.is_active
          AND c.encrypted_data = p_expected
        RETURNING c.*;
END
$$;

REVOKE ALL ON FUNCTION byoc_replace_rotated_envelope(uuid, bytea, bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION byoc_replace_rotated_envelope(uuid, bytea, bytea, bigint) TO byoc_app;
