-- Failed logins per login name, shared by every replica: failures since the last lock, locks
-- in a row, and until when the name is locked. Names that match no user are kept alike, so a
-- lock tells nothing about whether an account exists.
CREATE TABLE login_failures (
    -- HMAC-SHA256 of the name's SHA-256 digest under the server secret; never the name.
    account         TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    lockouts        INTEGER NOT NULL,
    locked_until    TEXT,
    last_attempt_at TEXT NOT NULL,
    -- Raised by every write, so that a replica writes only over what it read.
    version         BIGINT NOT NULL
);

CREATE INDEX login_failures_last_attempt_at ON login_failures (last_attempt_at);
