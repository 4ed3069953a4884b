-- The OpenID provider's durable state: consents given by users to clients, and
-- refresh-token families (every token of a family is a row, so that the reuse of a
-- rotated token is recognized and revokes the whole family).

CREATE TABLE consents (
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- JSON array of the scopes (and `resource:<api>` entries) consented to
    scopes TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE refresh_families (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- the scopes granted, space-separated
    scope TEXT NOT NULL,
    resource TEXT,
    auth_time BIGINT NOT NULL,
    -- the browser session it came from (hashed), for logout
    session TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_session ON refresh_families (session);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token, base64url
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- set when it was exchanged for its successor
    used_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
