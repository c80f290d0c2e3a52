-- Browser login sessions, keyed by the session id's hash.
CREATE TABLE sessions (
    session_hash TEXT   NOT NULL PRIMARY KEY,
    username     TEXT COLLATE "C" NOT NULL,
    subject      TEXT   NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
