-- Apps (API-key clients) created at run time. List columns hold JSON arrays of strings.
-- client_id uses SQLite's default BINARY collation: bytewise order, the same order PostgreSQL's COLLATE "C" gives.
CREATE TABLE apps (
    client_id     TEXT    NOT NULL PRIMARY KEY,
    client_name   TEXT    NOT NULL,
    organization  TEXT    NOT NULL,
    secret_hash   TEXT    NOT NULL,
    grant_types   TEXT    NOT NULL,
    scopes        TEXT    NOT NULL,
    audience      TEXT    NOT NULL,
    redirect_uris TEXT    NOT NULL,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
