-- Issue 21: the settings page names people, and login links sign them in. A bearer token may carry the user's `email` (Supabase's do) and
-- name; byoc records them on the membership when an authenticated request arrives with them, so that "Recent
-- activity" shows a name or email instead of a user id.
--
-- organization_members gains two nullable columns, `email` and `name`. byoc_app gets no UPDATE on them: the
-- table's update policy admits owners and admins (for roles), while every member records their own profile,
-- so the one writer is the SECURITY DEFINER function byoc_record_member_profile, which changes only those two
-- columns of the context user's own row in the context organization. It pins
-- `search_path = pg_catalog, pg_temp` and qualifies every name, as in 0001.

ALTER TABLE public.organization_members
    ADD COLUMN email text CHECK (pg_catalog.char_length(email) BETWEEN 1 AND 320),
    ADD COLUMN name  text CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 200);

-- Records the context user's email and name (NULL: unknown) on their membership in the context organization.
-- Any member, for themself only; a service or a non-member is refused (42501). Returns true when a value
-- changed, false when the row already held them.
CREATE FUNCTION public.byoc_record_member_profile(p_email text, p_name text)
    RETURNS boolean
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

REVOKE ALL ON FUNCTION public.byoc_record_member_profile(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.byoc_record_member_profile(text, text) TO byoc_app;

-- Login links: `POST /api/dashboard/login-links` gives a member a single-use link, valid 60 seconds, that opens a
-- settings-page session for them (the SaaS frontend sends its user over without showing a token). The link's URL
-- holds a random secret; the table keeps only its SHA-256 hash, with the organization and user, when the link
-- expires and when the session it opens ends (never past the bearer token that asked for it). byoc_app has no
-- privilege on the table: it creates links and redeems them only through the two functions below.
CREATE TABLE public.dashboard_login_links (
    link_hash          bytea       PRIMARY KEY CHECK (length(link_hash) = 32),
    org_id             uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    user_id            uuid        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    session_expires_at timestamptz NOT NULL
);

CREATE INDEX dashboard_login_links_expires_at_idx ON public.dashboard_login_links (expires_at);

CREATE TRIGGER prevent_org_id_change BEFORE UPDATE ON public.dashboard_login_links
    FOR EACH ROW WHEN (OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION public.check_org_id_immutability();

DO $rls$
BEGIN
    ALTER TABLE public.dashboard_login_links ENABLE ROW LEVEL SECURITY;
    ALTER TABLE public.dashboard_login_links FORCE ROW LEVEL SECURITY;
    EXECUTE pg_catalog.format('CREATE POLICY byoc_owner_through_functions ON public.dashboard_login_links
                               AS PERMISSIVE FOR ALL TO %I USING (current_user <> session_user)
                               WITH CHECK (current_user <> session_user)', current_user);
END
$rls$;

-- Stores a login link for the context user in the context organization (any member; a service or a
-- non-member: 42501), expiring at p_expires_at but at most 60 seconds from now; deletes expired links first.
CREATE FUNCTION public.byoc_create_dashboard_login_link(p_link_hash bytea, p_expires_at timestamptz,
                                                        p_session_expires_at timestamptz)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM public.byoc_require_context(ARRAY['owner', 'admin', 'member'], false);
    DELETE FROM public.dashboard_login_links l WHERE l.expires_at <= pg_catalog.now();
    INSERT INTO public.dashboard_login_links (link_hash, org_id, user_id, expires_at, session_expires_at)
    VALUES (p_link_hash, public.byoc_ctx_org(), public.byoc_ctx_user(),
            LEAST(p_expires_at, pg_catalog.now() + pg_catalog.make_interval(secs => 60)), p_session_expires_at);
END
$$;

-- Uses up the link with this hash (deleted whether live or not) and, when it was live, stores the session
-- p_session_hash for its organization and user, ending at the link's session expiry. Needs no context: the
-- browser holds only the link. Answers 'opened' with the organization and user, 'expired', or 'unknown' (never
-- made, or used already); the DELETE takes the row's lock, so a link opens at most one session.
CREATE FUNCTION public.byoc_redeem_dashboard_login_link(p_link_hash bytea, p_session_hash bytea,
                                                        p_idle_timeout_secs integer)
    RETURNS TABLE (outcome text, session_org_id uuid, session_user_id uuid)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

REVOKE ALL ON FUNCTION public.byoc_create_dashboard_login_link(bytea, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.byoc_redeem_dashboard_login_link(bytea, bytea, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.byoc_create_dashboard_login_link(bytea, timestamptz, timestamptz),
                          public.byoc_redeem_dashboard_login_link(bytea, bytea, integer)
TO byoc_app;
