-- Issue 21: a member's email and name, as their latest bearer token carried them, so that the settings page's
-- "Recent activity" names people (see migrations/postgres/0005_member_profiles.sql).
ALTER TABLE organization_members ADD COLUMN email TEXT CHECK (length(email) BETWEEN 1 AND 320);
ALTER TABLE organization_members ADD COLUMN name TEXT CHECK (length(name) BETWEEN 1 AND 200);
