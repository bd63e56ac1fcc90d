-- Issue 21: the settings page names people. A bearer token may carry the user's `email` (Supabase's do) and
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
