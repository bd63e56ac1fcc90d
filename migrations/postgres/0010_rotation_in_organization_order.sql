-- Rotation and `keys check` walk the credentials in (org_id, id) order instead of id order.
--
-- byoc_operator_swap_envelopes writes one hash-chained `rotated` audit event per organization (and old key
-- version) among the rows a batch swaps. In id order (random uuids) a batch of 1 000 rows spread over many
-- organizations touches nearly 1 000 of them, so rotation wrote about one chained audit row per credential;
-- in (org_id, id) order a batch touches only the few organizations it spans.

CREATE INDEX organization_api_credentials_org_id_id_idx
    ON organization_api_credentials (org_id, id);

-- The key version is no longer indexed: only the per-version counts (at start-up and around a rotation) read
-- it, and a sequential count of even a million rows is a fraction of a second. With no index on any column a
-- rotation changes (encrypted_data, encryption_key_version), its updates can be heap-only (HOT) where the page
-- has room, and otherwise touch one index fewer.
DROP INDEX organization_api_credentials_key_version_idx;

DROP FUNCTION byoc_operator_envelope_batch(uuid, bigint, integer);

-- One page of envelopes in (org_id, id) order after (p_after_org_id, p_after_id) (keyset pagination; both
-- null for the first page), optionally skipping rows already on a key version. Exposes only what re-wrapping
-- and checking need. The query is planned for each call's values (EXECUTE … USING): with the cursor and the
-- skipped version as generic parameters the planner expects almost no matching rows and sorts a sequential
-- scan of the whole table for every page, instead of walking the (org_id, id) index.
CREATE FUNCTION byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint,
                                             p_limit integer)
    RETURNS TABLE (id uuid, org_id uuid, credential_type text, encryption_key_version bigint,
                   encrypted_data bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT c.id, c.org_id, c.credential_type, c.encryption_key_version, c.encrypted_data
         FROM public.organization_api_credentials c
         WHERE (c.org_id, c.id) > ($1, $2)
           AND c.encryption_key_version IS DISTINCT FROM $3
         ORDER BY c.org_id, c.id
         LIMIT $4'
        USING coalesce(p_after_org_id, '00000000-0000-0000-0000-000000000000'::uuid),
              coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::uuid),
              p_skip_key_version, p_limit;
END
$$;

REVOKE ALL ON FUNCTION byoc_operator_envelope_batch(uuid, uuid, bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION byoc_operator_envelope_batch(uuid, uuid, bigint, integer) TO byoc_app;
