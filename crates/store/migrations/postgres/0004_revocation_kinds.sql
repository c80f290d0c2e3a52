-- Revocations gain a kind ('token' | 'family' | 'app' | 'user'); an id is unique per kind. Every existing row
-- named an access-token jti. The identity sequence and the expires_at index are untouched.
ALTER TABLE revocations
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'token'
        CONSTRAINT revocations_kind_check CHECK (kind IN ('token', 'family', 'app', 'user'));

ALTER TABLE revocations DROP CONSTRAINT revocations_token_id_key;
ALTER TABLE revocations ADD CONSTRAINT revocations_kind_token_id_key UNIQUE (kind, token_id);
