-- The per-organization audit hash chain.
--
-- Each audit row stores the hash of the previous row of the same organization (`prev_hash`) and its own `hash`:
--   hash = sha256(prev_hash || utf8(jsonb_build_array(seq, org_id, at as epoch microseconds, actor, action,
--                                                     credential_id, credential_type, detail)::text))
-- with 32 zero bytes before the first row. The chain trigger computes seq, prev_hash and hash for every insert,
-- whoever inserts, while holding the row lock on the organization's chain head, so concurrent writers of one
-- organization are serialised and the chain has no forks or gaps. `credential_audit_chain_heads` keeps the last
-- link, so deleting the newest rows is detected as well.

CREATE FUNCTION byoc_audit_genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog
AS $$ SELECT decode(repeat('00', 32), 'hex') $$;

CREATE FUNCTION byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamptz, actor text, action text,
                                credential_id uuid, credential_type text, detail jsonb) RETURNS bytea
    LANGUAGE sql STABLE
    SET search_path = pg_catalog
AS $$
    SELECT sha256(prev_hash || convert_to(
        jsonb_build_array(seq, org_id, (extract(epoch FROM at) * 1000000)::bigint, actor, action,
                          credential_id, credential_type, detail)::text,
        'UTF8'))
$$;

CREATE FUNCTION byoc_audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    INSERT INTO credential_audit_chain_heads (org_id, last_seq, last_hash)
    VALUES (NEW.org_id, 0, byoc_audit_genesis_hash())
    ON CONFLICT (org_id) DO NOTHING;

    SELECT last_seq, last_hash INTO head_seq, head_hash
    FROM credential_audit_chain_heads
    WHERE org_id = NEW.org_id
    FOR UPDATE;

    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := byoc_audit_hash(NEW.prev_hash, NEW.seq, NEW.org_id, NEW.at, NEW.actor, NEW.action,
                                NEW.credential_id, NEW.credential_type, NEW.detail);

    UPDATE credential_audit_chain_heads
    SET last_seq = NEW.seq, last_hash = NEW.hash
    WHERE org_id = NEW.org_id;

    RETURN NEW;
END
$$;

CREATE TRIGGER audit_chain_link BEFORE INSERT ON credential_audit_log
    FOR EACH ROW EXECUTE FUNCTION byoc_audit_chain_link();

-- Verifies one organization's chain. Returns one row: intact, how many events were checked, the first seq at
-- which the chain breaks (NULL when intact) and what is wrong there. Not callable by byoc_app directly (it takes
-- any org); byoc_app uses byoc_verify_audit_chain() below, which checks the context organization only.
-- Operators can run it as the owner: SELECT * FROM byoc_audit_chain_check('<org uuid>');
CREATE FUNCTION byoc_audit_chain_check(p_org uuid)
    RETURNS TABLE (intact boolean, events bigint, first_broken_seq bigint, problem text)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
DECLARE
    r             record;
    expected_seq  bigint := 1;
    expected_prev bytea := byoc_audit_genesis_hash();
    checked       bigint := 0;
    head_seq      bigint;
    head_hash     bytea;
BEGIN
    FOR r IN
        SELECT l.seq, l.org_id, l.at, l.actor, l.action, l.credential_id, l.credential_type, l.detail,
               l.prev_hash, l.hash
        FROM credential_audit_log l
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
        IF r.hash <> byoc_audit_hash(r.prev_hash, r.seq, r.org_id, r.at, r.actor, r.action, r.credential_id,
                                     r.credential_type, r.detail) THEN
            RETURN QUERY SELECT false, checked, r.seq, 'the event was changed after it was written';
            RETURN;
        END IF;
        checked := checked + 1;
        expected_prev := r.hash;
        expected_seq := expected_seq + 1;
    END LOOP;

    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM credential_audit_chain_heads h
    WHERE h.org_id = p_org;

    IF NOT FOUND THEN
        IF checked > 0 THEN
            RETURN QUERY SELECT false, checked, 1::bigint, 'the chain head is missing';
            RETURN;
        END IF;
    ELSIF head_seq > checked THEN
        RETURN QUERY SELECT false, checked, expected_seq, 'the newest events were deleted';
        RETURN;
    ELSIF head_seq <> checked OR head_hash <> expected_prev THEN
        RETURN QUERY SELECT false, checked, head_seq, 'the chain head does not match the newest event';
        RETURN;
    END IF;

    RETURN QUERY SELECT true, checked, NULL::bigint, NULL::text;
END
$$;
