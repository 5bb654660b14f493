-- Several server replicas on one database (used on PostgreSQL; harmless on SQLite).

-- Live replicas: each refreshes its heartbeat; one whose heartbeat is old is dead.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    heartbeat BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);

-- Which replica holds each host's agent session. replica_id is NULL once the session
-- closed; since is when it opened, or when it closed.
CREATE TABLE agent_sessions (
    bk_host_id BIGINT PRIMARY KEY,
    replica_id TEXT,
    conn_id BIGINT NOT NULL,
    since BIGINT NOT NULL
);
CREATE INDEX agent_sessions_replica ON agent_sessions (replica_id);

-- Messages for agents held by another replica (Run, Cancel), taken by that replica.
CREATE TABLE routed_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    replica_id TEXT NOT NULL,
    bk_host_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX routed_messages_replica ON routed_messages (replica_id, id);
