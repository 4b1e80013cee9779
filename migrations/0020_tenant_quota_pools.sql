-- A tenant's monthly quotas are one pool its users share: what they used in the tenant's
-- period, and which allowances hold part of the pool.
CREATE TABLE tenant_usage_periods (
    tenant_id    TEXT NOT NULL,
    period_start TEXT NOT NULL,
    requests     BIGINT NOT NULL DEFAULT 0,
    bytes        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, period_start)
);

-- The usage already counted for the tenants' users, in the periods it was counted in.
INSERT INTO tenant_usage_periods (tenant_id, period_start, requests, bytes)
SELECT u.tenant_id, p.period_start, SUM(p.requests), SUM(p.bytes)
FROM usage_periods p JOIN users u ON u.id = p.user_id
WHERE u.tenant_id IS NOT NULL
GROUP BY u.tenant_id, p.period_start;

ALTER TABLE quota_allowances ADD COLUMN tenant_id TEXT;
ALTER TABLE quota_allowances ADD COLUMN tenant_period_start TEXT;

-- What unsettled allowances of one tenant's pool hold.
CREATE INDEX quota_allowances_tenant_reserved
    ON quota_allowances (tenant_id, quota, tenant_period_start, expires_at)
    WHERE settled_at IS NULL AND tenant_id IS NOT NULL;
