-- Rolling execution: which batch a host task belongs to, and each rolling step's plan.
ALTER TABLE host_tasks ADD COLUMN batch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE step_rolling (
    step_instance_id BIGINT PRIMARY KEY,
    config TEXT NOT NULL,
    total_batches BIGINT NOT NULL,
    current_batch BIGINT NOT NULL DEFAULT 0
);
