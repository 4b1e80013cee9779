CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    -- Higher first when a user is in several groups.
    priority   INTEGER NOT NULL,
    -- JSON array of pool names, in precedence order.
    pools      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id),
    user_id  TEXT NOT NULL REFERENCES users (id),
    added_at TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

CREATE INDEX group_members_user_id ON group_members (user_id);

CREATE TABLE backends (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    weight                INTEGER NOT NULL CHECK (weight BETWEEN 1 AND 100),
    health_check_path     TEXT NOT NULL,
    pool                  TEXT NOT NULL,
    enabled               INTEGER NOT NULL,
    tls_sni               TEXT,
    health_status         TEXT NOT NULL CHECK (health_status IN ('healthy', 'unhealthy', 'unknown')),
    consecutive_failures  INTEGER NOT NULL,
    consecutive_successes INTEGER NOT NULL,
    last_checked_at       TEXT,
    last_latency_ms       BIGINT,
    last_error            TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE INDEX backends_pool ON backends (pool);

-- Health-check settings of a pool; pools without a row use the configured defaults.
CREATE TABLE pools (
    name                 TEXT PRIMARY KEY,
    check_interval_secs  INTEGER NOT NULL,
    check_timeout_secs   INTEGER NOT NULL,
    unhealthy_threshold  INTEGER NOT NULL,
    healthy_threshold    INTEGER NOT NULL,
    updated_at           TEXT NOT NULL
);
