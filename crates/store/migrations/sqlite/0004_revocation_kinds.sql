-- Revocations gain a kind ('token' | 'family' | 'app' | 'user'); an id is unique per kind.
-- SQLite cannot change a UNIQUE constraint in place, so the table is rebuilt. Every existing row named an
-- access-token jti. The AUTOINCREMENT counter is carried over so that sequence numbers handed out before (even of
-- rows purged since) are never handed out again.
CREATE TABLE revocations_new (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'family', 'app', 'user')),
    token_id   TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    revoked_at INTEGER NOT NULL,
    UNIQUE (kind, token_id)
) STRICT;

INSERT INTO revocations_new (seq, kind, token_id, expires_at, reason, revoked_at)
    SELECT seq, 'token', token_id, expires_at, reason, revoked_at FROM revocations;

DELETE FROM sqlite_sequence WHERE name = 'revocations_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'revocations_new', seq FROM sqlite_sequence WHERE name = 'revocations';

DROP TABLE revocations;
ALTER TABLE revocations_new RENAME TO revocations;

CREATE INDEX revocations_expires_at ON revocations (expires_at);
