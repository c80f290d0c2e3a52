-- Refresh-token families (one per login into a client) and their rotating tokens, keyed by the token's hash.
-- No ON DELETE CASCADE: a family is only deleted once it has no tokens, and a token inserted concurrently must
-- make that delete fail rather than disappear with it.
CREATE TABLE refresh_families (
    family_id  TEXT   NOT NULL PRIMARY KEY,
    client_id  TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    username   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX refresh_families_subject ON refresh_families (subject);

CREATE TABLE refresh_tokens (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    family_id  TEXT   NOT NULL REFERENCES refresh_families (family_id),
    scopes     TEXT[] NOT NULL,
    audience   TEXT[] NOT NULL,
    auth_time  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
