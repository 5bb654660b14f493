-- Dynamic groups are keyed by their scope and id: one business can never address (and so
-- never overwrite) another business's group of the same id.
CREATE TABLE dynamic_groups_scoped (
    id TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    creator TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (scope_type, scope_id, id)
);
INSERT INTO dynamic_groups_scoped (id, scope_type, scope_id, name, spec, creator, create_time)
    SELECT id, scope_type, scope_id, name, spec, creator, create_time FROM dynamic_groups;
DROP TABLE dynamic_groups;
ALTER TABLE dynamic_groups_scoped RENAME TO dynamic_groups;

-- Business sets and their member businesses (a JSON array of bk_biz_id). A biz_set scope
-- reaches the hosts of its members only; a set that is not defined here reaches nothing.
CREATE TABLE biz_sets (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    members TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
