-- Host identity: one current host per address, bound at enrolment; agents held pending until
-- accepted; enrolment tokens that are many, per business, expiring, single-use.

-- state: 0 active, 1 pending (enrolled, waiting for an admin to accept it),
-- 2 retired (superseded; kept for the history of old jobs, never a target).
ALTER TABLE hosts ADD COLUMN state BIGINT NOT NULL DEFAULT 0;
-- The enrolment token that admitted the host (NULL: the server's own token, or before 0009).
ALTER TABLE hosts ADD COLUMN enrolled_by BIGINT;

-- Addresses claimed twice before this constraint existed: the hosts of revoked agents are
-- retired first, then all but the newest host of the address.
UPDATE hosts SET state = 2
 WHERE agent_id IN (SELECT agent_id FROM agent_credentials WHERE revoked_at IS NOT NULL)
   AND EXISTS (SELECT 1 FROM hosts h2 WHERE h2.bk_cloud_id = hosts.bk_cloud_id AND h2.ip = hosts.ip AND h2.bk_host_id <> hosts.bk_host_id);
UPDATE hosts SET state = 2
 WHERE state = 0
   AND EXISTS (SELECT 1 FROM hosts h2 WHERE h2.bk_cloud_id = hosts.bk_cloud_id AND h2.ip = hosts.ip AND h2.state = 0 AND h2.bk_host_id > hosts.bk_host_id);
CREATE UNIQUE INDEX hosts_address ON hosts (bk_cloud_id, ip) WHERE state <> 2;

-- Enrolment tokens issued by an admin. Only a SHA-256 of the token is kept (it is 256 random
-- bits, so a slow hash adds nothing). bk_biz_id NULL: any business.
CREATE TABLE agent_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    bk_biz_id BIGINT,
    pending BIGINT NOT NULL DEFAULT 0,
    single_use BIGINT NOT NULL DEFAULT 0,
    uses BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT,
    revoked_at BIGINT,
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
