-- Which replica is sending a callback, since when: a callback is posted by one replica, and
-- picked up by another only when the claim is stale (its sender died).
ALTER TABLE callbacks ADD COLUMN claimed_by TEXT;
ALTER TABLE callbacks ADD COLUMN claimed_at BIGINT;
