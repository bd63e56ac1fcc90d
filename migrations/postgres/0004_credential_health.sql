-- Issue 21: credentials that stay healthy (periodic re-verification) and credential events for the SaaS (a
-- transactional outbox of status changes, delivered as signed webhooks).
--
-- Two tables under forced row-level security that byoc_app cannot touch directly, a trigger that queues an event
-- in the same transaction as the change it reports, and narrow SECURITY DEFINER functions. The service's
-- cross-organization work (claiming the credentials due for re-verification, draining the outbox) is done by
-- functions that byoc_app may execute but that refuse unless the session's login is a member of byoc_service
-- (`session_user`, which `SET ROLE` cannot change: the login of BYOC_SERVICE_DATABASE_URL, not the login that
-- serves users' requests). They hand out ids, types and the non-secret columns of an event, never an envelope;
-- each verification itself then runs in a service context of one organization, under the policies of 0001.
-- Every SECURITY DEFINER function pins `search_path = pg_catalog, pg_temp` and qualifies every name, as in 0001.

-- 1. Tables -------------------------------------------------------------------------------------------------------

-- When each credential is next re-verified. A row appears the first time the service claims work after the
-- credential exists (at a random point of the interval, so a round is spread over the interval) and goes with
-- its credential.
CREATE TABLE public.credential_reverify_schedule (
    credential_id uuid        PRIMARY KEY REFERENCES public.organization_api_credentials (id) ON DELETE CASCADE,
    org_id        uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    due_at        timestamptz NOT NULL
);

CREATE INDEX credential_reverify_schedule_due_idx ON public.credential_reverify_schedule (due_at);

-- The outbox of credential events: written by the trigger below in the transaction that changes the credential,
-- deleted once delivered. No foreign keys: a purge's event outlives its credential, and an organization's
-- removal cascades into credential deletes that queue events of their own. Holds no secret (the provider's
-- refusal reason is the one the API already shows).
CREATE TABLE public.credential_events (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id              uuid        NOT NULL,
    credential_id       uuid        NOT NULL,
    credential_type     text        NOT NULL
        CHECK (credential_type IN ('twilio', 'google_calendar', 'stripe', 'hubspot')),
    display_name        text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 255),
    event_type          text        NOT NULL
        CHECK (event_type IN ('credential.verified', 'credential.verification_failed', 'credential.deactivated',
                              'credential.purged', 'credential.reconnect_needed')),
    verification_status text        NOT NULL CHECK (verification_status IN ('pending', 'verified', 'failed')),
    verification_error  text        CHECK (length(verification_error) <= 2000),
    occurred_at         timestamptz NOT NULL DEFAULT now(),
    attempts            integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text        CHECK (length(last_error) <= 500)
);

CREATE INDEX credential_events_next_attempt_idx ON public.credential_events (next_attempt_at);

DO $rls$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['credential_reverify_schedule', 'credential_events'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE pg_catalog.format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE pg_catalog.format('CREATE POLICY byoc_owner_through_functions ON public.%I AS PERMISSIVE FOR ALL
                                   TO %I USING (current_user <> session_user)
                                   WITH CHECK (current_user <> session_user)', tbl, current_user);
        EXECUTE pg_catalog.format('CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.%I
                                   FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
                                   EXECUTE FUNCTION public.check_org_id_immutability()', tbl);
    END LOOP;
END
$rls$;

-- 2. The outbox trigger -------------------------------------------------------------------------------------------

-- Queues one event per status change of a credential, whoever makes it (a user's verify or deactivate, the
-- service's re-verification or refused use, an owner's purge): `credential.verified` when the status becomes
-- verified; `credential.verification_failed` when it becomes failed (`credential.reconnect_needed` for Google
-- Calendar, whose only remedy is connecting again); `credential.deactivated`; `credential.purged`. A status that
-- does not change (a re-verification that finds the credential as it was) and a reset to pending queue nothing.
CREATE FUNCTION public.byoc_queue_credential_event() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

CREATE TRIGGER queue_credential_event
    AFTER UPDATE OF verification_status, is_active OR DELETE ON public.organization_api_credentials
    FOR EACH ROW EXECUTE FUNCTION public.byoc_queue_credential_event();

-- 3. What the service calls ---------------------------------------------------------------------------------------

-- Raises insufficient_privilege unless the session's login is a member of byoc_service.
CREATE FUNCTION public.byoc_require_service_login() RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'byoc_service', 'MEMBER') THEN
        RAISE EXCEPTION 'only a login granted byoc_service may do the service''s cross-organization work'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'set BYOC_SERVICE_DATABASE_URL to a login granted byoc_app and byoc_service';
    END IF;
END
$$;

-- Claims up to p_limit active credentials whose re-verification is due, for this caller alone: each claimed row
-- is locked (others skip it) and moved to its next round (one interval later) in the same statement, so of many
-- replicas exactly one verifies a credential per round. Active credentials without a schedule are first given
-- one at a random point of the next interval (the rounds are spread over it), and a schedule further out than
-- one interval (the interval was shortened) is drawn again within it. Returns ids, types and the provider's
-- account id; no envelope.
CREATE FUNCTION public.byoc_claim_due_reverifications(p_interval_secs integer, p_limit integer)
    RETURNS TABLE (org_id uuid, credential_id uuid, credential_type text, provider_account_id text)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

-- Claims up to p_limit events whose next attempt is due, oldest first, for this caller alone: each is locked
-- (others skip it), counted as an attempt and leased for p_lease_secs (no other caller takes it meanwhile; a
-- caller that dies mid-delivery leaves it to be claimed again when the lease ends).
CREATE FUNCTION public.byoc_claim_credential_events(p_limit integer, p_lease_secs integer)
    RETURNS TABLE (id uuid, org_id uuid, credential_id uuid, credential_type text, display_name text,
                   event_type text, verification_status text, verification_error text, occurred_at timestamptz,
                   attempts bigint)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

-- Settles a claimed event: delivered ones are deleted; the others wait p_retry_after_secs for their next attempt,
-- with the reason kept (at most 500 characters). Returns false when there is no such event.
CREATE FUNCTION public.byoc_finish_credential_event(p_id uuid, p_delivered boolean, p_retry_after_secs integer,
                                                    p_error text)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

-- Deletes the events that occurred more than p_older_than_secs ago, delivered or not (the outbox's bound while no
-- receiver is configured or while one stays down); returns how many.
CREATE FUNCTION public.byoc_prune_credential_events(p_older_than_secs integer)
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
    DELETE FROM public.credential_events e
    WHERE e.occurred_at < pg_catalog.now() - pg_catalog.make_interval(secs => p_older_than_secs);
    GET DIAGNOSTICS pruned = ROW_COUNT;
    RETURN pruned;
END
$$;

-- How many credentials there are by type, verification status and whether active, across organizations (counts
-- only, like byoc_credentials_per_key_version: the `byoc_credentials` gauge).
CREATE FUNCTION public.byoc_credential_status_counts()
    RETURNS TABLE (credential_type text, verification_status text, is_active boolean, credentials bigint)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.credential_type, c.verification_status, c.is_active, pg_catalog.count(*)
    FROM public.organization_api_credentials c
    GROUP BY c.credential_type, c.verification_status, c.is_active
    ORDER BY c.credential_type, c.verification_status, c.is_active
$$;

-- 4. Privileges ---------------------------------------------------------------------------------------------------

-- byoc_app gets no privilege on either table; it reaches them only through the functions above.
REVOKE ALL ON FUNCTION public.byoc_queue_credential_event() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_require_service_login() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_claim_due_reverifications(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_claim_credential_events(integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_finish_credential_event(uuid, boolean, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_prune_credential_events(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_credential_status_counts() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    public.byoc_claim_due_reverifications(integer, integer),
    public.byoc_claim_credential_events(integer, integer),
    public.byoc_finish_credential_event(uuid, boolean, integer, text),
    public.byoc_prune_credential_events(integer),
    public.byoc_credential_status_counts()
TO byoc_app;
