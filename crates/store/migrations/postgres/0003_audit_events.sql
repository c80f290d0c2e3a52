CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    client_id   TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    remote_addr TEXT   NOT NULL,
    detail      JSONB  NOT NULL
);

CREATE INDEX audit_events_recent ON audit_events (at DESC, id DESC);
