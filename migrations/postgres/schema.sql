CREATE FUNCTION public.byoc_append_audit_events(p_org_id uuid, p_action text[], p_credential_id uuid[], p_credential_type text[], p_detail text[]) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    events      pg_catalog.int4 := coalesce(pg_catalog.cardinality(p_action), 0);
    event_actor pg_catalog.text;
    event_at    pg_catalog.timestamptz := pg_catalog.now();
    head_seq    pg_catalog.int8;
    head_hash   pg_catalog.bytea;
    seqs        pg_catalog.int8[] := '{}';
    details     pg_catalog.jsonb[] := '{}';
    prevs       pg_catalog.bytea[] := '{}';
    hashes      pg_catalog.bytea[] := '{}';
BEGIN
    IF p_org_id IS DISTINCT FROM public.byoc_ctx_org() THEN
        RAISE EXCEPTION 'audit events may only be appended to the context organization'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    event_actor := public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    IF coalesce(pg_catalog.cardinality(p_credential_id), 0) <> events
       OR coalesce(pg_catalog.cardinality(p_credential_type), 0) <> events
       OR coalesce(pg_catalog.cardinality(p_detail), 0) <> events THEN
        RAISE EXCEPTION 'audit event arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF 'purged' = ANY (p_action) THEN
        PERFORM public.byoc_require_context(ARRAY['owner'], false);
    END IF;
    IF p_action && ARRAY['created', 'deactivated', 'verification_reset'] THEN
        PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], false);
    END IF;
    IF 'verified' = ANY (p_action) THEN
        PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], true);
    END IF;

    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = p_org_id
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO public.credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (p_org_id, 0, public.byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
        FROM public.credential_audit_chain_heads h
        WHERE h.org_id = p_org_id
        FOR UPDATE;
    END IF;
    IF events = 0 THEN
        RETURN head_seq;
    END IF;

    FOR i IN 1 .. events LOOP
        seqs[i] := head_seq + i;
        details[i] := p_detail[i]::pg_catalog.jsonb;
        prevs[i] := head_hash;
        head_hash := public.byoc_audit_hash(head_hash, seqs[i], p_org_id, event_at, event_actor, p_action[i],
                                            p_credential_id[i], p_credential_type[i], details[i]);
        hashes[i] := head_hash;
    END LOOP;

    INSERT INTO public.credential_audit_log (org_id, seq, at, actor, action, credential_id, credential_type,
                                             detail, prev_hash, hash)
    SELECT p_org_id, e.seq, event_at, event_actor, e.action, e.credential_id, e.credential_type, e.detail,
           e.prev_hash, e.hash
    -- unnest of several arrays is FROM-clause syntax and takes no schema; the pinned path finds pg_catalog's.
    FROM unnest(seqs, p_action, p_credential_id, p_credential_type, details, prevs, hashes)
         AS e (seq, action, credential_id, credential_type, detail, prev_hash, hash)
    ORDER BY e.seq;

    UPDATE public.credential_audit_chain_heads
    SET last_seq = head_seq + events, last_hash = head_hash
    WHERE org_id = p_org_id;
    RETURN head_seq + events;
END
$$;

ALTER FUNCTION public.byoc_append_audit_events(p_org_id uuid, p_action text[], p_credential_id uuid[], p_credential_type text[], p_detail text[]) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_audit_chain_check(p_org uuid) RETURNS TABLE(intact boolean, events bigint, first_broken_seq bigint, problem text, head_seq bigint, head_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_audit_chain_check(p_org uuid) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    head_seq  pg_catalog.int8;
    head_hash pg_catalog.bytea;
BEGIN
    SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
    FROM public.credential_audit_chain_heads h
    WHERE h.org_id = NEW.org_id
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO public.credential_audit_chain_heads (org_id, last_seq, last_hash)
        VALUES (NEW.org_id, 0, public.byoc_audit_genesis_hash())
        ON CONFLICT (org_id) DO NOTHING;
        SELECT h.last_seq, h.last_hash INTO head_seq, head_hash
        FROM public.credential_audit_chain_heads h
        WHERE h.org_id = NEW.org_id
        FOR UPDATE;
    END IF;

    NEW.seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := public.byoc_audit_hash(NEW.prev_hash, NEW.seq, NEW.org_id, NEW.at, NEW.actor, NEW.action,
                                       NEW.credential_id, NEW.credential_type, NEW.detail);
    UPDATE public.credential_audit_chain_heads
    SET last_seq = NEW.seq, last_hash = NEW.hash
    WHERE org_id = NEW.org_id;
    RETURN NEW;
END
$$;

ALTER FUNCTION public.byoc_audit_chain_link() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_audit_digests_due(p_interval_secs integer, p_limit integer) RETURNS TABLE(org_id uuid, digest_seq bigint, head_seq bigint, head_hash bytea, previous_payload_hash bytea, issued_at timestamp with time zone)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_audit_digests_due(p_interval_secs integer, p_limit integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_audit_genesis_hash() RETURNS bytea
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex') $$;

ALTER FUNCTION public.byoc_audit_genesis_hash() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamp with time zone, actor text, action text, credential_id uuid, credential_type text, detail jsonb) RETURNS bytea
    LANGUAGE sql STABLE
    AS $$
    SELECT pg_catalog.sha256(prev_hash OPERATOR(pg_catalog.||) pg_catalog.convert_to(
        pg_catalog.jsonb_build_array(
            seq, org_id,
            (pg_catalog."extract"('epoch', at) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8,
            actor, action, credential_id, credential_type, detail)::pg_catalog.text,
        'UTF8'))
$$;

ALTER FUNCTION public.byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamp with time zone, actor text, action text, credential_id uuid, credential_type text, detail jsonb) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_claim_audit_digest_deliveries(p_limit integer, p_lease_secs integer, p_max_age_secs integer) RETURNS TABLE(delivery_id uuid, org_id uuid, digest_seq bigint, head_seq bigint, payload text, signature bytea, issued_at timestamp with time zone, attempts bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_claim_audit_digest_deliveries(p_limit integer, p_lease_secs integer, p_max_age_secs integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_claim_credential_events(p_limit integer, p_lease_secs integer) RETURNS TABLE(id uuid, org_id uuid, credential_id uuid, credential_type text, display_name text, event_type text, verification_status text, verification_error text, occurred_at timestamp with time zone, attempts bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
#variable_conflict use_column
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_limit IS NULL OR p_limit < 1 OR p_lease_secs IS NULL OR p_lease_secs < 1 THEN
        RAISE EXCEPTION 'the limit and the lease must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT e.id
        FROM public.credential_events e
        WHERE e.next_attempt_at <= pg_catalog.now()
        ORDER BY e.occurred_at, e.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE public.credential_events e
    SET attempts = e.attempts + 1,
        next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_secs)
    FROM due
    WHERE e.id = due.id
    RETURNING e.id, e.org_id, e.credential_id, e.credential_type, e.display_name, e.event_type,
              e.verification_status, e.verification_error, e.occurred_at, e.attempts::pg_catalog.int8;
END
$$;

ALTER FUNCTION public.byoc_claim_credential_events(p_limit integer, p_lease_secs integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_claim_due_reverifications(p_interval_secs integer, p_limit integer) RETURNS TABLE(org_id uuid, credential_id uuid, credential_type text, provider_account_id text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
#variable_conflict use_column
DECLARE
    round pg_catalog.interval;
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_interval_secs IS NULL OR p_interval_secs < 1 OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'the interval and the limit must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    round := pg_catalog.make_interval(secs => p_interval_secs);

    INSERT INTO public.credential_reverify_schedule (credential_id, org_id, due_at)
    SELECT c.id, c.org_id, pg_catalog.now() + pg_catalog.random() * round
    FROM public.organization_api_credentials c
    WHERE c.is_active
      AND NOT EXISTS (SELECT 1 FROM public.credential_reverify_schedule s WHERE s.credential_id = c.id)
    ON CONFLICT (credential_id) DO NOTHING;

    UPDATE public.credential_reverify_schedule s
    SET due_at = pg_catalog.now() + pg_catalog.random() * round
    WHERE s.due_at > pg_catalog.now() + round;

    RETURN QUERY
    WITH due AS (
        SELECT s.credential_id
        FROM public.credential_reverify_schedule s
        JOIN public.organization_api_credentials c ON c.id = s.credential_id
        WHERE s.due_at <= pg_catalog.now() AND c.is_active
        ORDER BY s.due_at
        LIMIT p_limit
        FOR UPDATE OF s SKIP LOCKED
    )
    UPDATE public.credential_reverify_schedule s
    SET due_at = CASE WHEN s.due_at + round > pg_catalog.now() THEN s.due_at + round
                      ELSE pg_catalog.now() + round END
    FROM due, public.organization_api_credentials c
    WHERE s.credential_id = due.credential_id AND c.id = s.credential_id
    RETURNING s.org_id, s.credential_id, c.credential_type, c.provider_account_id;
END
$$;

ALTER FUNCTION public.byoc_claim_due_reverifications(p_interval_secs integer, p_limit integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_create_dashboard_login_link(p_link_hash bytea, p_expires_at timestamp with time zone, p_session_expires_at timestamp with time zone) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], false);
    DELETE FROM public.dashboard_login_links l WHERE l.expires_at <= pg_catalog.now();
    INSERT INTO public.dashboard_login_links (link_hash, org_id, user_id, expires_at, session_expires_at)
    VALUES (p_link_hash, public.byoc_ctx_org(), public.byoc_ctx_user(),
            LEAST(p_expires_at, pg_catalog.now() + pg_catalog.make_interval(secs => 60)), p_session_expires_at);
END
$$;

ALTER FUNCTION public.byoc_create_dashboard_login_link(p_link_hash bytea, p_expires_at timestamp with time zone, p_session_expires_at timestamp with time zone) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_credential_status_counts() RETURNS TABLE(credential_type text, verification_status text, is_active boolean, credentials bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT c.credential_type, c.verification_status, c.is_active, pg_catalog.count(*)
    FROM public.organization_api_credentials c
    GROUP BY c.credential_type, c.verification_status, c.is_active
    ORDER BY c.credential_type, c.verification_status, c.is_active
$$;

ALTER FUNCTION public.byoc_credential_status_counts() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_credentials_per_key_version() RETURNS TABLE(encryption_key_version bigint, credentials bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT c.encryption_key_version, pg_catalog.count(*)
    FROM public.organization_api_credentials c
    GROUP BY c.encryption_key_version
    ORDER BY c.encryption_key_version
$$;

ALTER FUNCTION public.byoc_credentials_per_key_version() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_ctx_is_service() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '') IS NOT NULL
       AND NULLIF(pg_catalog.current_setting('byoc.user_id', true), '') IS NULL
       AND NULLIF(pg_catalog.current_setting('byoc.service', true), '') IS NOT NULL
       AND pg_catalog.pg_has_role(SESSION_USER, 'byoc_service', 'MEMBER')
$$;

ALTER FUNCTION public.byoc_ctx_is_service() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_ctx_member_role() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    member_role pg_catalog.text;
BEGIN
    SELECT m.role INTO member_role
    FROM public.organization_members m
    WHERE m.org_id = public.byoc_ctx_org()
      AND m.user_id = public.byoc_ctx_user();
    RETURN member_role;
END
$$;

ALTER FUNCTION public.byoc_ctx_member_role() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_ctx_org() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.org_id', true), '')::pg_catalog.uuid $$;

ALTER FUNCTION public.byoc_ctx_org() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_ctx_user() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(pg_catalog.current_setting('byoc.user_id', true), '')::pg_catalog.uuid $$;

ALTER FUNCTION public.byoc_ctx_user() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_delete_expired_dashboard_sessions() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH expired AS (
        DELETE FROM public.dashboard_sessions s
        WHERE s.expires_at <= pg_catalog.now()
           OR s.last_seen_at + pg_catalog.make_interval(secs => s.idle_timeout_secs) <= pg_catalog.now()
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM expired
$$;

ALTER FUNCTION public.byoc_delete_expired_dashboard_sessions() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_end_dashboard_session(p_id_hash bytea) RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    WITH ended AS (
        DELETE FROM public.dashboard_sessions s WHERE s.id_hash = p_id_hash RETURNING 1
    )
    SELECT pg_catalog.count(*) > 0 FROM ended
$$;

ALTER FUNCTION public.byoc_end_dashboard_session(p_id_hash bytea) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_enter_context(p_org uuid, p_user uuid, p_service text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_catalog.set_config('byoc.org_id', coalesce(p_org::pg_catalog.text, ''), true),
            pg_catalog.set_config('byoc.user_id', coalesce(p_user::pg_catalog.text, ''), true),
            pg_catalog.set_config('byoc.service', coalesce(p_service, ''), true);
END
$$;

ALTER FUNCTION public.byoc_enter_context(p_org uuid, p_user uuid, p_service text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_finish_audit_digest_delivery(p_delivery_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_finish_audit_digest_delivery(p_delivery_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_finish_credential_event(p_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_delivered THEN
        DELETE FROM public.credential_events e WHERE e.id = p_id;
    ELSE
        UPDATE public.credential_events e
        SET next_attempt_at = pg_catalog.now()
                              + pg_catalog.make_interval(secs => GREATEST(p_retry_after_secs, 0)),
            last_error = pg_catalog.left(p_error, 500)
        WHERE e.id = p_id;
    END IF;
    RETURN FOUND;
END
$$;

ALTER FUNCTION public.byoc_finish_credential_event(p_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_mark_audit_digest_filed(p_org_id uuid, p_digest_seq bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_service_login();
    UPDATE public.audit_digests d SET filed = true WHERE d.org_id = p_org_id AND d.digest_seq = p_digest_seq;
    RETURN FOUND;
END
$$;

ALTER FUNCTION public.byoc_mark_audit_digest_filed(p_org_id uuid, p_digest_seq bigint) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_notify_credential_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.encryption_key_version IS DISTINCT FROM NEW.encryption_key_version
       AND pg_catalog.substr(OLD.encrypted_data, 66) = pg_catalog.substr(NEW.encrypted_data, 66)
       AND (pg_catalog.to_jsonb(OLD) - ARRAY['encrypted_data', 'encryption_key_version', 'updated_at'])
           = (pg_catalog.to_jsonb(NEW) - ARRAY['encrypted_data', 'encryption_key_version', 'updated_at']) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                 pg_catalog.json_build_object('kind', 'credential',
                                                              'org_id', changed.org_id,
                                                              'credential_type', changed.credential_type,
                                                              'credential_id', changed.id)::pg_catalog.text);
    RETURN NULL;
END
$$;

ALTER FUNCTION public.byoc_notify_credential_change() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_notify_member_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                     pg_catalog.json_build_object('kind', 'member', 'org_id', OLD.org_id,
                                                                  'user_id', OLD.user_id)::pg_catalog.text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.user_id IS DISTINCT FROM NEW.user_id) THEN
        PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                     pg_catalog.json_build_object('kind', 'member', 'org_id', NEW.org_id,
                                                                  'user_id', NEW.user_id)::pg_catalog.text);
    END IF;
    RETURN NULL;
END
$$;

ALTER FUNCTION public.byoc_notify_member_change() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_notify_organization_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('byoc_credential_changes',
                                 pg_catalog.json_build_object('kind', 'organization',
                                                              'org_id', OLD.id)::pg_catalog.text);
    RETURN NULL;
END
$$;

ALTER FUNCTION public.byoc_notify_organization_change() OWNER TO byoc_owner;

CREATE TABLE public.master_keys (
    key_version bigint NOT NULL,
    kms_key_id text NOT NULL,
    ciphertext bytea NOT NULL,
    check_value bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT master_keys_check_value_check CHECK ((length(check_value) = 32)),
    CONSTRAINT master_keys_ciphertext_check CHECK (((length(ciphertext) >= 1) AND (length(ciphertext) <= 65536))),
    CONSTRAINT master_keys_key_version_check CHECK (((key_version >= 1) AND (key_version <= '4294967295'::bigint))),
    CONSTRAINT master_keys_kms_key_id_check CHECK (((length(kms_key_id) >= 1) AND (length(kms_key_id) <= 2048)))
);

ALTER TABLE public.master_keys OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_add_master_key(p_key_version bigint, p_kms_key_id text, p_ciphertext bytea, p_check_value bytea) RETURNS SETOF public.master_keys
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    INSERT INTO public.master_keys (key_version, kms_key_id, ciphertext, check_value)
    VALUES (p_key_version, p_kms_key_id, p_ciphertext, p_check_value)
    RETURNING *
$$;

ALTER FUNCTION public.byoc_operator_add_master_key(p_key_version bigint, p_kms_key_id text, p_ciphertext bytea, p_check_value bytea) OWNER TO byoc_owner;

CREATE TABLE public.organization_members (
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    email text,
    name text,
    CONSTRAINT organization_members_email_check CHECK (((char_length(email) >= 1) AND (char_length(email) <= 320))),
    CONSTRAINT organization_members_name_check CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT organization_members_role_check CHECK ((role = ANY (ARRAY['owner'::text, 'admin'::text, 'member'::text])))
);

ALTER TABLE ONLY public.organization_members FORCE ROW LEVEL SECURITY;

ALTER TABLE public.organization_members OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text) RETURNS SETOF public.organization_members
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    INSERT INTO public.organization_members (org_id, user_id, role)
    VALUES (p_org_id, p_user_id, p_role)
    RETURNING *
$$;

ALTER FUNCTION public.byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_audit_chain_hashes(p_org_id uuid, p_seqs bigint[]) RETURNS TABLE(seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT l.seq, l.hash
    FROM public.credential_audit_log l
    WHERE l.org_id = p_org_id AND l.seq = ANY (p_seqs)
    ORDER BY l.seq
$$;

ALTER FUNCTION public.byoc_operator_audit_chain_hashes(p_org_id uuid, p_seqs bigint[]) OWNER TO byoc_owner;

CREATE TABLE public.organizations (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    hot_lead_threshold integer DEFAULT 80 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT organizations_hot_lead_threshold_check CHECK (((hot_lead_threshold >= 0) AND (hot_lead_threshold <= 100))),
    CONSTRAINT organizations_name_check CHECK (((length(name) >= 1) AND (length(name) <= 200)))
);

ALTER TABLE ONLY public.organizations FORCE ROW LEVEL SECURITY;

ALTER TABLE public.organizations OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer) RETURNS SETOF public.organizations
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    INSERT INTO public.organizations (name, hot_lead_threshold)
    VALUES (p_name, p_hot_lead_threshold)
    RETURNING *
$$;

ALTER FUNCTION public.byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint, p_limit integer) RETURNS TABLE(id uuid, org_id uuid, credential_type text, encryption_key_version bigint, encrypted_data bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT c.id, c.org_id, c.credential_type, c.encryption_key_version, c.encrypted_data
         FROM public.organization_api_credentials c
         WHERE (c.org_id, c.id) > ($1, $2)
           AND c.encryption_key_version IS DISTINCT FROM $3
         ORDER BY c.org_id, c.id
         LIMIT $4'
        USING coalesce(p_after_org_id, '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid),
              coalesce(p_after_id, '00000000-0000-0000-0000-000000000000'::pg_catalog.uuid),
              p_skip_key_version, p_limit;
END
$_$;

ALTER FUNCTION public.byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint, p_limit integer) OWNER TO byoc_owner;

CREATE TABLE public.organization_api_credentials (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    org_id uuid NOT NULL,
    credential_type text NOT NULL,
    encrypted_data bytea NOT NULL,
    encryption_key_version bigint NOT NULL,
    display_name text NOT NULL,
    public_hint text,
    provider_account_id text,
    is_active boolean DEFAULT true NOT NULL,
    last_verified_at timestamp with time zone,
    verification_status text DEFAULT 'pending'::text NOT NULL,
    verification_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    created_by uuid,
    CONSTRAINT organization_api_credentials_credential_type_check CHECK ((credential_type = ANY (ARRAY['twilio'::text, 'google_calendar'::text, 'stripe'::text, 'hubspot'::text]))),
    CONSTRAINT organization_api_credentials_display_name_check CHECK (((length(display_name) >= 1) AND (length(display_name) <= 255))),
    CONSTRAINT organization_api_credentials_encrypted_data_check CHECK ((length(encrypted_data) > 0)),
    CONSTRAINT organization_api_credentials_encryption_key_version_check CHECK (((encryption_key_version >= 1) AND (encryption_key_version <= '4294967295'::bigint))),
    CONSTRAINT organization_api_credentials_provider_account_id_check CHECK (((length(provider_account_id) >= 1) AND (length(provider_account_id) <= 64))),
    CONSTRAINT organization_api_credentials_public_hint_check CHECK ((length(public_hint) <= 64)),
    CONSTRAINT organization_api_credentials_verification_error_check CHECK ((length(verification_error) <= 2000)),
    CONSTRAINT organization_api_credentials_verification_status_check CHECK ((verification_status = ANY (ARRAY['pending'::text, 'verified'::text, 'failed'::text])))
);

ALTER TABLE ONLY public.organization_api_credentials FORCE ROW LEVEL SECURITY;

ALTER TABLE public.organization_api_credentials OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_import_credential(p_id uuid, p_org_id uuid, p_credential_type text, p_encrypted_data bytea, p_key_version bigint, p_display_name text, p_public_hint text, p_provider_account_id text, p_actor text, p_detail jsonb) RETURNS SETOF public.organization_api_credentials
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM 1 FROM public.organizations o WHERE o.id = p_org_id FOR NO KEY UPDATE;
    IF p_provider_account_id IS NOT NULL THEN
        RETURN QUERY
            SELECT c.* FROM public.organization_api_credentials c
            WHERE c.org_id = p_org_id
              AND c.credential_type = p_credential_type
              AND c.provider_account_id = p_provider_account_id
              AND c.is_active
            ORDER BY (c.verification_status = 'verified') DESC, c.created_at DESC, c.id DESC
            LIMIT 1;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        WITH inserted AS (
            INSERT INTO public.organization_api_credentials
                (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint,
                 provider_account_id)
            VALUES (p_id, p_org_id, p_credential_type, p_encrypted_data, p_key_version, p_display_name,
                    p_public_hint, p_provider_account_id)
            RETURNING *
        ), audited AS (
            INSERT INTO public.credential_audit_log (org_id, actor, action, credential_id, credential_type, detail)
            SELECT i.org_id, p_actor, 'created', i.id, i.credential_type,
                   p_detail || pg_catalog.jsonb_build_object('session_user', SESSION_USER::pg_catalog.text)
            FROM inserted i
        )
        SELECT * FROM inserted;
END
$$;

ALTER FUNCTION public.byoc_operator_import_credential(p_id uuid, p_org_id uuid, p_credential_type text, p_encrypted_data bytea, p_key_version bigint, p_display_name text, p_public_hint text, p_provider_account_id text, p_actor text, p_detail jsonb) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_expected_key_versions bigint[], p_new bytea[], p_new_key_versions bigint[], p_actor text) RETURNS SETOF uuid
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_expected)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_expected_key_versions)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_new)
       OR pg_catalog.cardinality(p_ids) IS DISTINCT FROM pg_catalog.cardinality(p_new_key_versions) THEN
        RAISE EXCEPTION 'swap arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH swapped AS (
            UPDATE public.organization_api_credentials c
            SET encrypted_data = s.new_data,
                encryption_key_version = s.new_version
            FROM unnest(p_ids, p_expected, p_expected_key_versions, p_new, p_new_key_versions)
                 AS s (id, expected, expected_version, new_data, new_version)
            WHERE c.id = s.id
              AND c.encrypted_data = s.expected
              AND c.encryption_key_version = s.expected_version
            RETURNING c.id, c.org_id, s.expected_version AS from_version, s.new_version AS to_version
        ), audited AS (
            INSERT INTO public.credential_audit_log (org_id, actor, action, detail)
            SELECT w.org_id, p_actor, 'rotated',
                   pg_catalog.jsonb_build_object('rewrapped', pg_catalog.count(*), 'from_key_version',
                                                 w.from_version, 'key_version', w.to_version)
            FROM swapped w
            GROUP BY w.org_id, w.from_version, w.to_version
            ORDER BY w.org_id, w.from_version, w.to_version
        )
        SELECT w.id FROM swapped w;
END
$$;

ALTER FUNCTION public.byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_expected_key_versions bigint[], p_new bytea[], p_new_key_versions bigint[], p_actor text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_operator_verify_audit_chains(p_org_id uuid) RETURNS TABLE(org_id uuid, intact boolean, events bigint, first_broken_seq bigint, problem text, head_seq bigint, head_hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT o.id, c.intact, c.events, c.first_broken_seq, c.problem, c.head_seq, c.head_hash
    FROM public.organizations o
    CROSS JOIN LATERAL public.byoc_audit_chain_check(o.id) c
    WHERE p_org_id IS NULL OR o.id = p_org_id
    ORDER BY o.id
$$;

ALTER FUNCTION public.byoc_operator_verify_audit_chains(p_org_id uuid) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_prune_audit_digests(p_older_than_secs integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_prune_audit_digests(p_older_than_secs integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_prune_credential_events(p_older_than_secs integer) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    pruned pg_catalog.int8;
BEGIN
    PERFORM public.byoc_require_service_login();
    IF p_older_than_secs IS NULL OR p_older_than_secs < 1 THEN
        RAISE EXCEPTION 'the age must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.credential_events e
    WHERE e.occurred_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_older_than_secs);
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;

ALTER FUNCTION public.byoc_prune_credential_events(p_older_than_secs integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_queue_credential_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO public.credential_events (org_id, credential_id, credential_type, display_name, event_type,
                                              verification_status, verification_error)
        VALUES (OLD.org_id, OLD.id, OLD.credential_type, OLD.display_name, 'credential.purged',
                OLD.verification_status, OLD.verification_error);
        RETURN NULL;
    END IF;
    IF OLD.is_active AND NOT NEW.is_active THEN
        INSERT INTO public.credential_events (org_id, credential_id, credential_type, display_name, event_type,
                                              verification_status, verification_error)
        VALUES (NEW.org_id, NEW.id, NEW.credential_type, NEW.display_name, 'credential.deactivated',
                NEW.verification_status, NEW.verification_error);
    END IF;
    IF NEW.verification_status IS DISTINCT FROM OLD.verification_status
       AND NEW.verification_status IN ('verified', 'failed') THEN
        INSERT INTO public.credential_events (org_id, credential_id, credential_type, display_name, event_type,
                                              verification_status, verification_error)
        VALUES (NEW.org_id, NEW.id, NEW.credential_type, NEW.display_name,
                CASE
                    WHEN NEW.verification_status = 'verified' THEN 'credential.verified'
                    WHEN NEW.credential_type = 'google_calendar' THEN 'credential.reconnect_needed'
                    ELSE 'credential.verification_failed'
                END,
                NEW.verification_status, NEW.verification_error);
    END IF;
    RETURN NULL;
END
$$;

ALTER FUNCTION public.byoc_queue_credential_event() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_record_audit_digest(p_org_id uuid, p_digest_seq bigint, p_head_seq bigint, p_head_hash bytea, p_previous_payload_hash bytea, p_payload text, p_payload_hash bytea, p_signature bytea, p_issued_at timestamp with time zone) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_record_audit_digest(p_org_id uuid, p_digest_seq bigint, p_head_seq bigint, p_head_hash bytea, p_previous_payload_hash bytea, p_payload text, p_payload_hash bytea, p_signature bytea, p_issued_at timestamp with time zone) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_record_member_profile(p_email text, p_name text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], false);
    UPDATE public.organization_members m
    SET email = p_email,
        name  = p_name
    WHERE m.org_id OPERATOR(pg_catalog.=) public.byoc_ctx_org()
      AND m.user_id OPERATOR(pg_catalog.=) public.byoc_ctx_user()
      AND (m.email IS DISTINCT FROM p_email OR m.name IS DISTINCT FROM p_name);
    RETURN FOUND;
END
$$;

ALTER FUNCTION public.byoc_record_member_profile(p_email text, p_name text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_record_verification(p_credential_id uuid, p_status text, p_error text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin'], true);
    UPDATE public.organization_api_credentials
    SET verification_status = p_status,
        verification_error  = p_error,
        last_verified_at    = pg_catalog.now()
    WHERE id = p_credential_id
      AND org_id = public.byoc_ctx_org();
    RETURN FOUND;
END
$$;

ALTER FUNCTION public.byoc_record_verification(p_credential_id uuid, p_status text, p_error text) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_redeem_dashboard_login_link(p_link_hash bytea, p_session_hash bytea, p_idle_timeout_secs integer) RETURNS TABLE(outcome text, session_org_id uuid, session_user_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    v_org             pg_catalog.uuid;
    v_user            pg_catalog.uuid;
    v_expires         pg_catalog.timestamptz;
    v_session_expires pg_catalog.timestamptz;
BEGIN
    DELETE FROM public.dashboard_login_links l
    WHERE l.link_hash = p_link_hash
    RETURNING l.org_id, l.user_id, l.expires_at, l.session_expires_at
    INTO v_org, v_user, v_expires, v_session_expires;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::pg_catalog.text, NULL::pg_catalog.uuid, NULL::pg_catalog.uuid;
    ELSIF v_expires <= pg_catalog.now() OR v_session_expires <= pg_catalog.now() THEN
        RETURN QUERY SELECT 'expired'::pg_catalog.text, NULL::pg_catalog.uuid, NULL::pg_catalog.uuid;
    ELSE
        INSERT INTO public.dashboard_sessions (id_hash, org_id, user_id, idle_timeout_secs, expires_at)
        VALUES (p_session_hash, v_org, v_user, p_idle_timeout_secs, v_session_expires);
        RETURN QUERY SELECT 'opened'::pg_catalog.text, v_org, v_user;
    END IF;
END
$$;

ALTER FUNCTION public.byoc_redeem_dashboard_login_link(p_link_hash bytea, p_session_hash bytea, p_idle_timeout_secs integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea, p_new_key_version bigint) RETURNS SETOF public.organization_api_credentials
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    IF p_expected IS NULL OR p_new IS NULL OR pg_catalog.length(p_new) < 93
       OR pg_catalog.get_byte(p_new, 0) <> 1
       OR p_new_key_version IS DISTINCT FROM
          ((pg_catalog.get_byte(p_new, 1)::pg_catalog.int8 << 24)
           | (pg_catalog.get_byte(p_new, 2)::pg_catalog.int8 << 16)
           | (pg_catalog.get_byte(p_new, 3)::pg_catalog.int8 << 8)
           | pg_catalog.get_byte(p_new, 4)::pg_catalog.int8) THEN
        RAISE EXCEPTION 'not a format 1 envelope of the stated key version'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        UPDATE public.organization_api_credentials c
        SET encrypted_data = p_new,
            encryption_key_version = p_new_key_version
        WHERE c.id = p_credential_id
          AND c.org_id = public.byoc_ctx_org()
          AND c.credential_type = 'google_calendar'
          AND c.is_active
          AND c.encrypted_data = p_expected
        RETURNING c.*;
END
$$;

ALTER FUNCTION public.byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea, p_new_key_version bigint) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_require_context(p_roles text[], p_services boolean) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF public.byoc_ctx_org() IS NOT NULL THEN
        IF p_services AND public.byoc_ctx_is_service() THEN
            RETURN 'service:' || pg_catalog.current_setting('byoc.service');
        END IF;
        IF public.byoc_ctx_member_role() = ANY (p_roles) THEN
            RETURN 'user:' || public.byoc_ctx_user()::pg_catalog.text;
        END IF;
    END IF;
    RAISE EXCEPTION 'the tenant context does not allow this (needs %)',
        pg_catalog.array_to_string(p_roles ||
                                   CASE WHEN p_services THEN ARRAY['service'] ELSE ARRAY[]::pg_catalog.text[] END,
                                   ' or ')
        USING ERRCODE = 'insufficient_privilege';
END
$$;

ALTER FUNCTION public.byoc_require_context(p_roles text[], p_services boolean) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_require_service_login() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'byoc_service', 'MEMBER') THEN
        RAISE EXCEPTION 'only a login granted byoc_service may do the service''s cross-organization work'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'set BYOC_SERVICE_DATABASE_URL to a login granted byoc_app and byoc_service';
    END IF;
END
$$;

ALTER FUNCTION public.byoc_require_service_login() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_touch_dashboard_session(p_id_hash bytea) RETURNS TABLE(org_id uuid, user_id uuid)
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    UPDATE public.dashboard_sessions s
    SET last_seen_at = pg_catalog.now()
    WHERE s.id_hash = p_id_hash
      AND s.expires_at > pg_catalog.now()
      AND s.last_seen_at + pg_catalog.make_interval(secs => s.idle_timeout_secs) > pg_catalog.now()
    RETURNING s.org_id, s.user_id
$$;

ALTER FUNCTION public.byoc_touch_dashboard_session(p_id_hash bytea) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;

ALTER FUNCTION public.byoc_touch_updated_at() OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_unfiled_audit_digests(p_limit integer) RETURNS TABLE(org_id uuid, digest_seq bigint, head_seq bigint, payload text, signature bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
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

ALTER FUNCTION public.byoc_unfiled_audit_digests(p_limit integer) OWNER TO byoc_owner;

CREATE FUNCTION public.byoc_verify_audit_chain() RETURNS TABLE(intact boolean, events bigint, first_broken_seq bigint, problem text, head_seq bigint, head_hash bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], true);
    RETURN QUERY SELECT * FROM public.byoc_audit_chain_check(public.byoc_ctx_org());
END
$$;

ALTER FUNCTION public.byoc_verify_audit_chain() OWNER TO byoc_owner;

CREATE FUNCTION public.check_org_id_immutability() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF NEW.org_id IS DISTINCT FROM OLD.org_id THEN
        RAISE EXCEPTION 'org_id cannot be changed on %', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

ALTER FUNCTION public.check_org_id_immutability() OWNER TO byoc_owner;

CREATE TABLE public._sqlx_migrations (
    version bigint NOT NULL,
    description text NOT NULL,
    installed_on timestamp with time zone DEFAULT now() NOT NULL,
    success boolean NOT NULL,
    checksum bytea NOT NULL,
    execution_time bigint NOT NULL
);

ALTER TABLE public._sqlx_migrations OWNER TO byoc_owner;

CREATE TABLE public.audit_digests (
    org_id uuid NOT NULL,
    digest_seq bigint NOT NULL,
    head_seq bigint NOT NULL,
    head_hash bytea NOT NULL,
    payload text NOT NULL,
    payload_hash bytea NOT NULL,
    signature bytea NOT NULL,
    issued_at timestamp with time zone NOT NULL,
    filed boolean DEFAULT false NOT NULL,
    delivery_id uuid DEFAULT gen_random_uuid() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_delivery_at timestamp with time zone DEFAULT now(),
    last_error text,
    CONSTRAINT audit_digests_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT audit_digests_digest_seq_check CHECK ((digest_seq >= 1)),
    CONSTRAINT audit_digests_head_hash_check CHECK ((length(head_hash) = 32)),
    CONSTRAINT audit_digests_head_seq_check CHECK ((head_seq >= 1)),
    CONSTRAINT audit_digests_last_error_check CHECK ((length(last_error) <= 500)),
    CONSTRAINT audit_digests_payload_check CHECK (((length(payload) >= 2) AND (length(payload) <= 4000))),
    CONSTRAINT audit_digests_payload_hash_check CHECK ((length(payload_hash) = 32)),
    CONSTRAINT audit_digests_signature_check CHECK ((length(signature) = 64))
);

ALTER TABLE ONLY public.audit_digests FORCE ROW LEVEL SECURITY;

ALTER TABLE public.audit_digests OWNER TO byoc_owner;

CREATE TABLE public.credential_audit_chain_heads (
    org_id uuid NOT NULL,
    last_seq bigint NOT NULL,
    last_hash bytea NOT NULL
);

ALTER TABLE ONLY public.credential_audit_chain_heads FORCE ROW LEVEL SECURITY;

ALTER TABLE public.credential_audit_chain_heads OWNER TO byoc_owner;

CREATE TABLE public.credential_audit_log (
    id bigint NOT NULL,
    org_id uuid NOT NULL,
    seq bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    credential_id uuid,
    credential_type text,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    CONSTRAINT credential_audit_log_action_check CHECK ((action ~ '^[a-z][a-z0-9_.:]{0,63}$'::text)),
    CONSTRAINT credential_audit_log_actor_check CHECK (((length(actor) >= 1) AND (length(actor) <= 200))),
    CONSTRAINT credential_audit_log_credential_type_check CHECK ((credential_type = ANY (ARRAY['twilio'::text, 'google_calendar'::text, 'stripe'::text, 'hubspot'::text])))
);

ALTER TABLE ONLY public.credential_audit_log FORCE ROW LEVEL SECURITY;

ALTER TABLE public.credential_audit_log OWNER TO byoc_owner;

ALTER TABLE public.credential_audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.credential_audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.credential_events (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    org_id uuid NOT NULL,
    credential_id uuid NOT NULL,
    credential_type text NOT NULL,
    display_name text NOT NULL,
    event_type text NOT NULL,
    verification_status text NOT NULL,
    verification_error text,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    last_error text,
    CONSTRAINT credential_events_attempts_check CHECK ((attempts >= 0)),
    CONSTRAINT credential_events_credential_type_check CHECK ((credential_type = ANY (ARRAY['twilio'::text, 'google_calendar'::text, 'stripe'::text, 'hubspot'::text]))),
    CONSTRAINT credential_events_display_name_check CHECK (((length(display_name) >= 1) AND (length(display_name) <= 255))),
    CONSTRAINT credential_events_event_type_check CHECK ((event_type = ANY (ARRAY['credential.verified'::text, 'credential.verification_failed'::text, 'credential.deactivated'::text, 'credential.purged'::text, 'credential.reconnect_needed'::text]))),
    CONSTRAINT credential_events_last_error_check CHECK ((length(last_error) <= 500)),
    CONSTRAINT credential_events_verification_error_check CHECK ((length(verification_error) <= 2000)),
    CONSTRAINT credential_events_verification_status_check CHECK ((verification_status = ANY (ARRAY['pending'::text, 'verified'::text, 'failed'::text])))
);

ALTER TABLE ONLY public.credential_events FORCE ROW LEVEL SECURITY;

ALTER TABLE public.credential_events OWNER TO byoc_owner;

CREATE TABLE public.credential_reverify_schedule (
    credential_id uuid NOT NULL,
    org_id uuid NOT NULL,
    due_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY public.credential_reverify_schedule FORCE ROW LEVEL SECURITY;

ALTER TABLE public.credential_reverify_schedule OWNER TO byoc_owner;

CREATE TABLE public.dashboard_login_links (
    link_hash bytea NOT NULL,
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    session_expires_at timestamp with time zone NOT NULL,
    CONSTRAINT dashboard_login_links_link_hash_check CHECK ((length(link_hash) = 32))
);

ALTER TABLE ONLY public.dashboard_login_links FORCE ROW LEVEL SECURITY;

ALTER TABLE public.dashboard_login_links OWNER TO byoc_owner;

CREATE TABLE public.dashboard_sessions (
    id_hash bytea NOT NULL,
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    idle_timeout_secs integer NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT dashboard_sessions_id_hash_check CHECK ((length(id_hash) = 32)),
    CONSTRAINT dashboard_sessions_idle_timeout_secs_check CHECK ((idle_timeout_secs > 0))
);

ALTER TABLE ONLY public.dashboard_sessions FORCE ROW LEVEL SECURITY;

ALTER TABLE public.dashboard_sessions OWNER TO byoc_owner;

CREATE TABLE public.encryption_key_checks (
    key_version bigint NOT NULL,
    check_value bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT encryption_key_checks_check_value_check CHECK ((length(check_value) > 0)),
    CONSTRAINT encryption_key_checks_key_version_check CHECK (((key_version >= 1) AND (key_version <= '4294967295'::bigint)))
);

ALTER TABLE public.encryption_key_checks OWNER TO byoc_owner;

CREATE TABLE public.oauth_states (
    id uuid NOT NULL,
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    provider text NOT NULL,
    pkce_verifier_envelope bytea NOT NULL,
    client_credential_id uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT oauth_states_check CHECK ((expires_at > created_at)),
    CONSTRAINT oauth_states_pkce_verifier_envelope_check CHECK ((length(pkce_verifier_envelope) > 0)),
    CONSTRAINT oauth_states_provider_check CHECK ((provider = 'google_calendar'::text))
);

ALTER TABLE ONLY public.oauth_states FORCE ROW LEVEL SECURITY;

ALTER TABLE public.oauth_states OWNER TO byoc_owner;

CREATE TABLE public.provider_usage_daily (
    org_id uuid NOT NULL,
    provider text NOT NULL,
    day date NOT NULL,
    calls bigint DEFAULT 0 NOT NULL,
    failures bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT provider_usage_daily_calls_check CHECK ((calls >= 0)),
    CONSTRAINT provider_usage_daily_failures_check CHECK ((failures >= 0)),
    CONSTRAINT provider_usage_daily_provider_check CHECK ((provider = ANY (ARRAY['twilio'::text, 'google_calendar'::text, 'stripe'::text, 'hubspot'::text])))
);

ALTER TABLE ONLY public.provider_usage_daily FORCE ROW LEVEL SECURITY;

ALTER TABLE public.provider_usage_daily OWNER TO byoc_owner;

CREATE TABLE public.sms_messages (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    org_id uuid NOT NULL,
    credential_id uuid,
    provider_message_sid text NOT NULL,
    to_masked text NOT NULL,
    purpose text NOT NULL,
    status text NOT NULL,
    error_code text,
    sent_at timestamp with time zone NOT NULL,
    status_updated_at timestamp with time zone NOT NULL,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT sms_messages_error_code_check CHECK ((length(error_code) <= 32)),
    CONSTRAINT sms_messages_provider_message_sid_check CHECK (((length(provider_message_sid) >= 1) AND (length(provider_message_sid) <= 64))),
    CONSTRAINT sms_messages_purpose_check CHECK (((length(purpose) >= 1) AND (length(purpose) <= 64))),
    CONSTRAINT sms_messages_status_check CHECK (((length(status) >= 1) AND (length(status) <= 32))),
    CONSTRAINT sms_messages_to_masked_check CHECK ((length(to_masked) <= 32))
);

ALTER TABLE ONLY public.sms_messages FORCE ROW LEVEL SECURITY;

ALTER TABLE public.sms_messages OWNER TO byoc_owner;

ALTER TABLE ONLY public._sqlx_migrations
    ADD CONSTRAINT _sqlx_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.audit_digests
    ADD CONSTRAINT audit_digests_delivery_id_key UNIQUE (delivery_id);

ALTER TABLE ONLY public.audit_digests
    ADD CONSTRAINT audit_digests_one_per_head UNIQUE (org_id, head_seq);

ALTER TABLE ONLY public.audit_digests
    ADD CONSTRAINT audit_digests_pkey PRIMARY KEY (org_id, digest_seq);

ALTER TABLE ONLY public.credential_audit_chain_heads
    ADD CONSTRAINT credential_audit_chain_heads_pkey PRIMARY KEY (org_id);

ALTER TABLE ONLY public.credential_audit_log
    ADD CONSTRAINT credential_audit_log_chain_key UNIQUE (org_id, seq);

ALTER TABLE ONLY public.credential_audit_log
    ADD CONSTRAINT credential_audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.credential_events
    ADD CONSTRAINT credential_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.credential_reverify_schedule
    ADD CONSTRAINT credential_reverify_schedule_pkey PRIMARY KEY (credential_id);

ALTER TABLE ONLY public.dashboard_login_links
    ADD CONSTRAINT dashboard_login_links_pkey PRIMARY KEY (link_hash);

ALTER TABLE ONLY public.dashboard_sessions
    ADD CONSTRAINT dashboard_sessions_pkey PRIMARY KEY (id_hash);

ALTER TABLE ONLY public.encryption_key_checks
    ADD CONSTRAINT encryption_key_checks_pkey PRIMARY KEY (key_version);

ALTER TABLE ONLY public.master_keys
    ADD CONSTRAINT master_keys_pkey PRIMARY KEY (key_version);

ALTER TABLE ONLY public.oauth_states
    ADD CONSTRAINT oauth_states_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.organization_api_credentials
    ADD CONSTRAINT organization_api_credentials_display_name_key UNIQUE (org_id, credential_type, display_name);

ALTER TABLE ONLY public.organization_api_credentials
    ADD CONSTRAINT organization_api_credentials_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.organization_members
    ADD CONSTRAINT organization_members_pkey PRIMARY KEY (org_id, user_id);

ALTER TABLE ONLY public.organizations
    ADD CONSTRAINT organizations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.provider_usage_daily
    ADD CONSTRAINT provider_usage_daily_pkey PRIMARY KEY (org_id, provider, day);

ALTER TABLE ONLY public.sms_messages
    ADD CONSTRAINT sms_messages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.sms_messages
    ADD CONSTRAINT sms_messages_sid_key UNIQUE (org_id, provider_message_sid);

CREATE INDEX audit_digests_next_delivery_idx ON public.audit_digests USING btree (next_delivery_at) WHERE (next_delivery_at IS NOT NULL);

CREATE INDEX audit_digests_unfiled_idx ON public.audit_digests USING btree (issued_at) WHERE (NOT filed);

CREATE INDEX credential_audit_log_org_id_idx ON public.credential_audit_log USING btree (org_id, id DESC);

CREATE INDEX credential_events_next_attempt_idx ON public.credential_events USING btree (next_attempt_at);

CREATE INDEX credential_reverify_schedule_due_idx ON public.credential_reverify_schedule USING btree (due_at);

CREATE INDEX dashboard_login_links_expires_at_idx ON public.dashboard_login_links USING btree (expires_at);

CREATE INDEX dashboard_sessions_expires_at_idx ON public.dashboard_sessions USING btree (expires_at);

CREATE INDEX oauth_states_org_id_idx ON public.oauth_states USING btree (org_id, expires_at);

CREATE INDEX organization_api_credentials_org_id_id_idx ON public.organization_api_credentials USING btree (org_id, id);

CREATE INDEX organization_api_credentials_winner_idx ON public.organization_api_credentials USING btree (org_id, credential_type, ((verification_status = 'verified'::text)) DESC, created_at DESC, id DESC) WHERE is_active;

CREATE TRIGGER audit_chain_link BEFORE INSERT ON public.credential_audit_log FOR EACH ROW WHEN ((new.hash IS NULL)) EXECUTE FUNCTION public.byoc_audit_chain_link();

CREATE TRIGGER notify_credential_change AFTER INSERT OR DELETE OR UPDATE ON public.organization_api_credentials FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_credential_change();

CREATE TRIGGER notify_member_change AFTER INSERT OR DELETE OR UPDATE ON public.organization_members FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_member_change();

CREATE TRIGGER notify_organization_change AFTER DELETE OR UPDATE ON public.organizations FOR EACH ROW EXECUTE FUNCTION public.byoc_notify_organization_change();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.audit_digests FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.credential_audit_chain_heads FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.credential_audit_log FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.credential_events FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.credential_reverify_schedule FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.dashboard_login_links FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.dashboard_sessions FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.oauth_states FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.organization_api_credentials FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.organization_members FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.provider_usage_daily FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.sms_messages FOR EACH ROW WHEN ((old.org_id IS DISTINCT FROM new.org_id)) EXECUTE FUNCTION public.check_org_id_immutability();

CREATE TRIGGER queue_credential_event AFTER DELETE OR UPDATE OF verification_status, is_active ON public.organization_api_credentials FOR EACH ROW EXECUTE FUNCTION public.byoc_queue_credential_event();

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.organization_api_credentials FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at();

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.organization_members FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at();

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.organizations FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at();

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.provider_usage_daily FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at();

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.sms_messages FOR EACH ROW EXECUTE FUNCTION public.byoc_touch_updated_at();

ALTER TABLE ONLY public.audit_digests
    ADD CONSTRAINT audit_digests_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.credential_audit_chain_heads
    ADD CONSTRAINT credential_audit_chain_heads_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id);

ALTER TABLE ONLY public.credential_reverify_schedule
    ADD CONSTRAINT credential_reverify_schedule_credential_id_fkey FOREIGN KEY (credential_id) REFERENCES public.organization_api_credentials(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.credential_reverify_schedule
    ADD CONSTRAINT credential_reverify_schedule_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.dashboard_login_links
    ADD CONSTRAINT dashboard_login_links_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.dashboard_sessions
    ADD CONSTRAINT dashboard_sessions_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.oauth_states
    ADD CONSTRAINT oauth_states_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.organization_api_credentials
    ADD CONSTRAINT organization_api_credentials_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.organization_members
    ADD CONSTRAINT organization_members_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.provider_usage_daily
    ADD CONSTRAINT provider_usage_daily_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.sms_messages
    ADD CONSTRAINT sms_messages_credential_id_fkey FOREIGN KEY (credential_id) REFERENCES public.organization_api_credentials(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.sms_messages
    ADD CONSTRAINT sms_messages_org_id_fkey FOREIGN KEY (org_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE public.audit_digests ENABLE ROW LEVEL SECURITY;

CREATE POLICY audit_select ON public.credential_audit_log FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY byoc_owner_through_functions ON public.audit_digests TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.credential_audit_chain_heads TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.credential_audit_log TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.credential_events TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.credential_reverify_schedule TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.dashboard_login_links TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.dashboard_sessions TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.oauth_states TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.organization_api_credentials TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.organization_members TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.organizations TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.provider_usage_daily TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

CREATE POLICY byoc_owner_through_functions ON public.sms_messages TO byoc_owner USING ((CURRENT_USER <> SESSION_USER)) WITH CHECK ((CURRENT_USER <> SESSION_USER));

ALTER TABLE public.credential_audit_chain_heads ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.credential_audit_log ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.credential_events ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.credential_reverify_schedule ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.dashboard_login_links ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.dashboard_sessions ENABLE ROW LEVEL SECURITY;

CREATE POLICY dashboard_sessions_insert ON public.dashboard_sessions FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (user_id = ( SELECT public.byoc_ctx_user() AS byoc_ctx_user)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL)));

CREATE POLICY members_delete ON public.organization_members FOR DELETE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'owner'::text)));

CREATE POLICY members_insert ON public.organization_members FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'owner'::text) OR ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'admin'::text) AND (role <> 'owner'::text)))));

CREATE POLICY members_select ON public.organization_members FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY members_update ON public.organization_members FOR UPDATE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'owner'::text) OR ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'admin'::text) AND (role <> 'owner'::text))))) WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'owner'::text) OR ((( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'admin'::text) AND (role <> 'owner'::text)))));

ALTER TABLE public.oauth_states ENABLE ROW LEVEL SECURITY;

CREATE POLICY oauth_states_delete ON public.oauth_states FOR DELETE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (user_id = ( SELECT public.byoc_ctx_user() AS byoc_ctx_user)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL)));

CREATE POLICY oauth_states_insert ON public.oauth_states FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (user_id = ( SELECT public.byoc_ctx_user() AS byoc_ctx_user)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text]))));

CREATE POLICY oauth_states_select ON public.oauth_states FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (user_id = ( SELECT public.byoc_ctx_user() AS byoc_ctx_user)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL)));

CREATE POLICY org_credentials_delete ON public.organization_api_credentials FOR DELETE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = 'owner'::text)));

CREATE POLICY org_credentials_insert ON public.organization_api_credentials FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text])) AND (created_by = ( SELECT public.byoc_ctx_user() AS byoc_ctx_user))));

CREATE POLICY org_credentials_select ON public.organization_api_credentials FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY org_credentials_update ON public.organization_api_credentials FOR UPDATE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text])))) WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text]))));

CREATE POLICY org_select ON public.organizations FOR SELECT TO byoc_app USING (((id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY org_update ON public.organizations FOR UPDATE TO byoc_app USING (((id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text])))) WITH CHECK (((id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) = ANY (ARRAY['owner'::text, 'admin'::text]))));

ALTER TABLE public.organization_api_credentials ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.organization_members ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.provider_usage_daily ENABLE ROW LEVEL SECURITY;

CREATE POLICY sms_insert ON public.sms_messages FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

ALTER TABLE public.sms_messages ENABLE ROW LEVEL SECURITY;

CREATE POLICY sms_select ON public.sms_messages FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY sms_update ON public.sms_messages FOR UPDATE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL)))) WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY usage_insert ON public.provider_usage_daily FOR INSERT TO byoc_app WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY usage_select ON public.provider_usage_daily FOR SELECT TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

CREATE POLICY usage_update ON public.provider_usage_daily FOR UPDATE TO byoc_app USING (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL)))) WITH CHECK (((org_id = ( SELECT public.byoc_ctx_org() AS byoc_ctx_org)) AND (( SELECT public.byoc_ctx_is_service() AS byoc_ctx_is_service) OR (( SELECT public.byoc_ctx_member_role() AS byoc_ctx_member_role) IS NOT NULL))));

GRANT USAGE ON SCHEMA public TO byoc_app;
GRANT USAGE ON SCHEMA public TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_append_audit_events(p_org_id uuid, p_action text[], p_credential_id uuid[], p_credential_type text[], p_detail text[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_append_audit_events(p_org_id uuid, p_action text[], p_credential_id uuid[], p_credential_type text[], p_detail text[]) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_audit_chain_check(p_org uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_audit_chain_link() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_audit_digests_due(p_interval_secs integer, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_audit_digests_due(p_interval_secs integer, p_limit integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_audit_genesis_hash() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_audit_hash(prev_hash bytea, seq bigint, org_id uuid, at timestamp with time zone, actor text, action text, credential_id uuid, credential_type text, detail jsonb) FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_claim_audit_digest_deliveries(p_limit integer, p_lease_secs integer, p_max_age_secs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_claim_audit_digest_deliveries(p_limit integer, p_lease_secs integer, p_max_age_secs integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_claim_credential_events(p_limit integer, p_lease_secs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_claim_credential_events(p_limit integer, p_lease_secs integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_claim_due_reverifications(p_interval_secs integer, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_claim_due_reverifications(p_interval_secs integer, p_limit integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_create_dashboard_login_link(p_link_hash bytea, p_expires_at timestamp with time zone, p_session_expires_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_create_dashboard_login_link(p_link_hash bytea, p_expires_at timestamp with time zone, p_session_expires_at timestamp with time zone) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_credential_status_counts() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_credential_status_counts() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_credentials_per_key_version() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_credentials_per_key_version() TO byoc_app;
GRANT ALL ON FUNCTION public.byoc_credentials_per_key_version() TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_ctx_is_service() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_ctx_is_service() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_ctx_member_role() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_ctx_member_role() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_ctx_org() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_ctx_org() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_ctx_user() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_ctx_user() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_delete_expired_dashboard_sessions() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_delete_expired_dashboard_sessions() TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_end_dashboard_session(p_id_hash bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_end_dashboard_session(p_id_hash bytea) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_enter_context(p_org uuid, p_user uuid, p_service text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_enter_context(p_org uuid, p_user uuid, p_service text) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_finish_audit_digest_delivery(p_delivery_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_finish_audit_digest_delivery(p_delivery_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_finish_credential_event(p_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_finish_credential_event(p_id uuid, p_delivered boolean, p_retry_after_secs integer, p_error text) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_mark_audit_digest_filed(p_org_id uuid, p_digest_seq bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_mark_audit_digest_filed(p_org_id uuid, p_digest_seq bigint) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_notify_credential_change() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_notify_member_change() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_notify_organization_change() FROM PUBLIC;

GRANT SELECT ON TABLE public.master_keys TO byoc_app;
GRANT SELECT ON TABLE public.master_keys TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_operator_add_master_key(p_key_version bigint, p_kms_key_id text, p_ciphertext bytea, p_check_value bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_add_master_key(p_key_version bigint, p_kms_key_id text, p_ciphertext bytea, p_check_value bytea) TO byoc_operator;

GRANT SELECT,INSERT,DELETE ON TABLE public.organization_members TO byoc_app;

GRANT UPDATE(role) ON TABLE public.organization_members TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_add_member(p_org_id uuid, p_user_id uuid, p_role text) TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_operator_audit_chain_hashes(p_org_id uuid, p_seqs bigint[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_audit_chain_hashes(p_org_id uuid, p_seqs bigint[]) TO byoc_operator;

GRANT SELECT ON TABLE public.organizations TO byoc_app;

GRANT UPDATE(name) ON TABLE public.organizations TO byoc_app;

GRANT UPDATE(hot_lead_threshold) ON TABLE public.organizations TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_create_organization(p_name text, p_hot_lead_threshold integer) TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_envelope_batch(p_after_org_id uuid, p_after_id uuid, p_skip_key_version bigint, p_limit integer) TO byoc_operator;

GRANT SELECT,DELETE ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(id) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(org_id) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(credential_type) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(encrypted_data),UPDATE(encrypted_data) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(encryption_key_version),UPDATE(encryption_key_version) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(display_name),UPDATE(display_name) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(public_hint),UPDATE(public_hint) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(provider_account_id) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT UPDATE(is_active) ON TABLE public.organization_api_credentials TO byoc_app;

GRANT INSERT(created_by) ON TABLE public.organization_api_credentials TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_operator_import_credential(p_id uuid, p_org_id uuid, p_credential_type text, p_encrypted_data bytea, p_key_version bigint, p_display_name text, p_public_hint text, p_provider_account_id text, p_actor text, p_detail jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_import_credential(p_id uuid, p_org_id uuid, p_credential_type text, p_encrypted_data bytea, p_key_version bigint, p_display_name text, p_public_hint text, p_provider_account_id text, p_actor text, p_detail jsonb) TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_expected_key_versions bigint[], p_new bytea[], p_new_key_versions bigint[], p_actor text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_swap_envelopes(p_ids uuid[], p_expected bytea[], p_expected_key_versions bigint[], p_new bytea[], p_new_key_versions bigint[], p_actor text) TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_operator_verify_audit_chains(p_org_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_operator_verify_audit_chains(p_org_id uuid) TO byoc_operator;

REVOKE ALL ON FUNCTION public.byoc_prune_audit_digests(p_older_than_secs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_prune_audit_digests(p_older_than_secs integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_prune_credential_events(p_older_than_secs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_prune_credential_events(p_older_than_secs integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_queue_credential_event() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_record_audit_digest(p_org_id uuid, p_digest_seq bigint, p_head_seq bigint, p_head_hash bytea, p_previous_payload_hash bytea, p_payload text, p_payload_hash bytea, p_signature bytea, p_issued_at timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_record_audit_digest(p_org_id uuid, p_digest_seq bigint, p_head_seq bigint, p_head_hash bytea, p_previous_payload_hash bytea, p_payload text, p_payload_hash bytea, p_signature bytea, p_issued_at timestamp with time zone) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_record_member_profile(p_email text, p_name text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_record_member_profile(p_email text, p_name text) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_record_verification(p_credential_id uuid, p_status text, p_error text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_record_verification(p_credential_id uuid, p_status text, p_error text) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_redeem_dashboard_login_link(p_link_hash bytea, p_session_hash bytea, p_idle_timeout_secs integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_redeem_dashboard_login_link(p_link_hash bytea, p_session_hash bytea, p_idle_timeout_secs integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea, p_new_key_version bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_replace_rotated_envelope(p_credential_id uuid, p_expected bytea, p_new bytea, p_new_key_version bigint) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_require_context(p_roles text[], p_services boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_require_service_login() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_touch_dashboard_session(p_id_hash bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_touch_dashboard_session(p_id_hash bytea) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_touch_updated_at() FROM PUBLIC;

REVOKE ALL ON FUNCTION public.byoc_unfiled_audit_digests(p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_unfiled_audit_digests(p_limit integer) TO byoc_app;

REVOKE ALL ON FUNCTION public.byoc_verify_audit_chain() FROM PUBLIC;
GRANT ALL ON FUNCTION public.byoc_verify_audit_chain() TO byoc_app;

REVOKE ALL ON FUNCTION public.check_org_id_immutability() FROM PUBLIC;

GRANT SELECT ON TABLE public.credential_audit_log TO byoc_app;

GRANT INSERT(id_hash) ON TABLE public.dashboard_sessions TO byoc_app;

GRANT INSERT(org_id) ON TABLE public.dashboard_sessions TO byoc_app;

GRANT INSERT(user_id) ON TABLE public.dashboard_sessions TO byoc_app;

GRANT INSERT(idle_timeout_secs) ON TABLE public.dashboard_sessions TO byoc_app;

GRANT INSERT(expires_at) ON TABLE public.dashboard_sessions TO byoc_app;

GRANT SELECT ON TABLE public.encryption_key_checks TO byoc_app;
GRANT SELECT ON TABLE public.encryption_key_checks TO byoc_operator;

GRANT INSERT(key_version) ON TABLE public.encryption_key_checks TO byoc_app;
GRANT INSERT(key_version) ON TABLE public.encryption_key_checks TO byoc_operator;

GRANT INSERT(check_value) ON TABLE public.encryption_key_checks TO byoc_app;
GRANT INSERT(check_value) ON TABLE public.encryption_key_checks TO byoc_operator;

GRANT SELECT,INSERT,DELETE ON TABLE public.oauth_states TO byoc_app;

GRANT SELECT,INSERT ON TABLE public.provider_usage_daily TO byoc_app;

GRANT UPDATE(calls) ON TABLE public.provider_usage_daily TO byoc_app;

GRANT UPDATE(failures) ON TABLE public.provider_usage_daily TO byoc_app;

GRANT SELECT,INSERT ON TABLE public.sms_messages TO byoc_app;

GRANT UPDATE(status) ON TABLE public.sms_messages TO byoc_app;

GRANT UPDATE(error_code) ON TABLE public.sms_messages TO byoc_app;

GRANT UPDATE(status_updated_at) ON TABLE public.sms_messages TO byoc_app;

GRANT UPDATE(delivered_at) ON TABLE public.sms_messages TO byoc_app;
