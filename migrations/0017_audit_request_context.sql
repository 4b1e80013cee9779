-- The request an audit entry was made while handling: the client's address, its user agent
-- (bounded) and the correlation id (`x-request-id`). NULL for entries made outside a request
-- and for those written before this migration, whose chain hashes do not cover them.
ALTER TABLE audit_log ADD COLUMN client_address TEXT;
ALTER TABLE audit_log ADD COLUMN user_agent TEXT;
ALTER TABLE audit_log ADD COLUMN correlation_id TEXT;
