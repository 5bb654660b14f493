-- Cron jobs (JOB's job-crontab): a plan run on a 5-field crontab expression or once at
-- execute_time, as its creator. next_fire (ms) is the due time the scheduler fires next:
-- NULL while paused or done. Each fire is claimed by inserting its (cron_id, due_time) row
-- and moving next_fire on in one transaction, so replicas on one database fire it once.

CREATE TABLE crons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    job_plan_id BIGINT NOT NULL,
    expression TEXT,
    execute_time BIGINT,
    time_zone TEXT NOT NULL,
    -- JSON array of {name, value, server}: the plan's variables this cron sets.
    variables TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 0,
    -- 'run_once' | 'skip': what a fire missed while no server ran does.
    missed_policy TEXT NOT NULL,
    next_fire BIGINT,
    creator TEXT NOT NULL,
    -- Who the jobs run as: the principal that last saved or started the cron ('app' | 'user'
    -- | 'gateway', the app it called through, its name), so an edit never borrows another's
    -- rights.
    run_as_kind TEXT NOT NULL,
    run_as_app TEXT NOT NULL,
    run_as TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    last_modify_user TEXT NOT NULL,
    last_modify_time BIGINT NOT NULL
);
CREATE INDEX crons_scope ON crons (scope_type, scope_id);
CREATE INDEX crons_due ON crons (enabled, next_fire);

-- outcome: 'claimed' (taken; its job not created yet, or the server died in between),
-- 'started' (job_instance_id), 'failed' (error), 'skipped' (a missed fire under 'skip').
CREATE TABLE cron_fires (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cron_id BIGINT NOT NULL,
    due_time BIGINT NOT NULL,
    missed BIGINT NOT NULL DEFAULT 0,
    claimed_by TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    job_instance_id BIGINT,
    error TEXT,
    UNIQUE (cron_id, due_time)
);
CREATE INDEX cron_fires_job ON cron_fires (job_instance_id);
