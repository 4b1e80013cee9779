ALTER TABLE users ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id),
    -- HMAC-SHA256 of the refresh token under the server secret; never the token.
    refresh_hash      TEXT NOT NULL UNIQUE,
    method            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    refresh_expires_at TEXT NOT NULL,
    revoked_at        TEXT
);

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL CHECK (alg IN ('EdDSA', 'RS256')),
    -- The private key, sealed with a key derived from the server secret.
    sealed_private_key TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    activates_at  TEXT NOT NULL,
    retires_at    TEXT
);

-- The change feed Envoys follow: what became stale, in order.
CREATE TABLE invalidations (
    seq                BIGSERIAL PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('user', 'key', 'session')),
    subject            TEXT NOT NULL,
    session_expires_at BIGINT,
    at                 TEXT NOT NULL
);
