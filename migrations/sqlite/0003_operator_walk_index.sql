-- Rotation and `keys check` walk the credentials in (org_id, id) order (see the Postgres migration 0010):
-- a batch then spans few organizations, and so writes few `rotated` audit events.
CREATE INDEX organization_api_credentials_org_id_id_idx ON organization_api_credentials (org_id, id);
