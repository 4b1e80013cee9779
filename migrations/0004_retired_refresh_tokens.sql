-- Refresh tokens replaced by a refresh: presenting one again means it was copied, and the
-- session is ended.
CREATE TABLE retired_refresh_tokens (
    refresh_hash TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    retired_at   TEXT NOT NULL
);
