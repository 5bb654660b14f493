-- Evidence and at rest.
--
-- 1. Every audit event has a chain position: seq becomes NOT NULL. Events written before the
--    chain existed (seq NULL, never covered by it) move to audit_events_unchained, kept as
--    they were. The chain's hashes become MACs under a key outside the database; events
--    already chained stay verifiable under the old unkeyed rule up to the `audit_rekey`
--    event the server appends when it first opens the database with its key.
CREATE TABLE audit_events_unchained AS SELECT * FROM audit_events WHERE seq IS NULL;
DELETE FROM audit_events WHERE seq IS NULL;
ALTER TABLE audit_events ALTER COLUMN seq SET NOT NULL;

-- 2. Account grants name the account by id (0 = every account of the scope), so deleting an
--    account ends its grants and a new account under the same alias starts with none.
--    Backfill from the alias: a grant of one business's alias binds to that account; a grant
--    of an alias in every business ('*') binds to each account of that alias there is now;
--    a grant naming no existing account granted nothing real and is dropped.
CREATE TABLE app_account_grants_v10 (
    app_code TEXT NOT NULL,
    scope_type TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    alias TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (app_code, scope_type, scope_id, account_id)
);
INSERT INTO app_account_grants_v10 (app_code, scope_type, scope_id, account_id, alias, granted_by, granted_at)
    SELECT app_code, scope_type, scope_id, 0, '*', granted_by, granted_at
    FROM app_account_grants WHERE alias = '*';
INSERT INTO app_account_grants_v10 (app_code, scope_type, scope_id, account_id, alias, granted_by, granted_at)
    SELECT g.app_code, a.scope_type, a.scope_id, a.id, a.alias, g.granted_by, g.granted_at
    FROM app_account_grants g JOIN accounts a
      ON a.scope_type = g.scope_type AND a.alias = g.alias AND (g.scope_id = '*' OR a.scope_id = g.scope_id)
    WHERE g.alias <> '*'
    ON CONFLICT DO NOTHING;
DROP TABLE app_account_grants;
ALTER TABLE app_account_grants_v10 RENAME TO app_account_grants;
CREATE INDEX app_account_grants_account ON app_account_grants (account_id);
