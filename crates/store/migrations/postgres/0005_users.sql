-- Local accounts. COLLATE "C": exact, bytewise comparison and order, like apps.client_id and SQLite.
CREATE TABLE users (
    username      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subject       TEXT COLLATE "C" NOT NULL UNIQUE,
    email         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_admin      BOOLEAN NOT NULL,
    disabled      BOOLEAN NOT NULL,
    failed_logins BIGINT  NOT NULL CHECK (failed_logins >= 0),
    locked_until  BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    last_login_at BIGINT
);
