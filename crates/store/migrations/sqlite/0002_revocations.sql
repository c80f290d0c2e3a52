-- AUTOINCREMENT matters: without it SQLite may hand out a deleted maximum rowid again after a purge, and a
-- replica that already saw that sequence number would never see the new revocation.
CREATE TABLE revocations (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    token_id   TEXT    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revocations_expires_at ON revocations (expires_at);
