-- Rolling by source file: every batch of files sends each target a task of its own, keyed by
-- the batch (`file_batch`, 0 outside such steps); a batch that failed under "ignore failures"
-- is remembered so the step ends 6 even when the last batch succeeds.
ALTER TABLE host_tasks ADD COLUMN file_batch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE step_rolling ADD COLUMN failed_batches BIGINT NOT NULL DEFAULT 0;
