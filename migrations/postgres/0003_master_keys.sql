-- Master key versions held by a key management service (issue 19). A row is the KMS's ciphertext of a 32-byte
-- master key, encrypted under `kms_key_id` with an encryption context naming the version and the product, and the
-- key's check value; never the key. The service and the operator read the rows at start and ask the KMS to
-- decrypt each once. Global, not tenant data.
--
-- byoc_app may only read. The operator adds a version through byoc_operator_add_master_key (`byoc keys create
-- --kms`); nobody but the owner updates or deletes a row.

CREATE TABLE public.master_keys (
    key_version bigint      PRIMARY KEY CHECK (key_version BETWEEN 1 AND 4294967295),
    kms_key_id  text        NOT NULL CHECK (length(kms_key_id) BETWEEN 1 AND 2048),
    ciphertext  bytea       NOT NULL CHECK (length(ciphertext) BETWEEN 1 AND 65536),
    check_value bytea       NOT NULL CHECK (length(check_value) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Adds a KMS-held version; a version already in master_keys is refused (unique_violation).
CREATE FUNCTION public.byoc_operator_add_master_key(
    p_key_version bigint, p_kms_key_id text, p_ciphertext bytea, p_check_value bytea)
    RETURNS SETOF public.master_keys
    LANGUAGE sql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public.master_keys (key_version, kms_key_id, ciphertext, check_value)
    VALUES (p_key_version, p_kms_key_id, p_ciphertext, p_check_value)
    RETURNING *
$$;

REVOKE ALL ON FUNCTION public.byoc_operator_add_master_key(bigint, text, bytea, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.byoc_operator_add_master_key(bigint, text, bytea, bytea) TO byoc_operator;
GRANT SELECT ON public.master_keys TO byoc_app, byoc_operator;
