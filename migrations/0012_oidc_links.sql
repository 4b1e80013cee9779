-- Who a user is at an OpenID Connect provider: the provider's name in `auth.oidc.providers` and
-- its immutable subject for the person (`tid:oid` for Entra ID, `sub` otherwise). A login finds
-- its user here first; an email address or a username never identifies anyone by itself.
CREATE TABLE oidc_links (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oidc_links_user_id ON oidc_links (user_id);
