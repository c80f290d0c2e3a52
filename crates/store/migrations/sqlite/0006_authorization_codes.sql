-- Single-use authorization codes, keyed by the code's hash. List columns hold JSON arrays of strings.
CREATE TABLE authorization_codes (
    code_hash      TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    audience       TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    username       TEXT    NOT NULL,
    family_id      TEXT    NOT NULL,
    nonce          TEXT    NOT NULL,
    auth_time      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    redeemed_at    INTEGER
) STRICT;

CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
