-- Federation: upstream OpenID providers managed through the admin API (those of the
-- configuration file are not stored), the upstream identities linked to accounts,
-- and which group memberships a provider's claim mapping made.

CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY,
    -- JSON: display_name, issuer, client_id, scopes, trust_email, provision,
    -- groups_claim, group_mappings (everything but the secret)
    settings TEXT NOT NULL,
    -- base64url(nonce || AES-256-GCM ciphertext of the client secret), "idp:<id>" as AAD
    client_secret TEXT NOT NULL,
    -- who created it, written like a member; its claim mappings act with its rights
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE federated_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- the address the upstream gave at the last login, for display
    email TEXT,
    linked_at BIGINT NOT NULL,
    last_login_at BIGINT,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX federated_identities_user ON federated_identities (user_id);

-- `idp:<provider id>` for memberships a claim mapping made (it may end them again);
-- NULL for those made through the admin API.
ALTER TABLE group_members ADD COLUMN source TEXT;

-- How the person authenticated (RFC 8176 `amr` values, space-separated: `pwd`, or
-- `fed` through an upstream provider), for the ID tokens of refreshes; NULL is `pwd`.
ALTER TABLE refresh_families ADD COLUMN amr TEXT;
