-- Set by an admin: the user must log in with a second factor (besides the roles for which
-- `auth.mfa.required_for_roles` requires one).
ALTER TABLE users ADD COLUMN mfa_required INTEGER NOT NULL DEFAULT 0;

-- One TOTP authenticator per user: pending until a first code confirms it.
CREATE TABLE totp_enrolments (
    user_id        TEXT PRIMARY KEY REFERENCES users (id),
    -- The shared secret sealed under a key derived from the server secret, bound to the user.
    sealed_secret  TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    confirmed_at   TEXT,
    -- The last time step a code was accepted for: codes of it and earlier steps are refused.
    last_used_step BIGINT
);

-- One-time backup codes of a confirmed TOTP.
CREATE TABLE mfa_backup_codes (
    user_id   TEXT NOT NULL REFERENCES users (id),
    -- HMAC-SHA256 of the code's SHA-256 digest under the server secret; never the code.
    code_hash TEXT NOT NULL,
    used_at   TEXT,
    PRIMARY KEY (user_id, code_hash)
);

-- The login challenges that produced a session, kept until they expire so that none is
-- used twice.
CREATE TABLE mfa_challenges_spent (
    id         TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

CREATE INDEX mfa_challenges_spent_expires_at ON mfa_challenges_spent (expires_at);
