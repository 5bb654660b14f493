-- The host tasks still waiting (5) or running (7): after every committed batch of results
-- the engine asks whether a step run has any left. The host id is part of the key so that an
-- update of one task that the planner runs through this index finds that task at once.
CREATE INDEX host_tasks_unfinished ON host_tasks (step_instance_id, execute_count, bk_host_id) WHERE status IN (5, 7);
