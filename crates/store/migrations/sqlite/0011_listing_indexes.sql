-- Listing apps by owner (what a non-admin caller sees) and by organization, in client_id order, and listing audit
-- events of one kind newest first, are range scans of these indexes rather than walks of the whole table.
-- Pruning old audit events uses audit_events_recent (at DESC, id DESC) from 0003.
CREATE INDEX apps_by_owner ON apps (created_by, client_id);
CREATE INDEX apps_by_organization ON apps (organization, client_id);
CREATE INDEX audit_events_by_kind ON audit_events (kind, at DESC, id DESC);
