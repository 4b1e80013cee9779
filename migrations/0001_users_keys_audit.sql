-- Timestamps are RFC 3339 UTC text with millisecond precision, so they sort as text
-- and read the same from every supported database.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT,
    name          TEXT,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    tenant_id     TEXT,
    password_hash TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    name       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    last4      TEXT NOT NULL,
    -- HMAC-SHA256 of the key's SHA-256 digest under the server secret; never the key.
    key_hash   TEXT NOT NULL UNIQUE,
    status     TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    scopes     TEXT NOT NULL,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE INDEX api_keys_user_id ON api_keys (user_id);

CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    at            TEXT NOT NULL,
    actor_user_id TEXT,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    details       TEXT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
