-- Local accounts. username uses the default BINARY collation (bytewise, exact match), like apps.client_id.
CREATE TABLE users (
    username      TEXT    NOT NULL PRIMARY KEY,
    subject       TEXT    NOT NULL UNIQUE,
    email         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    disabled      INTEGER NOT NULL CHECK (disabled IN (0, 1)),
    failed_logins INTEGER NOT NULL CHECK (failed_logins >= 0),
    locked_until  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT;
