-- The host tasks still waiting (5) or running (7): after every committed batch of results
-- the engine asks whether a step run has any left.
CREATE INDEX host_tasks_unfinished ON host_tasks (step_instance_id, execute_count) WHERE status IN (5, 7);
