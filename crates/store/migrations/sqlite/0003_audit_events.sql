-- detail holds a JSON document as text.
CREATE TABLE audit_events (
    id          INTEGER NOT NULL PRIMARY KEY,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    client_id   TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    remote_addr TEXT    NOT NULL,
    detail      TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_events_recent ON audit_events (at DESC, id DESC);
