-- Cache invalidation across replicas. Every change to a credential that can change what a service is given
-- (insert, deactivation, verification outcome, envelope edit, purge) notifies the channel
-- `byoc_credential_changes` with the JSON payload {"org_id", "credential_type", "credential_id"}, whoever
-- writes. Key rotation (byoc_operator_swap_envelopes) re-wraps data keys without changing any secret, so it
-- runs with byoc.rotating = 'on' and does not notify (a million rows would otherwise flood the listeners).

CREATE FUNCTION byoc_notify_credential_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
DECLARE
    changed record;
BEGIN
    IF current_setting('byoc.rotating', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_notify('byoc_credential_changes',
                      json_build_object('org_id', changed.org_id,
                                        'credential_type', changed.credential_type,
                                        'credential_id', changed.id)::text);
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION byoc_notify_credential_change() FROM PUBLIC;

CREATE TRIGGER notify_credential_change
    AFTER INSERT OR UPDATE OR DELETE ON organization_api_credentials
    FOR EACH ROW EXECUTE FUNCTION byoc_notify_credential_change();

ALTER FUNCTION byoc_operator_swap_envelopes(uuid[], bytea[], bytea[], bigint[]) SET byoc.rotating = 'on';
