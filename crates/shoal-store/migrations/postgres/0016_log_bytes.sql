-- Log bytes stored per host task, so the server keeps at most the output cap of a task
-- whatever its agent sends (tasks from before this count from zero).
ALTER TABLE host_tasks ADD COLUMN log_bytes BIGINT NOT NULL DEFAULT 0;
