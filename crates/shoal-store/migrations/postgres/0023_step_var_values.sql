-- Global string variables a script changed, per host task (the values its agent read after
-- the script exited), written in the transaction of the task's exit. A step's output value
-- of a variable is the one set by the host with the lowest bk_host_id; later steps of the
-- job and get_job_instance_global_var_value read them. A resent exit changes nothing.
CREATE TABLE step_var_values (
    step_instance_id BIGINT NOT NULL,
    bk_host_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (step_instance_id, bk_host_id, name)
);
