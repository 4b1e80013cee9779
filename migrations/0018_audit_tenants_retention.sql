-- The tenant of the object each entry is about (NULL outside any tenant), and indexes for the
-- log's filters, each newest first.
ALTER TABLE audit_log ADD COLUMN tenant_id TEXT;
CREATE INDEX audit_log_actor_at ON audit_log (actor_user_id, at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);
CREATE INDEX audit_log_target_at ON audit_log (target, at);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at);

-- Where the kept chain starts once old entries are pruned: the place and hash of the last
-- pruned entry, and a keyed hash of both, so the start cannot be moved without the secret.
-- 0 and '' while nothing was pruned.
ALTER TABLE audit_chain ADD COLUMN checkpoint_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_chain ADD COLUMN checkpoint_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_chain ADD COLUMN checkpoint_seal TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_chain ADD COLUMN checkpoint_at TEXT;
