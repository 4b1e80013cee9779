-- Usernames and emails are unique whatever their case: `Alice` and `alice` are one account.
-- Start-up refuses to apply this while stored names clash, and names them.
CREATE UNIQUE INDEX users_username_lower ON users (LOWER(username));
CREATE UNIQUE INDEX users_email_lower ON users (LOWER(email));

-- Set by an admin's password reset: the next login may only change the password.
ALTER TABLE users ADD COLUMN password_change_required INTEGER NOT NULL DEFAULT 0;

-- What a person needs to recognise their sessions: where and with what they logged in, and
-- when the session last renewed its access token.
ALTER TABLE sessions ADD COLUMN address TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN last_used_at TEXT;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX sessions_user_id_created_at ON sessions (user_id, created_at);
