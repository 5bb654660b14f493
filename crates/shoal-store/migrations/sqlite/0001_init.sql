CREATE TABLE apps (
    code TEXT PRIMARY KEY,
    salt TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE hosts (
    bk_host_id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL UNIQUE,
    bk_biz_id BIGINT NOT NULL,
    bk_cloud_id BIGINT NOT NULL,
    ip TEXT NOT NULL,
    set_id BIGINT,
    module_id BIGINT,
    labels TEXT NOT NULL DEFAULT '{}',
    hostname TEXT NOT NULL DEFAULT '',
    os TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    alive BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX hosts_biz_ip ON hosts (bk_biz_id, bk_cloud_id, ip);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    account TEXT NOT NULL,
    alias TEXT NOT NULL,
    category BIGINT NOT NULL,
    account_type BIGINT NOT NULL,
    description TEXT,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (scope_type, scope_id, alias)
);

CREATE TABLE dynamic_groups (
    id TEXT PRIMARY KEY,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE TABLE job_instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    operator TEXT NOT NULL,
    app_code TEXT NOT NULL,
    task_type BIGINT NOT NULL,
    launch_mode BIGINT NOT NULL,
    status BIGINT NOT NULL,
    stopping BIGINT NOT NULL DEFAULT 0,
    create_time BIGINT NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    callback_url TEXT
);
CREATE INDEX job_instances_scope_time ON job_instances (scope_type, scope_id, create_time);
CREATE INDEX job_instances_status ON job_instances (status);

CREATE TABLE step_instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_instance_id BIGINT NOT NULL REFERENCES job_instances (id),
    step_order BIGINT NOT NULL,
    name TEXT NOT NULL,
    step_type BIGINT NOT NULL,
    status BIGINT NOT NULL,
    execute_count BIGINT NOT NULL DEFAULT 0,
    create_time BIGINT NOT NULL,
    start_time BIGINT,
    end_time BIGINT,
    language BIGINT NOT NULL,
    script BLOB NOT NULL,
    args TEXT NOT NULL,
    sensitive BIGINT NOT NULL,
    timeout_secs BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    account_user TEXT NOT NULL
);
CREATE INDEX step_instances_job ON step_instances (job_instance_id, step_order);

CREATE TABLE host_tasks (
    step_instance_id BIGINT NOT NULL,
    execute_count BIGINT NOT NULL,
    bk_host_id BIGINT NOT NULL,
    ip TEXT NOT NULL,
    bk_cloud_id BIGINT NOT NULL,
    status BIGINT NOT NULL,
    exit_code BIGINT NOT NULL DEFAULT 0,
    error_code BIGINT NOT NULL DEFAULT 0,
    tag TEXT NOT NULL DEFAULT '',
    start_time BIGINT,
    end_time BIGINT,
    dropped_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (step_instance_id, execute_count, bk_host_id)
);
CREATE INDEX host_tasks_host_status ON host_tasks (bk_host_id, status);

CREATE TABLE log_chunks (
    step_instance_id BIGINT NOT NULL,
    execute_count BIGINT NOT NULL,
    bk_host_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (step_instance_id, execute_count, bk_host_id, seq)
);

CREATE TABLE callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_instance_id BIGINT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    done BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX callbacks_pending ON callbacks (done, id);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time BIGINT NOT NULL,
    app_code TEXT NOT NULL,
    username TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
