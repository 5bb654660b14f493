-- People as principals: users with their own credentials (argon2id PHC strings), their
-- personal API tokens and login sessions (by the SHA-256 of the token; the token itself is
-- shown once), and which apps are trusted gateways (may assert bk_username for someone else).

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);

-- kind: 'api' (personal API token) | 'session' (password login, short-lived).
CREATE TABLE user_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (username, kind);

ALTER TABLE apps ADD COLUMN trusted_gateway BIGINT NOT NULL DEFAULT 0;
-- The generated bootstrap app of an existing deployment stays a gateway (a configured
-- SHOAL_BOOTSTRAP_APP is marked at every start).
UPDATE apps SET trusted_gateway = 1 WHERE code = 'shoal-admin';
