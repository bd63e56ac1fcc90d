-- The audit chain trigger, cheaper per row: the organization's chain head is locked with one SELECT … FOR UPDATE
-- and only created (INSERT … ON CONFLICT) when it does not exist yet, instead of attempting that insert before
-- every row. Same chain, same locking order, same result.

CREATE OR REPLACE FUNCTION byoc_audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET byoc.definer = 'on'
AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
BEGIN
    SELECT last_seq, last_hash INTO head_seq, head_hash
    FROM credential_audit_chain_heads
    WHERE org_id = NEW.org_id
    FOR UPDATE;

    IF NOT FOUND THEN
        INSERT INTO credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (NEW.org_id, 0, byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;

        SELECT last_seq, last_hash INTO head_seq, head_hash
        FROM credential_audit_chain_heads
        WHERE org_id = NEW.org_id
        FOR UPDATE;
    END IF;

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
