-- Issue 21: a member's email and name, as their latest bearer token carried them, so that the settings page's
-- "Recent activity" names people (see migrations/postgres/0005_settings_page_people.sql).
ALTER TABLE organization_members ADD COLUMN email TEXT CHECK (length(email) BETWEEN 1 AND 320);
ALTER TABLE organization_members ADD COLUMN name TEXT CHECK (length(name) BETWEEN 1 AND 200);

-- Single-use settings-page login links: only the SHA-256 hash of the link's secret is kept.
CREATE TABLE dashboard_login_links (
    link_hash          BLOB PRIMARY KEY NOT NULL CHECK (length(link_hash) = 32),
    org_id             TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id            TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    expires_at         TEXT NOT NULL,
    session_expires_at TEXT NOT NULL
) STRICT;

CREATE INDEX dashboard_login_links_expires_at_idx ON dashboard_login_links (expires_at);
