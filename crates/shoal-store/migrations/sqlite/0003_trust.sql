-- Trust: app lifecycle, per-scope grants, dangerous-command rules and their hits,
-- the hash-chained audit trail, per-agent credentials.

ALTER TABLE apps ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN revoked_at BIGINT;

-- role: run | manage | approve | admin; scope_id '*' = every scope of that type.
CREATE TABLE app_grants (
    app_code TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (app_code, scope_type, scope_id, role)
);

-- Execution accounts an app may use, by alias ('*' = every account of the scope).
CREATE TABLE app_account_grants (
    app_code TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (app_code, scope_type, scope_id, alias)
);

CREATE TABLE dangerous_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    expression TEXT NOT NULL,
    languages TEXT NOT NULL,
    description TEXT NOT NULL,
    action BIGINT NOT NULL,
    status BIGINT NOT NULL,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL
);

CREATE TABLE danger_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time BIGINT NOT NULL,
    rule_id BIGINT NOT NULL,
    expression TEXT NOT NULL,
    action BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    app_code TEXT NOT NULL,
    operator TEXT NOT NULL,
    language BIGINT NOT NULL,
    script_sha256 TEXT NOT NULL,
    line BIGINT NOT NULL,
    line_content TEXT NOT NULL,
    match_content TEXT NOT NULL
);
CREATE INDEX danger_records_time ON danger_records (time);

-- Hash chain: seq orders the chain; hash = sha256 of the canonical content and prev_hash.
-- Rows written before this migration keep seq NULL (unchained).
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_events ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_time ON audit_events (time);

-- One row: the chain's head. Updating it first serialises concurrent appends.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- Per-agent credentials, issued once against the enrolment token.
CREATE TABLE agent_credentials (
    agent_id TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX hosts_cloud_ip ON hosts (bk_cloud_id, ip);
