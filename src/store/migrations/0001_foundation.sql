-- The foundation: instance metadata, the change sequence, the audit log, signing keys,
-- resources, principals, clients and role bindings.
-- Portable SQL: the same text runs on SQLite and PostgreSQL. Timestamps are Unix
-- seconds (BIGINT), flags are 0/1 (BIGINT), structured values are JSON text.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row; every IAM change increments it in the same transaction, which also
-- serializes IAM writers on PostgreSQL (row lock) as SQLite does by design.
CREATE TABLE change_counter (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 0);

CREATE TABLE changes (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL
);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    scope TEXT NOT NULL,
    before_state TEXT,
    after_state TEXT
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_scope ON audit_events (scope);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    -- base64url(nonce || AES-256-GCM ciphertext of the PKCS#8 document), kid as AAD
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- published from created_at; signs from activates_at
    activates_at BIGINT NOT NULL,
    -- stops signing at retires_at; unpublished after expires_at
    retires_at BIGINT,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE resources (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent TEXT,
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    billing_ref TEXT,
    created_at BIGINT NOT NULL,
    -- a deleted resource keeps its row so its name is never reused
    deleted_at BIGINT
);
CREATE INDEX resources_parent ON resources (parent);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    email_verified BIGINT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE service_accounts (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    parent TEXT NOT NULL,
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE service_account_secrets (
    id TEXT PRIMARY KEY,
    service_account_id TEXT NOT NULL REFERENCES service_accounts (id),
    -- HMAC-SHA256 of the secret under a key derived from the key-encryption key
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX service_account_secrets_account ON service_account_secrets (service_account_id);

CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    display_name TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    public_client BIGINT NOT NULL,
    first_party BIGINT NOT NULL,
    default_api TEXT,
    secret_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE role_bindings (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    role TEXT NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (scope, role, principal_kind, principal_id)
);
CREATE INDEX role_bindings_principal ON role_bindings (principal_kind, principal_id);
