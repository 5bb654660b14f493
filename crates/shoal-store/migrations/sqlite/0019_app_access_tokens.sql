-- Apps' access tokens: what BlueKing callers send as `access_token` instead of an app code
-- and secret. Issued for one app, stored by the SHA-256 of the token (shown once), always
-- with an expiry; revocable.
CREATE TABLE app_access_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    app_code TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX app_access_tokens_app ON app_access_tokens (app_code);
