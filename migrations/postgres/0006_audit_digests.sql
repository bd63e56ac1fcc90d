-- Issue 23: signed audit digests. Every BYOC_AUDIT_DIGEST_INTERVAL_SECS the service signs, for each organization
-- whose audit chain moved, its chain head (Ed25519, in the service: the key never reaches the database), chains
-- the digests (each names the SHA-256 of the previous digest's payload), and delivers each as a credential-events
-- webhook and as a file in BYOC_AUDIT_DIGEST_DIR. The digests kept here are the service's own record: they tell
-- it what was last digested and what is still to deliver. Their proof is the copies delivered outside the
-- database; this table proves nothing to anyone who can write it.
--
-- One table under forced row-level security that byoc_app cannot touch directly, and narrow SECURITY DEFINER
-- functions that refuse unless the session's login is a member of byoc_service (as in 0004); the operator's
-- `byoc audit verify --digests` reads the chain hashes at the digested positions through one function of
-- byoc_operator. Every SECURITY DEFINER function pins `search_path = pg_catalog, pg_temp` and qualifies every
-- name, as in 0001.

-- 1. The table ----------------------------------------------------------------------------------------------------

-- One row per digest: organization, its number in the organization's digest chain (from 1), the chain head it
-- signs, the signed payload (JSON text, exactly the bytes signed), its SHA-256 (the next digest's
-- previousDigestHash) and the signature; whether it was written to BYOC_AUDIT_DIGEST_DIR; and its webhook delivery
-- (next_delivery_at NULL once delivered or given up).
CREATE TABLE public.audit_digests (
    org_id           uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    digest_seq       bigint      NOT NULL CHECK (digest_seq >= 1),
    head_seq         bigint      NOT NULL CHECK (head_seq >= 1),
    head_hash        bytea       NOT NULL CHECK (length(head_hash) = 32),
    payload          text        NOT NULL CHECK (length(payload) BETWEEN 2 AND 4000),
    payload_hash     bytea       NOT NULL CHECK (length(payload_hash) = 32),
    signature        bytea       NOT NULL CHECK (length(signature) = 64),
    issued_at        timestamptz NOT NULL,
    filed            boolean     NOT NULL DEFAULT false,
    delivery_id      uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_delivery_at timestamptz DEFAULT now(),
    last_error       text        CHECK (length(last_error) <= 500),
    PRIMARY KEY (org_id, digest_seq),
    CONSTRAINT audit_digests_one_per_head UNIQUE (org_id, head_seq)
);

CREATE INDEX audit_digests_next_delivery_idx ON public.audit_digests (next_delivery_at)
    WHERE next_delivery_at IS NOT NULL;
CREATE INDEX audit_digests_unfiled_idx ON public.audit_digests (issued_at) WHERE NOT filed;

ALTER TABLE public.audit_digests ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_digests FORCE ROW LEVEL SECURITY;
DO $rls$
BEGIN
    EXECUTE pg_catalog.format('CREATE POLICY byoc_owner_through_functions ON public.audit_digests AS PERMISSIVE
                               FOR ALL TO %I USING (current_user <> session_user)
                               WITH CHECK (current_user <> session_user)', current_user);
END
$rls$;
CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.audit_digests
    FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION public.check_org_id_immutability();

-- 2. What the service calls ---------------------------------------------------------------------------------------

-- The organizations whose chain moved since their last digest (or that have a chain and no digest yet) and whose
-- last digest was issued at least p_interval_secs ago, at most p_limit of them: for each, the number the next
-- digest takes, the chain head to sign, the previous digest's payload hash (NULL for the first) and the time to
-- put in the payload. Reads only: recording the digest is the claim (byoc_record_audit_digest).
CREATE FUNCTION public.byoc_audit_digests_due(p_interval_secs integer, p_limit integer)
    RETURNS TABLE (org_id uuid, digest_seq bigint, head_seq bigint, head_hash bytea, previous_payload_hash bytea,
                   issued_at timestamptz)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_interval_secs IS NULL OR p_interval_secs < 1 OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'the interval and the limit must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT h.org_id, COALESCE(d.digest_seq, 0) + 1, h.last_seq, h.last_hash, d.payload_hash,
           pg_catalog.date_trunc('milliseconds', pg_catalog.now())
    FROM public.credential_audit_chain_heads h
    LEFT JOIN LATERAL (
        SELECT l.digest_seq, l.head_seq, l.payload_hash, l.issued_at
        FROM public.audit_digests l
        WHERE l.org_id = h.org_id
        ORDER BY l.digest_seq DESC
        LIMIT 1
    ) d ON true
    WHERE h.last_seq > COALESCE(d.head_seq, 0)
      AND (d.issued_at IS NULL
           OR d.issued_at <= pg_catalog.now() - pg_catalog.make_interval(secs => p_interval_secs))
    ORDER BY h.org_id
    LIMIT p_limit;
END
$$;

-- Records a signed digest, which claims it: of the replicas that signed the same organization's digest number,
-- the first to record it wins and the others get false (and discard theirs). Refuses a head that is not in the
-- organization's chain at its position, and a digest that does not follow the organization's last one.
CREATE FUNCTION public.byoc_record_audit_digest(p_org_id uuid, p_digest_seq bigint, p_head_seq bigint,
                                                p_head_hash bytea, p_previous_payload_hash bytea, p_payload text,
                                                p_payload_hash bytea, p_signature bytea, p_issued_at timestamptz)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    last_hash pg_catalog.bytea;
BEGIN
    PERFORM public.byoc_require_service_login();
    IF NOT EXISTS (SELECT 1 FROM public.credential_audit_log l
                   WHERE l.org_id = p_org_id AND l.seq = p_head_seq AND l.hash = p_head_hash) THEN
        RAISE EXCEPTION 'the digested head is not in the organization''s audit chain'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT d.payload_hash INTO last_hash
    FROM public.audit_digests d
    WHERE d.org_id = p_org_id AND d.digest_seq = p_digest_seq - 1;
    IF last_hash IS DISTINCT FROM p_previous_payload_hash THEN
        RETURN false;
    END IF;
    INSERT INTO public.audit_digests (org_id, digest_seq, head_seq, head_hash, payload, payload_hash, signature,
                                      issued_at)
    VALUES (p_org_id, p_digest_seq, p_head_seq, p_head_hash, p_payload, p_payload_hash, p_signature, p_issued_at)
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- Up to p_limit digests not yet written to BYOC_AUDIT_DIGEST_DIR, oldest first (writing one twice is harmless:
-- the file is the same).
CREATE FUNCTION public.byoc_unfiled_audit_digests(p_limit integer)
    RETURNS TABLE (org_id uuid, digest_seq bigint, head_seq bigint, payload text, signature bytea)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM public.byoc_require_service_login();
    RETURN QUERY
    SELECT d.org_id, d.digest_seq, d.head_seq, d.payload, d.signature
    FROM public.audit_digests d
    WHERE NOT d.filed
    ORDER BY d.issued_at, d.org_id, d.digest_seq
    LIMIT GREATEST(p_limit, 1);
END
$$;

-- Notes that a digest was written to BYOC_AUDIT_DIGEST_DIR.
CREATE FUNCTION public.byoc_mark_audit_digest_filed(p_org_id uuid, p_digest_seq bigint)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_service_login();
    UPDATE public.audit_digests d SET filed = true WHERE d.org_id = p_org_id AND d.digest_seq = p_digest_seq;
    RETURN FOUND;
END
$$;

-- Claims up to p_limit digests whose webhook delivery is due (issued in the last p_max_age_secs), oldest first, for
-- this caller alone, as byoc_claim_credential_events does events: locked, counted as an attempt and leased for
-- p_lease_secs.
CREATE FUNCTION public.byoc_claim_audit_digest_deliveries(p_limit integer, p_lease_secs integer,
                                                          p_max_age_secs integer)
    RETURNS TABLE (delivery_id uuid, org_id uuid, digest_seq bigint, head_seq bigint, payload text,
                   signature bytea, issued_at timestamptz, attempts bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_limit IS NULL OR p_limit < 1 OR p_lease_secs IS NULL OR p_lease_secs < 1
       OR p_max_age_secs IS NULL OR p_max_age_secs < 1 THEN
        RAISE EXCEPTION 'the limit, the lease and the age must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT d.org_id, d.digest_seq
        FROM public.audit_digests d
        WHERE d.next_delivery_at <= pg_catalog.now()
          AND d.issued_at > pg_catalog.now() - pg_catalog.make_interval(secs => p_max_age_secs)
        ORDER BY d.next_delivery_at, d.org_id, d.digest_seq
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.audit_digests d
    SET attempts = d.attempts + 1,
        next_delivery_at = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_secs)
    FROM due
    WHERE d.org_id = due.org_id AND d.digest_seq = due.digest_seq
    RETURNING d.delivery_id, d.org_id, d.digest_seq, d.head_seq, d.payload, d.signature, d.issued_at,
              d.attempts::pg_catalog.int8;
END
$$;

-- Settles a claimed delivery: delivered ones are done; the others wait p_retry_after_secs for their next attempt,
-- with the reason kept (at most 500 characters). Returns false when there is no such delivery.
CREATE FUNCTION public.byoc_finish_audit_digest_delivery(p_delivery_id uuid, p_delivered boolean,
                                                         p_retry_after_secs integer, p_error text)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_delivered THEN
        UPDATE public.audit_digests d SET next_delivery_at = NULL, last_error = NULL
        WHERE d.delivery_id = p_delivery_id;
    ELSE
        UPDATE public.audit_digests d
        SET next_delivery_at = pg_catalog.now()
                               + pg_catalog.make_interval(secs => GREATEST(p_retry_after_secs, 0)),
            last_error = pg_catalog.left(p_error, 500)
        WHERE d.delivery_id = p_delivery_id;
    END IF;
    RETURN FOUND;
END
$$;

-- Deletes the digests issued more than p_older_than_secs ago, except each organization's newest (which the next
-- digest names and which says whether the chain moved since); returns how many. The table's bound: the digests'
-- proof is their copies outside the database, and filing and delivery are done long before (or given up).
CREATE FUNCTION public.byoc_prune_audit_digests(p_older_than_secs integer)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pruned pg_catalog.int8;
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_older_than_secs IS NULL OR p_older_than_secs < 1 THEN
        RAISE EXCEPTION 'the age must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.audit_digests d
    WHERE d.issued_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_older_than_secs)
      AND d.digest_seq < (SELECT pg_catalog.max(n.digest_seq) FROM public.audit_digests n WHERE n.org_id = d.org_id);
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;

-- 3. What the operator calls --------------------------------------------------------------------------------------

-- `byoc audit verify --digests`: the chain hash stored at each of p_seqs in the organization's chain (no row for a
-- position the chain does not have).
CREATE FUNCTION public.byoc_operator_audit_chain_hashes(p_org_id uuid, p_seqs bigint[])
    RETURNS TABLE (seq bigint, hash bytea)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.seq, l.hash
    FROM public.credential_audit_log l
    WHERE l.org_id = p_org_id AND l.seq = ANY (p_seqs)
    ORDER BY l.seq
$$;

-- 4. Privileges ---------------------------------------------------------------------------------------------------

-- byoc_app gets no privilege on the table; it reaches it only through the functions above.
REVOKE ALL ON FUNCTION public.byoc_audit_digests_due(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_record_audit_digest(uuid, bigint, bigint, bytea, bytea, text, bytea, bytea,
                                                       timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_unfiled_audit_digests(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_mark_audit_digest_filed(uuid, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_claim_audit_digest_deliveries(integer, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_finish_audit_digest_delivery(uuid, boolean, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_prune_audit_digests(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_operator_audit_chain_hashes(uuid, bigint[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    public.byoc_audit_digests_due(integer, integer),
    public.byoc_record_audit_digest(uuid, bigint, bigint, bytea, bytea, text, bytea, bytea, timestamptz),
    public.byoc_unfiled_audit_digests(integer),
    public.byoc_mark_audit_digest_filed(uuid, bigint),
    public.byoc_claim_audit_digest_deliveries(integer, integer, integer),
    public.byoc_finish_audit_digest_delivery(uuid, boolean, integer, text),
    public.byoc_prune_audit_digests(integer)
TO byoc_app;
GRANT EXECUTE ON FUNCTION public.byoc_operator_audit_chain_hashes(uuid, bigint[]) TO byoc_operator;
