-- Issue 23: a chain check also reports the chain head it found (`GET /api/organization/audit/verify` answers
-- `headSeq` and `headHash`), and the operator checks every organization's chain (`byoc audit verify`).
--
-- byoc_audit_chain_check and byoc_verify_audit_chain gain two columns, head_seq and head_hash: the stored chain
-- head (NULL when the organization has none). A function's result columns cannot change in place, so both are
-- dropped and created again with the same body plus the head, and byoc_verify_audit_chain is granted to
-- byoc_app again. Every SECURITY DEFINER function pins `search_path = pg_catalog, pg_temp` and qualifies every
-- name, as in 0001.

DROP FUNCTION public.byoc_verify_audit_chain();
DROP FUNCTION public.byoc_audit_chain_check(uuid);

-- Checks one organization's chain: intact, how many events were checked, the first seq at which it breaks (NULL
-- when intact), what is wrong there, and the stored head (head_seq, head_hash; NULL when there is none).
-- Operators run it as the owner:
--   SELECT * FROM byoc_audit_chain_check('<org uuid>');
-- byoc_app uses byoc_verify_audit_chain(), which checks the context organization only, and byoc_operator
-- byoc_operator_verify_audit_chains(), which checks every organization or one.
CREATE FUNCTION public.byoc_audit_chain_check(p_org uuid)
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text, head_seq bigint,
                   head_hash bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r             record;
    expected_seq  pg_catalog.int8 := 1;
    expected_prev pg_catalog.bytea := public.byoc_audit_genesis_hash();
    checked       pg_catalog.int8 := 0;
    stored_seq    pg_catalog.int8;
    stored_hash   pg_catalog.bytea;
BEGIN
    SELECT h.last_seq, h.last_hash INTO stored_seq, stored_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = p_org;

    FOR r IN
        SELECT l.seq, l.org_id, l.at, l.actor, l.action, l.credential_id, l.credential_type, l.detail,
               l.prev_hash, l.hash
        FROM public.credential_audit_log l
        WHERE l.org_id = p_org
        ORDER BY l.seq
    LOOP
        IF r.seq <> expected_seq THEN
            RETURN QUERY SELECT false, checked, expected_seq, 'an event is missing (gap in the sequence)',
                                stored_seq, stored_hash;
            RETURN;
        END IF;
        IF r.prev_hash <> expected_prev THEN
            RETURN QUERY SELECT false, checked, r.seq, 'the previous-hash link does not match',
                                stored_seq, stored_hash;
            RETURN;
        END IF;
        IF r.hash <> public.byoc_audit_hash(r.prev_hash, r.seq, r.org_id, r.at, r.actor,
                                            r.action, r.credential_id, r.credential_type, r.detail) THEN
            RETURN QUERY SELECT false, checked, r.seq, 'the event was changed after it was written',
                                stored_seq, stored_hash;
            RETURN;
        END IF;
        checked := checked + 1;
        expected_prev := r.hash;
        expected_seq := expected_seq + 1;
    END LOOP;

    IF stored_seq IS NULL THEN
        IF checked > 0 THEN
            RETURN QUERY SELECT false, checked, 1::pg_catalog.int8, 'the chain head is missing',
                                stored_seq, stored_hash;
            RETURN;
        END IF;
    ELSIF stored_seq > checked THEN
        RETURN QUERY SELECT false, checked, expected_seq, 'the newest events were deleted', stored_seq, stored_hash;
        RETURN;
    ELSIF stored_seq <> checked OR stored_hash <> expected_prev THEN
        RETURN QUERY SELECT false, checked, stored_seq, 'the chain head does not match the newest event',
                            stored_seq, stored_hash;
        RETURN;
    END IF;

    RETURN QUERY SELECT true, checked, NULL::pg_catalog.int8, NULL::pg_catalog.text, stored_seq, stored_hash;
END
$$;

-- Verifies the audit chain of the context organization (its members and services only).
CREATE FUNCTION public.byoc_verify_audit_chain()
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text, head_seq bigint,
                   head_hash bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    RETURN QUERY SELECT * FROM public.byoc_audit_chain_check(public.byoc_ctx_org());
END
$$;

-- `byoc audit verify`: the chain check of every organization (p_org_id NULL) or of one, in organization id
-- order, in one snapshot. An organization that does not exist gives no row. Reads the chains and heads only.
CREATE FUNCTION public.byoc_operator_verify_audit_chains(p_org_id uuid)
    RETURNS TABLE (org_id uuid, intact boolean, events bigint, first_broken_seq bigint, problem text,
                   head_seq bigint, head_hash bytea)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id, c.intact, c.events, c.first_broken_seq, c.problem, c.head_seq, c.head_hash
    FROM public.organizations o
    CROSS JOIN LATERAL public.byoc_audit_chain_check(o.id) c
    WHERE p_org_id IS NULL OR o.id = p_org_id
    ORDER BY o.id
$$;

REVOKE ALL ON FUNCTION public.byoc_audit_chain_check(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_verify_audit_chain() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_operator_verify_audit_chains(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.byoc_verify_audit_chain() TO byoc_app;
GRANT EXECUTE ON FUNCTION public.byoc_operator_verify_audit_chains(uuid) TO byoc_operator;
