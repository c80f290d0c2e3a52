-- Device authorization grant codes, keyed by the device code's hash. List columns hold JSON arrays of strings.
-- An unexpired user code names at most one row: creating a code first deletes expired rows holding its user code,
-- and the unique index refuses the rest. Approval fields are empty ('' and 0) until the code is approved.
CREATE TABLE device_codes (
    device_code_hash TEXT    NOT NULL PRIMARY KEY,
    user_code        TEXT    NOT NULL,
    client_id        TEXT    NOT NULL,
    scopes           TEXT    NOT NULL,
    audience         TEXT    NOT NULL,
    interval_secs    INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    last_polled_at   INTEGER,
    subject          TEXT    NOT NULL,
    username         TEXT    NOT NULL,
    family_id        TEXT    NOT NULL,
    auth_time        INTEGER NOT NULL,
    decided_at       INTEGER
) STRICT;

CREATE UNIQUE INDEX device_codes_user_code ON device_codes (user_code);
CREATE INDEX device_codes_expires_at ON device_codes (expires_at);
