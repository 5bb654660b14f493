-- Dynamic groups are keyed by their scope and id: one business can never address (and so
-- never overwrite) another business's group of the same id.
ALTER TABLE dynamic_groups DROP CONSTRAINT dynamic_groups_pkey;
ALTER TABLE dynamic_groups ADD PRIMARY KEY (scope_type, scope_id, id);

-- Business sets and their member businesses (a JSON array of bk_biz_id). A biz_set scope
-- reaches the hosts of its members only; a set that is not defined here reaches nothing.
CREATE TABLE biz_sets (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    members TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
