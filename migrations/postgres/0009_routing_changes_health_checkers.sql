-- What changed in the routing, in order: a backend (its settings or its health status), a
-- pool's health-check settings, or a group's pools. Followers reload only what is named.
CREATE TABLE routing_changes (
    seq     BIGSERIAL PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('backend', 'pool', 'group')),
    subject TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX routing_changes_at ON routing_changes (at);

-- The replicas that share the health checks, each alive until its lease expires (Unix ms).
CREATE TABLE health_checkers (
    id            TEXT PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL
);
