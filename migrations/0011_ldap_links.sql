-- Users whose identity is an LDAP directory entry: the entry they were last found at, an
-- Argon2id hash of the last password the directory accepted (kept only when logins may fall
-- back to it while the directory is down) and when, and when the periodic sync last read
-- them. A user with a row here has no local password.
CREATE TABLE ldap_links (
    user_id         TEXT PRIMARY KEY REFERENCES users (id),
    dn              TEXT NOT NULL,
    cached_verifier TEXT,
    verified_at     TEXT,
    synced_at       TEXT NOT NULL
);
