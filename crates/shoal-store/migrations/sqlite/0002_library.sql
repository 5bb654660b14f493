-- Script library, job templates (versioned documents), plans, and multi-step job data.
CREATE TABLE scripts (
    id TEXT PRIMARY KEY,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    script_language BIGINT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (scope_type, scope_id, name)
);

CREATE TABLE script_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    script_id TEXT NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    content BLOB NOT NULL,
    status BIGINT NOT NULL,
    version_desc TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (script_id, version)
);

CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    needs_approval BIGINT NOT NULL DEFAULT 0,
    current_version BIGINT NOT NULL DEFAULT 0,
    latest_version BIGINT NOT NULL DEFAULT 0,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (scope_type, scope_id, name)
);

-- Every change is a new version: state is current, superseded, pending or rejected.
CREATE TABLE template_versions (
    template_id BIGINT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    diff TEXT NOT NULL DEFAULT '[]',
    reviewer TEXT,
    review_comment TEXT,
    reviewed_at BIGINT,
    PRIMARY KEY (template_id, version)
);

CREATE TABLE plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    template_id BIGINT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    synced_version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL,
    UNIQUE (template_id, name)
);

-- Which plan a job instance ran, its variables, and per-step extras.
CREATE TABLE job_instance_plans (
    job_instance_id BIGINT PRIMARY KEY,
    job_template_id BIGINT NOT NULL,
    job_plan_id BIGINT NOT NULL,
    template_version BIGINT NOT NULL,
    variables TEXT NOT NULL
);

CREATE TABLE step_extras (
    step_instance_id BIGINT PRIMARY KEY,
    ignore_error BIGINT NOT NULL DEFAULT 0,
    confirm_message TEXT,
    confirm_users TEXT NOT NULL DEFAULT '[]',
    confirm_reason TEXT,
    confirmed_by TEXT
);
