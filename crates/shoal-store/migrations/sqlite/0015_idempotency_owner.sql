-- Who handles a pending idempotency key (a replica id, or a server's boot id), and the job
-- its request created — written in the job's own transaction, so after a crash a retry
-- finds the job instead of making another, or finds none and may make it once.
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN job_instance_id BIGINT;
