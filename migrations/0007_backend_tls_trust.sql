-- How Envoy trusts an https backend: its own CA certificates (PEM) instead of the
-- deployment's bundle, or, when an operator opts out, no check at all.
ALTER TABLE backends ADD COLUMN tls_ca TEXT;
ALTER TABLE backends ADD COLUMN tls_insecure INTEGER NOT NULL DEFAULT 0;
