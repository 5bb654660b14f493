-- Credentials (JOB's tickets): a secret a file source authenticates with. The secret fields
-- (access key, secret key, user name, password) are one JSON object sealed under the
-- server's key, bound to the credential's scope and id; no API returns them.
CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL,
    secret TEXT NOT NULL,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL
);
CREATE INDEX credentials_scope ON credentials (scope_type, scope_id);

-- File sources (JOB's job-file-gateway): where file_type 3 sources are read from. code is
-- what callers name it by (unique in its scope, never changed); access_params is JSON
-- holding no secret (the secret is the credential's).
CREATE TABLE file_sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    code TEXT NOT NULL,
    alias TEXT NOT NULL,
    type TEXT NOT NULL,
    access_params TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    file_prefix TEXT NOT NULL,
    enable BIGINT NOT NULL DEFAULT 1,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (scope_type, scope_id, code)
);
