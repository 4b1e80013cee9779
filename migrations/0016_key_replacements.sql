-- The key a rotation put in place of this one, which works on until its `expires_at` (the
-- grace period). A replaced key cannot be rotated again: whoever holds a leaked key must not
-- mint a fresh one after its owner rotated it.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;
