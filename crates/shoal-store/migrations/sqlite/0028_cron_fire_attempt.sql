-- A fire's claim is a lease: `attempt` moves on when a claim left without its job (its
-- server died in between) is taken over, and a job is created only under the current one.
ALTER TABLE cron_fires ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
CREATE INDEX cron_fires_claimed ON cron_fires (claimed_at) WHERE outcome = 'claimed';
