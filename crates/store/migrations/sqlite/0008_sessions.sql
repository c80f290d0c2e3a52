-- Browser login sessions, keyed by the session id's hash.
CREATE TABLE sessions (
    session_hash TEXT    NOT NULL PRIMARY KEY,
    username     TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
