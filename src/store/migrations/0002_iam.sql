-- IAM: groups and their members, registered APIs and their permissions, custom
-- roles, policy versions (the etag of a resource's policy), pending invitations and
-- service-account public keys.

CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    -- orgs/<org>/groups/<slug>
    name TEXT NOT NULL UNIQUE,
    org TEXT NOT NULL,
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_kind TEXT NOT NULL,
    member_id TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, member_kind, member_id)
);
CREATE INDEX group_members_member ON group_members (member_kind, member_id);

CREATE TABLE apis (
    identifier TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_permissions (
    name TEXT PRIMARY KEY,
    api TEXT NOT NULL REFERENCES apis (identifier),
    description TEXT NOT NULL
);

CREATE TABLE custom_roles (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of permission names or patterns
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE policy_versions (
    scope TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    org TEXT NOT NULL,
    scope TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at BIGINT,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (email, scope, role)
);
CREATE INDEX invitations_scope ON invitations (scope);

CREATE TABLE service_account_keys (
    id TEXT PRIMARY KEY,
    service_account_id TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
    -- PEM (SPKI) of an RSA, P-256 or Ed25519 public key, for private_key_jwt
    public_key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
