-- Audit batches are chained at once, and the chain hash is inlined.
--
-- Every `get_credential` writes one audit event, so the audit writer inserts about as many rows as the service
-- reads credentials. Through the row trigger each row cost a SECURITY DEFINER plpgsql call with its GUC
-- changes, a locked read of the chain head and an update of it; a batch of 2 000 events left 2 000 versions of
-- the head row behind. byoc_append_audit_events now takes a whole batch of one organization: it locks the
-- head once, computes the links in order, inserts the rows with one INSERT and moves the head once. The
-- chain it writes is the one the trigger writes (byoc_audit_chain_check and the store's verification are
-- unchanged and accept both).
--
-- byoc_app can no longer insert audit rows itself: it appends only through this function, which checks the
-- tenant context as the insert policy did (the organization is the context organization; the actor is a
-- member of it or a calling service). The chain trigger now runs only for inserts that are not already
-- chained (`byoc.audit_chained` is not 'on'); only this function sets that, as the owner, and nobody else
-- may insert, so no one can hand in links of their own.
--
-- byoc_audit_hash loses its SET clause and names everything through pg_catalog instead, so the planner inlines
-- it (a function with a SET clause is called through the function manager, with a GUC save and restore, for
-- every row). Same expression, same hashes.

CREATE OR REPLACE FUNCTION byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamptz, actor text,
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

DROP TRIGGER audit_chain_link ON credential_audit_log;
CREATE TRIGGER audit_chain_link BEFORE INSERT ON credential_audit_log
    FOR EACH ROW
    WHEN (pg_catalog.current_setting('byoc.audit_chained', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION byoc_audit_chain_link();

REVOKE INSERT ON credential_audit_log FROM byoc_app;

-- Appends events to the context organization's chain, in array order, and returns the new last sequence
-- number. All arrays have one element per event; `p_detail` holds JSON texts.
CREATE FUNCTION byoc_append_audit_events(p_org_id uuid, p_at timestamptz[], p_actor text[], p_action text[],
                                         p_credential_id uuid[], p_credential_type text[], p_detail text[])
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
    SET byoc.audit_chained = 'on'
AS $$
DECLARE
    events    integer := coalesce(cardinality(p_at), 0);
    head_seq  bigint;
    head_hash bytea;
    seqs      bigint[] := '{}';
    details   jsonb[] := '{}';
    prevs     bytea[] := '{}';
    hashes    bytea[] := '{}';
BEGIN
    IF p_org_id IS DISTINCT FROM byoc_ctx_org()
       OR NOT (byoc_ctx_is_service() OR byoc_ctx_member_role() IS NOT NULL) THEN
        RAISE EXCEPTION 'audit events may only be appended in the context organization by a member or service'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(cardinality(p_actor), 0) <> events OR coalesce(cardinality(p_action), 0) <> events
       OR coalesce(cardinality(p_credential_id), 0) <> events
       OR coalesce(cardinality(p_credential_type), 0) <> events
       OR coalesce(cardinality(p_detail), 0) <> events THEN
        RAISE EXCEPTION 'audit event arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT last_seq, last_hash INTO head_seq, head_hash
    FROM credential_audit_chain_heads
    WHERE org_id = p_org_id
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (p_org_id, 0, byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;
        SELECT last_seq, last_hash INTO head_seq, head_hash
        FROM credential_audit_chain_heads
        WHERE org_id = p_org_id
        FOR UPDATE;
    END IF;
    IF events = 0 THEN
        RETURN head_seq;
    END IF;

    FOR i IN 1 .. events LOOP
        seqs[i] := head_seq + i;
        details[i] := p_detail[i]::jsonb;
        prevs[i] := head_hash;
        head_hash := byoc_audit_hash(head_hash, head_seq + i, p_org_id, p_at[i], p_actor[i], p_action[i],
                                     p_credential_id[i], p_credential_type[i], details[i]);
        hashes[i] := head_hash;
    END LOOP;

    INSERT INTO credential_audit_log (org_id, seq, at, actor, action, credential_id, credential_type, detail,
                                      prev_hash, hash)
    SELECT p_org_id, e.seq, e.at, e.actor, e.action, e.credential_id, e.credential_type, e.detail,
           e.prev_hash, e.hash
    FROM unnest(seqs, p_at, p_actor, p_action, p_credential_id, p_credential_type, details, prevs, hashes)
         AS e (seq, at, actor, action, credential_id, credential_type, detail, prev_hash, hash)
    ORDER BY e.seq;

    UPDATE credential_audit_chain_heads
    SET last_seq = head_seq + events, last_hash = head_hash
    WHERE org_id = p_org_id;
    RETURN head_seq + events;
END
$$;

REVOKE ALL ON FUNCTION byoc_append_audit_events(uuid, timestamptz[], text[], text[], uuid[], text[], text[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION byoc_append_audit_events(uuid, timestamptz[], text[], text[], uuid[], text[], text[])
    TO byoc_app;
