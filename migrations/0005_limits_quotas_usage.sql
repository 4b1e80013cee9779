-- Rate-limit and quota settings as JSON objects; a null field inherits.
ALTER TABLE users ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}';
ALTER TABLE groups ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '{}';
ALTER TABLE groups ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '{}';

-- Usage batches already applied, so a retried report changes nothing.
CREATE TABLE usage_batches (
    batch_id   TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
);

CREATE INDEX usage_batches_applied_at ON usage_batches (applied_at);

-- Requests and bytes of a user in the quota period starting at `period_start`.
CREATE TABLE usage_periods (
    user_id      TEXT NOT NULL,
    period_start TEXT NOT NULL,
    requests     BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    PRIMARY KEY (user_id, period_start)
);

-- Storage a user holds now; it does not reset.
CREATE TABLE usage_storage (
    user_id TEXT PRIMARY KEY,
    bytes   BIGINT NOT NULL
);
