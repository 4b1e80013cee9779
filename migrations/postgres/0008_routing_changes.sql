-- The routing feed: which backend, group or pool changed, in order, so that followers read
-- back only what changed.
CREATE TABLE routing_changes (
    seq     BIGSERIAL PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('backend', 'group', 'pool')),
    subject TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX routing_changes_at ON routing_changes (at);
