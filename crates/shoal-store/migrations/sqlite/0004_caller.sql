-- The caller side: idempotency keys of mutating API calls and `shoal check` records.

-- One row per (app, Idempotency-Key). A request reserves its key first ('pending'), so a
-- concurrent duplicate finds the row and waits instead of starting a second job; the answer
-- is filled in when the first request ends ('done').
CREATE TABLE idempotency_keys (
    app_code TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    http_status BIGINT NOT NULL DEFAULT 0,
    answer TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app_code, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- One row per (check, sorted hosts); status wait -> started -> finish; a running record
-- locks its key until it finishes or expires.
CREATE TABLE check_records (
    id TEXT PRIMARY KEY,
    check_name TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    hosts TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    app_code TEXT NOT NULL,
    username TEXT NOT NULL,
    job_instance_id BIGINT NOT NULL DEFAULT 0,
    step_instance_id BIGINT NOT NULL DEFAULT 0,
    infos TEXT NOT NULL DEFAULT '[]',
    report TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX check_records_scope ON check_records (scope_type, scope_id, updated_at);
