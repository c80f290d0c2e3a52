-- Apps (API-key clients) created at run time.
-- COLLATE "C" gives bytewise order whatever the database's collation, so keyset pagination over client_id pages
-- identically to SQLite and the primary-key index serves both the lookup and the ordered scan.
CREATE TABLE apps (
    client_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    client_name   TEXT   NOT NULL,
    organization  TEXT   NOT NULL,
    secret_hash   TEXT   NOT NULL,
    grant_types   TEXT[] NOT NULL,
    scopes        TEXT[] NOT NULL,
    audience      TEXT[] NOT NULL,
    redirect_uris TEXT[] NOT NULL,
    created_by    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
