-- Identity values are never reused. Inserts take a table lock (see postgres.rs) so that sequence numbers also
-- commit in increasing order, which is what lets replicas poll with "seq > last seen".
CREATE TABLE revocations (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_id   TEXT   NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    reason     TEXT   NOT NULL,
    revoked_at BIGINT NOT NULL
);

CREATE INDEX revocations_expires_at ON revocations (expires_at);
