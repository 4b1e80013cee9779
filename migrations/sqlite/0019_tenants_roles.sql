-- Tenants become objects with their own settings; users may hold five roles and carry the
-- enterprise fields; groups may belong to a tenant. A tenant is never removed, only marked
-- deleted, so the users and audit entries that name it keep naming it.

-- SQLite cannot change a CHECK constraint with ALTER TABLE, and rebuilding `users` would need
-- foreign keys off, which cannot happen inside the migration's transaction. Widening the
-- constraint changes nothing stored, so the table's definition is edited in place, as SQLite's
-- documentation allows for such changes; the schema is then re-read, and the CREATE TABLE
-- below moves the schema version on, so that every other connection re-reads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
SET sql = replace(
    sql,
    'CHECK (role IN (''admin'', ''user''))',
    'CHECK (role IN (''admin'', ''tenant_admin'', ''operator'', ''auditor'', ''user''))'
)
WHERE type = 'table' AND name = 'users';
PRAGMA writable_schema = RESET;
-- Had the definition not read as expected, the edit would have changed nothing: stop here.
CREATE TEMPORARY TABLE role_check_widened (widened INTEGER NOT NULL CHECK (widened = 1));
INSERT INTO role_check_widened
SELECT instr(sql, 'tenant_admin') > 0 FROM sqlite_master WHERE type = 'table' AND name = 'users';
DROP TABLE role_check_widened;

CREATE TABLE tenants (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    -- The role and group of a user created in the tenant without one.
    default_role     TEXT NOT NULL DEFAULT 'user' CHECK (default_role IN ('user', 'auditor')),
    default_group_id TEXT REFERENCES groups (id),
    mfa_required     INTEGER NOT NULL DEFAULT 0,
    -- JSON array of login method names; empty allows every configured method.
    login_methods    TEXT NOT NULL DEFAULT '[]',
    rate_limits      TEXT NOT NULL DEFAULT '{}',
    quotas           TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT
);

-- The labels users carried before tenants were objects become tenants of the same id.
INSERT INTO tenants (id, name, created_at, updated_at)
SELECT tenant_id, tenant_id, MIN(created_at), MIN(created_at)
FROM users WHERE tenant_id IS NOT NULL GROUP BY tenant_id;

ALTER TABLE users ADD COLUMN organization TEXT;
ALTER TABLE users ADD COLUMN department TEXT;
ALTER TABLE users ADD COLUMN employee_id TEXT;
CREATE INDEX users_tenant_id ON users (tenant_id);

ALTER TABLE groups ADD COLUMN tenant_id TEXT REFERENCES tenants (id);
CREATE INDEX groups_tenant_id ON groups (tenant_id);
