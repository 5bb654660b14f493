-- The swarm tracker's state, shared by replicas: per blob, the targets fetching it from a
-- server now (kind 1, a lease until `until_ms`) and the holders serving it to peers (kind 2,
-- at `addr` with a certificate whose SHA-256 is `cert_sha256`, until `until_ms`).
CREATE TABLE swarm_peers (
    sha256 TEXT NOT NULL,
    bk_host_id BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    addr TEXT NOT NULL DEFAULT '',
    cert_sha256 TEXT NOT NULL DEFAULT '',
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (sha256, bk_host_id)
);
CREATE INDEX swarm_peers_until ON swarm_peers (until_ms);
