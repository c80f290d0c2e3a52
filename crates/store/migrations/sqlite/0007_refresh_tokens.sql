-- Refresh-token families (one per login into a client) and their rotating tokens, keyed by the token's hash.
-- List columns hold JSON arrays of strings. No ON DELETE CASCADE: a family is only deleted once it has no tokens.
CREATE TABLE refresh_families (
    family_id  TEXT    NOT NULL PRIMARY KEY,
    client_id  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

CREATE INDEX refresh_families_subject ON refresh_families (subject);

CREATE TABLE refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL REFERENCES refresh_families (family_id),
    scopes     TEXT    NOT NULL,
    audience   TEXT    NOT NULL,
    auth_time  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
