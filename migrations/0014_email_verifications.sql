-- Accounts people registered themselves, until the owner of the email proves it by the link
-- mailed to it. While `verified_at` is NULL and the deployment requires verification, the
-- account cannot log in.
CREATE TABLE email_verifications (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    verified_at TEXT
);
