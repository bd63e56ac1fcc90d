-- The application role and the tenant-context helpers.
--
-- `byoc_app` is the role the service does all its work as (the pool runs `SET ROLE byoc_app` on every new
-- connection). Roles are cluster-wide while this migration runs once per database, so many databases may run it
-- at the same moment (the test suite migrates dozens concurrently): creation is guarded by an advisory lock, an
-- existence check and an exception handler for the race where another database wins between check and create.

DO $migration$
DECLARE
    attempt int := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7262836100000001);
    LOOP
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'byoc_app') THEN
                CREATE ROLE byoc_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
            END IF;
            EXIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            attempt := attempt + 1;
            IF attempt > 5 THEN
                RAISE;
            END IF;
        END;
    END LOOP;

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
               WHERE rolname = 'byoc_app' AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
        RAISE EXCEPTION 'role byoc_app exists but is a superuser, may bypass RLS or may log in; fix it by hand';
    END IF;

    -- A migrating role that is not a superuser must be a member of byoc_app to `SET ROLE byoc_app`.
    IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND NOT pg_catalog.pg_has_role(current_user, 'byoc_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT byoc_app TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$migration$;

-- Tenant context. Set per transaction only, by `set_config('byoc.org_id', <uuid>, true)`,
-- `set_config('byoc.user_id', <uuid>, true)` and, for a calling service instead of a user,
-- `set_config('byoc.service', <name>, true)`. An unset, empty or malformed value reads as NULL, never as an
-- error, so "no context" simply matches no rows.

CREATE FUNCTION byoc_ctx_uuid(setting text) RETURNS uuid
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog
AS $$
DECLARE
    raw text := current_setting(setting, true);
BEGIN
    IF raw IS NULL OR raw = '' THEN
        RETURN NULL;
    END IF;
    RETURN raw::uuid;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION byoc_ctx_org() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, public
AS $$ SELECT byoc_ctx_uuid('byoc.org_id') $$;

CREATE FUNCTION byoc_ctx_user() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, public
AS $$ SELECT byoc_ctx_uuid('byoc.user_id') $$;

-- True when the transaction acts for a calling service (no user) inside an organization.
CREATE FUNCTION byoc_ctx_is_service() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, public
AS $$
    SELECT byoc_ctx_org() IS NOT NULL
       AND byoc_ctx_user() IS NULL
       AND coalesce(current_setting('byoc.service', true), '') <> ''
$$;
