-- Parts of a quota's remainder granted to one Envoy worker until it settles them against its
-- usage reports, or until `expires_at` (an Envoy that died returns its allowances that way).
CREATE TABLE quota_allowances (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    -- monthly_requests (requests) or monthly_bandwidth (bytes)
    quota        TEXT NOT NULL,
    period_start TEXT NOT NULL,
    holder       TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    granted      BIGINT NOT NULL,
    granted_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    settled_at   TEXT
);

-- What unsettled allowances of one quota period hold.
CREATE INDEX quota_allowances_reserved
    ON quota_allowances (user_id, quota, period_start, expires_at)
    WHERE settled_at IS NULL;

CREATE INDEX quota_allowances_expires_at ON quota_allowances (expires_at);
