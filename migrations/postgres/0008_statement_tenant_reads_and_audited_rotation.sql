-- Cheaper tenant reads, and rotation swaps that write their own audit events.
--
-- Tenant reads. The byoc_tenant_* plpgsql functions of migration 0006 cost about seven times a primary-key
-- select on the server (a plpgsql call, RETURN QUERY through a tuplestore, six set_config calls). The store now
-- sends one plain statement instead (see `postgres/mod.rs`, `TENANT_*`): a MATERIALIZED CTE sets the
-- transaction-local context and the read is a LATERAL subquery that references the CTE, so the only possible
-- plan is a nested loop whose outer side (the CTE) runs before the policies' initplans are first evaluated. The
-- statement runs on the pool in its own implicit transaction, which ends with it and discards the
-- transaction-local context, so nothing needs clearing. Row-level security is unchanged: the read runs as
-- byoc_app under the same policies. The functions are dropped.
--
-- The winning credential of a type (active, verified first, newest, largest id) is read straight off an index
-- in that order, with no sort.
--
-- Rotation. byoc_operator_swap_envelopes now also appends, in the same statement (hence the same transaction)
-- as the swap, one `rotated` audit event per organization and old key version among the rows it swapped, with
-- the count and both key versions. A rotation killed at any point leaves exactly the audit events of the rows
-- it re-wrapped.

DROP FUNCTION byoc_tenant_credential(uuid, uuid, text, uuid, text);
DROP FUNCTION byoc_tenant_organization(uuid, uuid, text);
DROP FUNCTION byoc_tenant_member_role(uuid, uuid);

CREATE INDEX organization_api_credentials_winner_idx
    ON organization_api_credentials
       (org_id, credential_type, (verification_status = 'verified') DESC, created_at DESC, id DESC)
    WHERE is_active;
DROP INDEX organization_api_credentials_active_idx;

DROP FUNCTION byoc_operator_swap_envelopes(uuid[], bytea[], bytea[], bigint[]);

-- Compare-and-swap of many envelopes in one statement (a row changes only if it still holds the expected
-- envelope), plus the `rotated` audit events of the rows swapped, named after p_actor
-- (detail {"rewrapped", "from_key_version", "key_version"}). The events are inserted in organization order, so
-- concurrent swaps take the audit chain heads' locks in one order. Returns the ids that were swapped.
CREATE FUNCTION byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_new bytea[],
                                             p_new_key_versions bigint[], p_actor text)
    RETURNS SETOF uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
    SET byoc.rotating = 'on'
AS $$
BEGIN
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_expected)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_new)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_new_key_versions) THEN
        RAISE EXCEPTION 'swap arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH swapped AS (
            UPDATE organization_api_credentials c
            SET encrypted_data = s.new_data,
                encryption_key_version = s.new_version
            FROM unnest(p_ids, p_expected, p_new, p_new_key_versions) AS s (id, expected, new_data, new_version)
            JOIN organization_api_credentials prior ON prior.id = s.id
            WHERE c.id = s.id
              AND c.encrypted_data = s.expected
              AND c.encryption_key_version = prior.encryption_key_version
            RETURNING c.id, c.org_id, prior.encryption_key_version AS from_version, s.new_version AS to_version
        ), audited AS (
            INSERT INTO credential_audit_log (org_id, actor, action, detail)
            SELECT w.org_id, p_actor, 'rotated',
                   jsonb_build_object('rewrapped', count(*), 'from_key_version', w.from_version,
                                      'key_version', w.to_version)
            FROM swapped w
            GROUP BY w.org_id, w.from_version, w.to_version
            ORDER BY w.org_id, w.from_version, w.to_version
        )
        SELECT w.id FROM swapped w;
END
$$;

REVOKE ALL ON FUNCTION byoc_operator_swap_envelopes(uuid[], bytea[], bytea[], bigint[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION byoc_operator_swap_envelopes(uuid[], bytea[], bytea[], bigint[], text) TO byoc_app;
