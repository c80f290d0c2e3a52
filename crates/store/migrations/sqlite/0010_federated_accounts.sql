-- Accounts gain where they come from ('local': created by an administrator, signs in with a password; 'oidc':
-- created on the first sign-in through the identity provider) and the groups the provider reported (a JSON array
-- of strings, as text). Existing rows are local accounts without groups.
-- Sessions gain the provider's ID token, the `id_token_hint` of a logout at the provider; NULL for local sign-ins.
ALTER TABLE users ADD COLUMN origin TEXT NOT NULL DEFAULT 'local' CHECK (origin IN ('local', 'oidc'));
ALTER TABLE users ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';

ALTER TABLE sessions ADD COLUMN idp_id_token TEXT;
