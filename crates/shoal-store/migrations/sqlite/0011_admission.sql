-- Built-in dangerous-command checks an admin turned off (by name); absent = on.
CREATE TABLE danger_builtins_disabled (
    name TEXT PRIMARY KEY,
    disabled_by TEXT NOT NULL,
    disabled_at BIGINT NOT NULL
);
